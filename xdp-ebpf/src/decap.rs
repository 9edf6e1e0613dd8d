//! `xlb_decap`: the backend side of DSR. Strips the outer tunnel header of
//! packets for a local VIP and hands the inner packet to the stack, because
//! hosts may have no tunnel devices (this kernel has none).
//!
//! The rule:
//!
//! - Tunnel packets are untagged Ethernet frames carrying IPv4 with
//!   protocol 4 (IPv4 in IPv4), IPv6 with next header 41 (IPv6 in IPv6) or
//!   IPv6 with next header 4 (IPv4 in IPv6), the tunnel header directly
//!   after the outer IP header (IPv4 options are allowed and stripped with
//!   the header; IPv6 extension headers are not looked through). Anything
//!   else (ARP, other protocols, VLAN-tagged frames, IPv6 in IPv4) passes
//!   untouched: `pass_not_tunnel`. An IPv4 or IPv6 frame too short for the
//!   fixed IP header (20 / 40 bytes) passes untouched as `pass_malformed`.
//! - A tunnel packet is decapsulated only when its outer and inner headers
//!   are well formed and the INNER destination address is a configured VIP
//!   (`XLB_DECAP_VIPS`):
//!   - outer IPv4: version 4, IHL >= 5, not a fragment (a fragment, MF set
//!     or a non-zero offset, passes as is: `pass_fragment`), a total
//!     length of at least IHL * 4 + the inner packet's length and within
//!     the frame;
//!   - outer IPv6: version 6, payload length >= the inner packet's length,
//!     and within the frame;
//!   - inner IPv4: the 20-byte header present, version 4, IHL >= 5, total
//!     length >= IHL * 4 (its length is the total length);
//!   - inner IPv6: the 40-byte header present, version 6 (its length is
//!     40 + payload length).
//!
//!   A header cut short or failing these checks passes untouched
//!   (`pass_malformed`); a well-formed one for another destination passes
//!   untouched (`pass_not_vip`).
//! - Decapsulation removes the outer IP header (`bpf_xdp_adjust_head`),
//!   rewrites the Ethernet header in front of the inner packet with the same
//!   MAC addresses and the inner family's ethertype, and returns XDP_PASS.
//!   The inner packet is not changed (TTL, ECN and checksums stay as the
//!   client sent them; the stack checks them). The outer source and
//!   destination addresses and the outer IPv4 header checksum are not
//!   checked, as in Katran's decap. Bytes after the outer packet (Ethernet
//!   padding) stay; the stack trims them by the inner length.
//!
//! Every packet bumps exactly one counter in `XLB_DECAP_STATS`.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_xdp_adjust_head,
    macros::map,
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};
use xlb_common::{
    AF_INET, AF_INET6, DECAP_ANY_VIP, DECAP_STAT_COUNT, DecapStat, DecapVipKey, MAX_DECAP_VIPS,
};

use crate::{
    headers::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, EthHdr, IP_MF, IP_OFFSET_MASK, IPV4_HLEN, IPV6_HLEN,
        Ipv4Hdr, Ipv6Hdr, PROTO_IPIP, PROTO_IPV6,
    },
    packet::{len, ptr_at},
};

/// Written only by `xlb decap` (user space).
#[map]
static XLB_DECAP_VIPS: HashMap<DecapVipKey, u32> = HashMap::with_max_entries(MAX_DECAP_VIPS, 0);

#[map]
static XLB_DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DECAP_STAT_COUNT, 0);

/// What to strip: the outer IP header's length, the inner packet's
/// ethertype, and the counter to bump.
struct Tunnel {
    outer_len: usize,
    inner_type: u16,
    stat: DecapStat,
}

#[inline(always)]
pub fn process(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return pass(DecapStat::PassNotTunnel);
    };
    let ether_type = unsafe { (*eth).ether_type };
    let found = if ether_type == ETH_P_IP {
        outer_v4(ctx)
    } else if ether_type == ETH_P_IPV6 {
        outer_v6(ctx)
    } else {
        Err(DecapStat::PassNotTunnel)
    };
    match found {
        Ok(tunnel) => strip(ctx, tunnel),
        Err(stat) => pass(stat),
    }
}

// Order of the checks: every inner header is bounds-checked against the
// packet BEFORE the outer length fields are compared with the frame length.
// The other way round the compiler proves the inner bounds check redundant
// (outer length within the frame, inner header within the outer length) and
// drops it, and the verifier, which cannot follow that arithmetic, rejects
// the inner read.

#[inline(always)]
fn outer_v4(ctx: &XdpContext) -> Result<Tunnel, DecapStat> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).ok_or(DecapStat::PassMalformed)?;
    let (version_ihl, tot_len, frag_off, proto) = unsafe {
        (
            (*ip).version_ihl,
            u16::from_be((*ip).tot_len) as usize,
            (*ip).frag_off,
            (*ip).proto,
        )
    };
    if proto != PROTO_IPIP {
        return Err(DecapStat::PassNotTunnel);
    }
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || ihl < IPV4_HLEN {
        return Err(DecapStat::PassMalformed);
    }
    // A later fragment has no inner header; a first one lacks the rest.
    if frag_off & (IP_MF | IP_OFFSET_MASK) != 0 {
        return Err(DecapStat::PassFragment);
    }
    let inner = inner_v4(ctx, ETH_HLEN + ihl)?;
    if tot_len < ihl + inner.len || (ETH_HLEN + tot_len) as u64 > len(ctx) {
        return Err(DecapStat::PassMalformed);
    }
    is_vip(&inner.key)?;
    Ok(Tunnel {
        outer_len: ihl,
        inner_type: ETH_P_IP,
        stat: DecapStat::DecapIpip,
    })
}

