//! Map names and sizes. The names are the symbols in the eBPF object and the
//! file names under the bpffs pin path.

/// IPv4 VIP (address, port, protocol) -> [`crate::VipInfo`].
pub const MAP_VIPS_V4: &str = "XLB_VIPS4";
/// Backend id -> [`crate::Backend`]: the one shared view of servers and their
/// state, read by the XDP program and the L7 tier.
pub const MAP_BACKENDS: &str = "XLB_BACKENDS";
/// `vip_id * ring_size + slot` -> backend id: every VIP's Maglev table.
pub const MAP_RING: &str = "XLB_RING";
/// IPv4 5-tuple as seen on the wire -> [`crate::FlowV4`]: the connection
/// table, both directions of every NAT flow.
pub const MAP_FLOWS_V4: &str = "XLB_FLOWS4";
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
