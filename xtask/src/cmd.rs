//! Child processes: every command xtask spawns sees `~/.cargo/bin` first on
//! PATH (the eBPF build calls `bpf-linker` through rustc), and cargo runs
//! from the workspace root.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `target/`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `$CARGO_HOME`, else `$HOME/.cargo`.
pub fn cargo_home() -> Result<PathBuf> {
    if let Some(dir) = env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(dir));
    }
    let home = env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// PATH with `$CARGO_HOME/bin` in front (unless it is already there).
fn path_with_cargo_bin() -> Result<OsString> {
    let bin = cargo_home()?.join("bin");
    let current = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&current).collect();
    if !dirs.contains(&bin) {
        dirs.insert(0, bin);
    }
    env::join_paths(dirs).context("PATH")
}

/// A command for `program` with the xtask PATH.
pub fn command(program: impl AsRef<OsStr>) -> Result<Command> {
    let mut cmd = Command::new(program);
    cmd.env("PATH", path_with_cargo_bin()?);
    Ok(cmd)
}

/// The cargo that runs xtask (`$CARGO`), in the workspace root.
pub fn cargo() -> Result<Command> {
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = command(program)?;
    cmd.current_dir(workspace_root());
    Ok(cmd)
}

/// `program arg arg...`, for messages.
pub fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program());
    let mut text = program.to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` with inherited stdio; an error unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; an error unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", describe(cmd), out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", describe(cmd)))
}

/// Runs `cmd` silently; its stdout if it started and exited 0.
pub fn try_output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

/// `apt-get update`, then `apt-get install` of `packages` (no
/// recommends, non-interactive); an error unless both exit 0.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    run(command("apt-get")?
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(command("apt-get")?
        .args(["install", "-y", "-q", "-o", "Dpkg::Use-Pty=0"])
        .arg("--no-install-recommends")
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Whether xtask runs with effective uid 0.
pub fn is_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}
