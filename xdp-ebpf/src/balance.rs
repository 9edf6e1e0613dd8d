//! The L4 decision for one packet: connection table first (one lookup
//! serves both directions of an established flow), then the VIP: syslog
//! round robin, QUIC server id, or Maglev; NAT or DSR on the way out.
//!
//! Odd packets (README, "Packet handling rules"): IP fragments of VIP
//! traffic go by Maglev over addresses only (no ports, no table entry) via
//! the VIP's port-0 entry, so every fragment of a datagram reaches the same
//! backend; ICMP errors about a flow follow the flow to its backend.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_ns, programs::XdpContext};
use xlb_common::{
    BACKEND_DRAIN, BACKEND_UNUSED, BACKEND_UP, Backend, FLOW_TO_BACKEND, FLOW_TO_CLIENT,
    FORWARD_DSR, Flow, FlowKey, NO_BACKEND, PROTO_UDP, STEER_QUIC, STEER_SYSLOG, Stat, VipInfo,
    VipKey, hash::flow_hash,
};

use crate::{
    egress::{dsr_out, forward_to, icmp_to_client, nat_out, to_client},
    flows::remember,
    guard::may_remember,
    headers::{PROTO_ICMP, PROTO_ICMPV6},
    icmp::{NatTo, error_about, rewrite_error},
    maps::{Scratch, XLB_BACKENDS, XLB_FLOWS, XLB_RING, XLB_SCRATCH, XLB_VIPS, ring_size},
    nat::End,
    parse::{Fragment, Parsed, Pkt, parse},
    stats::{count, count_flow, drop},
    steer::{quic_server, syslog_next},
};

const NS_PER_MS: u64 = 1_000_000;

/// The backend a packet goes to.
#[derive(Clone, Copy)]
pub struct Chosen {
    pub id: u32,
    pub be: Backend,
}

/// The VIP side of a decision.
#[derive(Clone, Copy)]
pub struct Via {
    pub vip_id: u32,
    pub forward: u8,
    /// Look the route up again (new flows), so the cache follows changes.
    pub fresh_route: bool,
    /// NAT already done (ICMP errors): only send.
    pub already_rewritten: bool,
    /// An ICMP error about the flow in `Scratch::icmp`: DSR gives it that
    /// flow's outer source, not one of its own.
    pub icmp_error: bool,
}

/// What a decision step concluded: an action now, or send the packet to
/// the backend written into the scratch (`chosen`, `via`).
type Decision = Option<u32>;
const SEND: Decision = None;

#[inline(always)]
pub fn process(ctx: &XdpContext) -> u32 {
    let Some(scratch) = XLB_SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // Decisions go through per-CPU scratch memory, and the packet leaves
    // from here: the BPF stack (512 bytes over a whole call chain) cannot
    // hold a deciding frame and a sending frame on top of each other.
    let s = unsafe { &mut *scratch };
    match parse(ctx, &mut s.pkt) {
        Parsed::Pass => return xdp_action::XDP_PASS,
        Parsed::Drop(stat) => return drop(stat),
        Parsed::Packet => {}
    }
    let decision = if s.pkt.key.proto == PROTO_ICMP || s.pkt.key.proto == PROTO_ICMPV6 {
        icmp_error(ctx, s)
    } else if s.pkt.fragment != Fragment::No {
        fragment(ctx, s)
    } else {
        match established(ctx, s) {
            Some(SEND) => SEND,
            Some(action) => action,
            None => miss(ctx, s),
        }
    };
    if let Some(action) = decision {
        return action;
    }
    let (pkt, via, chosen) = (&s.pkt, &s.via, &s.chosen);
    if via.forward == FORWARD_DSR {
        // The outer source hashes the flow the packet is of (an ICMP
        // error: the one it quotes), so the backend's receive hashing
        // puts the error on the queue of the connection it is about.
        let flow = if via.icmp_error {
            &s.icmp.flow
        } else {
            &pkt.key
        };
        dsr_out(ctx, pkt, via, chosen, flow)
    } else if via.already_rewritten {
        forward_to(ctx, pkt, &pkt.key.src, chosen, via)
    } else {
        nat_out(ctx, pkt, via, chosen)
    }
}

