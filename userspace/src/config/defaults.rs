//! Defaults and limits of config values.

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
pub(super) const MAX_SOCKET_PATH: usize = 107;
/// More L7 threads than this is a typo, not a machine.
pub(super) const MAX_L7_THREADS: i64 = 1024;
/// IFNAMSIZ - 1.
pub(super) const MAX_IFNAME: usize = 15;
pub(super) const COMPRESSION: &[&str] = &["gzip", "br", "brotli"];
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
