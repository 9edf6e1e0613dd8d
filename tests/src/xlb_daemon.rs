//! The `xlb` daemon inside a lab namespace: find the binary, start
//! `xlb run --config FILE`, wait for its stderr log lines, read its
//! counters (`xlb stats`), stop it with SIGTERM and read its exit status.
//!
//! `ip netns exec` gives the daemon its own mount namespace (with a fresh
//! `/sys`), so the bpffs it pins its maps on is only visible there;
//! [`XlbDaemon::stats`] therefore runs `xlb stats` in the daemon's mount and
//! network namespaces (`nsenter -t PID -m -n`).

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    netns::Namespace,
    process::{Process, run_timeout, workspace_binary},
};

/// How long [`Namespace::spawn_xlb`] waits for `xlb running`.
pub const XLB_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The stderr line the daemon logs once XDP is attached and maps are filled.
pub const XLB_READY: &str = "xlb running";

/// The stderr line the daemon logs once a SIGHUP reload is applied.
pub const XLB_RELOADED: &str = "config reloaded";

/// Stderr lines of a SIGHUP reload that was not (fully) applied.
pub const XLB_RELOAD_FAILED: [&str; 2] = ["reload rejected", "applying the reloaded config failed"];

/// Locates the `xlb` binary: `$XLB_BIN` if set, else next to the current
/// executable (`target/<profile>/`), or one level up when the executable is
/// a test in `target/<profile>/deps/`. Build it with
/// `cargo build -p xlb --bins`.
pub fn xlb_path() -> Result<PathBuf> {
    workspace_binary("xlb", "XLB_BIN", "cargo build -p xlb --bins")
}

/// Removes ANSI escape sequences (`ESC [ ... letter`) from a log line.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A running (or exited) `xlb run` in a lab namespace. Dropping it kills the
/// process group (see [`Process`]); call [`XlbDaemon::terminate`] first for
/// a graceful stop.
#[derive(Debug)]
pub struct XlbDaemon {
    process: Process,
    config: PathBuf,
}

impl Namespace {
    /// Starts `xlb run --config CONFIG` in this namespace and waits (at most
    /// `timeout`) for its [`XLB_READY`] stderr line. On failure the error
    /// quotes the daemon's stderr.
    pub fn spawn_xlb(&self, config: &Path, timeout: Duration) -> Result<XlbDaemon> {
        let mut daemon = self.spawn_xlb_nowait(config)?;
        daemon
            .wait_for_stderr(0, timeout, |l| l.contains(XLB_READY))
            .with_context(|| format!("xlb in namespace {}", self.name()))?;
        Ok(daemon)
    }