/// The connection table: a reply of a NAT flow is sent here; a packet of
/// a live client flow gets its backend. None: no usable entry.
#[inline(always)]
fn established(ctx: &XdpContext, s: &mut Scratch) -> Option<Decision> {
    s.table_backend = NO_BACKEND;
    let entry = XLB_FLOWS.get_ptr_mut(&s.pkt.key)?;
    let entry = unsafe { &mut *entry };
    if entry.kind == FLOW_TO_CLIENT {
        return Some(Some(to_client(ctx, &s.pkt, entry)));
    }
    if !still_fresh(&s.pkt, entry) {
        return None;
    }
    if entry.steering == STEER_QUIC {
        // The connection id decides first; the entry is the fallback.
        s.table_backend = entry.backend_id;
        return None;
    }
    // A backend that is gone or down: choose again.
    s.chosen = live_backend(entry.backend_id, true)?;
    count(Stat::FlowHit);
    s.via = Via {
        vip_id: entry.vip_id,
        forward: entry.forward,
        fresh_route: false,
        already_rewritten: false,
        icmp_error: false,
    };
    Some(SEND)
}

/// No (usable) connection-table entry: find the VIP and choose a backend.
/// Not inlined, like the other paths off the hit path: each gets its own
/// stack frame instead of all of them sharing (and bloating) the entry's.
#[inline(never)]
fn miss(ctx: &XdpContext, s: &mut Scratch) -> Decision {
    let pkt = &s.pkt;
    let vip = VipKey {
        addr: pkt.key.dst,
        port: pkt.key.dport,
        proto: pkt.key.proto,
        family: pkt.key.family,
    };
    let Some(info) = (unsafe { XLB_VIPS.get(&vip) }) else {
        count(Stat::PassNotVip);
        return Some(xdp_action::XDP_PASS);
    };
    if pkt.vlan {
        count(Stat::Vlan);
    }
    let info = *info;
    s.via = via_new(&info);
    if pkt.key.proto == PROTO_UDP && info.steering == STEER_SYSLOG {
        // Every datagram to the next live backend; nothing remembered.
        let Some(chosen) = live_backend(syslog_next(info.vip_id), false) else {
            return Some(drop(Stat::DropNoBackend));
        };
        s.chosen = chosen;
        // The route cache is per backend: no lookup for every datagram.
        s.via.fresh_route = false;
        return SEND;
    }
    if pkt.key.proto == PROTO_UDP && info.steering == STEER_QUIC {
        if let Some(id) = quic_server(ctx, pkt, &info) {
            if let Some(chosen) = live_backend(id, true) {
                count(Stat::QuicCidHit);
                let moved = chosen.id != s.table_backend;
                s.chosen = chosen;
                // A flow staying on its backend reuses the cached route,
                // as a table hit does.
                s.via.fresh_route = moved;
                if moved {
                    new_flow(ctx, s, &info, true);
                }
                return SEND;
            }
            count(Stat::QuicCidMiss);
        }
        if let Some(chosen) = live_backend(s.table_backend, true) {
            count(Stat::FlowHit);
            s.chosen = chosen;
            s.via.fresh_route = false;
            return SEND;
        }
    }
    count(Stat::FlowMiss);
    let Some(chosen) = live_backend(maglev_pick(&pkt.key, info.vip_id), false) else {
        return Some(drop(Stat::DropNoBackend));
    };
    s.chosen = chosen;
    new_flow(ctx, s, &info, true);
    SEND
}

#[inline(always)]
fn via_new(info: &VipInfo) -> Via {
    Via {
        vip_id: info.vip_id,
        forward: info.forward,
        fresh_route: true,
        already_rewritten: false,
        icmp_error: false,
    }
}

