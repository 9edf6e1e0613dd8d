//! `cargo xtask build [--release]`: setup, then build xlb (with its XDP
//! programs, through aya-build) and the lab crate.

use anyhow::Result;

use crate::{cmd, setup};

pub fn build(release: bool) -> Result<()> {
    setup::setup()?;
    let mut build = cmd::cargo()?;
    build.args(["build", "-p", "xlb", "-p", "xlb-lab"]);
    if release {
        build.arg("--release");
    }
    println!("build: {}", cmd::describe(&build));
    cmd::run(&mut build)
}
