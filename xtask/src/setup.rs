//! `cargo xtask setup`: installs what building and testing xlb need, and
//! only what is missing. One progress line per step.
//!
//! 1. Debian packages the lab tests use.
//! 2. The nightly toolchain (the eBPF crate needs it), [`NIGHTLY`].
//! 3. Its `rust-src` component (for `-Z build-std=core`).
//! 4. `bpf-linker`, built against the nightly's own LLVM.
//!
//! Every command xtask spawns has `~/.cargo/bin` on PATH (see `cmd`), so the
//! eBPF build finds the installed `bpf-linker`.
//!
//! Testing the bpf-linker install without touching the installed one:
//! `XTASK_FORCE_BPF_LINKER=1` installs even when one is present, and
//! `XTASK_BPF_LINKER_ROOT=DIR` passes `--root DIR` to `cargo install`.

use std::env;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// Debian packages the tests and benches use (build-essential is assumed).
pub const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",     // ip netns, ip link (veth, bridge), ip addr, ip route
    "curl",         // end-to-end HTTP checks
    "iputils-ping", // reachability checks
    "ethtool",      // offload settings on veth
    "procps",       // sysctl
    "nftables",     // the nftables DNAT peer in benches
];

/// The toolchain the eBPF crate builds with, by the one name every call
/// uses (`rustup run`, `--toolchain`; aya-build's default in
/// `userspace/build.rs` is this same `nightly`). A dated nightly
/// (`nightly-YYYY-MM-DD`) is another toolchain: it does not count as
/// installed.
pub const NIGHTLY: &str = "nightly";

/// The bpf-linker release line that builds on this toolchain.
const BPF_LINKER_VERSION: &str = "^0.13";

pub fn setup() -> Result<()> {
    debian_packages()?;
    nightly_toolchain()?;
    let sysroot = nightly_sysroot()?;
    rust_src(&sysroot)?;
    lint_components()?;
    bpf_linker(&sysroot)?;
    Ok(())
}

/// `cargo xtask test` runs rustfmt and clippy, and clippy again with the
/// nightly toolchain for the eBPF crate: minimal toolchain profiles lack
/// them.
fn lint_components() -> Result<()> {
    // None: the toolchain cargo runs with here (the default one).
    for toolchain in [None, Some(NIGHTLY)] {
        let label = toolchain.unwrap_or("default");
        let with_toolchain = |c: &mut std::process::Command| {
            if let Some(t) = toolchain {
                c.args(["--toolchain", t]);
            }
        };
        let mut list = cmd::command("rustup")?;
        list.args(["component", "list", "--installed"]);
        with_toolchain(&mut list);
        let installed = cmd::output(&mut list)?;
        let missing: Vec<&str> = ["clippy", "rustfmt"]
            .into_iter()
            .filter(|c| !installed.lines().any(|l| l.starts_with(&format!("{c}-"))))
            .collect();
        if missing.is_empty() {
            println!("setup: {label} toolchain's clippy, rustfmt ... present");
            continue;
        }
        println!(
            "setup: {label} toolchain's {} ... installing",
            missing.join(", ")
        );
        let mut add = cmd::command("rustup")?;
        add.args(["component", "add"]).args(&missing);
        with_toolchain(&mut add);
        cmd::run(&mut add).with_context(|| {
            format!(
                "installing {} for the {label} toolchain",
                missing.join(", ")
            )
        })?;
    }
    Ok(())
}

