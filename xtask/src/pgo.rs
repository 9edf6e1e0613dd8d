//! A profile-guided (PGO) release build of `xlb`: an instrumented build
//! serves the HTTP bench's loads in the namespace lab (training), LLVM
//! merges the counts, and a second build lays the code out by them (hot
//! paths together, indirect calls made direct where one target
//! dominates). Used by `cargo xtask bench http` and `cargo xtask build
//! --release --pgo`; both need root for the lab.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Seconds of each training load (HTTP/1.1, h2c, TLS handshakes).
const TRAINING_SECS: &str = "4";

/// Builds the PGO `xlb` and returns its path. Its own target directories
/// (`target/pgo-train`, `target/pgo`), so the plain release build is
/// untouched. Expects setup done and the bench's Debian tools present.
pub fn build() -> Result<PathBuf> {
    let profdata_tool = llvm_profdata()?;
    let train_dir = cmd::target_dir().join("pgo-train");
    let profiles = train_dir.join("profiles");
    let _ = std::fs::remove_dir_all(&profiles);
    std::fs::create_dir_all(&profiles)?;

    println!("pgo: 1/4 instrumented build");
    let instrumented = build_xlb(
        &train_dir,
        &format!(
            "-Cprofile-generate={}",
            train_dir.join("build-scripts").display()
        ),
    )?;

    println!("pgo: 2/4 training: the HTTP bench's loads, {TRAINING_SECS} s each");
    let mut train = cmd::cargo()?;
    train
        .args(["bench", "-p", "xlb-lab", "--bench", "http"])
        .env("XLB_BIN", &instrumented)
        .env("XLB_BENCH_TRAIN", "1")
        .env("XLB_BENCH_SECS", TRAINING_SECS)
        // Only the daemon's counts: `%p` keeps each process's file apart.
        .env("LLVM_PROFILE_FILE", profiles.join("xlb-%p.profraw"));
    cmd::run(&mut train).context("training run")?;

    println!("pgo: 3/4 merging the profiles");
    let raw: Vec<PathBuf> = std::fs::read_dir(&profiles)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "profraw"))
        .collect();
    if raw.is_empty() {
        bail!(
            "the training run left no profile in {} (did xlb exit cleanly?)",
            profiles.display()
        );
    }
    let merged = train_dir.join("xlb.profdata");
    let mut merge = cmd::command(&profdata_tool)?;
    merge.arg("merge").arg("-o").arg(&merged).args(&raw);
    cmd::run(&mut merge)?;

    println!("pgo: 4/4 optimized build");
    build_xlb(
        &cmd::target_dir().join("pgo"),
        &format!("-Cprofile-use={}", merged.display()),
    )
}

/// `cargo build --release` of the `xlb` binary into `target_dir` with
/// `rustflags` (the eBPF object's own build sets its flags itself).
fn build_xlb(target_dir: &Path, rustflags: &str) -> Result<PathBuf> {
    let mut build = cmd::cargo()?;
    build
        .args(["build", "--release", "-p", "xlb", "--bin", "xlb"])
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTFLAGS", rustflags);
    println!("pgo: RUSTFLAGS={rustflags} {}", cmd::describe(&build));
    cmd::run(&mut build)?;
    Ok(target_dir.join("release").join("xlb"))
}

/// `llvm-profdata` of the toolchain cargo builds with (rustup's
/// `llvm-tools` component, added when missing: the profile format must
/// match rustc's LLVM, which a distribution's LLVM may not).
fn llvm_profdata() -> Result<PathBuf> {
    let find = || -> Result<PathBuf> {
        let mut rustc = cmd::command("rustc")?;
        let sysroot = cmd::output(rustc.args(["--print", "sysroot"]))?;
        let mut rustc = cmd::command("rustc")?;
        let host = cmd::output(rustc.args(["--print", "host-tuple"]))?;
        Ok(Path::new(sysroot.trim())
            .join("lib/rustlib")
            .join(host.trim())
            .join("bin/llvm-profdata"))
    };
    let tool = find()?;
    if tool.is_file() {
        println!("pgo: llvm-profdata ... present");
        return Ok(tool);
    }
    println!("pgo: llvm-profdata ... installing rustup's llvm-tools");
    let mut add = cmd::command("rustup")?;
    cmd::run(add.args(["component", "add", "llvm-tools"]))?;
    let tool = find()?;
    if !tool.is_file() {
        bail!("llvm-tools installed, but {} is missing", tool.display());
    }
    Ok(tool)
}