#[inline(always)]
fn outer_v6(ctx: &XdpContext) -> Result<Tunnel, DecapStat> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN).ok_or(DecapStat::PassMalformed)?;
    let (version, payload_len, nexthdr) = unsafe {
        (
            u32::from_be((*ip).version_tc_flow) >> 28,
            u16::from_be((*ip).payload_len) as usize,
            (*ip).next_hdr,
        )
    };
    if nexthdr != PROTO_IPV6 && nexthdr != PROTO_IPIP {
        return Err(DecapStat::PassNotTunnel);
    }
    if version != 6 {
        return Err(DecapStat::PassMalformed);
    }
    let inner_off = ETH_HLEN + IPV6_HLEN;
    let (inner, tunnel) = if nexthdr == PROTO_IPV6 {
        let tunnel = Tunnel {
            outer_len: IPV6_HLEN,
            inner_type: ETH_P_IPV6,
            stat: DecapStat::DecapIp6ip6,
        };
        (inner_v6(ctx, inner_off)?, tunnel)
    } else {
        let tunnel = Tunnel {
            outer_len: IPV6_HLEN,
            inner_type: ETH_P_IP,
            stat: DecapStat::DecapIp4in6,
        };
        (inner_v4(ctx, inner_off)?, tunnel)
    };
    if payload_len < inner.len || (inner_off + payload_len) as u64 > len(ctx) {
        return Err(DecapStat::PassMalformed);
    }
    is_vip(&inner.key)?;
    Ok(tunnel)
}

/// An inner header that passed its own checks: the length it claims (IP
/// header included) and its destination as a map key.
struct Inner {
    len: usize,
    key: DecapVipKey,
}

/// The inner IPv4 header at `off`.
#[inline(always)]
fn inner_v4(ctx: &XdpContext, off: usize) -> Result<Inner, DecapStat> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, off).ok_or(DecapStat::PassMalformed)?;
    let (version_ihl, tot_len, daddr) = unsafe {
        (
            (*ip).version_ihl,
            u16::from_be((*ip).tot_len) as usize,
            (*ip).daddr,
        )
    };
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || ihl < IPV4_HLEN || tot_len < ihl {
        return Err(DecapStat::PassMalformed);
    }
    Ok(Inner {
        len: tot_len,
        key: DecapVipKey {
            addr: [daddr, 0, 0, 0],
            family: AF_INET,
            pad: [0; 3],
        },
    })
}

/// The inner IPv6 header at `off`.
#[inline(always)]
fn inner_v6(ctx: &XdpContext, off: usize) -> Result<Inner, DecapStat> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, off).ok_or(DecapStat::PassMalformed)?;
    let (version, payload_len, daddr) = unsafe {
        (
            u32::from_be((*ip).version_tc_flow) >> 28,
            u16::from_be((*ip).payload_len) as usize,
            (*ip).daddr,
        )
    };
    if version != 6 {
        return Err(DecapStat::PassMalformed);
    }
    Ok(Inner {
        len: IPV6_HLEN + payload_len,
        key: DecapVipKey {
            addr: daddr,
            family: AF_INET6,
            pad: [0; 3],
        },
    })
}

#[inline(always)]
fn is_vip(key: &DecapVipKey) -> Result<(), DecapStat> {
    let listed = unsafe { XLB_DECAP_VIPS.get(key) }.is_some();
    if listed || unsafe { XLB_DECAP_VIPS.get(&DECAP_ANY_VIP) }.is_some() {
        Ok(())
    } else {
        Err(DecapStat::PassNotVip)
    }
}

/// Removes the outer IP header and puts the Ethernet header (same MACs,
/// the inner family's ethertype) in front of the inner packet.
#[inline(always)]
fn strip(ctx: &XdpContext, tunnel: Tunnel) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return pass(DecapStat::PassMalformed);
    };
    let (dst, src) = unsafe { ((*eth).dst, (*eth).src) };
    // Cannot fail: the checks above proved an Ethernet header and an inner
    // IP header follow the outer one. If it did, the frame is unchanged.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, tunnel.outer_len as i32) } != 0 {
        return pass(DecapStat::PassMalformed);
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    unsafe {
        (*eth).dst = dst;
        (*eth).src = src;
        (*eth).ether_type = tunnel.inner_type;
    }
    count(tunnel.stat);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn pass(stat: DecapStat) -> u32 {
    count(stat);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn count(stat: DecapStat) {
    if let Some(c) = XLB_DECAP_STATS.get_ptr_mut(stat as u32) {
        unsafe { *c += 1 };
    }
}
