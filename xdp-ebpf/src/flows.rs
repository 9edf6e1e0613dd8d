//! Remembering a new flow in the connection table: the client -> VIP entry
//! and, for NAT, the backend -> client entry its replies need.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use xlb_common::{
    FLOW_TO_BACKEND, FLOW_TO_CLIENT, FORWARD_DSR, Flow, FlowKey, NextHop, PROTO_UDP, VipInfo,
};

use crate::{balance::Chosen, headers::EthHdr, maps::XLB_FLOWS, packet::ptr_at, parse::Pkt};

/// Insert the flow: the client -> VIP entry (if `forward`) and, for NAT,
/// the backend -> client entry replies need. Not inlined: the two 64-byte
/// values get a stack frame of their own. Returns 0 or the insert error.
#[inline(never)]
pub fn remember(
    ctx: &XdpContext,
    pkt: &Pkt,
    info: &VipInfo,
    chosen: &Chosen,
    forward: bool,
) -> i32 {
    match insert_flow(ctx, pkt, info, chosen, forward) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

#[inline(always)]
fn insert_flow(
    ctx: &XdpContext,
    pkt: &Pkt,
    info: &VipInfo,
    chosen: &Chosen,
    forward: bool,
) -> Result<(), i32> {
    let (id, be) = (chosen.id, &chosen.be);
    let now = if pkt.key.proto == PROTO_UDP && info.udp_idle_timeout_ms != 0 {
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };
    if forward {
        let entry = Flow {
            kind: FLOW_TO_BACKEND,
            forward: info.forward,
            backend_id: id,
            vip_id: info.vip_id,
            idle_timeout_ms: if pkt.key.proto == PROTO_UDP {
                info.udp_idle_timeout_ms
            } else {
                0
            },
            steering: info.steering,
            last_seen_ns: now,
            ..Flow::default()
        };
        XLB_FLOWS.insert(pkt.key, &entry, 0)?;
    }
    if info.forward == FORWARD_DSR {
        return Ok(());
    }
    // The way back to the client: the interface and MACs this packet came
    // with (read before any rewrite).
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(-1)?;
    let to_client = unsafe {
        NextHop {
            ifindex: ctx.ingress_ifindex() as u32,
            dmac: (*eth).src,
            smac: (*eth).dst,
            mtu: 0,
            pad: 0,
        }
    };
    let reply = FlowKey {
        src: be.addr,
        dst: pkt.key.src,
        sport: be.port,
        dport: pkt.key.sport,
        proto: pkt.key.proto,
        family: pkt.key.family,
        pad: [0; 2],
    };
    let back = Flow {
        kind: FLOW_TO_CLIENT,
        forward: info.forward,
        vip_port: pkt.key.dport,
        backend_id: id,
        vip_id: info.vip_id,
        vip_addr: pkt.key.dst,
        to_client,
        ..Flow::default()
    };
    XLB_FLOWS.insert(&reply, &back, 0)
}
