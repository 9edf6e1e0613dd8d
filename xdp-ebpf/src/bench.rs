//! Benchmark harness. BPF_PROG_TEST_RUN reuses one buffer across repeats,
//! so a program that rewrites the packet would see its own output from the
//! second iteration on. This program restores the template frame every
//! iteration (undoing any encapsulation the last run added, and optionally
//! giving each run a new source port and address, so every run is a new
//! flow) and tail-calls the program under test. The bench subtracts this
//! harness's own cost, measured in the same run.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_xdp_adjust_head,
    macros::map,
    maps::{Array, ProgramArray},
    programs::XdpContext,
};
use xlb_common::{BENCH_FRAME_LEN, BenchConfig};

use crate::packet::{len, ptr_at};

#[map]
static XLB_BENCH_CFG: Array<BenchConfig> = Array::with_max_entries(1, 0);

/// Shared, not per CPU: rounds may run on different CPUs and must not
/// repeat each other's flows. The bench is single-threaded.
#[map]
static XLB_BENCH_SEQ: Array<u32> = Array::with_max_entries(1, 0);

/// Slot 0: the program under test.
#[map]
static XLB_BENCH_JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    // A DSR run left the frame longer at the front: give the bytes back.
    let grown = len(ctx) as i32 - BENCH_FRAME_LEN as i32;
    if grown > 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, grown) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    let (Some(cfg), Some(frame)) = (
        XLB_BENCH_CFG.get(0),
        ptr_at::<[u8; BENCH_FRAME_LEN]>(ctx, 0),
    ) else {
        return xdp_action::XDP_ABORTED;
    };
    unsafe { *frame = cfg.frame };
    if cfg.new_flow_each_run != 0 {
        let (a, p) = (cfg.src_addr_low_off as usize, cfg.src_port_off as usize);
        if let (Some(seq), Some(addr), Some(port)) = (
            XLB_BENCH_SEQ.get_ptr_mut(0),
            ptr_at::<[u8; 2]>(ctx, a),
            ptr_at::<[u8; 2]>(ctx, p),
        ) {
            unsafe {
                *seq = (*seq).wrapping_add(1);
                let s = *seq;
                // A fresh 5-tuple per run; the high bit keeps it apart from
                // the template's own flow.
                *port = [(s >> 8) as u8, s as u8];
                *addr = [0x80 | (s >> 24) as u8, (s >> 16) as u8];
            }
        }
    }
    unsafe {
        XLB_BENCH_JUMP.tail_call(ctx, 0);
    }
    xdp_action::XDP_ABORTED
}
