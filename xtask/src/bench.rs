//! `cargo xtask bench [xdp|l4|http]`: the benchmarks.

use anyhow::{Result, bail};
use clap::ValueEnum;

use crate::{cmd, setup};

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
        Kind::Http => {
            let name = kind.to_possible_value().map(|v| v.get_name().to_string());
            eprintln!("bench {}: not implemented yet", name.unwrap_or_default());
            std::process::exit(2);
        }
    }
}

fn xdp() -> Result<()> {
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
    if !cmd::is_root() {
        bail!("bench l4 builds network namespaces and attaches XDP: run it as root");
    }
    setup::setup()?;
    let mut build = cmd::cargo()?;
    build.args(["build", "--release", "-p", "xlb", "-p", "xlb-lab", "--bins"]);
    println!("bench: {}", cmd::describe(&build));
    cmd::run(&mut build)?;

    let mut bench = cmd::cargo()?;
    bench
        .args(["bench", "-p", "xlb-lab", "--bench", "l4"])
        .env("XLB_BIN", cmd::target_dir().join("release").join("xlb"));
    println!("bench: {}", cmd::describe(&bench));
    cmd::run(&mut bench)
}
