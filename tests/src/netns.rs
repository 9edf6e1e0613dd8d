//! A named network namespace: run and spawn commands in it, or move the
//! current thread into it.

use std::{
    fs::File,
    marker::PhantomData,
    os::fd::AsRawFd,
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    lab::{IP_TIMEOUT, NETNS_DIR},
    process::{Process, Registry, output_timeout, run_timeout},
};

/// Default bound for [`Namespace::run`].
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A handle to one lab namespace (cheap to clone). The [`crate::Lab`] that
/// created it deletes the namespace; a handle used after that only gets
/// errors.
#[derive(Clone, Debug)]
pub struct Namespace {
    name: String,
    registry: Registry,
}

impl Namespace {
    pub(crate) fn new(name: String, registry: Registry) -> Namespace {
        Namespace { name, registry }
    }

    /// The full namespace name, `xlb-<test>-<role>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn command(&self, cmd: &[&str]) -> Result<Command> {
        let Some((prog, args)) = cmd.split_first() else {
            bail!("empty command for namespace {}", self.name);
        };
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]).args(args);
        Ok(c)
    }

    /// Runs `cmd` inside the namespace (`ip netns exec`), bounded by
    /// [`RUN_TIMEOUT`]; a non-zero exit is an error quoting stderr.
    pub fn run(&self, cmd: &[&str]) -> Result<Output> {
        run_timeout(&mut self.command(cmd)?, RUN_TIMEOUT)
    }

    /// Runs `cmd` inside the namespace bounded by `timeout`, whatever its
    /// exit status (only spawn failures and timeouts are errors).
    pub fn output(&self, cmd: &[&str], timeout: Duration) -> Result<Output> {
        output_timeout(&mut self.command(cmd)?, timeout)
    }

    /// `ip -n <ns> <args>`; a non-zero exit is an error.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        run_timeout(
            Command::new("ip").arg("-n").arg(&self.name).args(args),
            IP_TIMEOUT,
        )
    }

    /// `curl` inside the namespace: GET `url` (5 s limit, no proxy) and
    /// return the body; HTTP errors (>= 400) and connect failures are errors.
    pub fn curl(&self, url: &str) -> Result<String> {
        let out = self.run(&[
            "curl",
            "-sS",
            "-f",
            "--noproxy",
            "*",
            "--max-time",
            "5",
            url,
        ])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `cmd` inside the namespace as a [`Process`]: its own process
    /// group, killed when the guard drops (or when the lab drops, whichever
    /// is first).
    pub fn spawn(&self, cmd: &[&str]) -> Result<Process> {
        Process::spawn(self.command(cmd)?, &self.registry)
    }

    /// [`Namespace::spawn`], then waits (at most `timeout`) for a stdout line
    /// starting with `ready`.
    pub fn spawn_ready(&self, cmd: &[&str], ready: &str, timeout: Duration) -> Result<Process> {
        let mut p = self.spawn(cmd)?;
        p.wait_for_line(ready, timeout)
            .with_context(|| format!("in namespace {}", self.name))?;
        Ok(p)
    }

    /// Moves the CURRENT THREAD into this namespace (`setns`) until the
    /// guard drops, which moves it back. For loading/attaching BPF programs
    /// and `BPF_PROG_TEST_RUN` inside the lab; sockets opened meanwhile
    /// belong to this namespace. Threads and child processes spawned
    /// meanwhile inherit it; other threads are not moved. Note `/sys` is not remounted (use [`Namespace::run`] for tools
    /// that read `/sys/class/net`).
    pub fn enter(&self) -> Result<NetnsGuard> {
        let original = File::open("/proc/thread-self/ns/net").context("opening own netns")?;
        let path = format!("{NETNS_DIR}/{}", self.name);
        let target = File::open(&path).with_context(|| format!("opening {path}"))?;
        setns(&target).with_context(|| format!("entering namespace {}", self.name))?;
        Ok(NetnsGuard {
            original,
            _thread_bound: PhantomData,
        })
    }

    /// Runs `f` on a scoped thread that has entered this namespace and
    /// returns its result (a panic in `f` is propagated).
    pub fn with<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        std::thread::scope(|s| {
            let h = s.spawn(|| -> Result<R> {
                let _guard = self.enter()?;
                Ok(f())
            });
            match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

fn setns(ns: &File) -> std::io::Result<()> {
    // SAFETY: setns on a valid fd of a network namespace file; affects only
    // the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Returned by [`Namespace::enter`]: the current thread is inside the
/// namespace until this drops. Not `Send`: it must drop on the same thread.
#[derive(Debug)]
pub struct NetnsGuard {
    original: File,
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.original) {
            // A thread stuck in a lab namespace (or worse, one leaking lab
            // state into the wrong namespace) is not recoverable.
            eprintln!("xlb-lab: cannot return to the original network namespace: {e}");
            std::process::abort();
        }
    }
}
