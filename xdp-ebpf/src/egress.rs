//! The ways out: NAT (rewrite the destination) or DSR (encapsulate) to a
//! backend, NAT replies back to the client, and the per-backend route cache
//! they share. The two ways out are not inlined: one copy serves every
//! caller, and their stack frames do not add to the callers' (the BPF stack
//! of a call chain is 512 bytes).

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use xlb_common::{AF_INET, Flow, FlowKey, NextHop, Stat, hash::encap_source_bits};

use crate::{
    balance::{Chosen, Via},
    encap::{encapsulate, overhead},
    forward::{NoRoute, RouteQuery, route, send},
    headers::{IP_DF, Ipv4Hdr, PROTO_IPIP, PROTO_IPV6},
    icmp::{rewrite_error, too_big},
    maps::{Scratch, XLB_NEXTHOP, XLB_SETTINGS},
    nat::{End, rewrite},
    packet::ptr_at,
    parse::Pkt,
    stats::{count, count_flow, drop},
};

/// NAT to the backend. The route comes first, so a packet too big for it
/// is answered as the client sent it, before the rewrite.
#[inline(never)]
pub fn nat_out(ctx: &XdpContext, pkt: &Pkt, via: &Via, chosen: &Chosen) -> u32 {
    let be = &chosen.be;
    let hop = next_hop(
        ctx,
        chosen,
        &pkt.key.src,
        pkt.l3_len,
        pkt.key.proto,
        via.fresh_route,
    );
    if let Err(NoRoute::TooBig(mtu)) = hop
        && dont_fragment(ctx, pkt)
    {
        return client_too_big(ctx, pkt, mtu, 0);
    }
    if rewrite(ctx, pkt, End::Destination, &be.addr, be.port).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    count_flow(via.vip_id, chosen.id, pkt.l3_off as u64 + pkt.l3_len);
    match hop {
        Ok(hop) => send(ctx, &hop, pkt.vlan),
        // No neighbour or route yet, or an IPv4 packet the kernel may
        // fragment: the kernel forwards the rewritten packet.
        Err(_) => xdp_action::XDP_PASS,
    }
}

/// DSR to the backend: encapsulate, from an outer source that hashes
/// `flow` (the packet's own key, or for an ICMP error the client -> VIP
/// flow it quotes; in the per-CPU scratch, as `pkt`, `via` and `chosen`).
#[inline(never)]
pub fn dsr_out(ctx: &XdpContext, pkt: &Pkt, via: &Via, chosen: &Chosen, flow: &FlowKey) -> u32 {
    let be = &chosen.be;
    let outer_src = dsr_source(flow, be.family);
    let outer_len = pkt.l3_len + overhead(be.family);
    let tunnel = if be.family == AF_INET {
        PROTO_IPIP
    } else {
        PROTO_IPV6
    };
    let hop = match next_hop(ctx, chosen, &outer_src, outer_len, tunnel, via.fresh_route) {
        Ok(hop) => hop,
        Err(NoRoute::TooBig(mtu)) => return client_too_big(ctx, pkt, mtu, overhead(be.family)),
        Err(NoRoute::Pass) => {
            // No neighbour entry (or route) yet: hand the kernel the
            // encapsulated packet, which it routes to the backend. The
            // bare one would be delivered to the VIP on this host.
            if encapsulate(ctx, pkt, be, &outer_src).is_none() {
                return drop(Stat::DropEncap);
            }
            count_flow(via.vip_id, chosen.id, pkt.l3_off as u64 + pkt.l3_len);
            return xdp_action::XDP_PASS;
        }
    };
    if encapsulate(ctx, pkt, be, &outer_src).is_none() {
        return drop(Stat::DropEncap);
    }
    count_flow(via.vip_id, chosen.id, pkt.l3_off as u64 + pkt.l3_len);
    send(ctx, &hop, pkt.vlan)
}

/// ICMP "fragmentation needed" / "packet too big" to the client,
/// announcing what fits the path once `extra` bytes (DSR's outer header)
/// are added.
#[inline(always)]
fn client_too_big(ctx: &XdpContext, pkt: &Pkt, path_mtu: u16, extra: u64) -> u32 {
    count(Stat::IcmpTooBig);
    let room = (path_mtu as u64).saturating_sub(extra);
    too_big(ctx, pkt, room as u16)
}

/// Whether the client's packet must not be fragmented on the way: IPv6
/// (only the sender fragments) or IPv4 with DF set.
#[inline(always)]
fn dont_fragment(ctx: &XdpContext, pkt: &Pkt) -> bool {
    if pkt.key.family != AF_INET {
        return true;
    }
    match ptr_at::<Ipv4Hdr>(ctx, pkt.l3_off) {
        Some(ip) => (unsafe { (*ip).frag_off } & IP_DF) != 0,
        None => true,
    }
}

