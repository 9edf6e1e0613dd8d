//! DSR encapsulation (Katran-compatible): IPIP for IPv4 backends, IP6IP6
//! (or IPv4-in-IPv6) for IPv6 backends. The outer header goes between the
//! L2 header (VLAN tags kept) and the client's IP packet.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use xlb_common::{AF_INET, Backend, csum};

use crate::{
    headers::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPV4_HLEN, IPV6_HLEN, Ipv4Hdr, Ipv6Hdr, PROTO_IPIP,
        PROTO_IPV6, VLAN_HLEN,
    },
    packet::ptr_at,
    parse::Pkt,
};

/// Bytes the outer header adds for a backend of this family.
#[inline(always)]
pub fn overhead(backend_family: u8) -> u64 {
    if backend_family == AF_INET {
        IPV4_HLEN as u64
    } else {
        IPV6_HLEN as u64
    }
}

/// Grow the frame at the front by `shift` bytes and move the L2 header
/// (Ethernet and up to two VLAN tags, `l3_off` bytes) back to the start,
/// leaving `shift` free bytes at `l3_off`.
#[inline(always)]
pub fn open_gap(ctx: &XdpContext, shift: usize, l3_off: usize) -> Option<()> {
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(shift as i32)) } != 0 {
        return None;
    }
    // shift >= 20 > 14: source and destination never overlap.
    let from = ptr_at::<[u8; ETH_HLEN]>(ctx, shift)?;
    let to = ptr_at::<[u8; ETH_HLEN]>(ctx, 0)?;
    unsafe { *to = *from };
    let mut off = ETH_HLEN;
    for _ in 0..crate::headers::MAX_VLAN_TAGS {
        if off >= l3_off {
            break;
        }
        let from = ptr_at::<[u8; VLAN_HLEN]>(ctx, shift + off)?;
        let to = ptr_at::<[u8; VLAN_HLEN]>(ctx, off)?;
        unsafe { *to = *from };
        off += VLAN_HLEN;
    }
    Some(())
}

/// Set the EtherType that precedes the IP header at `l3_off`.
#[inline(always)]
pub fn set_ether_type(ctx: &XdpContext, l3_off: usize, family: u8) -> Option<()> {
    let field = ptr_at::<u16>(ctx, l3_off - 2)?;
    unsafe {
        *field = if family == AF_INET {
            ETH_P_IP
        } else {
            ETH_P_IPV6
        }
    };
    Some(())
}

/// Encapsulate the client's IP packet to `backend` from `outer_src`.
#[inline(never)]
pub fn encapsulate(
    ctx: &XdpContext,
    pkt: &Pkt,
    backend: &Backend,
    outer_src: &[u32; 4],
) -> Option<()> {
    let (l3_off, inner_family, inner_len) = (pkt.l3_off, pkt.key.family, pkt.l3_len);
    let backend_family = backend.family;
    let backend = &backend.addr;
    let inner_proto = if inner_family == AF_INET {
        PROTO_IPIP
    } else {
        PROTO_IPV6
    };
    let tos = inner_tos(ctx, l3_off, inner_family)?;
    if backend_family == AF_INET {
        open_gap(ctx, IPV4_HLEN, l3_off)?;
        set_ether_type(ctx, l3_off, AF_INET)?;
        write_ipv4(
            ctx,
            l3_off,
            tos,
            (inner_len + IPV4_HLEN as u64) as u16,
            inner_proto,
            outer_src[0],
            backend[0],
        )
    } else {
        open_gap(ctx, IPV6_HLEN, l3_off)?;
        set_ether_type(ctx, l3_off, backend_family)?;
        let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off)?;
        unsafe {
            (*ip).version_tc_flow = (0x6000_0000u32 | (tos as u32) << 20).to_be();
            (*ip).payload_len = (inner_len as u16).to_be();
            (*ip).next_hdr = inner_proto;
            (*ip).hop_limit = 64;
            (*ip).saddr = *outer_src;
            (*ip).daddr = *backend;
        }
        Some(())
    }
}

/// The inner packet's TOS / traffic class, carried to the outer header.
#[inline(always)]
fn inner_tos(ctx: &XdpContext, l3_off: usize, family: u8) -> Option<u8> {
    let first = ptr_at::<[u8; 2]>(ctx, l3_off)?;
    let b = unsafe { *first };
    Some(if family == AF_INET {
        b[1]
    } else {
        (b[0] << 4) | (b[1] >> 4)
    })
}

/// Write a 20-byte IPv4 header (no options, TTL 64) with its checksum.
#[inline(always)]
pub fn write_ipv4(
    ctx: &XdpContext,
    l3_off: usize,
    tos: u8,
    tot_len: u16,
    proto: u8,
    src: u32,
    dst: u32,
) -> Option<()> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off)?;
    unsafe {
        (*ip).version_ihl = 0x45;
        (*ip).tos = tos;
        (*ip).tot_len = tot_len.to_be();
        (*ip).id = 0;
        (*ip).frag_off = 0;
        (*ip).ttl = 64;
        (*ip).proto = proto;
        (*ip).check = 0;
        (*ip).saddr = src;
        (*ip).daddr = dst;
    }
    let words = ptr_at::<[u16; IPV4_HLEN / 2]>(ctx, l3_off)?;
    unsafe { (*ip).check = csum::finish(csum::sum_words(0, &*words)) };
    Some(())
}
