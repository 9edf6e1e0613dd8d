//! `cargo xtask bench [xdp|l4|http]`: the benchmarks.

use anyhow::Result;
use clap::ValueEnum;

use crate::{cmd, setup};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// XDP cost per packet (BPF_PROG_TEST_RUN), against a trivial program.
    Xdp,
    /// End-to-end L4 in the namespace lab.
    L4,
    /// End-to-end HTTP in the namespace lab.
    Http,
}

pub fn bench(kind: Kind) -> Result<()> {
    match kind {
        Kind::Xdp => xdp(),
        Kind::L4 | Kind::Http => {
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
