//! The configuration file: types (this file), parsing with positions and
//! validation (`parse.rs`). Consumers use the plain types below; every
//! error carries `FILE:LINE:COL`.

use std::{net::SocketAddr, path::PathBuf};

mod parse;
pub use parse::{ConfigError, load, parse};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: Global,
    pub xdp: Vec<XdpInterface>,
    pub backend: Vec<BackendPool>,
    pub l4: Vec<L4Vip>,
    pub frontend: Vec<Frontend>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub api_socket: PathBuf,
    pub metrics: Option<SocketAddr>,
    pub bpf_pin_path: PathBuf,
    /// Maglev table size per VIP (prime). Default 65537.
    pub maglev_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    Auto,
    Driver,
    Skb,
}

#[derive(Debug, Clone, PartialEq)]
pub struct XdpInterface {
    pub interface: String,
    pub mode: XdpMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    Maglev,
    RoundRobin,
    LeastConn,
    Random,
    Source,
    Uri,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    Tcp,
    Http,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub check: CheckKind,
    /// HTTP path for `http` checks. Default "/".
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub address: SocketAddr,
    /// 0 drains. Default 100.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendPool {
    pub name: String,
    pub balance: Balance,
    pub health: HealthCheck,
    pub server: Vec<Server>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    Nat,
    Dsr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steering {
    Flow,
    Syslog,
    Quic,
}

#[derive(Debug, Clone, PartialEq)]
pub struct L4Vip {
    pub name: String,
    pub vip: SocketAddr,
    pub protocol: Protocol,
    pub backend: String,
    pub forward: Forward,
    pub steering: Steering,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    pub name: String,
    pub bind: SocketAddr,
    pub default_backend: String,
    pub tls: Option<Tls>,
    pub compression: Vec<String>,
    pub http3: bool,
}

impl Config {
    pub fn backend(&self, name: &str) -> Option<&BackendPool> {
        self.backend.iter().find(|b| b.name == name)
    }
}
