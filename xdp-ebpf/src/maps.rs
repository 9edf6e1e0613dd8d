//! The maps. Only the daemon writes VIPS, BACKENDS, RING, QUIC server ids,
//! live sets and settings; the data path writes the connection table, the
//! next-hop cache, the round-robin positions and counters.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use xlb_common::{
    BPF_F_NO_COMMON_LRU, Backend, Counters, DEFAULT_RING_SIZE, FloodWindow, Flow, FlowKey, LiveSet,
    MAX_BACKENDS, MAX_FLOWS, MAX_QUIC_SERVERS, MAX_VIPS, NextHop, QuicServerKey, STAT_COUNT,
    Settings, VipInfo, VipKey,
};

#[map]
pub static XLB_VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(MAX_VIPS * 2, 0);

#[map]
pub static XLB_BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Resized by the loader to `MAX_VIPS * ring_size`.
#[map]
pub static XLB_RING: Array<u32> = Array::with_max_entries(MAX_VIPS * DEFAULT_RING_SIZE, 0);

#[map]
pub static XLB_FLOWS: LruHashMap<FlowKey, Flow> =
    LruHashMap::with_max_entries(MAX_FLOWS, BPF_F_NO_COMMON_LRU);

#[map]
pub static XLB_NEXTHOP: Array<NextHop> = Array::with_max_entries(MAX_BACKENDS, 0);

#[map]
pub static XLB_QUIC_SIDS: HashMap<QuicServerKey, u32> =
    HashMap::with_max_entries(MAX_QUIC_SERVERS, 0);

#[map]
pub static XLB_LIVE: Array<LiveSet> = Array::with_max_entries(MAX_VIPS, 0);

#[map]
pub static XLB_SYSLOG_RR: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map]
pub static XLB_FLOOD: PerCpuArray<FloodWindow> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static XLB_SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map]
pub static XLB_VIP_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map]
pub static XLB_BE_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

#[map]
pub static XLB_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Per-CPU scratch for the parsed packet: the BPF stack (512 bytes over a
/// whole call chain) is too small to hold it beside everything else.
#[map]
pub static XLB_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

pub struct Scratch {
    pub pkt: crate::parse::Pkt,
    /// The backend a QUIC flow's table entry names, for when its
    /// connection id names none (NO_BACKEND: no entry).
    pub table_backend: u32,
    pub icmp: crate::icmp::IcmpError,
    /// Where an ICMP error's NAT moves the flow's end.
    pub nat_to: crate::icmp::NatTo,
    pub chosen: crate::balance::Chosen,
    pub via: crate::balance::Via,
}

/// Maglev ring size per VIP; the loader overrides it from the config.
#[unsafe(no_mangle)]
static XLB_RING_SIZE: u32 = DEFAULT_RING_SIZE;

#[inline(always)]
pub fn ring_size() -> u32 {
    // Volatile so the compiler keeps the load the loader patches.
    unsafe { core::ptr::read_volatile(&XLB_RING_SIZE) }
}
