//! The configuration file: types (this file), parsing with positions and
//! validation (`parse.rs` and the modules it drives). Consumers use the
//! plain types below; every error carries `FILE:LINE:COL`.

use std::{net::SocketAddr, path::PathBuf};

mod backends;
mod defaults;
mod errors;
mod frontends;
mod global;
mod l4;
mod parse;
mod rate_limit;
mod raw;
mod rules;
mod values;
mod xdp;
pub use defaults::{DEFAULT_API_SOCKET, DEFAULT_WEIGHT, MAX_WEIGHT};
pub use errors::ConfigError;
pub use parse::{CaCheck, Checks, TlsCheck, load, load_with, parse, parse_with};
pub use rate_limit::{RateLimit, RateLimitPer};
pub use rules::{ReplacePath, Rule};

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
    /// DSR outer IPv4 source prefix; host bits come from the flow hash.
    pub dsr_source_v4: (std::net::Ipv4Addr, u8),
    /// DSR outer IPv6 source prefix (/112); the last 16 bits come from the
    /// flow hash.
    pub dsr_source_v6: std::net::Ipv6Addr,
    /// New flows per second per CPU above which new flows bypass the
    /// connection table (SYN flood guard); 0 turns the guard off.
    pub flood_new_flows_per_sec: u64,
    /// Threads serving the L7 tier, each with its own event loop; 0 (the
    /// default) means one per CPU.
    pub l7_threads: usize,
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
    /// QUIC-LB server id this server puts in its connection ids.
    pub quic_server_id: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendPool {
    pub name: String,
    pub balance: Balance,
    pub health: HealthCheck,
    pub server: Vec<Server>,
    /// How the L7 tier talks to this pool's servers (ignored by the L4 tier).
    pub l7: BackendL7,
}

/// The HTTP protocol the L7 tier speaks to a backend's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProto {
    /// HTTP/1.1 with pooled keep-alive connections (default).
    H1,
    /// HTTP/2 over cleartext (prior knowledge), one multiplexed connection
    /// per server: for gRPC backends.
    H2,
}

/// `[[backend]]` keys used by the L7 tier only.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendL7 {
    /// `proto = "h1" | "h2"`. Default h1.
    pub proto: UpstreamProto,
    /// Further servers tried after a failed attempt (`retries`), default 2.
    pub retries: u32,
    /// TCP connect timeout per attempt (`connect_timeout_ms`), default 3000.
    pub connect_timeout_ms: u64,
    /// From the request sent to the response headers (`response_timeout_ms`),
    /// default 30000; past it the client gets 504.
    pub response_timeout_ms: u64,
    /// TLS towards the servers (`tls = true` and the `tls_*` keys); None:
    /// cleartext.
    pub tls: Option<UpstreamTls>,
    /// `send_proxy = "v1" | "v2"`: every server connection (and health
    /// check) starts with a PROXY protocol header. None (default): no header.
    pub send_proxy: Option<ProxyVersion>,
}

/// The PROXY protocol version xlb writes (`send_proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    /// The text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
}

/// How the L7 tier verifies a backend's servers over TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    /// `tls_ca = "PATH"`: PEM CA certificates to verify the servers with
    /// (resolved against the config's directory); None: the system roots.
    pub ca: Option<PathBuf>,
    /// `tls_server_name`: the SNI and verification name; None: each
    /// server address's IP.
    pub server_name: Option<String>,
    /// `tls_verify = false`: accept any certificate (insecure). Default true.
    pub verify: bool,
}