    /// [`Namespace::spawn_xlb`] with the default readiness timeout, for
    /// tests: panics with the whole error chain (the daemon's stderr).
    pub fn start_xlb(&self, config: &Path) -> XlbDaemon {
        self.spawn_xlb(config, XLB_READY_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts `xlb run --config CONFIG` without waiting for anything (for a
    /// daemon that is expected to fail). Logs are uncoloured, level `info`.
    pub fn spawn_xlb_nowait(&self, config: &Path) -> Result<XlbDaemon> {
        let bin = xlb_path()?;
        let bin = bin.to_string_lossy();
        let cfg = config.to_string_lossy();
        // `ip netns exec` and `env` both exec, so the pid is xlb's.
        let process = self.spawn(&[
            "env",
            "NO_COLOR=1",
            "RUST_LOG=info",
            &bin,
            "run",
            "--config",
            &cfg,
        ])?;
        Ok(XlbDaemon {
            process,
            config: config.to_path_buf(),
        })
    }
}

impl XlbDaemon {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The stderr lines so far, ANSI escapes removed.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.process
            .stderr_lines()
            .iter()
            .map(|l| strip_ansi(l))
            .collect()
    }

    /// All stderr so far, for error messages.
    pub fn stderr(&self) -> String {
        self.stderr_lines().join("\n")
    }

    /// Waits until a stderr line at index `from` or later matches `pred`;
    /// returns its index and text. Fails after `timeout` or when the daemon
    /// exits first, quoting its stderr.
    pub fn wait_for_stderr(
        &mut self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<(usize, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = |lines: Vec<String>| {
                lines
                    .into_iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, l)| pred(l))
            };
            if let Some(hit) = found(self.stderr_lines()) {
                return Ok(hit);
            }
            if let Some(status) = self.exit_status() {
                thread::sleep(Duration::from_millis(100)); // last output
                if let Some(hit) = found(self.stderr_lines()) {
                    return Ok(hit);
                }
                bail!(
                    "xlb exited ({status}) before the awaited log line; stderr:\n{}",
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "xlb logged no awaited line within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The exit status if the daemon has exited, without reaping it (the
    /// [`Process`] guard still does that).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        peek_exit(self.process.pid())
    }

    /// Waits at most `timeout` for the daemon to exit on its own.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exit_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits at most `timeout` for the exit; returns the
    /// status, or an error (quoting stderr) if it is still running.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.exit_status() {
            return Ok(s);
        }
        // SAFETY: plain syscall on our own unreaped child.
        unsafe { libc::kill(self.process.pid() as i32, libc::SIGTERM) };
        self.wait_exit(timeout).with_context(|| {
            format!(
                "xlb still runs {timeout:?} after SIGTERM; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Sends SIGHUP (the daemon re-reads its config file) and waits at most
    /// `timeout` for [`XLB_RELOADED`]; a rejected or failed reload
    /// ([`XLB_RELOAD_FAILED`]) is an error quoting the daemon's line.
    /// Returns the index of the stderr line that confirmed the reload.
    pub fn reload(&mut self, timeout: Duration) -> Result<usize> {
        if let Some(s) = self.exit_status() {
            bail!(
                "xlb exited ({s}) before the reload; stderr:\n{}",
                self.stderr()
            );
        }
        let mark = self.stderr_lines().len();
        // SAFETY: plain syscall on our own unreaped child.
        unsafe { libc::kill(self.process.pid() as i32, libc::SIGHUP) };
        let (i, line) = self
            .wait_for_stderr(mark, timeout, |l| {
                l.contains(XLB_RELOADED) || XLB_RELOAD_FAILED.iter().any(|f| l.contains(f))
            })
            .context("waiting for the reload")?;
        if !line.contains(XLB_RELOADED) {
            bail!("xlb did not apply the reload: {line}");
        }
        Ok(i)
    }

    /// `xlb stats --config CONFIG` run inside the daemon's mount and network
    /// namespaces; returns its stdout.
    pub fn stats(&self) -> Result<String> {
        let bin = xlb_path()?;
        let pid = self.process.pid().to_string();
        let out = run_timeout(
            Command::new("nsenter")
                .args(["-t", &pid, "-m", "-n", "--"])
                .arg(&bin)
                .arg("stats")
                .arg("--config")
                .arg(&self.config),
            Duration::from_secs(10),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`: the child's status if
/// it has exited, leaving it waitable.
fn peek_exit(pid: u32) -> Option<ExitStatus> {
    // SAFETY: siginfo_t is plain data; waitid writes it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: the fields are valid after a successful waitid.
    if rc != 0 || unsafe { info.si_pid() } == 0 {
        return None;
    }
    let status = unsafe { info.si_status() };
    // Encode as a wait(2) status word.
    let raw = match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_DUMPED => status | 0x80,
        _ => status & 0x7f,
    };
    Some(ExitStatus::from_raw(raw))
}

/// `xlb check --config CFG`: whether it passed, and its stderr.
pub fn xlb_check(cfg: &Path) -> (bool, String) {
    let out = std::process::Command::new(xlb_path().expect("xlb binary"))
        .args(["check", "--config"])
        .arg(cfg)
        .output()
        .expect("running xlb check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