fn debian_packages() -> Result<()> {
    let list = DEBIAN_PACKAGES.join(" ");
    let mut missing = Vec::new();
    for &package in DEBIAN_PACKAGES {
        if !dpkg_installed(package)? {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        println!("setup: debian packages ({list}) ... present");
        return Ok(());
    }
    let missing_list = missing.join(" ");
    if !cmd::is_root() {
        bail!(
            "debian packages missing: {missing_list}; run `cargo xtask setup` as root, \
             or install them: apt-get install {missing_list}"
        );
    }
    println!("setup: debian packages ({missing_list}) ... installing");
    cmd::apt_install(&missing)
}

/// `dpkg -s PACKAGE` reports `Status: install ok installed`.
fn dpkg_installed(package: &str) -> Result<bool> {
    let out = cmd::command("dpkg")?
        .args(["-s", package])
        .output()
        .context("could not run dpkg (setup supports Debian-based machines)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(out.status.success()
        && stdout
            .lines()
            .any(|line| line.trim() == "Status: install ok installed"))
}

fn nightly_toolchain() -> Result<()> {
    let list = cmd::output(cmd::command("rustup")?.args(["toolchain", "list"]))
        .context("rustup is needed to manage the nightly toolchain")?;
    let host = host_triple()?;
    if has_toolchain(&list, NIGHTLY, &host) {
        println!("setup: {NIGHTLY} toolchain ... present");
        return Ok(());
    }
    println!("setup: {NIGHTLY} toolchain ... installing");
    let install = cmd::run(cmd::command("rustup")?.args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
    ]));
    install.context(
        "could not install the nightly toolchain. The eBPF crate needs it. \
         This machine reaches only package registries, not static.rust-lang.org, \
         so rustup cannot download it here; use a machine image that ships \
         the nightly toolchain",
    )
}

/// Whether `rustup toolchain list` output names `toolchain` itself, as
/// rustup lists it (`TOOLCHAIN-HOST`), not a dated or other-host
/// toolchain whose name merely starts the same.
fn has_toolchain(list: &str, toolchain: &str, host: &str) -> bool {
    let full = format!("{toolchain}-{host}");
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| name == full)
}

/// The host triple (`rustc -vV`'s `host:` line).
fn host_triple() -> Result<String> {
    let out = cmd::output(cmd::command("rustc")?.arg("-vV"))?;
    out.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_string())
        .context("no `host:` line in `rustc -vV`")
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out =
        cmd::output(cmd::command("rustup")?.args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?;
    Ok(PathBuf::from(out.trim()))
}

fn rust_src(sysroot: &Path) -> Result<()> {
    let library = sysroot.join("lib/rustlib/src/rust/library");
    if library.is_dir() {
        println!("setup: {NIGHTLY} rust-src ... present");
        return Ok(());
    }
    println!("setup: {NIGHTLY} rust-src ... installing");
    cmd::run(cmd::command("rustup")?.args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

fn bpf_linker(sysroot: &Path) -> Result<()> {
    let force = env::var_os("XTASK_FORCE_BPF_LINKER").is_some_and(|v| v == "1");
    let root = env::var_os("XTASK_BPF_LINKER_ROOT").map(PathBuf::from);
    if !force {
        if let Some(version) = bpf_linker_version(Path::new("bpf-linker")) {
            println!("setup: bpf-linker ... present ({version})");
            return Ok(());
        }
    }
    let lib_dir = sysroot.join("lib");
    let (file_name, major) = nightly_libllvm(&lib_dir)?;
    println!(
        "setup: bpf-linker ... installing (cargo install, against the nightly's LLVM {major})"
    );

    // bpf-linker records LLVM_PREFIX/lib as its runpath, so the prefix must
    // outlive the build (and `cargo clean`): keep it beside cargo's bin dir.
    let prefix = cmd::cargo_home()?.join("xlb-llvm-prefix");
    make_llvm_prefix(&prefix, &lib_dir.join(&file_name), &file_name)?;

    let mut install = cmd::cargo()?;
    install
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix);
    if let Some(root) = &root {
        install.arg("--root").arg(root);
    }
    if force {
        install.arg("--force");
    }
    cmd::run(&mut install)?;

    let installed = match &root {
        Some(root) => root.join("bin/bpf-linker"),
        None => cmd::cargo_home()?.join("bin/bpf-linker"),
    };
    match bpf_linker_version(&installed) {
        Some(version) => {
            println!(
                "setup: bpf-linker ... installed ({version}) at {}",
                installed.display()
            );
            Ok(())
        }
        None => bail!("{} was installed but does not run", installed.display()),
    }
}

/// `bpf-linker --version`, if that runs.
fn bpf_linker_version(program: &Path) -> Option<String> {
    let mut version = cmd::command(program).ok()?;
    cmd::try_output(version.arg("--version")).map(|out| out.trim().to_string())
}

/// The nightly's `libLLVM.so.*` in its sysroot `lib/`: the file name and
/// the LLVM major version it carries.
fn nightly_libllvm(lib_dir: &Path) -> Result<(String, u32)> {
    let entries =
        fs::read_dir(lib_dir).with_context(|| format!("reading {}", lib_dir.display()))?;
    let mut found: Vec<(u32, String)> = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(major) = llvm_major(&name) {
            found.push((major, name));
        }
    }
    found.sort();
    match found.pop() {
        Some((major, name)) => Ok((name, major)),
        None => bail!(
            "no libLLVM.so.* in {}: cannot build bpf-linker against the nightly's LLVM \
             (Debian's llvm-N-dev is the other route)",
            lib_dir.display()
        ),
    }
}

