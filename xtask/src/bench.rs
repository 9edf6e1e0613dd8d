//! `cargo xtask bench [xdp|l4|http]`: the benchmarks.

use anyhow::{Result, bail};
use clap::ValueEnum;

use crate::{cmd, pgo, setup};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// XDP cost per packet (BPF_PROG_TEST_RUN), against a trivial program.
    Xdp,
    /// End-to-end L4 in the namespace lab: xlb against nftables DNAT.
    L4,
    /// End-to-end HTTP in the namespace lab.
    Http,
}

pub fn bench(kind: Kind) -> Result<()> {
    match kind {
        Kind::Xdp => xdp(),
        Kind::L4 => l4(),
        Kind::Http => http(),
    }
}

/// Every bench needs root: each builds network namespaces and loads XDP
/// programs (the xdp bench runs them with BPF_PROG_TEST_RUN in a
/// namespace of its own).
fn require_root(name: &str) -> Result<()> {
    if !cmd::is_root() {
        bail!("bench {name} builds network namespaces and loads XDP programs: run it as root");
    }
    Ok(())
}

/// Setup, then the `xdp` bench (`tests/benches/xdp.rs`).
fn xdp() -> Result<()> {
    require_root("xdp")?;
    setup::setup()?;
    let mut bench = cmd::cargo()?;
    bench.args(["bench", "-p", "xlb-lab", "--bench", "xdp"]);
    println!("bench: {}", cmd::describe(&bench));
    cmd::run(&mut bench)
}

/// Setup, release build of xlb and the lab binaries, then the `l4` bench
/// (`tests/benches/l4.rs`), which builds the lab twice (xlb, then
/// nftables) and prints the table. It runs the release `xlb`.
fn l4() -> Result<()> {
    lab_bench("l4", &[], false)
}

/// Debian packages the HTTP bench compares against, drives the load with,
/// or counts instructions with (valgrind's callgrind).
const HTTP_BENCH_PACKAGES: &[&str] = &["haproxy", "nginx", "wrk", "nghttp2-client", "valgrind"];

/// Setup, the peers and load generators from Debian (installed without
/// starting their services), release build of xlb and the lab, the
/// profile-guided `xlb` (`pgo`), then the `http` bench
/// (`tests/benches/http.rs`), which prints the table.
fn http() -> Result<()> {
    lab_bench("http", HTTP_BENCH_PACKAGES, true)
}

/// A bench in the namespace lab (root only): setup, the Debian `packages`
/// it needs, release build of xlb and the lab binaries, then
/// `tests/benches/{name}.rs` with `XLB_BIN` naming the release `xlb`, or
/// with `guided` the profile-guided one (and `XLB_BIN_PLAIN` the plain
/// release build, which the bench counts beside it).
fn lab_bench(name: &str, packages: &[&str], guided: bool) -> Result<()> {
    require_root(name)?;
    setup::setup()?;
    if !packages.is_empty() {
        install_quietly(packages)?;
    }
    let mut build = cmd::cargo()?;
    build.args(["build", "--release", "-p", "xlb", "-p", "xlb-lab", "--bins"]);
    println!("bench: {}", cmd::describe(&build));
    cmd::run(&mut build)?;

    let release = cmd::target_dir().join("release").join("xlb");
    let mut bench = cmd::cargo()?;
    bench.args(["bench", "-p", "xlb-lab", "--bench", name]);
    if guided {
        bench
            .env("XLB_BIN", pgo::build()?)
            .env("XLB_BIN_PLAIN", release);
    } else {
        bench.env("XLB_BIN", release);
    }
    println!("bench: {}", cmd::describe(&bench));
    cmd::run(&mut bench)
}

/// The HTTP bench's Debian tools (the PGO training run drives its loads).
pub fn install_http_tools() -> Result<()> {
    install_quietly(HTTP_BENCH_PACKAGES)
}

/// `apt-get install` of the missing `packages`, with a `policy-rc.d` that
/// forbids starting services while it runs (Debian's nginx and haproxy
/// would otherwise start on the host); an existing `policy-rc.d` is kept.
fn install_quietly(packages: &[&str]) -> Result<()> {
    let installed = |p: &str| -> bool {
        let Ok(mut dpkg) = cmd::command("dpkg") else {
            return false;
        };
        cmd::try_output(dpkg.args(["-s", p])).is_some_and(|o| {
            o.lines()
                .any(|l| l.trim() == "Status: install ok installed")
        })
    };
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("bench: packages ({}) ... present", packages.join(" "));
        return Ok(());
    }
    println!("bench: packages ({}) ... installing", missing.join(" "));
    let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(
            policy,
            "#!/bin/sh\n# cargo xtask bench http: no service starts\nexit 101\n",
        )?;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))?;
    }
    let result = cmd::apt_install(&missing);
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    result
}
