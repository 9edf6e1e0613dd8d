//! `cargo xtask`: the verbs that set up, build, test, run and measure xlb.
//!
//! Each verb lives in its own module; `cmd` holds the process helpers they
//! share (PATH with `~/.cargo/bin`, the workspace root, root check).

mod bench;
mod build;
mod cmd;
mod pgo;
mod run;
mod setup;
mod test;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Set up, build, test, run and benchmark xlb"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing need (idempotent): Debian
    /// packages, the nightly toolchain with rust-src, bpf-linker.
    Setup,
    /// Setup, then build xlb and the lab crate.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
        /// Also build a profile-guided xlb (target/pgo/release/xlb),
        /// trained on the HTTP bench's loads in the namespace lab (root).
        #[arg(long)]
        pgo: bool,
    },
    /// Setup, then fmt check, clippy and all test suites (needs root).
    Test,
    /// Setup, build, then run xlb: with a config file as is, else the
    /// default namespace lab.
    Run {
        /// Run `xlb run --config FILE` instead of the default lab.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run a benchmark.
    Bench {
        #[arg(value_enum, default_value_t = bench::Kind::Xdp)]
        kind: bench::Kind,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::setup(),
        Command::Build { release, pgo } => build::build(release, pgo),
        Command::Test => test::test(),
        Command::Run { config } => run::run(config),
        Command::Bench { kind } => bench::bench(kind),
    };
    if let Err(err) = result {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}