/// `libLLVM.so.22.1-rust-1.97.0-nightly` -> 22.
fn llvm_major(file_name: &str) -> Option<u32> {
    let version = file_name.strip_prefix("libLLVM.so.")?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `PREFIX/lib/{libLLVM.so, FILE_NAME}` -> the sysroot's libLLVM.
fn make_llvm_prefix(prefix: &Path, libllvm: &Path, file_name: &str) -> Result<()> {
    let lib = prefix.join("lib");
    if prefix.exists() {
        fs::remove_dir_all(prefix).with_context(|| format!("removing {}", prefix.display()))?;
    }
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for link in ["libLLVM.so", file_name] {
        let path = lib.join(link);
        symlink(libllvm, &path).with_context(|| format!("linking {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_file_name() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), Some(22));
        assert_eq!(llvm_major("libLLVM.so.19.1-rust-1.85.0-nightly"), Some(19));
        assert_eq!(llvm_major("libLLVM.so.23"), Some(23));
        assert_eq!(llvm_major("libLLVM-22-rust-1.97.0-nightly.so"), None);
        assert_eq!(llvm_major("libLLVM.so"), None);
        assert_eq!(llvm_major("librustc_driver-b5a965480ee51f9a.so"), None);
    }

    #[test]
    fn only_the_named_toolchain_counts() {
        let host = "x86_64-unknown-linux-gnu";
        let dated = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                     nightly-2026-01-15-x86_64-unknown-linux-gnu\n";
        assert!(!has_toolchain(dated, NIGHTLY, host));
        let other_host = "nightly-aarch64-unknown-linux-gnu\n";
        assert!(!has_toolchain(other_host, NIGHTLY, host));
        let both = format!("{dated}nightly-x86_64-unknown-linux-gnu\n");
        assert!(has_toolchain(&both, NIGHTLY, host));
        assert!(has_toolchain(
            dated,
            "nightly-2026-01-15",
            "x86_64-unknown-linux-gnu"
        ));
    }

    #[test]
    fn nightly_libllvm_picks_the_versioned_file() {
        let dir = env::temp_dir().join(format!("xtask-libllvm-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for name in [
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-b5a965480ee51f9a.so",
        ] {
            fs::write(dir.join(name), b"").unwrap();
        }
        let found = nightly_libllvm(&dir);
        fs::remove_dir_all(&dir).unwrap();
        let (name, major) = found.unwrap();
        assert_eq!(name, "libLLVM.so.22.1-rust-1.97.0-nightly");
        assert_eq!(major, 22);
    }

    #[test]
    fn llvm_prefix_links_both_names() {
        let dir = env::temp_dir().join(format!("xtask-prefix-{}", std::process::id()));
        let target = dir.join("libLLVM.so.22.1-rust-1.97.0-nightly");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&target, b"llvm").unwrap();
        let prefix = dir.join("prefix");
        // Twice: the second run replaces the first.
        for _ in 0..2 {
            make_llvm_prefix(&prefix, &target, "libLLVM.so.22.1-rust-1.97.0-nightly").unwrap();
        }
        let a = fs::read(prefix.join("lib/libLLVM.so")).unwrap();
        let b = fs::read(prefix.join("lib/libLLVM.so.22.1-rust-1.97.0-nightly")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!((a.as_slice(), b.as_slice()), (&b"llvm"[..], &b"llvm"[..]));
    }
}
