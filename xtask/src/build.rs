//! `cargo xtask build [--release [--pgo]]`: setup, then build xlb (with
//! its XDP programs, through aya-build) and the lab crate; with `--pgo`,
//! also the profile-guided `xlb` (trained in the namespace lab: root).

use anyhow::{Result, bail};

use crate::{bench, cmd, pgo, setup};

pub fn build(release: bool, guided: bool) -> Result<()> {
    if guided && !release {
        bail!("--pgo goes with --release");
    }
    if guided && !cmd::is_root() {
        bail!("--pgo trains xlb in the namespace lab: run it as root");
    }
    setup::setup()?;
    let mut build = cmd::cargo()?;
    build.args(["build", "-p", "xlb", "-p", "xlb-lab"]);
    if release {
        build.arg("--release");
    }
    println!("build: {}", cmd::describe(&build));
    cmd::run(&mut build)?;
    if guided {
        bench::install_http_tools()?;
        let binary = pgo::build()?;
        println!("build: profile-guided xlb: {}", binary.display());
    }
    Ok(())
}
