//! xlb's XDP programs. `xlb_l4` is the L4 load balancer; `xlb_pass` is a
//! pass-through program for veth peers in the lab (XDP_TX on veth needs an
//! XDP program on the peer) and the floor the benchmark measures against;
//! `xlb_bench` is the benchmark harness.
#![no_std]
#![no_main]
// Map keys go by reference: a key moved by value is a copy on the 512-byte
// BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]
// Indexed loops over fixed arrays: the verifier follows them where
// iterator chains can hide the bounds.
#![allow(clippy::needless_range_loop)]

mod balance;
mod bench;
mod decap;
mod egress;
mod encap;
mod flows;
mod forward;
mod guard;
mod headers;
mod icmp;
mod maps;
mod nat;
mod packet;
mod parse;
mod stats;
mod steer;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn xlb_l4(ctx: XdpContext) -> u32 {
    balance::process(&ctx)
}

#[xdp]
pub fn xlb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// DSR backends (`xlb decap`): strips the IPIP / IP6IP6 header of packets
/// for a local VIP and passes the inner packet to the stack.
#[xdp]
pub fn xlb_decap(ctx: XdpContext) -> u32 {
    decap::process(&ctx)
}

/// Benchmark harness: restores the template frame, then tail-calls the
/// program under test.
#[xdp]
pub fn xlb_bench(ctx: XdpContext) -> u32 {
    bench::run(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
