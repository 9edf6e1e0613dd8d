//! Benchmark harness. BPF_PROG_TEST_RUN reuses one buffer across repeats,
//! so a program that rewrites the packet would see its own output from the
//! second iteration on. This program restores the template packet every
//! iteration (optionally giving each one a new source port and address, so
//! every iteration is a new flow) and tail-calls the program under test.
//! The bench subtracts this harness's own cost, measured in the same run.

use aya_ebpf::{
    bindings::xdp_action,
    macros::map,
    maps::{Array, ProgramArray},
    programs::XdpContext,
};
use xlb_common::{BENCH_FRAME_LEN, BenchConfig};

use crate::packet::ptr_at;

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
    let (Some(cfg), Some(frame)) = (
        XLB_BENCH_CFG.get(0),
        ptr_at::<[u8; BENCH_FRAME_LEN]>(ctx, 0),
    ) else {
        return xdp_action::XDP_ABORTED;
    };
    unsafe { *frame = cfg.frame };
    if cfg.new_flow_each_run != 0 {
        if let Some(seq) = XLB_BENCH_SEQ.get_ptr_mut(0) {
            unsafe {
                *seq = (*seq).wrapping_add(1);
                let s = *seq;
                // Source port (TCP/UDP at 14 + 20) and the source address's
                // last two bytes: a fresh 5-tuple per iteration. The high
                // bit keeps it apart from the template's own flow.
                (*frame)[34] = (s >> 8) as u8;
                (*frame)[35] = s as u8;
                (*frame)[28] = 0x80 | (s >> 24) as u8;
                (*frame)[29] = (s >> 16) as u8;
            }
        }
    }
    unsafe {
        let _ = XLB_BENCH_JUMP.tail_call(ctx, 0);
    }
    xdp_action::XDP_ABORTED
}
