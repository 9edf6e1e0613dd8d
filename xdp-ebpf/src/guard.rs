//! SYN flood guard (Katran's rule): above a rate of new flows per CPU, new
//! flows are still forwarded by Maglev, which every node computes alike,
//! but no longer fill the connection table.

use aya_ebpf::helpers::bpf_ktime_get_ns;

use crate::maps::{XLB_FLOOD, XLB_SETTINGS};

const SECOND_NS: u64 = 1_000_000_000;

/// Whether this new flow may take a connection-table entry.
#[inline(always)]
pub fn may_remember() -> bool {
    let limit = match XLB_SETTINGS.get(0) {
        Some(s) => s.flood_new_flows_per_sec,
        None => 0,
    };
    if limit == 0 {
        return true;
    }
    let Some(w) = XLB_FLOOD.get_ptr_mut(0) else {
        return true;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    unsafe {
        if now.wrapping_sub((*w).window_start_ns) >= SECOND_NS {
            (*w).window_start_ns = now;
            (*w).new_flows = 0;
        }
        (*w).new_flows += 1;
        (*w).new_flows <= limit
    }
}
