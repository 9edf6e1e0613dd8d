//! The L4 decision for one packet: parse, VIP lookup, connection table,
//! Maglev, NAT both ways.
//!
//! Parsing rule (documented in the README): a packet that is not IPv4
//! TCP/UDP, or is an IP fragment, or is not for a VIP or a NAT flow, passes
//! to the kernel untouched. A malformed IPv4 header (shorter than 20 bytes,
//! version != 4, IHL < 5, total length beyond the frame) or a TCP/UDP
//! header cut short is dropped and counted: the kernel would drop it too.
//! IP options are carried along untouched; the L4 header is found by IHL.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use xlb_common::{
    BACKEND_DRAIN, BACKEND_UP, FLOW_TO_BACKEND, FLOW_TO_CLIENT, FlowKeyV4, FlowV4, NO_BACKEND,
    NextHop, PROTO_TCP, PROTO_UDP, Stat, VipKeyV4, hash::flow_hash_v4,
};

use crate::{
    forward::{route_v4, send},
    headers::{ETH_HLEN, ETH_P_IP, EthHdr, IP_MF_OFFSET_MASK, Ipv4Hdr, Ports, TCP_HLEN, UDP_HLEN},
    maps::{XLB_BACKENDS, XLB_FLOWS4, XLB_NEXTHOP, XLB_RING, XLB_VIPS4, ring_size},
    nat::{End, rewrite_v4},
    packet::{len, ptr_at},
    stats::{count, count_flow},
};

#[inline(always)]
pub fn process(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    if unsafe { (*eth).ether_type } != ETH_P_IP {
        return xdp_action::XDP_PASS;
    }
    process_v4(ctx)
}

#[inline(always)]
fn process_v4(ctx: &XdpContext) -> u32 {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return drop(Stat::DropMalformedIp);
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
        || ihl < 20
        || tot_len < ihl as u64
        || ETH_HLEN as u64 + tot_len > len(ctx)
    {
        return drop(Stat::DropMalformedIp);
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return xdp_action::XDP_PASS;
    }
    if frag_off & IP_MF_OFFSET_MASK != 0 {
        count(Stat::PassFragment);
        return xdp_action::XDP_PASS;
    }
    let l4_off = ETH_HLEN + ihl;
    let l4_len = if proto == PROTO_TCP {
        TCP_HLEN
    } else {
        UDP_HLEN
    };
    if tot_len < (ihl + l4_len) as u64 || ptr_at::<[u8; UDP_HLEN]>(ctx, l4_off).is_none() {
        return drop(Stat::DropMalformedL4);
    }
    if proto == PROTO_TCP && ptr_at::<[u8; TCP_HLEN]>(ctx, l4_off).is_none() {
        return drop(Stat::DropMalformedL4);
    }
    let Some(ports) = ptr_at::<Ports>(ctx, l4_off) else {
        return drop(Stat::DropMalformedL4);
    };
    let (sport, dport) = unsafe { ((*ports).sport, (*ports).dport) };

    let flow = FlowKeyV4 {
        src: saddr,
        dst: daddr,
        sport,
        dport,
        proto,
        pad: [0; 3],
    };
    // One lookup serves both directions of an established flow; only a
    // miss pays for the VIP lookup.
    if let Some(entry) = unsafe { XLB_FLOWS4.get(&flow) } {
        if entry.kind == FLOW_TO_CLIENT {
            return to_client(ctx, entry, l4_off, proto, tot_len);
        }
        if let Some(be) = live_backend(entry.backend_id, true) {
            count(Stat::FlowHit);
            return to_backend(
                ctx,
                &flow,
                entry.vip_id,
                entry.backend_id,
                be,
                false,
                l4_off,
                tot_len,
            );
        }
        // Its backend is gone or down: choose again below.
    }
    let vip = VipKeyV4 {
        addr: daddr,
        port: dport,
        proto,
        pad: 0,
    };
    let Some(info) = (unsafe { XLB_VIPS4.get(&vip) }) else {
        return xdp_action::XDP_PASS;
    };
    let vip_id = info.vip_id;
    count(Stat::FlowMiss);
    let backend_id = maglev_pick(&flow, vip_id);
    let Some(be) = live_backend(backend_id, false) else {
        return drop(Stat::DropNoBackend);
    };
    to_backend(ctx, &flow, vip_id, backend_id, be, true, l4_off, tot_len)
}

