//! ICMP: the "fragmentation needed" / "packet too big" answer for packets
//! that would not fit the DSR tunnel, and reading ICMP errors about a VIP
//! flow so they can follow the flow: to its backend (errors about the
//! VIP -> client packets), or to the client (errors a NAT backend sent
//! about the client's packets).

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_xdp_adjust_tail, programs::XdpContext,
};
use xlb_common::{
    AF_INET, FlowKey,
    csum::{self, l4_replace16, l4_replace32},
};

use crate::{
    encap::{open_gap, write_ipv4},
    headers::{
        EthHdr, ICMP_CSUM_OFF, ICMP_HLEN, IPV4_CSUM_OFF, IPV4_HLEN, IPV6_HLEN, IPV6_SADDR_OFF,
        IcmpHdr, Ipv4Hdr, Ipv6Hdr, PROTO_ICMP, PROTO_ICMPV6,
    },
    nat::{End, l4_checksum, set_v4_addr},
    packet::{len, ptr_at},
    parse::Pkt,
};

/// What an ICMP answer quotes of the client's packet: its IP header
/// (without options) and the first 8 bytes after it.
const QUOTE_V4: usize = IPV4_HLEN + 8;
const QUOTE_V6: usize = IPV6_HLEN + 8;

/// Turn the client's packet into an ICMP "fragmentation needed" (IPv4) or
/// "packet too big" (IPv6) from the VIP, announcing `mtu`, and send it back
/// the way it came.
#[inline(never)]
pub fn too_big(ctx: &XdpContext, pkt: &Pkt, mtu: u16) -> u32 {
    match build_too_big(ctx, pkt, mtu) {
        Some(()) => xdp_action::XDP_TX,
        None => xdp_action::XDP_DROP,
    }
}

#[inline(always)]
fn build_too_big(ctx: &XdpContext, pkt: &Pkt, mtu: u16) -> Option<()> {
    let eth = ptr_at::<EthHdr>(ctx, 0)?;
    let (client_mac, own_mac) = unsafe { ((*eth).src, (*eth).dst) };
    let l3 = pkt.l3_off;
    let (ip_len, quote) = if pkt.key.family == AF_INET {
        (IPV4_HLEN, QUOTE_V4)
    } else {
        (IPV6_HLEN, QUOTE_V6)
    };
    let msg_len = ICMP_HLEN + quote;
    open_gap(ctx, ip_len + ICMP_HLEN, l3)?;
    let keep = (l3 + ip_len + msg_len) as i32;
    // Taken through memory so the compiler cannot fold it into arithmetic
    // on the packet-end pointer, which the verifier refuses.
    let now = len(ctx) as i32;
    let now = unsafe { core::ptr::read_volatile(&now) };
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, keep - now) } != 0 {
        return None;
    }
    let eth = ptr_at::<EthHdr>(ctx, 0)?;
    unsafe {
        (*eth).dst = client_mac;
        (*eth).src = own_mac;
    }
    let icmp = ptr_at::<IcmpHdr>(ctx, l3 + ip_len)?;
    if pkt.key.family == AF_INET {
        write_ipv4(
            ctx,
            l3,
            0,
            (ip_len + msg_len) as u16,
            PROTO_ICMP,
            pkt.key.dst[0],
            pkt.key.src[0],
        )?;
        unsafe {
            (*icmp).kind = 3; // destination unreachable
            (*icmp).code = 4; // fragmentation needed
            (*icmp).check = 0;
            // Bytes 4-5 unused, 6-7 the next-hop MTU (RFC 1191).
            (*icmp).rest = (mtu as u32).to_be();
        }
        let words = ptr_at::<[u16; (ICMP_HLEN + QUOTE_V4) / 2]>(ctx, l3 + ip_len)?;
        unsafe { (*icmp).check = csum::finish(csum::sum_words(0, &*words)) };
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, l3)?;
        unsafe {
            (*ip).version_tc_flow = 0x6000_0000u32.to_be();
            (*ip).payload_len = (msg_len as u16).to_be();
            (*ip).next_hdr = PROTO_ICMPV6;
            (*ip).hop_limit = 64;
            (*ip).saddr = pkt.key.dst;
            (*ip).daddr = pkt.key.src;
            (*icmp).kind = 2; // packet too big
            (*icmp).code = 0;
            (*icmp).check = 0;
            (*icmp).rest = (mtu as u32).to_be();
        }
        // Pseudo-header: addresses, length, next header; then the message.
        let mut sum = (msg_len as u16).to_be() as u32 + (PROTO_ICMPV6 as u16).to_be() as u32;
        // The addresses as just written: source and destination follow
        // each other in the header.
        let addrs = ptr_at::<[u16; 16]>(ctx, l3 + IPV6_SADDR_OFF)?;
        sum = csum::sum_words(sum, unsafe { &*addrs });
        let words = ptr_at::<[u16; (ICMP_HLEN + QUOTE_V6) / 2]>(ctx, l3 + ip_len)?;
        unsafe { (*icmp).check = csum::finish(csum::sum_words(sum, &*words)) };
    }
    Some(())
}

/// An ICMP error about a flow through a VIP, as the client -> VIP flow key
/// it refers to (the quoted packet went VIP -> client), plus where the
/// quoted packet sits for a NAT rewrite.
#[derive(Clone, Copy, Default)]
pub struct IcmpError {
    pub flow: FlowKey,
    /// Offset of the quoted IP header and of its L4 header.
    pub inner_l3: usize,
    pub inner_l4: usize,
}

/// Parse an ICMP error (IPv4: destination unreachable, time exceeded,
/// parameter problem; IPv6: types 1-4) and its quoted packet into `out`.
#[inline(always)]
pub fn error_about(ctx: &XdpContext, pkt: &Pkt, out: &mut IcmpError) -> bool {
    match parse_error(ctx, pkt) {
        Some(err) => {
            *out = err;
            true
        }
        None => false,
    }
}

