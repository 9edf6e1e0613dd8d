//! Header parsing: Ethernet (with up to two VLAN tags), IPv4 or IPv6 (with
//! a fragment header), and the TCP/UDP ports. Reads only; never writes.
//!
//! The rule for odd packets (README, "Packet handling rules"):
//! - not IP, or IPv6 with extension headers other than a fragment header,
//!   or neither TCP, UDP nor an ICMP error: passed untouched;
//! - a malformed IP header (too short, wrong version, IHL < 5, length
//!   beyond the frame) or a TCP/UDP header cut short: dropped and counted
//!   (the kernel would drop it too);
//! - IP options are kept; the L4 header is found from the IHL.

use aya_ebpf::programs::XdpContext;
use xlb_common::{AF_INET, AF_INET6, FlowKey, PROTO_TCP, PROTO_UDP, Stat};

use crate::{
    headers::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, EthHdr, IP_MF, IP_OFFSET_MASK,
        IPV4_HLEN, IPV6_HLEN, Ipv4Hdr, Ipv6FragHdr, Ipv6Hdr, NEXTHDR_FRAGMENT, PROTO_ICMP,
        PROTO_ICMPV6, Ports, TCP_HLEN, UDP_HLEN, VLAN_HLEN, VlanHdr,
    },
    packet::{len, ptr_at},
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    No,
    /// First fragment: carries the L4 header.
    First,
    /// Later fragment: no L4 header; ports are zero in the key.
    Later,
}

/// A parsed TCP/UDP (or ICMP) packet.
#[derive(Clone, Copy)]
pub struct Pkt {
    pub l3_off: usize,
    pub l4_off: usize,
    /// As seen on the wire; ports zero for later fragments and ICMP.
    pub key: FlowKey,
    pub fragment: Fragment,
    /// Bytes of the IP packet per its header (header and payload).
    pub l3_len: u64,
    pub vlan: bool,
}

pub enum Parsed {
    Pass,
    Drop(Stat),
    /// The packet was written to the caller's [`Pkt`].
    Packet,
}

/// Parse into `out` (per-CPU scratch memory, not the small BPF stack).
#[inline(always)]
pub fn parse(ctx: &XdpContext, out: &mut Pkt) -> Parsed {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Parsed::Pass;
    };
    let mut ether_type = unsafe { (*eth).ether_type };
    let mut l3_off = ETH_HLEN;
    let mut vlan = false;
    for _ in 0..crate::headers::MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let Some(tag) = ptr_at::<VlanHdr>(ctx, l3_off) else {
            return Parsed::Pass;
        };
        ether_type = unsafe { (*tag).ether_type };
        l3_off += VLAN_HLEN;
        vlan = true;
    }
    if ether_type == ETH_P_IP {
        parse_v4(ctx, l3_off, vlan, out)
    } else if ether_type == ETH_P_IPV6 {
        parse_v6(ctx, l3_off, vlan, out)
    } else {
        Parsed::Pass
    }
}

#[inline(always)]
fn parse_v4(ctx: &XdpContext, l3_off: usize, vlan: bool, out: &mut Pkt) -> Parsed {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, l3_off) else {
        return Parsed::Drop(Stat::DropMalformedIp);
    };
    let (version_ihl, tot_len, frag_off, proto, saddr, daddr) = unsafe {
        (
            (*ip).version_ihl,
            u16::from_be((*ip).tot_len) as u64,
            (*ip).frag_off,
            (*ip).proto,
            (*ip).saddr,
            (*ip).daddr,
        )
    };
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4
        || ihl < IPV4_HLEN
        || tot_len < ihl as u64
        || (l3_off as u64) + tot_len > len(ctx)
    {
        return Parsed::Drop(Stat::DropMalformedIp);
    }
    let fragment = if frag_off & IP_OFFSET_MASK != 0 {
        Fragment::Later
    } else if frag_off & IP_MF != 0 {
        Fragment::First
    } else {
        Fragment::No
    };
    *out = Pkt {
        l3_off,
        l4_off: l3_off + ihl,
        key: FlowKey {
            src: [saddr, 0, 0, 0],
            dst: [daddr, 0, 0, 0],
            sport: 0,
            dport: 0,
            proto,
            family: AF_INET,
            pad: [0; 2],
        },
        fragment,
        l3_len: tot_len,
        vlan,
    };
    finish(ctx, out, ihl as u64, PROTO_ICMP)
}

#[inline(always)]
fn parse_v6(ctx: &XdpContext, l3_off: usize, vlan: bool, out: &mut Pkt) -> Parsed {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, l3_off) else {
        return Parsed::Drop(Stat::DropMalformedIp);
    };
    let (first, payload_len, mut next, saddr, daddr) = unsafe {
        (
            *(ip as *const u8),
            u16::from_be((*ip).payload_len) as u64,
            (*ip).next_hdr,
            (*ip).saddr,
            (*ip).daddr,
        )
    };
    let l3_len = IPV6_HLEN as u64 + payload_len;
    if first >> 4 != 6 || (l3_off as u64) + l3_len > len(ctx) {
        return Parsed::Drop(Stat::DropMalformedIp);
    }
    let mut hdr_len = IPV6_HLEN;
    let mut fragment = Fragment::No;
    if next == NEXTHDR_FRAGMENT {
        let Some(frag) = ptr_at::<Ipv6FragHdr>(ctx, l3_off + IPV6_HLEN) else {
            return Parsed::Drop(Stat::DropMalformedIp);
        };
        let off = unsafe { u16::from_be((*frag).frag_off) };
        next = unsafe { (*frag).next_hdr };
        hdr_len += core::mem::size_of::<Ipv6FragHdr>();
        fragment = if off & 0xfff8 != 0 {
            Fragment::Later
        } else if off & 1 != 0 {
            Fragment::First
        } else {
            Fragment::No
        };
    }
    *out = Pkt {
        l3_off,
        l4_off: l3_off + hdr_len,
        key: FlowKey {
            src: saddr,
            dst: daddr,
            sport: 0,
            dport: 0,
            proto: next,
            family: AF_INET6,
            pad: [0; 2],
        },
        fragment,
        l3_len,
        vlan,
    };
    finish(ctx, out, hdr_len as u64, PROTO_ICMPV6)
}

/// Ports for TCP/UDP (checking the header is there), ICMP as is, the rest
/// passes.
#[inline(always)]
fn finish(ctx: &XdpContext, pkt: &mut Pkt, ip_hdr_len: u64, icmp: u8) -> Parsed {
    let proto = pkt.key.proto;
    if proto == icmp {
        return Parsed::Packet;
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Parsed::Pass;
    }
    if pkt.fragment == Fragment::Later {
        return Parsed::Packet;
    }
    let l4_len = if proto == PROTO_TCP {
        TCP_HLEN
    } else {
        UDP_HLEN
    };
    if pkt.l3_len < ip_hdr_len + l4_len as u64 {
        return Parsed::Drop(Stat::DropMalformedL4);
    }
    let present = if proto == PROTO_TCP {
        ptr_at::<[u8; TCP_HLEN]>(ctx, pkt.l4_off).is_some()
    } else {
        ptr_at::<[u8; UDP_HLEN]>(ctx, pkt.l4_off).is_some()
    };
    let Some(ports) = ptr_at::<Ports>(ctx, pkt.l4_off) else {
        return Parsed::Drop(Stat::DropMalformedL4);
    };
    if !present {
        return Parsed::Drop(Stat::DropMalformedL4);
    }
    unsafe {
        pkt.key.sport = (*ports).sport;
        pkt.key.dport = (*ports).dport;
    }
    Parsed::Packet
}