/// Client -> VIP: rewrite the destination to the backend and forward. A
/// new flow is remembered (both directions) and looks the route up; the
/// route to each backend is cached, so established flows skip the FIB.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn to_backend(
    ctx: &XdpContext,
    flow: &FlowKeyV4,
    vip_id: u32,
    backend_id: u32,
    be: Target,
    new_flow: bool,
    l4_off: usize,
    tot_len: u64,
) -> u32 {
    if new_flow {
        // The way back to the client: the interface and MACs this packet
        // came with, read before the rewrite.
        let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
            return xdp_action::XDP_ABORTED;
        };
        let to_client = unsafe {
            NextHop {
                ifindex: ctx.ingress_ifindex() as u32,
                dmac: (*eth).src,
                smac: (*eth).dst,
            }
        };
        if remember(flow, vip_id, backend_id, be, to_client).is_err() {
            count(Stat::FlowInsertFailed);
        }
    }
    if rewrite_v4(ctx, l4_off, flow.proto, End::Destination, be.addr, be.port).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    count_flow(vip_id, backend_id, ETH_HLEN as u64 + tot_len);
    if !new_flow {
        if let Some(hop) = XLB_NEXTHOP.get(backend_id) {
            if hop.ifindex != 0 {
                return send(ctx, hop);
            }
        }
    }
    match route_v4(ctx) {
        Ok(hop) => {
            if let Some(slot) = XLB_NEXTHOP.get_ptr_mut(backend_id) {
                unsafe { *slot = hop };
            }
            send(ctx, &hop)
        }
        Err(action) => action,
    }
}

/// Backend -> client reply of a NAT flow: put the VIP back as the source
/// and send it the way the client's packets came in.
#[inline(always)]
fn to_client(ctx: &XdpContext, entry: &FlowV4, l4_off: usize, proto: u8, tot_len: u64) -> u32 {
    let (vip_addr, vip_port, vip_id, backend_id) = (
        entry.vip_addr,
        entry.vip_port,
        entry.vip_id,
        entry.backend_id,
    );
    let hop = entry.to_client;
    if rewrite_v4(ctx, l4_off, proto, End::Source, vip_addr, vip_port).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    count(Stat::NatReverse);
    count_flow(vip_id, backend_id, ETH_HLEN as u64 + tot_len);
    if hop.ifindex != 0 {
        return send(ctx, &hop);
    }
    match route_v4(ctx) {
        Ok(hop) => send(ctx, &hop),
        Err(action) => action,
    }
}

#[derive(Clone, Copy)]
struct Target {
    addr: u32,
    port: u16,
}

/// The backend with this id if it may take packets. An established flow may
/// stay on a draining backend; a new one only goes to an UP one (the ring
/// holds only those, the check guards against a racing update).
#[inline(always)]
fn live_backend(id: u32, established: bool) -> Option<Target> {
    if id == NO_BACKEND {
        return None;
    }
    let be = XLB_BACKENDS.get(id)?;
    let ok = be.state == BACKEND_UP || (established && be.state == BACKEND_DRAIN);
    if !ok {
        return None;
    }
    Some(Target {
        addr: be.addr[0],
        port: be.port,
    })
}

#[inline(always)]
fn maglev_pick(flow: &FlowKeyV4, vip_id: u32) -> u32 {
    let size = ring_size();
    if size == 0 {
        return NO_BACKEND;
    }
    let h = flow_hash_v4(flow.src, flow.dst, flow.sport, flow.dport, flow.proto);
    let slot = vip_id.wrapping_mul(size).wrapping_add(h % size);
    match XLB_RING.get(slot) {
        Some(id) => *id,
        None => NO_BACKEND,
    }
}

/// Insert both directions of the flow.
#[inline(always)]
fn remember(
    flow: &FlowKeyV4,
    vip_id: u32,
    backend_id: u32,
    be: Target,
    to_client: NextHop,
) -> Result<(), i32> {
    let forward = FlowV4 {
        kind: FLOW_TO_BACKEND,
        backend_id,
        vip_id,
        ..FlowV4::default()
    };
    XLB_FLOWS4.insert(flow, &forward, 0)?;
    let reply = FlowKeyV4 {
        src: be.addr,
        dst: flow.src,
        sport: be.port,
        dport: flow.sport,
        proto: flow.proto,
        pad: [0; 3],
    };
    let back = FlowV4 {
        kind: FLOW_TO_CLIENT,
        backend_id,
        vip_id,
        vip_addr: flow.dst,
        vip_port: flow.dport,
        pad: [0; 2],
        to_client,
    };
    XLB_FLOWS4.insert(&reply, &back, 0)
}

#[inline(always)]
fn drop(stat: Stat) -> u32 {
    count(stat);
    xdp_action::XDP_DROP
}