/// Send an already rewritten packet (an ICMP error about a NAT flow)
/// towards its backend. One too big for the path goes to the kernel, which
/// fragments it or answers.
#[inline(always)]
pub fn forward_to(ctx: &XdpContext, pkt: &Pkt, src: &[u32; 4], chosen: &Chosen, via: &Via) -> u32 {
    match next_hop(ctx, chosen, src, pkt.l3_len, pkt.key.proto, via.fresh_route) {
        Ok(hop) => send(ctx, &hop, pkt.vlan),
        Err(_) => xdp_action::XDP_PASS,
    }
}

/// The cached route to the chosen backend, or a fresh lookup (then
/// cached). Checks the packet against the route's MTU either way, so a
/// cached route (established flows) is held to it as a fresh lookup is:
/// `tot_len` is the packet's length and `proto` its IP protocol as it will
/// leave (DSR: with the outer header, the tunnel's protocol; NAT: the
/// client's), so policy routing by protocol sees the packet it routes.
#[inline(always)]
fn next_hop(
    ctx: &XdpContext,
    chosen: &Chosen,
    src: &[u32; 4],
    tot_len: u64,
    proto: u8,
    fresh: bool,
) -> Result<NextHop, NoRoute> {
    let hop = if !fresh
        && let Some(hop) = XLB_NEXTHOP.get(chosen.id)
        && hop.ifindex != 0
    {
        *hop
    } else {
        lookup_and_cache(ctx, chosen, src, Leaving::new(tot_len, proto))?
    };
    if hop.mtu != 0 && tot_len > hop.mtu as u64 {
        return Err(NoRoute::TooBig(hop.mtu));
    }
    Ok(hop)
}

/// A packet's IP length and protocol as it leaves, in one argument: a
/// BPF call takes five at most, and the route lookup needs both.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Leaving(u64);

impl Leaving {
    fn new(tot_len: u64, proto: u8) -> Leaving {
        Leaving((tot_len << 8) | proto as u64)
    }
    fn tot_len(self) -> u64 {
        self.0 >> 8
    }
    fn proto(self) -> u8 {
        self.0 as u8
    }
}

/// Not inlined: the route query gets a stack frame of its own.
#[inline(never)]
fn lookup_and_cache(
    ctx: &XdpContext,
    chosen: &Chosen,
    src: &[u32; 4],
    leaving: Leaving,
) -> Result<NextHop, NoRoute> {
    let q = RouteQuery {
        src: *src,
        dst: chosen.be.addr,
        tot_len: leaving.tot_len(),
        family: chosen.be.family,
        proto: leaving.proto(),
    };
    let hop = route(ctx, &q)?;
    if let Some(slot) = XLB_NEXTHOP.get_ptr_mut(chosen.id) {
        unsafe { *slot = hop };
    }
    Ok(hop)
}

/// Backend -> client reply of a NAT flow: put the VIP back as the source
/// and send it the way the client's packets came in.
#[inline(never)]
pub fn to_client(ctx: &XdpContext, pkt: &Pkt, entry: &Flow) -> u32 {
    let (vip_addr, vip_port, vip_id, id, hop) = (
        entry.vip_addr,
        entry.vip_port,
        entry.vip_id,
        entry.backend_id,
        entry.to_client,
    );
    if rewrite(ctx, pkt, End::Source, &vip_addr, vip_port).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    count(Stat::NatReverse);
    reply_out(ctx, pkt, vip_id, id, &hop)
}

/// An ICMP error a NAT backend sent about the client's packet (the NAT in
/// `s.nat_to`): from the VIP, quoting the packet as the client sent it,
/// the way replies go.
#[inline(never)]
pub fn icmp_to_client(ctx: &XdpContext, s: &Scratch, entry: &Flow) -> u32 {
    if rewrite_error(ctx, &s.pkt, &s.icmp, &s.nat_to).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    count(Stat::IcmpToClient);
    let hop = entry.to_client;
    reply_out(ctx, &s.pkt, entry.vip_id, entry.backend_id, &hop)
}

/// Send a packet of a NAT flow back to its client by the hop the client's
/// packets came in by (recorded with the flow: always an interface).
#[inline(always)]
fn reply_out(ctx: &XdpContext, pkt: &Pkt, vip_id: u32, id: u32, hop: &NextHop) -> u32 {
    count_flow(vip_id, id, pkt.l3_off as u64 + pkt.l3_len);
    send(ctx, hop, pkt.vlan)
}

/// The DSR outer source: the configured prefix with host bits from the
/// flow hash, so the backend's receive hashing spreads flows and keeps
/// each flow (and ICMP errors about it) on one queue.
#[inline(always)]
fn dsr_source(key: &FlowKey, family: u8) -> [u32; 4] {
    let Some(s) = XLB_SETTINGS.get(0) else {
        return [0; 4];
    };
    let h = encap_source_bits(&key.src, key.sport, key.dport);
    if family == AF_INET {
        let host = h & s.dsr_source_v4_host_mask;
        [(u32::from_be(s.dsr_source_v4) | host).to_be(), 0, 0, 0]
    } else {
        let mut a = s.dsr_source_v6;
        a[3] = ((u32::from_be(a[3]) & 0xffff_0000) | (h & 0xffff)).to_be();
        a
    }
}
