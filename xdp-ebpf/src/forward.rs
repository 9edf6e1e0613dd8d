//! Sending a rewritten packet on: route lookup in the kernel FIB, new MAC
//! addresses, then XDP_TX (same interface) or redirect.

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
        xdp_action,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use xlb_common::Stat;

use crate::{
    headers::{ETH_HLEN, EthHdr, Ipv4Hdr},
    packet::ptr_at,
    stats::count,
};

const AF_INET: u8 = 2;

/// Route the (already rewritten) IPv4 packet and return the XDP action.
/// When the kernel has no neighbour entry yet, or no route, the packet goes
/// to the stack, which resolves the neighbour (or answers with ICMP).
#[inline(always)]
pub fn forward_v4(ctx: &XdpContext) -> u32 {
    let (Some(eth), Some(ip)) = (
        ptr_at::<EthHdr>(ctx, 0),
        ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN),
    ) else {
        return xdp_action::XDP_ABORTED;
    };
    let ingress = ctx.ingress_ifindex() as u32;
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    unsafe {
        fib.family = AF_INET;
        fib.l4_protocol = (*ip).proto;
        fib.__bindgen_anon_1.tot_len = u16::from_be((*ip).tot_len);
        fib.__bindgen_anon_2.tos = (*ip).tos;
        fib.__bindgen_anon_3.ipv4_src = (*ip).saddr;
        fib.__bindgen_anon_4.ipv4_dst = (*ip).daddr;
    }
    fib.ifindex = ingress;
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            &mut fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        unsafe {
            (*eth).dst = fib.dmac;
            (*eth).src = fib.smac;
        }
        if fib.ifindex == ingress {
            return xdp_action::XDP_TX;
        }
        return unsafe { bpf_redirect(fib.ifindex, 0) } as u32;
    }
    count(if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        Stat::PassNoNeigh
    } else {
        Stat::PassNoRoute
    });
    xdp_action::XDP_PASS
}
