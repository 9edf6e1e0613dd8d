//! Map names and sizes. The names are the symbols in the eBPF object and the
//! file names under the bpffs pin path.

/// VIP (address, port, protocol) -> [`crate::VipInfo`].
pub const MAP_VIPS: &str = "XLB_VIPS";
/// Backend id -> [`crate::Backend`]: the one shared view of servers and their
/// state, read by the XDP program and the L7 tier.
pub const MAP_BACKENDS: &str = "XLB_BACKENDS";
/// `vip_id * ring_size + slot` -> backend id: every VIP's Maglev table.
pub const MAP_RING: &str = "XLB_RING";
/// 5-tuple as seen on the wire -> [`crate::Flow`]: the connection table,
/// both directions of every NAT flow.
pub const MAP_FLOWS: &str = "XLB_FLOWS";
/// [`crate::QuicServerKey`] -> backend id: QUIC server ids per VIP.
pub const MAP_QUIC_SERVERS: &str = "XLB_QUIC_SIDS";
/// VIP id -> [`crate::LiveSet`]: live backends for syslog round robin.
pub const MAP_LIVE: &str = "XLB_LIVE";
/// Per-CPU u32 indexed by VIP id: the syslog round-robin position.
pub const MAP_SYSLOG_RR: &str = "XLB_SYSLOG_RR";
/// Per-CPU [`crate::FloodWindow`] (one entry): the SYN flood guard.
pub const MAP_FLOOD: &str = "XLB_FLOOD";
/// [`crate::Settings`] (one entry): data-path settings from `[global]`.
pub const MAP_SETTINGS: &str = "XLB_SETTINGS";
/// Backend id -> [`crate::NextHop`]: the data path's cache of the route to
/// each backend, filled on new flows, read on connection-table hits. The
/// daemon clears a slot when the backend's address changes.
pub const MAP_NEXTHOP: &str = "XLB_NEXTHOP";
/// Per-CPU [`crate::Counters`] indexed by VIP id.
pub const MAP_VIP_STATS: &str = "XLB_VIP_STATS";
/// Per-CPU [`crate::Counters`] indexed by backend id.
pub const MAP_BACKEND_STATS: &str = "XLB_BE_STATS";
/// Per-CPU u64 counters indexed by [`crate::Stat`].
pub const MAP_STATS: &str = "XLB_STATS";

/// Global (read-only data) holding the Maglev ring size, set at load time.
pub const GLOBAL_RING_SIZE: &str = "XLB_RING_SIZE";

/// Most VIPs one daemon serves.
pub const MAX_VIPS: u32 = 64;
/// Most QUIC server ids over all VIPs.
pub const MAX_QUIC_SERVERS: u32 = 4096;
/// Most backends (servers) over all VIPs; backend ids are below this.
pub const MAX_BACKENDS: u32 = 4096;
/// Connection-table capacity (entries; a NAT flow takes two).
pub const MAX_FLOWS: u32 = 1 << 20;
/// Default Maglev table size per VIP: a prime, as Maglev requires.
pub const DEFAULT_RING_SIZE: u32 = 65537;
/// A ring slot with no live backend.
pub const NO_BACKEND: u32 = u32::MAX;

/// `BPF_F_NO_COMMON_LRU`: one LRU list per CPU, so inserts on one CPU do not
/// contend with the others (Katran's per-CPU LRU, without losing lookups from
/// other CPUs).
pub const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;

/// Benchmark harness maps (see `xdp-ebpf/src/bench.rs`).
pub const MAP_BENCH_CFG: &str = "XLB_BENCH_CFG";
pub const MAP_BENCH_JUMP: &str = "XLB_BENCH_JUMP";
