//! TOML -> [`Config`] with `FILE:LINE:COL: message` errors.
//!
//! Two stages:
//!
//! 1. serde + toml into the `Raw*` structs below. Every struct denies unknown
//!    keys, and every value that a later check may complain about is wrapped
//!    in [`toml::Spanned`] so its byte position survives. Optional and
//!    required keys alike are `Option`s here, so that a missing key is our
//!    own error (pointing at the table header) rather than serde's.
//! 2. Conversion to the plain types plus the semantic checks (addresses,
//!    references between sections, duplicates, ranges, mode combinations).
//!    All problems found are collected; the one earliest in the file is
//!    returned, so the user fixes errors top to bottom.
//!
//! Relative `tls` `cert`/`key` paths are resolved against the directory of
//! the config file and must exist; the resolved path is what `Config` holds.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use super::{
    AccessLog, BackendL7, BackendPool, Balance, CertKey, CheckKind, Config, Forward, Frontend,
    Global, HealthCheck, L4Vip, Protocol, Server, Steering, Tls, UpstreamProto, UpstreamTls,
    XdpInterface, XdpMode,
};

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Checks that need more than the config text, run by [`load_with`] and
/// [`parse_with`] at the position of the value they judge. The config
/// module knows no TLS library; the L7 tier supplies them
/// (`xlb::l7::config_checks`).
#[derive(Default, Clone, Copy)]
pub struct Checks {
    /// Called with an existing cert and key file of a frontend's `tls`;
    /// an `Err` (e.g. the key does not match the certificate) is reported
    /// at the `key` value.
    pub tls: Option<TlsCheck>,
    /// Called with an existing `tls_ca` file of a backend; an `Err` (no
    /// usable PEM certificate) is reported at the `tls_ca` value.
    pub ca: Option<CaCheck>,
}

/// Judges a certificate file and its key file; `Err` is the message.
pub type TlsCheck = fn(cert: &Path, key: &Path) -> Result<(), String>;

/// Judges a CA certificate file; `Err` is the message.
pub type CaCheck = fn(ca: &Path) -> Result<(), String>;

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, &Checks::default())
}

/// [`load`] plus `checks`.
pub fn load_with(path: &Path, checks: &Checks) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 1,
        col: 1,
        message: format!("cannot read: {e}"),
    })?;
    parse_with(&text, &file, checks)
}

/// Parse and validate a config. `file` names the file in errors; it is
/// also the base for relative TLS paths.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    parse_with(text, file, &Checks::default())
}

/// [`parse`] plus `checks`.
pub fn parse_with(text: &str, file: &str, checks: &Checks) -> Result<Config, ConfigError> {
    let mut cx = Cx::new(text, file);
    cx.checks = *checks;
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = toml_message(e.message());
            return Err(cx.error(span, message));
        }
    };
    let config = convert(&mut cx, raw);
    match cx.first_error() {
        Some(e) => Err(e),
        None => Ok(config),
    }
}

// ---------------------------------------------------------------------------
// Defaults and limits.

pub const DEFAULT_API_SOCKET: &str = "/run/xlb/xlb.sock";
pub const DEFAULT_BPF_PIN_PATH: &str = "/sys/fs/bpf/xlb";
pub const DEFAULT_MAGLEV_SIZE: u32 = 65537;
pub const MAX_MAGLEV_SIZE: u32 = 1_000_003;
pub const DEFAULT_WEIGHT: u32 = 100;
/// DSR outer sources come from the benchmarking range unless configured.
pub const DEFAULT_DSR_SOURCE_V4: (std::net::Ipv4Addr, u8) =
    (std::net::Ipv4Addr::new(198, 19, 0, 0), 16);
pub const DEFAULT_DSR_SOURCE_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0);
pub const DEFAULT_UDP_IDLE_TIMEOUT_MS: i64 = 30_000;
pub const MAX_WEIGHT: u32 = 1000;
/// Upper bound for `interval_ms` / `timeout_ms`: one day.
pub const MAX_DURATION_MS: u64 = 86_400_000;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// IFNAMSIZ - 1.
const MAX_IFNAME: usize = 15;
const COMPRESSION: &[&str] = &["gzip", "br", "brotli"];
/// L7 defaults (see `BackendL7` and `Frontend`).
pub const DEFAULT_COMPRESSION_MIN_BYTES: u64 = 1024;
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32_768;
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// hyper's smallest read buffer: the head limit cannot go below it.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;
pub const MAX_MAX_HEADER_BYTES: usize = 1 << 20;
pub const MAX_RETRIES: u32 = 10;

