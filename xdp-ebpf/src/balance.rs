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
    AF_INET, BACKEND_DRAIN, BACKEND_UP, FlowEntry, FlowKey, NO_BACKEND, NatReverse, NextHop,
    PROTO_TCP, PROTO_UDP, Stat, VipKey, hash::flow_hash,
};

use crate::{
    forward::{route_v4, send},
    headers::{
        ETH_HLEN, ETH_P_IP, EthHdr, IP_MF_OFFSET_MASK, Ipv4Hdr, Ports, TCP_HLEN, UDP_HLEN,
    },
    maps::{XLB_BACKENDS, XLB_FLOWS, XLB_NAT_REV, XLB_NEXTHOP, XLB_RING, XLB_VIPS, ring_size},
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
    if version_ihl >> 4 != 4 || ihl < 20 || tot_len < ihl as u64 || ETH_HLEN as u64 + tot_len > len(ctx)
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
    let l4_len = if proto == PROTO_TCP { TCP_HLEN } else { UDP_HLEN };
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

    let flow = FlowKey {
        src: [saddr, 0, 0, 0],
        dst: [daddr, 0, 0, 0],
        sport,
        dport,
        proto,
        family: AF_INET,
        pad: [0; 2],
    };
    let vip = VipKey {
        addr: flow.dst,
        port: dport,
        proto,
        family: AF_INET,
    };
    if let Some(info) = unsafe { XLB_VIPS.get(&vip) } {
        return to_backend(ctx, &flow, info.vip_id, l4_off, tot_len);
    }
    if let Some(rev) = unsafe { XLB_NAT_REV.get(&flow) } {
        return to_client(ctx, rev, l4_off, proto, tot_len);
    }
    xdp_action::XDP_PASS
}

/// Client -> VIP: pick the backend (connection table, else Maglev), rewrite
/// the destination, forward. The route to a backend is looked up on new
/// flows and cached per backend; hits reuse it.
#[inline(always)]
fn to_backend(ctx: &XdpContext, flow: &FlowKey, vip_id: u32, l4_off: usize, tot_len: u64) -> u32 {
    let mut chosen = match unsafe { XLB_FLOWS.get(flow) } {
        Some(entry) => entry.backend_id,
        None => NO_BACKEND,
    };
    let mut backend = live_backend(chosen, true);
    let new_flow = backend.is_none();
    if new_flow {
        count(Stat::FlowMiss);
        chosen = maglev_pick(flow, vip_id);
        backend = live_backend(chosen, false);
    } else {
        count(Stat::FlowHit);
    }
    let Some(be) = backend else {
        return drop(Stat::DropNoBackend);
    };
    // The way back to the client: the interface and MACs this packet came
    // with, read before the rewrite.
    let to_client = if new_flow {
        let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
            return xdp_action::XDP_ABORTED;
        };
        unsafe {
            NextHop {
                ifindex: ctx.ingress_ifindex() as u32,
                dmac: (*eth).src,
                smac: (*eth).dst,
            }
        }
    } else {
        NextHop::default()
    };
    if rewrite_v4(ctx, l4_off, flow.proto, End::Destination, be.addr[0], be.port).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    if new_flow && remember(flow, vip_id, chosen, be, to_client).is_err() {
        count(Stat::FlowInsertFailed);
    }
    count_flow(vip_id, chosen, ETH_HLEN as u64 + tot_len);
    if !new_flow {
        if let Some(hop) = XLB_NEXTHOP.get(chosen) {
            if hop.ifindex != 0 {
                return send(ctx, hop);
            }
        }
    }
    match route_v4(ctx) {
        Ok(hop) => {
            if let Some(slot) = XLB_NEXTHOP.get_ptr_mut(chosen) {
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
fn to_client(ctx: &XdpContext, rev: &NatReverse, l4_off: usize, proto: u8, tot_len: u64) -> u32 {
    let (vip_addr, vip_port, vip_id, backend_id) =
        (rev.vip_addr[0], rev.vip_port, rev.vip_id, rev.backend_id);
    let hop = rev.to_client;
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
    addr: [u32; 4],
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
        addr: be.addr,
        port: be.port,
    })
}

#[inline(always)]
fn maglev_pick(flow: &FlowKey, vip_id: u32) -> u32 {
    let size = ring_size();
    if size == 0 {
        return NO_BACKEND;
    }
    let h = flow_hash(&flow.src, &flow.dst, flow.sport, flow.dport, flow.proto);
    let slot = vip_id.wrapping_mul(size).wrapping_add(h % size);
    match XLB_RING.get(slot) {
        Some(id) => *id,
        None => NO_BACKEND,
    }
}

/// Insert the flow and its reverse-NAT entry.
#[inline(always)]
fn remember(
    flow: &FlowKey,
    vip_id: u32,
    backend_id: u32,
    be: Target,
    to_client: NextHop,
) -> Result<(), i32> {
    XLB_FLOWS.insert(
        flow,
        &FlowEntry {
            backend_id,
            vip_id,
        },
        0,
    )?;
    let reply = FlowKey {
        src: be.addr,
        dst: flow.src,
        sport: be.port,
        dport: flow.sport,
        proto: flow.proto,
        family: flow.family,
        pad: [0; 2],
    };
    XLB_NAT_REV.insert(
        &reply,
        &NatReverse {
            vip_addr: flow.dst,
            vip_port: flow.dport,
            pad: [0; 2],
            vip_id,
            backend_id,
            to_client,
        },
        0,
    )
}

#[inline(always)]
fn drop(stat: Stat) -> u32 {
    count(stat);
    xdp_action::XDP_DROP
}
