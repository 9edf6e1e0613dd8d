//! `xtask-lab`: the default lab of `cargo xtask run` (see `lab.rs`). Built
//! with `--features lab` and started by `cargo xtask run` after setup and
//! build, so the `xtask` binary itself never needs the eBPF toolchain.

#[path = "../lab.rs"]
mod lab;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(name = "xtask-lab", about = "Run xlb in the default namespace lab")]
struct Cli {
    /// The `xlb` binary.
    #[arg(long, value_name = "PATH")]
    xlb: PathBuf,
    /// The `lab-backend` binary.
    #[arg(long, value_name = "PATH")]
    lab_backend: PathBuf,
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = lab::run(&cli.xlb, &cli.lab_backend) {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}