// ---------------------------------------------------------------------------
// Raw, positioned form.

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    global: Option<S<RawGlobal>>,
    #[serde(default)]
    xdp: Vec<S<RawXdp>>,
    #[serde(default)]
    backend: Vec<S<RawBackend>>,
    #[serde(default)]
    l4: Vec<S<RawL4>>,
    #[serde(default)]
    frontend: Vec<S<RawFrontend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    api_socket: Option<S<String>>,
    metrics: Option<S<String>>,
    bpf_pin_path: Option<S<String>>,
    maglev_size: Option<S<i64>>,
    dsr_source_v4: Option<S<String>>,
    dsr_source_v6: Option<S<String>>,
    flood_new_flows_per_sec: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXdp {
    interface: Option<S<String>>,
    mode: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: Option<S<String>>,
    balance: Option<S<String>>,
    health: Option<S<RawHealth>>,
    #[serde(default)]
    server: Vec<S<RawServer>>,
    proto: Option<S<String>>,
    retries: Option<S<i64>>,
    connect_timeout_ms: Option<S<i64>>,
    response_timeout_ms: Option<S<i64>>,
    tls: Option<S<bool>>,
    tls_ca: Option<S<String>>,
    tls_server_name: Option<S<String>>,
    tls_verify: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    check: Option<S<String>>,
    path: Option<S<String>>,
    interval_ms: Option<S<i64>>,
    timeout_ms: Option<S<i64>>,
    rise: Option<S<i64>>,
    fall: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: Option<S<String>>,
    address: Option<S<String>>,
    weight: Option<S<i64>>,
    quic_server_id: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawL4 {
    name: Option<S<String>>,
    vip: Option<S<String>>,
    protocol: Option<S<String>>,
    backend: Option<S<String>>,
    forward: Option<S<String>>,
    steering: Option<S<String>>,
    udp_idle_timeout_ms: Option<S<i64>>,
    quic_sid_offset: Option<S<i64>>,
    quic_sid_len: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrontend {
    name: Option<S<String>>,
    bind: Option<S<String>>,
    default_backend: Option<S<String>>,
    tls: Option<S<RawTls>>,
    compression: Option<S<Vec<S<String>>>>,
    http3: Option<S<bool>>,
    h2c: Option<S<bool>>,
    compression_min_bytes: Option<S<i64>>,
    header_timeout_ms: Option<S<i64>>,
    idle_timeout_ms: Option<S<i64>>,
    max_header_bytes: Option<S<i64>>,
    max_headers: Option<S<i64>>,
    access_log: Option<S<String>>,
    connect: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<S<String>>,
    key: Option<S<String>>,
    sni: Option<Vec<S<RawCertKey>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertKey {
    cert: Option<S<String>>,
    key: Option<S<String>>,
}

/// toml/serde phrase things in serde's words; the contract speaks of keys.
fn toml_message(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field") {
        format!("unknown key{rest}")
    } else {
        message
            .replace("expected i64", "expected an integer")
            .replace("expected a boolean", "expected true or false")
    }
}

// ---------------------------------------------------------------------------
// Positions and error collection.

struct Cx<'a> {
    text: &'a str,
    file: &'a str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
    checks: Checks,
}

impl<'a> Cx<'a> {
    fn new(text: &'a str, file: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Cx {
            text,
            file,
            line_starts,
            errors: Vec::new(),
            checks: Checks::default(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let col = self.text[start..offset].chars().count() + 1;
        (line, col)
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, col) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }

    fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        let e = self.error(span, message);
        self.errors.push(e);
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        self.line_col(span.start).0
    }

    /// The earliest error in the file (ties: the first found).
    fn first_error(&mut self) -> Option<ConfigError> {
        let i =
            (0..self.errors.len()).min_by_key(|&i| (self.errors[i].line, self.errors[i].col))?;
        Some(self.errors.swap_remove(i))
    }
}

// ---------------------------------------------------------------------------
// Small value checks.

fn enum_value<T: Copy>(
    cx: &mut Cx,
    value: Option<&S<String>>,
    key: &str,
    table: &[(&str, T)],
    default: T,
) -> T {
    let Some(v) = value else { return default };
    if let Some((_, t)) = table.iter().find(|(n, _)| *n == v.get_ref().as_str()) {
        return *t;
    }
    let names: Vec<String> = table.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    cx.push(
        v.span(),
        format!(
            "unknown {key} \"{}\": expected one of {}",
            v.get_ref(),
            names.join(", ")
        ),
    );
    default
}

/// A required key: reports `missing KEY in [[SECTION]]` at the table header.
fn required<'r, T>(
    cx: &mut Cx,
    value: Option<&'r S<T>>,
    key: &str,
    section: &str,
    table: &Range<usize>,
) -> Option<&'r S<T>> {
    if value.is_none() {
        cx.push(table.clone(), format!("missing {key} in {section}"));
    }
    value
}

/// Names end up in `BACKEND/SERVER` API arguments, CSV and metric labels.
fn valid_name(cx: &mut Cx, name: &S<String>, what: &str) -> bool {
    let n = name.get_ref();
    if n.is_empty() {
        cx.push(name.span(), format!("{what} name must not be empty"));
        return false;
    }
    if let Some(c) = n
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:".contains(*c)))
    {
        cx.push(
            name.span(),
            format!("{what} name \"{n}\" contains {c:?}: use letters, digits and - _ . : only"),
        );
        return false;
    }
    true
}

/// Remember `name` and report a duplicate at its second use.
fn unique<K: std::hash::Hash + Eq>(
    cx: &mut Cx,
    seen: &mut HashMap<K, Range<usize>>,
    key: K,
    span: Range<usize>,
    what: impl FnOnce() -> String,
) {
    if let Some(first) = seen.get(&key) {
        let line = cx.line_of(first);
        cx.push(
            span,
            format!("duplicate {} (first defined on line {line})", what()),
        );
    } else {
        seen.insert(key, span);
    }
}

fn address(cx: &mut Cx, value: &S<String>, what: &str) -> Option<SocketAddr> {
    let s = value.get_ref();
    match s.trim().parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            cx.push(
                value.span(),
                format!("{what} \"{s}\": port 0 is not allowed"),
            );
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            cx.push(
                value.span(),
                format!(
                    "bad address \"{s}\" for {what}: expected IP:PORT \
                     (e.g. 198.18.0.100:80 or [2001:db8::1]:80)"
                ),
            );
            None
        }
    }
}

fn int(cx: &mut Cx, value: Option<&S<i64>>, what: &str, min: i64, max: i64, default: i64) -> i64 {
    let Some(v) = value else { return default };
    let n = *v.get_ref();
    if n < min || n > max {
        let message = if n < min && min == 1 {
            format!("{what} must be at least 1 (got {n})")
        } else {
            format!("{what} must be between {min} and {max} (got {n})")
        };
        cx.push(v.span(), message);
        return default;
    }
    n
}

