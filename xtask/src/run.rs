//! `cargo xtask run [--config FILE]`: setup, build, then run xlb, either
//! with the given config (as is) or in the default namespace lab.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{build, cmd};

pub fn run(config: Option<PathBuf>) -> Result<()> {
    if config.is_none() && !cmd::is_root() {
        bail!(
            "the default lab needs root: it creates network namespaces and \
             attaches XDP programs. Run `cargo xtask run` as root."
        );
    }
    build::build(false, false)?;
    match config {
        Some(config) => exec_xlb(&config),
        None => run_default_lab(),
    }
}

/// Replaces xtask with `xlb run --config FILE`, so signals reach xlb.
fn exec_xlb(config: &Path) -> Result<()> {
    let bin = cmd::target_dir().join("debug/xlb");
    let mut xlb = cmd::command(&bin)?;
    xlb.arg("run").arg("--config").arg(config);
    println!("run: {} run --config {}", bin.display(), config.display());
    let err = xlb.exec();
    Err(err).with_context(|| format!("could not start {}", bin.display()))
}

/// The default lab: the `xlb-lab` topology with xlb in the lb namespace and
/// the embedded `examples/lab.toml`. It runs in the `xtask-lab` binary
/// (feature `lab`), built now that setup has installed what its xlb
/// dependency needs; xtask is replaced by it, so Ctrl-C reaches it.
pub fn run_default_lab() -> Result<()> {
    let mut build = cmd::cargo()?;
    build.args([
        "build",
        "-p",
        "xtask",
        "--features",
        "lab",
        "--bin",
        "xtask-lab",
    ]);
    println!("run: {}", cmd::describe(&build));
    cmd::run(&mut build)?;

    let debug = cmd::target_dir().join("debug");
    let bin = debug.join("xtask-lab");
    let mut lab = cmd::command(&bin)?;
    lab.arg("--xlb")
        .arg(debug.join("xlb"))
        .arg("--lab-backend")
        .arg(debug.join("lab-backend"));
    let err = lab.exec();
    Err(err).with_context(|| format!("could not start {}", bin.display()))
}
