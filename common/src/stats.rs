//! Global per-CPU counters: why packets were dropped, passed or forwarded.

/// Index into [`crate::MAP_STATS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// IPv4 header shorter than 20 bytes, version != 4 or IHL < 5, or longer
    /// than the packet: dropped (the kernel would drop it too).
    DropMalformedIp = 0,
    /// TCP/UDP header cut short: dropped (the kernel would drop it too).
    DropMalformedL4 = 1,
    /// The VIP has no live backend.
    DropNoBackend = 2,
    /// Connection-table hit.
    FlowHit = 3,
    /// Connection-table miss: a backend was chosen by Maglev.
    FlowMiss = 4,
    /// Reply from a backend rewritten back to the VIP.
    NatReverse = 5,
    /// Forwarded packet handed to the kernel because the next hop's MAC is
    /// not resolved yet (the kernel resolves it and forwards).
    PassNoNeigh = 6,
    /// IP fragment for a VIP address passed to the kernel (v1 rule).
    PassFragment = 7,
    /// Forwarded packet whose route lookup failed: passed to the kernel.
    PassNoRoute = 8,
    /// Connection-table insert failed (map full and LRU could not evict).
    FlowInsertFailed = 9,
}

pub const STAT_COUNT: u32 = 10;

impl Stat {
    pub const ALL: [Stat; STAT_COUNT as usize] = [
        Stat::DropMalformedIp,
        Stat::DropMalformedL4,
        Stat::DropNoBackend,
        Stat::FlowHit,
        Stat::FlowMiss,
        Stat::NatReverse,
        Stat::PassNoNeigh,
        Stat::PassFragment,
        Stat::PassNoRoute,
        Stat::FlowInsertFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Stat::DropMalformedIp => "drop_malformed_ip",
            Stat::DropMalformedL4 => "drop_malformed_l4",
            Stat::DropNoBackend => "drop_no_backend",
            Stat::FlowHit => "flow_hit",
            Stat::FlowMiss => "flow_miss",
            Stat::NatReverse => "nat_reverse",
            Stat::PassNoNeigh => "pass_no_neigh",
            Stat::PassFragment => "pass_fragment",
            Stat::PassNoRoute => "pass_no_route",
            Stat::FlowInsertFailed => "flow_insert_failed",
        }
    }
}