/// `A.B.C.D/N` with N in 8..=24: the DSR source prefix (at least 8 host
/// bits so flows spread).
fn prefix_v4(cx: &mut Cx, v: &S<String>) -> Option<(std::net::Ipv4Addr, u8)> {
    let parsed = v.get_ref().split_once('/').and_then(|(a, n)| {
        let a: std::net::Ipv4Addr = a.parse().ok()?;
        let n: u8 = n.parse().ok()?;
        (8..=24).contains(&n).then_some((a, n))
    });
    if parsed.is_none() {
        cx.push(
            v.span(),
            format!(
                "dsr_source_v4 \"{}\" must be an IPv4 prefix A.B.C.D/N with N in 8..=24",
                v.get_ref()
            ),
        );
    }
    parsed
}

/// `ADDR/112`: the DSR IPv6 source prefix (the last 16 bits vary).
fn prefix_v6(cx: &mut Cx, v: &S<String>) -> Option<std::net::Ipv6Addr> {
    let parsed = v
        .get_ref()
        .split_once('/')
        .and_then(|(a, n)| (n == "112").then(|| a.parse().ok()).flatten());
    if parsed.is_none() {
        cx.push(
            v.span(),
            format!(
                "dsr_source_v6 \"{}\" must be an IPv6 prefix ADDR/112",
                v.get_ref()
            ),
        );
    }
    parsed
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn text_value(value: Option<&S<String>>, default: &str) -> String {
    value.map_or_else(|| default.to_string(), |v| v.get_ref().clone())
}

// ---------------------------------------------------------------------------
// Sections.

fn convert(cx: &mut Cx, raw: RawConfig) -> Config {
    let global = convert_global(cx, raw.global.as_ref());
    let xdp = convert_xdp(cx, &raw.xdp);
    let backend = convert_backends(cx, &raw.backend);
    let l4 = convert_l4(cx, &raw, &backend);
    let frontend = convert_frontends(cx, &raw, &l4);
    Config {
        global,
        xdp,
        backend,
        l4,
        frontend,
    }
}

fn convert_global(cx: &mut Cx, raw: Option<&S<RawGlobal>>) -> Global {
    let g = raw.map(|g| g.get_ref());
    let api_socket = g.and_then(|g| g.api_socket.as_ref());
    if let Some(v) = api_socket {
        let len = v.get_ref().len();
        if len == 0 {
            cx.push(v.span(), "api_socket must not be empty");
        } else if len > MAX_SOCKET_PATH {
            cx.push(
                v.span(),
                format!("api_socket path is {len} bytes; unix sockets allow {MAX_SOCKET_PATH}"),
            );
        }
    }
    let metrics = g
        .and_then(|g| g.metrics.as_ref())
        .and_then(|v| address(cx, v, "metrics"));
    let pin = g.and_then(|g| g.bpf_pin_path.as_ref());
    if let Some(v) = pin {
        if !Path::new(v.get_ref()).is_absolute() {
            cx.push(
                v.span(),
                format!(
                    "bpf_pin_path \"{}\" must be an absolute path (on bpffs)",
                    v.get_ref()
                ),
            );
        }
    }
    let mut maglev_size = DEFAULT_MAGLEV_SIZE;
    if let Some(v) = g.and_then(|g| g.maglev_size.as_ref()) {
        let n = *v.get_ref();
        if !(2..=MAX_MAGLEV_SIZE as i64).contains(&n) || !is_prime(n as u64) {
            cx.push(
                v.span(),
                format!("maglev_size must be a prime number <= {MAX_MAGLEV_SIZE} (got {n})"),
            );
        } else {
            maglev_size = n as u32;
        }
    }
    let dsr_source_v4 = g
        .and_then(|g| g.dsr_source_v4.as_ref())
        .and_then(|v| prefix_v4(cx, v))
        .unwrap_or(DEFAULT_DSR_SOURCE_V4);
    let dsr_source_v6 = g
        .and_then(|g| g.dsr_source_v6.as_ref())
        .and_then(|v| prefix_v6(cx, v))
        .unwrap_or(DEFAULT_DSR_SOURCE_V6);
    let flood = int(
        cx,
        g.and_then(|g| g.flood_new_flows_per_sec.as_ref()),
        "flood_new_flows_per_sec",
        0,
        i64::MAX,
        0,
    );
    Global {
        api_socket: PathBuf::from(text_value(api_socket, DEFAULT_API_SOCKET)),
        metrics,
        bpf_pin_path: PathBuf::from(text_value(pin, DEFAULT_BPF_PIN_PATH)),
        maglev_size,
        dsr_source_v4,
        dsr_source_v6,
        flood_new_flows_per_sec: flood as u64,
    }
}

fn convert_xdp(cx: &mut Cx, raw: &[S<RawXdp>]) -> Vec<XdpInterface> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for table in raw {
        let x = table.get_ref();
        let mode = enum_value(
            cx,
            x.mode.as_ref(),
            "xdp mode",
            &[
                ("auto", XdpMode::Auto),
                ("driver", XdpMode::Driver),
                ("skb", XdpMode::Skb),
            ],
            XdpMode::Auto,
        );
        let Some(iface) = x.interface.as_ref() else {
            cx.push(
                table.span(),
                "missing interface in [[xdp]] (the network interface to attach to)",
            );
            continue;
        };
        let name = iface.get_ref();
        if name.is_empty()
            || name.len() > MAX_IFNAME
            || name.contains(|c: char| c == '/' || c.is_whitespace())
        {
            cx.push(
                iface.span(),
                format!(
                    "bad interface name \"{name}\" (1 to {MAX_IFNAME} bytes, no '/' or spaces)"
                ),
            );
            continue;
        }
        unique(cx, &mut seen, name.clone(), iface.span(), || {
            format!("[[xdp]] interface \"{name}\"")
        });
        out.push(XdpInterface {
            interface: name.clone(),
            mode,
        });
    }
    out
}

