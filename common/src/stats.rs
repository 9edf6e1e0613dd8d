//! Global per-CPU counters: why packets were dropped, passed or forwarded
//! (and the `stats!` macro that also makes `xlb decap`'s [`crate::DecapStat`]).

/// A counter enum indexing a per-CPU `u64` array map, with `ALL` (in
/// index order) and each counter's name in `xlb stats` and metrics. The
/// variants are numbered from 0 in the order given.
macro_rules! stats {
    (
        $(#[doc = $enum_doc:literal])*
        pub enum $enum:ident {
            $($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*
        }
    ) => {
        $(#[doc = $enum_doc])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $enum {
            $($(#[doc = $doc])* $variant,)*
        }

        impl $enum {
            pub const ALL: &'static [$enum] = &[$($enum::$variant,)*];

            /// The counter's name in `xlb stats` and metrics.
            pub const fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }
        }
    };
}

pub(crate) use stats;

stats! {
    /// Index into [`crate::MAP_STATS`].
    pub enum Stat {
        /// IP header too short, wrong version, IHL < 5, or longer than the
        /// frame: dropped (the kernel would drop it too).
        DropMalformedIp = "drop_malformed_ip",
        /// TCP/UDP header cut short: dropped (the kernel would drop it too).
        DropMalformedL4 = "drop_malformed_l4",
        /// The VIP has no live backend.
        DropNoBackend = "drop_no_backend",
        /// DSR encapsulation could not grow the frame.
        DropEncap = "drop_encap",
        /// Connection-table hit.
        FlowHit = "flow_hit",
        /// Connection-table miss: a backend was chosen by Maglev.
        FlowMiss = "flow_miss",
        /// Reply from a backend rewritten back to the VIP.
        NatReverse = "nat_reverse",
        /// Forwarded packet handed to the kernel because the next hop's MAC is
        /// not resolved yet (the kernel resolves it and forwards).
        PassNoNeigh = "pass_no_neigh",
        /// Forwarded packet whose route lookup failed, or a VLAN-tagged one
        /// whose route leaves by another interface: passed to the kernel.
        PassNoRoute = "pass_no_route",
        /// Connection-table insert failed (map full and LRU could not evict),
        /// for a new flow or a NAT first fragment.
        FlowInsertFailed = "flow_insert_failed",
        /// IP fragment of VIP traffic, steered by addresses only.
        Fragment = "fragment",
        /// QUIC short header whose server id named a live backend.
        QuicCidHit = "quic_cid_hit",
        /// QUIC short header whose server id is unknown or not live.
        QuicCidMiss = "quic_cid_miss",
        /// Syslog datagram spread round robin.
        SyslogSpread = "syslog_spread",
        /// New flow above the flood threshold: forwarded without a client ->
        /// VIP table entry (NAT still records the way back; a NAT first
        /// fragment counts as a new flow).
        FloodBypass = "flood_bypass",
        /// ICMP error about a VIP flow, sent on to the flow's backend.
        IcmpToBackend = "icmp_to_backend",
        /// ICMP error a backend sent about a NAT flow, sent on to the client
        /// as if from the VIP.
        IcmpToClient = "icmp_to_client",
        /// "Fragmentation needed" / "packet too big" sent back to a client
        /// whose packet would not fit the route to its backend (DSR: with the
        /// tunnel header).
        IcmpTooBig = "icmp_too_big",
        /// A VLAN-tagged packet that needed the VIP (new flow or table miss;
        /// tagged table hits are not counted here).
        Vlan = "vlan",
        /// TCP/UDP packet for neither a VIP nor a known flow: passed to the
        /// kernel untouched.
        PassNotVip = "pass_not_vip",
    }
}

/// Entries in [`crate::MAP_STATS`].
pub const STAT_COUNT: u32 = Stat::ALL.len() as u32;