/// A UDP flow with an idle timeout is kept only while packets keep coming.
#[inline(always)]
fn still_fresh(pkt: &Pkt, entry: &mut Flow) -> bool {
    if pkt.key.proto != PROTO_UDP || entry.idle_timeout_ms == 0 {
        return true;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(entry.last_seen_ns) > entry.idle_timeout_ms as u64 * NS_PER_MS {
        return false;
    }
    entry.last_seen_ns = now;
    true
}

/// Remember a new flow: its client -> VIP entry if `wants_entry` (not
/// for fragments, which go by addresses) and the flood guard allows it
/// (Maglev gives the same answer next time anyway), and for NAT the way
/// back, guard or not (replies need it). Every new flow counts towards the
/// guard; a failed insert is counted.
#[inline(always)]
fn new_flow(ctx: &XdpContext, s: &Scratch, info: &VipInfo, wants_entry: bool) {
    let nat = info.forward != FORWARD_DSR;
    let allowed = may_remember();
    if !allowed {
        count(Stat::FloodBypass);
    }
    let forward = wants_entry && allowed;
    if (forward || nat) && remember(ctx, &s.pkt, info, &s.chosen, forward) != 0 {
        count(Stat::FlowInsertFailed);
    }
}

/// IP fragments: Maglev over (source, destination, protocol) via the VIP
/// address's port-0 entry. A NAT first fragment also gets its reverse entry
/// so replies to it are translated.
#[inline(never)]
fn fragment(ctx: &XdpContext, s: &mut Scratch) -> Decision {
    let pkt = &s.pkt;
    let vip = VipKey {
        addr: pkt.key.dst,
        port: 0,
        proto: pkt.key.proto,
        family: pkt.key.family,
    };
    let Some(info) = (unsafe { XLB_VIPS.get(&vip) }) else {
        return Some(xdp_action::XDP_PASS);
    };
    let info = *info;
    count(Stat::Fragment);
    let portless = FlowKey {
        sport: 0,
        dport: 0,
        ..pkt.key
    };
    let Some(chosen) = live_backend(maglev_pick(&portless, info.vip_id), false) else {
        return Some(drop(Stat::DropNoBackend));
    };
    s.chosen = chosen;
    if s.pkt.fragment == Fragment::First && info.forward != FORWARD_DSR {
        // A new NAT flow as far as the guard and the table go: only the
        // way back is written.
        new_flow(ctx, s, &info, false);
    }
    s.via = Via {
        fresh_route: false,
        ..via_new(&info)
    };
    SEND
}

/// An ICMP error about a VIP flow goes to the flow's backend (DSR: as is,
/// encapsulated; NAT: with the VIP rewritten to the backend throughout);
/// one a NAT backend sent about the flow goes to the client, from the VIP.
/// Decides and (for NAT) rewrites; the caller sends, so this frame is not
/// on the stack while the packet goes out.
#[inline(never)]
fn icmp_error(ctx: &XdpContext, s: &mut Scratch) -> Option<u32> {
    let pkt = &s.pkt;
    if !error_about(ctx, pkt, &mut s.icmp) {
        return Some(xdp_action::XDP_PASS);
    }
    let Some(entry) = (unsafe { XLB_FLOWS.get(&s.icmp.flow) }) else {
        return Some(xdp_action::XDP_PASS);
    };
    if entry.kind == FLOW_TO_CLIENT {
        // A NAT backend's error about the client's packet (port
        // unreachable, ...): the client must see it from the VIP.
        s.nat_to = NatTo {
            end: End::Source,
            addr: entry.vip_addr,
            port: entry.vip_port,
        };
        return Some(icmp_to_client(ctx, s, entry));
    }
    if entry.kind != FLOW_TO_BACKEND {
        return Some(xdp_action::XDP_PASS);
    }
    s.via = Via {
        vip_id: entry.vip_id,
        forward: entry.forward,
        fresh_route: false,
        already_rewritten: entry.forward != FORWARD_DSR,
        icmp_error: true,
    };
    let id = entry.backend_id;
    // (`?` would mean "send" here: a decision of None is SEND.)
    let Some(be) = XLB_BACKENDS.get(id).filter(|b| b.state != BACKEND_UNUSED) else {
        return Some(xdp_action::XDP_PASS);
    };
    s.chosen = Chosen { id, be: *be };
    count(Stat::IcmpToBackend);
    if s.via.forward != FORWARD_DSR {
        s.nat_to = NatTo {
            end: End::Destination,
            addr: s.chosen.be.addr,
            port: s.chosen.be.port,
        };
        if rewrite_error(ctx, pkt, &s.icmp, &s.nat_to).is_none() {
            return Some(xdp_action::XDP_ABORTED);
        }
        count_flow(s.via.vip_id, id, pkt.l3_off as u64 + pkt.l3_len);
    }
    None
}

/// The backend with this id if it may take packets. An established flow may
/// stay on a draining backend; a new one only goes to an UP one (the ring
/// holds only those, the check guards against a racing update).
#[inline(always)]
fn live_backend(id: u32, established: bool) -> Option<Chosen> {
    if id == NO_BACKEND {
        return None;
    }
    let be = XLB_BACKENDS.get(id)?;
    let ok = be.state == BACKEND_UP || (established && be.state == BACKEND_DRAIN);
    if !ok {
        return None;
    }
    Some(Chosen { id, be: *be })
}

#[inline(always)]
fn maglev_pick(key: &FlowKey, vip_id: u32) -> u32 {
    let size = ring_size();
    if size == 0 {
        return NO_BACKEND;
    }
    let h = flow_hash(&key.src, &key.dst, key.sport, key.dport, key.proto);
    let slot = vip_id.wrapping_mul(size).wrapping_add(h % size);
    match XLB_RING.get(slot) {
        Some(id) => *id,
        None => NO_BACKEND,
    }
}