fn convert_health(cx: &mut Cx, raw: Option<&S<RawHealth>>) -> HealthCheck {
    let h = raw.map(|h| h.get_ref());
    let check = enum_value(
        cx,
        h.and_then(|h| h.check.as_ref()),
        "health check",
        &[
            ("tcp", CheckKind::Tcp),
            ("http", CheckKind::Http),
            ("none", CheckKind::None),
        ],
        CheckKind::Tcp,
    );
    let path = h.and_then(|h| h.path.as_ref());
    if let Some(p) = path {
        if !p.get_ref().starts_with('/') || p.get_ref().contains(|c: char| c.is_whitespace()) {
            cx.push(
                p.span(),
                format!(
                    "health path \"{}\" must start with '/' and contain no spaces",
                    p.get_ref()
                ),
            );
        }
    }
    let max_ms = MAX_DURATION_MS as i64;
    let interval_ms = int(
        cx,
        h.and_then(|h| h.interval_ms.as_ref()),
        "interval_ms",
        1,
        max_ms,
        2000,
    );
    let timeout_ms = int(
        cx,
        h.and_then(|h| h.timeout_ms.as_ref()),
        "timeout_ms",
        1,
        max_ms,
        1000,
    );
    let max = u32::MAX as i64;
    let rise = int(cx, h.and_then(|h| h.rise.as_ref()), "rise", 1, max, 2);
    let fall = int(cx, h.and_then(|h| h.fall.as_ref()), "fall", 1, max, 3);
    HealthCheck {
        check,
        path: text_value(path, "/"),
        interval_ms: interval_ms as u64,
        timeout_ms: timeout_ms as u64,
        rise: rise as u32,
        fall: fall as u32,
    }
}

