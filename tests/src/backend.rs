//! The `lab-backend` test server (`src/bin/lab-backend.rs`) and starting it
//! inside a namespace.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Result, bail};

use crate::{netns::Namespace, process::Process};

/// How long [`Namespace::spawn_backend`] waits for the readiness line.
pub const BACKEND_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Locates the `lab-backend` binary:
/// 1. `$XLB_LAB_BACKEND` if set;
/// 2. next to the current executable (`target/<profile>/`), or one level up
///    when the executable is a test in `target/<profile>/deps/`.
///
/// Build it first (`cargo build -p xlb-lab --bins`; `cargo test -p xlb-lab`
/// does so for the integration tests, which may also simply use
/// `env!("CARGO_BIN_EXE_lab-backend")`).
pub fn lab_backend_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("XLB_LAB_BACKEND") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut tried = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("lab-backend");
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate);
    }
    bail!(
        "lab-backend not found (tried {tried:?}); build it with `cargo build -p xlb-lab --bins` \
         or set XLB_LAB_BACKEND"
    )
}

impl Namespace {
    /// Starts `lab-backend --name NAME --listen LISTEN` (found by
    /// [`lab_backend_path`]) in this namespace and waits for it to listen.
    /// Every HTTP request gets `200 OK` with body `NAME\n`.
    pub fn spawn_backend(&self, name: &str, listen: SocketAddr) -> Result<Process> {
        self.spawn_backend_with(&lab_backend_path()?, name, listen, None)
    }

    /// Like [`Namespace::spawn_backend`] with an explicit binary and an
    /// optional UDP socket: each datagram received there becomes one stdout
    /// line of the returned process ([`Process::stdout_lines`]), after the
    /// `listening on` lines.
    pub fn spawn_backend_with(
        &self,
        bin: &Path,
        name: &str,
        listen: SocketAddr,
        udp: Option<SocketAddr>,
    ) -> Result<Process> {
        let bin = bin.to_string_lossy();
        let listen = listen.to_string();
        let mut cmd = vec![&*bin, "--name", name, "--listen", &listen];
        let udp = udp.map(|u| u.to_string());
        if let Some(udp) = &udp {
            cmd.extend(["--udp", udp]);
        }
        self.spawn_ready(&cmd, "listening on", BACKEND_READY_TIMEOUT)
    }
}
