//! `cargo xtask run [--config FILE]`: setup, build, then run xlb, either
//! with the given config (as is) or in the default namespace lab.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{build, cmd};

pub fn run(config: Option<PathBuf>) -> Result<()> {
    build::build(false)?;
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
/// the embedded `examples/lab.toml`.
pub fn run_default_lab() -> Result<()> {
    bail!("default lab not wired yet")
}
