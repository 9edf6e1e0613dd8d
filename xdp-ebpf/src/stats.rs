//! Counter updates (per CPU, so plain adds are race-free).

use aya_ebpf::bindings::xdp_action;
use xlb_common::Stat;

use crate::maps::{XLB_BE_STATS, XLB_STATS, XLB_VIP_STATS};

#[inline(always)]
pub fn count(stat: Stat) {
    if let Some(c) = XLB_STATS.get_ptr_mut(stat as u32) {
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn count_flow(vip_id: u32, backend_id: u32, bytes: u64) {
    if let Some(c) = XLB_VIP_STATS.get_ptr_mut(vip_id) {
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
    if let Some(c) = XLB_BE_STATS.get_ptr_mut(backend_id) {
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}

/// Count why a packet is dropped, and drop it.
#[inline(always)]
pub fn drop(stat: Stat) -> u32 {
    count(stat);
    xdp_action::XDP_DROP
}
