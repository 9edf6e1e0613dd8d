//! The owner of one test's namespaces and processes.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::Command,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    netns::Namespace,
    process::{Registry, run_timeout},
};

/// Bound for every `ip` invocation.
pub(crate) const IP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where `ip netns` keeps its named namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// `ip netns add` mounts `/run/netns` on first use, which races when
/// done concurrently; serialize namespace creation and deletion in-process.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

fn netns_lock() -> MutexGuard<'static, ()> {
    NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails with a plain message unless we run as root.
pub fn check_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the xlb lab needs root (network namespaces, XDP); run as root");
    }
    Ok(())
}

fn check_name(kind: &str, s: &str, dash_ok: bool) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dash_ok && b == b'-'));
    if !ok {
        let allowed = if dash_ok {
            "[A-Za-z0-9_-]"
        } else {
            "[A-Za-z0-9_]"
        };
        bail!("lab {kind} name {s:?} must be 1-40 characters of {allowed}");
    }
    Ok(())
}

fn prefix(test: &str) -> String {
    format!("xlb-{test}-")
}

/// Names of all existing namespaces of `test` (`xlb-<test>-*`).
fn list(test: &str) -> Result<Vec<String>> {
    let prefix = prefix(test);
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in dir {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Kills every process living in namespace `name` (but never ourselves),
/// then deletes the name.
fn remove(name: &str) -> Result<()> {
    let pids = run_timeout(Command::new("ip").args(["netns", "pids", name]), IP_TIMEOUT)
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let me = std::process::id() as i32;
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if pid != me && pid > 1 {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _guard = netns_lock();
    run_timeout(
        Command::new("ip").args(["netns", "delete", name]),
        IP_TIMEOUT,
    )?;
    Ok(())
}

/// Where the per-test lock files live.
pub const LOCK_DIR: &str = "/run/xlb-lab";

/// How long [`Lab::new`] waits for another live lab of the same test name.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// Takes the exclusive lock of test name `test` (a `flock` on
/// `/run/xlb-lab/<test>.lock`), waiting at most `timeout`. Two processes
/// running the same test then take turns instead of sweeping each other's
/// namespaces; a crashed process releases its lock with its file.
fn lock_test(test: &str, timeout: Duration) -> Result<File> {
    std::fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
    let path = format!("{LOCK_DIR}/{test}.lock");
    let file = File::create(&path).with_context(|| format!("opening {path}"))?;
    let start = Instant::now();
    let mut told = false;
    loop {
        // SAFETY: flock on an open fd.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).with_context(|| format!("locking {path}"));
        }
        if start.elapsed() >= timeout {
            bail!("another process still runs lab {test:?} (holds {path}) after {timeout:?}");
        }
        if !told && start.elapsed() >= Duration::from_secs(1) {
            eprintln!("xlb-lab: waiting for another run of lab {test:?} to finish ({path})");
            told = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sweep_locked(test: &str) -> Result<()> {
    for name in list(test)? {
        remove(&name)?;
    }
    Ok(())
}

/// Removes the namespaces (and their processes) a crashed run of `test`
/// left. Waits (bounded) while a live [`Lab`] of that name exists.
pub fn sweep(test: &str) -> Result<()> {
    check_root()?;
    check_name("test", test, false)?;
    let _lock = lock_test(test, LOCK_TIMEOUT)?;
    sweep_locked(test)
}

/// One test's lab. Owns every namespace made through [`Lab::namespace`] and
/// every process spawned in them; on drop (also during a panic) it kills the
/// processes first, then deletes the namespaces, which removes their links.
#[derive(Debug)]
pub struct Lab {
    test: String,
    namespaces: Mutex<Vec<String>>,
    registry: Registry,
    // Released after Drop::drop has removed everything.
    _lock: File,
}

impl Lab {
    /// Checks for root, takes the test name's lock (waiting at most
    /// [`LOCK_TIMEOUT`] for another live lab of the same name, e.g. the same
    /// test run by a second `cargo test`), sweeps stale `xlb-<test>-*`
    /// namespaces and returns an empty lab. `test` is `[A-Za-z0-9_]+` (no
    /// dash, so one test's sweep never matches another test's namespaces).
    pub fn new(test: &str) -> Result<Lab> {
        check_root()?;
        check_name("test", test, false)?;
        let lock = lock_test(test, LOCK_TIMEOUT)?;
        sweep_locked(test)?;
        Ok(Lab {
            test: test.to_owned(),
            namespaces: Mutex::new(Vec::new()),
            registry: Registry::default(),
            _lock: lock,
        })
    }

    /// The test name given to [`Lab::new`].
    pub fn test(&self) -> &str {
        &self.test
    }

    /// The namespace name for `role`: `xlb-<test>-<role>`.
    pub fn ns_name(&self, role: &str) -> String {
        format!("{}{role}", prefix(&self.test))
    }

    /// Creates namespace `xlb-<test>-<role>` with `lo` up.
    pub fn namespace(&self, role: &str) -> Result<Namespace> {
        check_name("role", role, true)?;
        let name = self.ns_name(role);
        {
            let _guard = netns_lock();
            run_timeout(Command::new("ip").args(["netns", "add", &name]), IP_TIMEOUT)?;
        }
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        let ns = Namespace::new(name, self.registry.clone());
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Names of the namespaces this lab created, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.registry.kill_all();
        let names = std::mem::take(self.namespaces.get_mut().unwrap_or_else(|e| e.into_inner()));
        for name in names.iter().rev() {
            if let Err(e) = remove(name) {
                eprintln!("xlb-lab: removing namespace {name}: {e:#}");
            }
        }
    }
}