fn convert_backends(cx: &mut Cx, raw: &[S<RawBackend>]) -> Vec<BackendPool> {
    let base = Path::new(cx.file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut names = HashMap::new();
    let mut out = Vec::new();
    for table in raw {
        let b = table.get_ref();
        let name = match required(cx, b.name.as_ref(), "name", "[[backend]]", &table.span()) {
            Some(n) if valid_name(cx, n, "backend") => {
                let s = n.get_ref().clone();
                unique(cx, &mut names, s.clone(), n.span(), || {
                    format!("backend \"{s}\"")
                });
                s
            }
            _ => String::new(),
        };
        let balance = enum_value(
            cx,
            b.balance.as_ref(),
            "balance",
            &[
                ("maglev", Balance::Maglev),
                ("roundrobin", Balance::RoundRobin),
                ("leastconn", Balance::LeastConn),
                ("random", Balance::Random),
                ("source", Balance::Source),
                ("uri", Balance::Uri),
            ],
            Balance::RoundRobin,
        );
        let health = convert_health(cx, b.health.as_ref());
        let mut server_names = HashMap::new();
        let mut server = Vec::new();
        for st in &b.server {
            let s = st.get_ref();
            let section = "[[backend.server]]";
            let sname = match required(cx, s.name.as_ref(), "name", section, &st.span()) {
                Some(n) if valid_name(cx, n, "server") => {
                    let v = n.get_ref().clone();
                    unique(cx, &mut server_names, v.clone(), n.span(), || {
                        format!("server \"{v}\" in backend \"{name}\"")
                    });
                    v
                }
                _ => String::new(),
            };
            let addr = required(cx, s.address.as_ref(), "address", section, &st.span())
                .and_then(|a| address(cx, a, "server address"));
            let weight = int(
                cx,
                s.weight.as_ref(),
                "weight",
                0,
                MAX_WEIGHT as i64,
                DEFAULT_WEIGHT as i64,
            );
            let quic_server_id = s
                .quic_server_id
                .as_ref()
                .map(|v| int(cx, Some(v), "quic_server_id", 0, u32::MAX as i64, 0) as u32);
            if let Some(address) = addr {
                server.push(Server {
                    name: sname,
                    address,
                    weight: weight as u32,
                    quic_server_id,
                });
            }
        }
        let l7 = convert_backend_l7(cx, b, &base);
        out.push(BackendPool {
            name,
            balance,
            health,
            server,
            l7,
        });
    }
    out
}

fn convert_backend_l7(cx: &mut Cx, b: &RawBackend, base: &Path) -> BackendL7 {
    let d = BackendL7::default();
    let proto = enum_value(
        cx,
        b.proto.as_ref(),
        "proto",
        &[("h1", UpstreamProto::H1), ("h2", UpstreamProto::H2)],
        d.proto,
    );
    let max_ms = MAX_DURATION_MS as i64;
    let retries = int(
        cx,
        b.retries.as_ref(),
        "retries",
        0,
        MAX_RETRIES as i64,
        d.retries as i64,
    );
    let connect = int(
        cx,
        b.connect_timeout_ms.as_ref(),
        "connect_timeout_ms",
        1,
        max_ms,
        d.connect_timeout_ms as i64,
    );
    let response = int(
        cx,
        b.response_timeout_ms.as_ref(),
        "response_timeout_ms",
        1,
        max_ms,
        d.response_timeout_ms as i64,
    );
    BackendL7 {
        proto,
        retries: retries as u32,
        connect_timeout_ms: connect as u64,
        response_timeout_ms: response as u64,
        tls: convert_upstream_tls(cx, b, base),
    }
}

/// `tls = true` and its `tls_ca`, `tls_server_name`, `tls_verify` keys
/// (which need it).
fn convert_upstream_tls(cx: &mut Cx, b: &RawBackend, base: &Path) -> Option<UpstreamTls> {
    let on = b.tls.as_ref().is_some_and(|t| *t.get_ref());
    if !on {
        let spans = [
            ("tls_ca", b.tls_ca.as_ref().map(|v| v.span())),
            (
                "tls_server_name",
                b.tls_server_name.as_ref().map(|v| v.span()),
            ),
            ("tls_verify", b.tls_verify.as_ref().map(|v| v.span())),
        ];
        for (key, span) in spans {
            if let Some(span) = span {
                cx.push(span, format!("{key} needs tls = true in the [[backend]]"));
            }
        }
        return None;
    }
    let ca = b.tls_ca.as_ref().map(|v| {
        let errors = cx.errors.len();
        let path = tls_file(cx, v, base, "ca");
        if cx.errors.len() == errors {
            if let Some(check) = cx.checks.ca {
                if let Err(e) = check(&path) {
                    cx.push(v.span(), e);
                }
            }
        }
        path
    });
    let server_name = b.tls_server_name.as_ref().map(|v| {
        let n = v.get_ref();
        let ok = !n.is_empty()
            && n.len() <= 253
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !ok {
            cx.push(
                v.span(),
                format!("tls_server_name \"{n}\" is not a DNS name or IP address"),
            );
        }
        n.clone()
    });
    let verify = b.tls_verify.as_ref().is_none_or(|v| *v.get_ref());
    Some(UpstreamTls {
        ca,
        server_name,
        verify,
    })
}

fn convert_l4(cx: &mut Cx, raw: &RawConfig, backends: &[BackendPool]) -> Vec<L4Vip> {
    if raw.xdp.is_empty() {
        if let Some(first) = raw.l4.first() {
            cx.push(
                first.span(),
                "[[l4]] VIPs need at least one [[xdp]] interface to run on; add [[xdp]] interface = \"...\"",
            );
        }
    }
    let mut names = HashMap::new();
    let mut vips = HashMap::new();
    let mut out = Vec::new();
    for table in &raw.l4 {
        let v = table.get_ref();
        let section = "[[l4]]";
        let name = match required(cx, v.name.as_ref(), "name", section, &table.span()) {
            Some(n) if valid_name(cx, n, "l4") => {
                let s = n.get_ref().clone();
                unique(cx, &mut names, s.clone(), n.span(), || {
                    format!("[[l4]] name \"{s}\"")
                });
                s
            }
            _ => String::new(),
        };
        let vip = required(cx, v.vip.as_ref(), "vip", section, &table.span())
            .and_then(|a| address(cx, a, "l4 vip"));
        if let (Some(addr), Some(span)) = (vip, v.vip.as_ref().map(|s| s.span())) {
            if addr.ip().is_unspecified() || addr.ip().is_multicast() {
                cx.push(
                    span,
                    format!("l4 vip {addr} must be a unicast address of this host"),
                );
            }
        }
        let protocol = enum_value(
            cx,
            v.protocol.as_ref(),
            "protocol",
            &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
            Protocol::Tcp,
        );
        let forward = enum_value(
            cx,
            v.forward.as_ref(),
            "forward",
            &[("nat", Forward::Nat), ("dsr", Forward::Dsr)],
            Forward::Nat,
        );
        let steering = enum_value(
            cx,
            v.steering.as_ref(),
            "steering",
            &[
                ("flow", Steering::Flow),
                ("syslog", Steering::Syslog),
                ("quic", Steering::Quic),
            ],
            Steering::Flow,
        );
        if let Some(s) = &v.steering {
            if protocol == Protocol::Tcp && steering != Steering::Flow {
                cx.push(
                    s.span(),
                    format!(
                        "steering \"{}\" is for UDP; [[l4]] \"{name}\" has protocol \"tcp\"",
                        s.get_ref()
                    ),
                );
            }
        }
        if let (Some(addr), Some(span)) = (vip, v.vip.as_ref().map(|s| s.span())) {
            unique(
                cx,
                &mut vips,
                (addr, protocol == Protocol::Tcp),
                span,
                || {
                    let p = if protocol == Protocol::Tcp {
                        "tcp"
                    } else {
                        "udp"
                    };
                    format!("VIP {addr}/{p}")
                },
            );
        }
        let backend = match required(cx, v.backend.as_ref(), "backend", section, &table.span()) {
            Some(b) => {
                let bname = b.get_ref();
                match backends.iter().find(|p| &p.name == bname) {
                    None => cx.push(
                        b.span(),
                        format!("unknown backend \"{bname}\" in [[l4]] \"{name}\""),
                    ),
                    Some(pool) => {
                        if let (Some(addr), Forward::Nat) = (vip, forward) {
                            check_nat_families(cx, raw, pool, addr, &name);
                        }
                    }
                }
                bname.clone()
            }
            None => String::new(),
        };
        let udp_idle_timeout_ms = int(
            cx,
            v.udp_idle_timeout_ms.as_ref(),
            "udp_idle_timeout_ms",
            0,
            MAX_DURATION_MS as i64,
            DEFAULT_UDP_IDLE_TIMEOUT_MS,
        ) as u32;
        let quic_sid_offset =
            int(cx, v.quic_sid_offset.as_ref(), "quic_sid_offset", 0, 19, 1) as u8;
        let quic_sid_len = int(cx, v.quic_sid_len.as_ref(), "quic_sid_len", 1, 4, 2) as u8;
        if let (Some(addr), Forward::Dsr) = (vip, forward) {
            if addr.is_ipv6() {
                if let Some(pool) = backends.iter().find(|p| p.name == backend) {
                    if pool.server.iter().any(|s| s.address.is_ipv4()) {
                        cx.push(
                            table.span(),
                            format!(
                                "[[l4]] \"{name}\": an IPv6 VIP needs IPv6 servers for DSR \
                                 (IPv6-in-IPv4 is not supported)"
                            ),
                        );
                    }
                }
            }
        }
        if let Some(vip) = vip {
            out.push(L4Vip {
                name,
                vip,
                protocol,
                backend,
                forward,
                steering,
                udp_idle_timeout_ms,
                quic_sid_offset,
                quic_sid_len,
            });
        }
    }
    out
}

/// NAT rewrites addresses in place: it cannot turn an IPv4 packet into an
/// IPv6 one. DSR encapsulates and can (4in6, like Katran).
fn check_nat_families(cx: &mut Cx, raw: &RawConfig, pool: &BackendPool, vip: SocketAddr, l4: &str) {
    let Some(raw_pool) = raw.backend.iter().find(|b| {
        b.get_ref()
            .name
            .as_ref()
            .is_some_and(|n| n.get_ref() == &pool.name)
    }) else {
        return;
    };
    for rs in &raw_pool.get_ref().server {
        let s = rs.get_ref();
        let (Some(a), Some(n)) = (s.address.as_ref(), s.name.as_ref()) else {
            continue;
        };
        let Some(server) = pool.server.iter().find(|x| &x.name == n.get_ref()) else {
            continue;
        };
        if server.address.is_ipv4() != vip.is_ipv4() {
            let fam = |a: &SocketAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
            cx.push(
                a.span(),
                format!(
                    "server \"{}/{}\" is {} but [[l4]] \"{l4}\" VIP {vip} is {}: forward = \"nat\" \
                     cannot translate between address families (use forward = \"dsr\")",
                    pool.name,
                    server.name,
                    fam(&server.address),
                    fam(&vip)
                ),
            );
        }
    }
}

fn convert_frontends(cx: &mut Cx, raw: &RawConfig, l4: &[L4Vip]) -> Vec<Frontend> {
    let base = Path::new(cx.file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let backend_names: Vec<&str> = raw
        .backend
        .iter()
        .filter_map(|b| b.get_ref().name.as_ref().map(|n| n.get_ref().as_str()))
        .collect();
    let mut names = HashMap::new();
    let mut binds = HashMap::new();
    let mut out = Vec::new();
    for table in &raw.frontend {
        let f = table.get_ref();
        let section = "[[frontend]]";
        let name = match required(cx, f.name.as_ref(), "name", section, &table.span()) {
            Some(n) if valid_name(cx, n, "frontend") => {
                let s = n.get_ref().clone();
                unique(cx, &mut names, s.clone(), n.span(), || {
                    format!("[[frontend]] name \"{s}\"")
                });
                s
            }
            _ => String::new(),
        };
        let http3 = f.http3.as_ref().is_some_and(|h| *h.get_ref());
        let bind_raw = required(cx, f.bind.as_ref(), "bind", section, &table.span());
        let bind = bind_raw.and_then(|a| address(cx, a, "frontend bind"));
        if let (Some(addr), Some(b)) = (bind, bind_raw) {
            unique(cx, &mut binds, addr, b.span(), || {
                format!("frontend bind {addr}")
            });
            for v in l4.iter().filter(|v| v.vip == addr) {
                if v.protocol == Protocol::Tcp || http3 {
                    let p = if v.protocol == Protocol::Tcp {
                        "tcp"
                    } else {
                        "udp (http3)"
                    };
                    cx.push(
                        b.span(),
                        format!(
                            "frontend bind {addr} is also [[l4]] \"{}\" VIP ({p}); the XDP tier \
                             would forward its packets before the L7 listener sees them",
                            v.name
                        ),
                    );
                }
            }
        }
        let default_backend = match required(
            cx,
            f.default_backend.as_ref(),
            "default_backend",
            section,
            &table.span(),
        ) {
            Some(b) => {
                if !backend_names.contains(&b.get_ref().as_str()) {
                    cx.push(
                        b.span(),
                        format!(
                            "unknown backend \"{}\" in [[frontend]] \"{name}\" default_backend",
                            b.get_ref()
                        ),
                    );
                }
                b.get_ref().clone()
            }
            None => String::new(),
        };
        let tls = f.tls.as_ref().and_then(|t| {
            let section = "frontend tls";
            let tr = t.get_ref();
            let cert = required(cx, tr.cert.as_ref(), "cert", section, &t.span());
            let key = required(cx, tr.key.as_ref(), "key", section, &t.span());
            let mut sni = Vec::new();
            for e in tr.sni.iter().flatten() {
                let section = "frontend tls sni entry";
                let c = required(cx, e.get_ref().cert.as_ref(), "cert", section, &e.span());
                let k = required(cx, e.get_ref().key.as_ref(), "key", section, &e.span());
                if let (Some(c), Some(k)) = (c, k) {
                    if let Some(pair) = cert_key(cx, c, k, &base) {
                        sni.push(pair);
                    }
                }
            }
            let pair = cert_key(cx, cert?, key?, &base)?;
            Some(Tls {
                cert: pair.cert,
                key: pair.key,
                sni,
            })
        });
        let h2c = f.h2c.as_ref().is_some_and(|h| *h.get_ref());
        if let (Some(h), true) = (&f.h2c, h2c && f.tls.is_some()) {
            cx.push(
                h.span(),
                format!(
                    "h2c = true is for cleartext listeners; [[frontend]] \"{name}\" has tls, \
                     where HTTP/2 is negotiated by ALPN"
                ),
            );
        }
        let max_ms = MAX_DURATION_MS as i64;
        let compression_min_bytes = int(
            cx,
            f.compression_min_bytes.as_ref(),
            "compression_min_bytes",
            0,
            i64::MAX,
            DEFAULT_COMPRESSION_MIN_BYTES as i64,
        ) as u64;
        let header_timeout_ms = int(
            cx,
            f.header_timeout_ms.as_ref(),
            "header_timeout_ms",
            1,
            max_ms,
            DEFAULT_HEADER_TIMEOUT_MS as i64,
        ) as u64;
        let idle_timeout_ms = int(
            cx,
            f.idle_timeout_ms.as_ref(),
            "idle_timeout_ms",
            1,
            max_ms,
            DEFAULT_IDLE_TIMEOUT_MS as i64,
        ) as u64;
        let max_header_bytes = int(
            cx,
            f.max_header_bytes.as_ref(),
            "max_header_bytes",
            MIN_MAX_HEADER_BYTES as i64,
            MAX_MAX_HEADER_BYTES as i64,
            DEFAULT_MAX_HEADER_BYTES as i64,
        ) as usize;
        let max_headers = int(
            cx,
            f.max_headers.as_ref(),
            "max_headers",
            1,
            10_000,
            DEFAULT_MAX_HEADERS as i64,
        ) as usize;
        let access_log = match f.access_log.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("stderr") => AccessLog::Stderr,
            Some("off") => AccessLog::Off,
            Some("") => {
                let a = f.access_log.as_ref().expect("matched Some");
                cx.push(
                    a.span(),
                    "access_log must be \"stderr\", \"off\" or a file path",
                );
                AccessLog::Off
            }
            Some(p) => {
                let p = Path::new(p);
                AccessLog::File(if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                })
            }
        };
        if let Some(h) = &f.http3 {
            if *h.get_ref() && f.tls.is_none() {
                cx.push(
                    h.span(),
                    format!("http3 = true needs tls in [[frontend]] \"{name}\" (QUIC is always encrypted)"),
                );
            }
        }
        let mut compression = Vec::new();
        if let Some(list) = &f.compression {
            for c in list.get_ref() {
                let s = c.get_ref();
                if !COMPRESSION.contains(&s.as_str()) {
                    cx.push(
                        c.span(),
                        format!(
                            "unknown compression \"{s}\": expected \"gzip\", \"br\" or \"brotli\""
                        ),
                    );
                } else if compression.contains(s) {
                    cx.push(c.span(), format!("duplicate compression \"{s}\""));
                } else {
                    compression.push(s.clone());
                }
            }
        }
        if let Some(bind) = bind {
            out.push(Frontend {
                name,
                bind,
                default_backend,
                tls,
                compression,
                http3,
                h2c,
                compression_min_bytes,
                header_timeout_ms,
                idle_timeout_ms,
                max_header_bytes,
                max_headers,
                access_log,
                connect: f.connect.as_ref().is_some_and(|c| *c.get_ref()),
            });
        }
    }
    out
}

