//! `xlb decap`: the backend-side XDP program of DSR forwarding. It strips
//! the outer IPIP / IP6IP6 / IPv4-in-IPv6 header of packets whose inner
//! destination is one of the host's VIPs and passes the inner packet to the
//! stack (see `xdp-ebpf/src/decap.rs` for the exact rule).

/// VIP address ([`DecapVipKey`]) -> `u32` (reserved, written as 1): the
/// inner destinations the program decapsulates for.
pub const MAP_DECAP_VIPS: &str = "XLB_DECAP_VIPS";
/// Per-CPU u64 counters indexed by [`DecapStat`].
pub const MAP_DECAP_STATS: &str = "XLB_DECAP_STATS";

use crate::stats::stats;

/// Most VIPs one `xlb decap` serves.
pub const MAX_DECAP_VIPS: u32 = 1024;

/// A local VIP: the address as it sits in the packet (network byte order
/// words; an IPv4 address uses `addr[0]`, the other words are zero) and its
/// family ([`crate::AF_INET`] or [`crate::AF_INET6`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecapVipKey {
    pub addr: [u32; 4],
    pub family: u8,
    pub pad: [u8; 3],
}

/// The key that stands for every inner destination (`xlb decap` without
/// `--vip`): family 0, address zero.
pub const DECAP_ANY_VIP: DecapVipKey = DecapVipKey {
    addr: [0; 4],
    family: 0,
    pad: [0; 3],
};

#[cfg(feature = "user")]
unsafe impl aya::Pod for DecapVipKey {}

stats! {
    /// Index into [`MAP_DECAP_STATS`]: what the decap program did with a
    /// packet.
    pub enum DecapStat {
        /// IPv4 in IPv4 (outer protocol 4) decapsulated.
        DecapIpip = "decap_ipip",
        /// IPv6 in IPv6 (outer next header 41) decapsulated.
        DecapIp6ip6 = "decap_ip6ip6",
        /// IPv4 in IPv6 (outer next header 4) decapsulated.
        DecapIp4in6 = "decap_ip4in6",
        /// Not IPv4/IPv6 carrying one of the tunnel protocols: passed
        /// untouched.
        PassNotTunnel = "pass_not_tunnel",
        /// A well-formed tunnel packet whose inner destination is not a
        /// configured VIP: passed untouched.
        PassNotVip = "pass_not_vip",
        /// A tunnel packet with a truncated or malformed outer or inner
        /// header: passed untouched.
        PassMalformed = "pass_malformed",
        /// An IPv4 tunnel packet that is an outer fragment: passed untouched.
        PassFragment = "pass_fragment",
    }
}

/// Entries in [`MAP_DECAP_STATS`].
pub const DECAP_STAT_COUNT: u32 = DecapStat::ALL.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    /// The indices the program counts at and the names `xlb decap` prints.
    #[test]
    fn counters_keep_their_indices_and_names() {
        let names: [(DecapStat, u32, &str); 7] = [
            (DecapStat::DecapIpip, 0, "decap_ipip"),
            (DecapStat::DecapIp6ip6, 1, "decap_ip6ip6"),
            (DecapStat::DecapIp4in6, 2, "decap_ip4in6"),
            (DecapStat::PassNotTunnel, 3, "pass_not_tunnel"),
            (DecapStat::PassNotVip, 4, "pass_not_vip"),
            (DecapStat::PassMalformed, 5, "pass_malformed"),
            (DecapStat::PassFragment, 6, "pass_fragment"),
        ];
        assert_eq!(DECAP_STAT_COUNT, 7);
        assert_eq!(DecapStat::ALL.len(), names.len());
        for (i, (stat, index, name)) in names.into_iter().enumerate() {
            assert_eq!(DecapStat::ALL[i], stat);
            assert_eq!(stat as u32, index);
            assert_eq!(stat.name(), name);
        }
    }
}
