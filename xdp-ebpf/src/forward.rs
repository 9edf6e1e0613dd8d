//! Sending a rewritten packet on: new MAC addresses, then XDP_TX (same
//! interface) or redirect. The next hop comes from a cache when the caller
//! has one, else from the kernel FIB (`bpf_fib_lookup`).

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
        xdp_action,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use xlb_common::{NextHop, Stat};

use crate::{
    headers::{ETH_HLEN, EthHdr, Ipv4Hdr},
    packet::ptr_at,
    stats::count,
};

const AF_INET: u8 = 2;

/// Write the MACs and send out of `hop.ifindex`.
#[inline(always)]
pub fn send(ctx: &XdpContext, hop: &NextHop) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    unsafe {
        (*eth).dst = hop.dmac;
        (*eth).src = hop.smac;
    }
    if hop.ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    unsafe { bpf_redirect(hop.ifindex, 0) as u32 }
}

/// Route the (already rewritten) IPv4 packet. `Err(action)` when the kernel
/// must handle it: no neighbour entry yet (the stack resolves it and
/// forwards) or no route (the stack answers with ICMP).
#[inline(always)]
pub fn route_v4(ctx: &XdpContext) -> Result<NextHop, u32> {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return Err(xdp_action::XDP_ABORTED);
    };
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    unsafe {
        fib.family = AF_INET;
        fib.l4_protocol = (*ip).proto;
        fib.__bindgen_anon_1.tot_len = u16::from_be((*ip).tot_len);
        fib.__bindgen_anon_2.tos = (*ip).tos;
        fib.__bindgen_anon_3.ipv4_src = (*ip).saddr;
        fib.__bindgen_anon_4.ipv4_dst = (*ip).daddr;
    }
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            &mut fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return Ok(NextHop {
            ifindex: fib.ifindex,
            dmac: fib.dmac,
            smac: fib.smac,
        });
    }
    count(if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        Stat::PassNoNeigh
    } else {
        Stat::PassNoRoute
    });
    Err(xdp_action::XDP_PASS)
}