impl Default for BackendL7 {
    fn default() -> Self {
        BackendL7 {
            proto: UpstreamProto::H1,
            retries: 2,
            connect_timeout_ms: 3000,
            response_timeout_ms: 30_000,
            tls: None,
            send_proxy: None,
        }
    }
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
    /// UDP `flow` steering: a flow idle this long is chosen anew (0: never).
    pub udp_idle_timeout_ms: u32,
    /// QUIC steering: the server id's byte offset in the destination
    /// connection id, and its length in bytes (1..=4).
    pub quic_sid_offset: u8,
    pub quic_sid_len: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    /// The default certificate chain (PEM), served when no `sni` entry
    /// matches the client's server name (or it sends none).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// More certificates, each chosen when the client's SNI matches one of
    /// the names it carries (`sni = [{ cert = "...", key = "..." }]`).
    pub sni: Vec<CertKey>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where a frontend writes its access log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccessLog {
    Off,
    Stderr,
    File(PathBuf),
    /// RFC 5424 datagrams (`syslog` or `syslog:IP:PORT`).
    Syslog(SyslogTarget),
}

/// Where syslog datagrams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyslogTarget {
    /// The local syslog daemon's unix datagram socket, `/dev/log`.
    Local,
    /// A syslog server over UDP.
    Udp(SocketAddr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    pub name: String,
    pub bind: SocketAddr,
    pub default_backend: String,
    pub tls: Option<Tls>,
    /// "gzip", "br"/"brotli", in order of preference.
    pub compression: Vec<String>,
    pub http3: bool,
    /// Accept TLS 1.3 early data (0-RTT) on the HTTP/3 endpoint
    /// (`http3_0rtt`, needs `http3`), default false.
    pub http3_0rtt: bool,
    /// Accept HTTP/2 with prior knowledge on a cleartext listener (`h2c`).
    pub h2c: bool,
    /// Smallest response body (bytes) worth compressing
    /// (`compression_min_bytes`), default 1024.
    pub compression_min_bytes: u64,
    /// The whole request head must arrive within this (`header_timeout_ms`),
    /// default 10000: slow clients are cut off.
    pub header_timeout_ms: u64,
    /// A client connection with no request in flight and no traffic is
    /// closed after this (`idle_timeout_ms`), default 60000.
    pub idle_timeout_ms: u64,
    /// Request head size limit in bytes (`max_header_bytes`), default
    /// 32768; above it the client gets 431.
    pub max_header_bytes: usize,
    /// Request header count limit (`max_headers`), default 100 (431 above).
    pub max_headers: usize,
    /// `access_log = "stderr" | "off" | "syslog" | "syslog:IP:PORT" |
    /// "/path/file"`, default stderr.
    pub access_log: AccessLog,
    /// Tunnel HTTP/1.1 `CONNECT` requests to the backend's servers
    /// (`connect = true`); default false (405).
    pub connect: bool,
    /// The forwarding headers added to every request (`forwarded_headers`),
    /// default all three.
    pub forwarded_headers: ForwardedHeaders,
    /// Requests over this budget get 429 (`rate_limit`); None: no limit.
    pub rate_limit: Option<RateLimit>,
    /// `[[frontend.rule]]`s in order: the first that matches a request
    /// picks its backend and rewrites its path. Empty: all go to
    /// `default_backend`.
    pub rules: Vec<Rule>,
    /// Every client connection starts with a PROXY protocol header (v1 or
    /// v2) whose source becomes the client address (`accept_proxy`),
    /// default false.
    pub accept_proxy: bool,
}

/// Which forwarding headers a frontend adds to the requests it passes on
/// (`forwarded_headers = ["x-forwarded-for", "x-forwarded-proto",
/// "forwarded"]`, any of them in any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForwardedHeaders {
    /// The client's address appended to `X-Forwarded-For`.
    pub x_forwarded_for: bool,
    /// `X-Forwarded-Proto` set to `http` or `https`.
    pub x_forwarded_proto: bool,
    /// An RFC 7239 `Forwarded` element appended.
    pub forwarded: bool,
}

impl ForwardedHeaders {
    pub const ALL: Self = ForwardedHeaders {
        x_forwarded_for: true,
        x_forwarded_proto: true,
        forwarded: true,
    };
    pub const NONE: Self = ForwardedHeaders {
        x_forwarded_for: false,
        x_forwarded_proto: false,
        forwarded: false,
    };
}

impl Default for ForwardedHeaders {
    /// All three, as before the key existed.
    fn default() -> Self {
        Self::ALL
    }
}

impl Config {
    pub fn backend(&self, name: &str) -> Option<&BackendPool> {
        self.backend.iter().find(|b| b.name == name)
    }
}