/// Both files of a certificate and its key, resolved; when both exist the
/// [`Checks::tls`] hook judges them (the error points at the key).
fn cert_key(cx: &mut Cx, cert: &S<String>, key: &S<String>, base: &Path) -> Option<CertKey> {
    let errors = cx.errors.len();
    let cert_path = tls_file(cx, cert, base, "cert");
    let key_path = tls_file(cx, key, base, "key");
    if cx.errors.len() == errors {
        if let Some(check) = cx.checks.tls {
            if let Err(e) = check(&cert_path, &key_path) {
                cx.push(key.span(), e);
                return None;
            }
        }
    }
    Some(CertKey {
        cert: cert_path,
        key: key_path,
    })
}

/// Resolve a TLS file against the config's directory; it must exist.
fn tls_file(cx: &mut Cx, value: &S<String>, base: &Path, what: &str) -> PathBuf {
    let given = Path::new(value.get_ref());
    let path = if given.is_absolute() {
        given.to_path_buf()
    } else {
        base.join(given)
    };
    if let Err(e) = std::fs::metadata(&path) {
        cx.push(
            value.span(),
            format!("tls {what} \"{}\": {e}", path.display()),
        );
    } else if !path.is_file() {
        cx.push(
            value.span(),
            format!("tls {what} \"{}\" is not a file", path.display()),
        );
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars_and_clamps() {
        let cx = Cx::new("ab\néx = 1\n", "f");
        assert_eq!(cx.line_col(0), (1, 1));
        assert_eq!(cx.line_col(3), (2, 1));
        assert_eq!(cx.line_col(5), (2, 2)); // after the two-byte 'é'
        assert_eq!(cx.line_col(4), (2, 1)); // inside 'é': back to its start
        assert_eq!(cx.line_col(999), (3, 1));
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(1_000_003) && is_prime(13) && is_prime(2));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(0) && !is_prime(1_000_001));
    }

    const L7: &str = "[[backend]]\nname = \"web\"\n\n[[frontend]]\nname = \"f\"\n\
                      bind = \"127.0.0.1:8080\"\ndefault_backend = \"web\"\n";

    #[test]
    fn l7_defaults() {
        let c = parse(L7, "/etc/xlb/l7.toml").unwrap();
        assert_eq!(c.backend[0].l7, BackendL7::default());
        assert_eq!(c.backend[0].l7.retries, 2);
        assert_eq!(c.backend[0].l7.proto, UpstreamProto::H1);
        let f = &c.frontend[0];
        assert!(!f.h2c);
        assert_eq!(f.compression_min_bytes, DEFAULT_COMPRESSION_MIN_BYTES);
        assert_eq!(f.header_timeout_ms, DEFAULT_HEADER_TIMEOUT_MS);
        assert_eq!(f.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS);
        assert_eq!(f.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);
        assert_eq!(f.max_headers, DEFAULT_MAX_HEADERS);
        assert_eq!(f.access_log, AccessLog::Stderr);
    }

    #[test]
    fn upstream_tls_and_connect_keys() {
        let c = parse(L7, "/etc/xlb/l7.toml").unwrap();
        assert_eq!(c.backend[0].l7.tls, None);
        assert!(!c.frontend[0].connect);
        let text = L7
            .replace(
                "name = \"web\"\n",
                "name = \"web\"\ntls = true\ntls_ca = \"ca.pem\"\ntls_server_name = \"web.example\"\n",
            )
            .replace(
                "default_backend = \"web\"\n",
                "default_backend = \"web\"\nconnect = true\n",
            );
        let dir = std::env::temp_dir().join(format!("xlb-parse-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), "x").unwrap();
        let file = dir.join("xlb.toml");
        let c = parse(&text, file.to_str().unwrap()).unwrap();
        assert!(c.frontend[0].connect);
        assert_eq!(
            c.backend[0].l7.tls,
            Some(UpstreamTls {
                ca: Some(dir.join("ca.pem")),
                server_name: Some("web.example".into()),
                verify: true,
            })
        );
        fn refuse(_ca: &Path) -> Result<(), String> {
            Err("no CERTIFICATE block found".into())
        }
        let checks = Checks {
            tls: None,
            ca: Some(refuse),
        };
        let e = parse_with(&text, file.to_str().unwrap(), &checks).unwrap_err();
        assert_eq!((e.line, e.col), (4, 10), "{e}");
        assert!(e.message.contains("no CERTIFICATE"), "{e}");
        let e = parse(&text.replace("ca.pem", "gone.pem"), file.to_str().unwrap()).unwrap_err();
        assert_eq!((e.line, e.col), (4, 10), "{e}");
        assert!(
            e.message.contains("tls ca") && e.message.contains("gone.pem"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let insecure = L7.replace(
            "name = \"web\"\n",
            "name = \"web\"\ntls = true\ntls_verify = false\n",
        );
        let tls = parse(&insecure, "f").unwrap().backend[0]
            .l7
            .tls
            .clone()
            .unwrap();
        assert!(!tls.verify && tls.ca.is_none() && tls.server_name.is_none());
        let e = parse(
            &L7.replace("name = \"web\"\n", "name = \"web\"\ntls_verify = false\n"),
            "f",
        )
        .unwrap_err();
        assert!(e.message.contains("tls_verify needs tls = true"), "{e}");
        let e = parse(
            &L7.replace(
                "name = \"web\"\n",
                "name = \"web\"\ntls = true\ntls_server_name = \"a b\"\n",
            ),
            "f",
        )
        .unwrap_err();
        assert!(e.message.contains("not a DNS name"), "{e}");
    }

    #[test]
    fn l7_keys_and_their_errors() {
        let text = L7
            .replace(
                "name = \"web\"\n",
                "name = \"web\"\nproto = \"h2\"\nretries = 0\nconnect_timeout_ms = 5\nresponse_timeout_ms = 6\n",
            )
            .replace(
                "default_backend = \"web\"\n",
                "default_backend = \"web\"\nh2c = true\naccess_log = \"logs/a.log\"\nmax_headers = 7\n",
            );
        let c = parse(&text, "/etc/xlb/l7.toml").unwrap();
        let b = &c.backend[0].l7;
        assert_eq!(
            (
                b.proto,
                b.retries,
                b.connect_timeout_ms,
                b.response_timeout_ms
            ),
            (UpstreamProto::H2, 0, 5, 6)
        );
        let f = &c.frontend[0];
        assert!(f.h2c);
        assert_eq!(f.max_headers, 7);
        assert_eq!(f.access_log, AccessLog::File("/etc/xlb/logs/a.log".into()));
        assert_eq!(
            parse(
                &L7.replace("access_log", "x").replace(
                    "default_backend = \"web\"\n",
                    "default_backend = \"web\"\naccess_log = \"off\"\n"
                ),
                "f"
            )
            .unwrap()
            .frontend[0]
                .access_log,
            AccessLog::Off
        );

        for (bad, want) in [
            ("proto = \"h3\"", "unknown proto \"h3\""),
            ("retries = 11", "retries must be between 0 and 10"),
            (
                "connect_timeout_ms = 0",
                "connect_timeout_ms must be at least 1",
            ),
        ] {
            let text = L7.replace("name = \"web\"\n", &format!("name = \"web\"\n{bad}\n"));
            let e = parse(&text, "f").unwrap_err();
            assert_eq!(e.line, 3, "{e}");
            assert!(e.message.contains(want), "{e}");
        }
        for (bad, want) in [
            (
                "max_header_bytes = 100",
                "max_header_bytes must be between 8192",
            ),
            (
                "header_timeout_ms = 0",
                "header_timeout_ms must be at least 1",
            ),
            ("access_log = \"\"", "access_log must be"),
        ] {
            let text = format!("{L7}{bad}\n");
            let e = parse(&text, "f").unwrap_err();
            assert_eq!(e.line, 8, "{e}");
            assert!(e.message.contains(want), "{e}");
        }
    }

    #[test]
    fn tls_check_hook_reports_at_the_key() {
        let dir = std::env::temp_dir().join(format!("xlb-parse-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["a.pem", "a.key", "b.pem", "b.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let file = dir.join("xlb.toml");
        let text = format!(
            "{L7}tls = {{ cert = \"a.pem\", key = \"a.key\", sni = [{{ cert = \"b.pem\", key = \"b.key\" }}] }}\n"
        );
        fn only_a(_cert: &Path, key: &Path) -> Result<(), String> {
            if key.ends_with("a.key") {
                Ok(())
            } else {
                Err(format!("{} is bad", key.display()))
            }
        }
        let checks = Checks {
            tls: Some(only_a),
            ca: None,
        };
        let e = parse_with(&text, file.to_str().unwrap(), &checks).unwrap_err();
        assert_eq!((e.line, e.col), (8, 71), "{e}");
        assert!(e.message.ends_with("b.key is bad"), "{e}");
        // Without the hook the files only need to exist.
        let c = parse(&text, file.to_str().unwrap()).unwrap();
        let tls = c.frontend[0].tls.as_ref().unwrap();
        assert_eq!(tls.sni[0].cert, dir.join("b.pem"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_files_resolve_against_the_config_dir() {
        let dir = std::env::temp_dir().join(format!("xlb-parse-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), "x").unwrap();
        std::fs::write(dir.join("key.pem"), "x").unwrap();
        let file = dir.join("xlb.toml");
        let text = "[[backend]]\nname = \"web\"\n\n[[frontend]]\nname = \"f\"\n\
                    bind = \"127.0.0.1:8443\"\ndefault_backend = \"web\"\n\
                    tls = { cert = \"cert.pem\", key = \"key.pem\" }\nhttp3 = true\n";
        let c = parse(text, file.to_str().unwrap()).unwrap();
        let tls = c.frontend[0].tls.as_ref().unwrap();
        assert_eq!(tls.cert, dir.join("cert.pem"));
        assert_eq!(tls.key, dir.join("key.pem"));
        assert!(c.frontend[0].http3);

        std::fs::remove_file(dir.join("key.pem")).unwrap();
        let e = parse(text, file.to_str().unwrap()).unwrap_err();
        assert_eq!((e.line, e.col), (8, 34), "{e}");
        assert!(e.message.contains("tls key"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
