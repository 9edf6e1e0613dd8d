//! The maps. Only the daemon writes VIPS, BACKENDS and RING; the data path
//! writes the connection tables and counters.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use xlb_common::{
    BPF_F_NO_COMMON_LRU, Backend, Counters, DEFAULT_RING_SIZE, FlowKeyV4, FlowV4, MAX_BACKENDS,
    MAX_FLOWS, MAX_VIPS, NextHop, STAT_COUNT, VipInfo, VipKeyV4,
};

#[map]
pub static XLB_VIPS4: HashMap<VipKeyV4, VipInfo> = HashMap::with_max_entries(MAX_VIPS, 0);

#[map]
pub static XLB_BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Resized by the loader to `MAX_VIPS * ring_size`.
#[map]
pub static XLB_RING: Array<u32> = Array::with_max_entries(MAX_VIPS * DEFAULT_RING_SIZE, 0);

#[map]
pub static XLB_FLOWS4: LruHashMap<FlowKeyV4, FlowV4> =
    LruHashMap::with_max_entries(MAX_FLOWS, BPF_F_NO_COMMON_LRU);

#[map]
pub static XLB_NEXTHOP: Array<NextHop> = Array::with_max_entries(MAX_BACKENDS, 0);

#[map]
pub static XLB_VIP_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map]
pub static XLB_BE_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

#[map]
pub static XLB_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Maglev ring size per VIP; the loader overrides it from the config.
#[unsafe(no_mangle)]
static XLB_RING_SIZE: u32 = DEFAULT_RING_SIZE;

#[inline(always)]
pub fn ring_size() -> u32 {
    // Volatile so the compiler keeps the load the loader patches.
    unsafe { core::ptr::read_volatile(&XLB_RING_SIZE) }
}