#[inline(always)]
fn parse_error(ctx: &XdpContext, pkt: &Pkt) -> Option<IcmpError> {
    let icmp = ptr_at::<IcmpHdr>(ctx, pkt.l4_off)?;
    let kind = unsafe { (*icmp).kind };
    let inner_l3 = pkt.l4_off + ICMP_HLEN;
    let mut flow = FlowKey {
        family: pkt.key.family,
        ..FlowKey::default()
    };
    let inner_l4 = if pkt.key.family == AF_INET {
        if kind != 3 && kind != 11 && kind != 12 {
            return None;
        }
        let ip = ptr_at::<Ipv4Hdr>(ctx, inner_l3)?;
        let ihl = unsafe { ((*ip).version_ihl & 0x0f) as usize * 4 };
        if ihl < IPV4_HLEN {
            return None;
        }
        unsafe {
            flow.src = [(*ip).daddr, 0, 0, 0];
            flow.dst = [(*ip).saddr, 0, 0, 0];
            flow.proto = (*ip).proto;
        }
        inner_l3 + ihl
    } else {
        if !(1..=4).contains(&kind) {
            return None;
        }
        let ip = ptr_at::<Ipv6Hdr>(ctx, inner_l3)?;
        unsafe {
            flow.src = (*ip).daddr;
            flow.dst = (*ip).saddr;
            flow.proto = (*ip).next_hdr;
        }
        inner_l3 + IPV6_HLEN
    };
    let ports = ptr_at::<crate::headers::Ports>(ctx, inner_l4)?;
    unsafe {
        flow.sport = (*ports).dport;
        flow.dport = (*ports).sport;
    }
    Some(IcmpError {
        flow,
        inner_l3,
        inner_l4,
    })
}

/// Where [`rewrite_error`] moves one end of the flow (in one argument: BPF
/// functions take at most five; it lives in the per-CPU scratch, off the
/// 512-byte stack).
pub struct NatTo {
    pub end: End,
    pub addr: [u32; 4],
    pub port: u16,
}

/// NAT for an ICMP error, with every checksum the change touches kept
/// right (outer IPv4 header, quoted IPv4 header, quoted TCP/UDP checksum
/// when quoted, and the ICMP checksum over all of it, which for ICMPv6
/// also covers the outer addresses). The quoted checksum follows the same
/// rules as `nat::rewrite`'s: a quoted UDP checksum of zero ("none") stays
/// zero, and one that comes out zero is written as 0xffff (RFC 768). `End::Destination`, an error about a
/// VIP -> client packet going to the backend: the outer destination (VIP)
/// and the quoted source (VIP:port) become the backend's.
/// `End::Source`, an error a backend sent about a client -> backend
/// packet: the outer source (backend) and the quoted destination
/// (backend:port) become the VIP's.
#[inline(never)]
pub fn rewrite_error(ctx: &XdpContext, pkt: &Pkt, err: &IcmpError, to: &NatTo) -> Option<()> {
    let (end, addr, port) = (to.end, &to.addr, to.port);
    // The quoted packet went the other way: its other end is this one.
    let quoted = end.other();
    let proto = err.flow.proto;
    let icmp_check = ptr_at::<u16>(ctx, pkt.l4_off + ICMP_CSUM_OFF)?;
    let mut ic = unsafe { *icmp_check };
    // The quoted TCP/UDP checksum, if the quote reaches it.
    let l4_check = l4_checksum(ctx, proto, err.inner_l4);
    let old_lc = match l4_check {
        Some(c) => unsafe { *c },
        None => 0,
    };
    let mut lc = old_lc;
    if pkt.key.family == AF_INET {
        // The outer header (its checksum is not in the ICMP one).
        set_v4_addr(ctx, pkt.l3_off, end, addr[0])?;
        // The quoted address and header checksum, both in the ICMP message.
        let field = ptr_at::<u32>(ctx, err.inner_l3 + quoted.addr_off(true))?;
        let check = ptr_at::<u16>(ctx, err.inner_l3 + IPV4_CSUM_OFF)?;
        unsafe {
            let (old, old_check) = (*field, *check);
            let new_check = csum::replace32(old_check, old, addr[0]);
            ic = csum::replace32(ic, old, addr[0]);
            ic = csum::replace16(ic, old_check, new_check);
            lc = l4_replace32(proto, lc, old, addr[0]);
            *check = new_check;
            *field = addr[0];
        }
    } else {
        // The outer address is in the ICMPv6 pseudo-header.
        let field = ptr_at::<[u32; 4]>(ctx, pkt.l3_off + end.addr_off(false))?;
        unsafe {
            for i in 0..4 {
                ic = csum::replace32(ic, (*field)[i], addr[i]);
            }
            *field = *addr;
        }
        let field = ptr_at::<[u32; 4]>(ctx, err.inner_l3 + quoted.addr_off(false))?;
        unsafe {
            let old = *field;
            for i in 0..4 {
                ic = csum::replace32(ic, old[i], addr[i]);
                lc = l4_replace32(proto, lc, old[i], addr[i]);
            }
            *field = *addr;
        }
    }
    // The quoted port.
    let field = ptr_at::<u16>(ctx, err.inner_l4 + quoted.port_off())?;
    unsafe {
        let old = *field;
        ic = csum::replace16(ic, old, port);
        lc = l4_replace16(proto, lc, old, port);
        *field = port;
    }
    if let Some(c) = l4_check {
        ic = csum::replace16(ic, old_lc, lc);
        unsafe { *c = lc };
    }
    unsafe { *icmp_check = ic };
    Some(())
}
