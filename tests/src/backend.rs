//! The `lab-backend` test server (`src/bin/lab-backend.rs`) and starting it
//! inside a namespace.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Result;

use crate::{
    netns::Namespace,
    process::{Process, workspace_binary},
};

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
    workspace_binary(
        "lab-backend",
        "XLB_LAB_BACKEND",
        "cargo build -p xlb-lab --bins",
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
