//! Sending a packet on: new MAC addresses, then XDP_TX (same interface) or
//! redirect. The next hop comes from a cache when the caller has one, else
//! from the kernel FIB (`bpf_fib_lookup`).

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_fib_lookup as FibParams, xdp_action,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use xlb_common::{AF_INET, NextHop, Stat};

use crate::{headers::EthHdr, packet::ptr_at, stats::count};

const KERNEL_AF_INET: u8 = 2;
const KERNEL_AF_INET6: u8 = 10;

/// Write the MACs and send out of `hop.ifindex`. A VLAN-tagged frame keeps
/// its tags and may only leave by the interface it came in on.
#[inline(always)]
pub fn send(ctx: &XdpContext, hop: &NextHop, tagged: bool) -> u32 {
    let out_same = hop.ifindex == ctx.ingress_ifindex() as u32;
    if tagged && !out_same {
        // Decided before the MACs change: the kernel must get the frame
        // still addressed to this host.
        count(Stat::PassNoRoute);
        return xdp_action::XDP_PASS;
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    unsafe {
        (*eth).dst = hop.dmac;
        (*eth).src = hop.smac;
    }
    if out_same {
        return xdp_action::XDP_TX;
    }
    unsafe { bpf_redirect(hop.ifindex, 0) as u32 }
}

/// Why a route lookup gave no next hop.
pub enum NoRoute {
    /// The kernel must handle the packet: no neighbour entry yet (the stack
    /// resolves it and forwards) or no route (the stack answers with ICMP).
    Pass,
    /// `tot_len` exceeds the path MTU, which is given.
    TooBig(u16),
}

/// What to route: a packet of `tot_len` bytes from `src` to `dst`.
pub struct RouteQuery {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub tot_len: u64,
    pub family: u8,
    pub proto: u8,
}

/// Route lookup. Not inlined: its 64-byte parameter block gets a stack
/// frame of its own (the BPF stack is 512 bytes).
#[inline(never)]
pub fn route(ctx: &XdpContext, q: &RouteQuery) -> Result<NextHop, NoRoute> {
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.l4_protocol = q.proto;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    fib.__bindgen_anon_1.tot_len = q.tot_len as u16;
    if q.family == AF_INET {
        fib.family = KERNEL_AF_INET;
        fib.__bindgen_anon_3.ipv4_src = q.src[0];
        fib.__bindgen_anon_4.ipv4_dst = q.dst[0];
    } else {
        fib.family = KERNEL_AF_INET6;
        fib.__bindgen_anon_3.ipv6_src = q.src;
        fib.__bindgen_anon_4.ipv6_dst = q.dst;
    }
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
            mtu: unsafe { fib.__bindgen_anon_1.mtu_result },
            pad: 0,
        });
    }
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        return Err(NoRoute::TooBig(unsafe { fib.__bindgen_anon_1.mtu_result }));
    }
    count(if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        Stat::PassNoNeigh
    } else {
        Stat::PassNoRoute
    });
    Err(NoRoute::Pass)
}
