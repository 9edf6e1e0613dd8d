//! Map keys and values. Addresses and ports are kept exactly as they sit in
//! the packet (network byte order), so the data path never swaps bytes.
//! An IPv4 address uses `addr[0]`; the other words are zero.

pub const AF_INET: u8 = 4;
pub const AF_INET6: u8 = 6;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// `[[l4]]` forwarding mode, in [`VipInfo::flags`].
pub const VIP_FORWARD_NAT: u32 = 0;
pub const VIP_FORWARD_DSR: u32 = 1;

/// Backend state, written only by the daemon (health checker and runtime
/// API), read by both tiers.
pub const BACKEND_UP: u8 = 0;
pub const BACKEND_DOWN: u8 = 1;
pub const BACKEND_DRAIN: u8 = 2;
pub const BACKEND_MAINT: u8 = 3;
/// Slot not in use (no server has this id).
pub const BACKEND_UNUSED: u8 = 255;

/// An IPv4 VIP. Per-family keys stay small, so the kernel hashes and
/// compares fewer bytes per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKeyV4 {
    pub addr: u32,
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipInfo {
    /// Index of this VIP's Maglev table in the ring map and of its counters.
    pub vip_id: u32,
    /// `VIP_FORWARD_*`.
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: [u32; 4],
    /// Network byte order.
    pub port: u16,
    pub family: u8,
    /// `BACKEND_*`.
    pub state: u8,
    /// Configured weight; 0 drains.
    pub weight: u32,
}

/// An IPv4 5-tuple as seen in the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKeyV4 {
    pub src: u32,
    pub dst: u32,
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// Where to send a frame without a route lookup: the egress interface and
/// the MAC addresses to write. `ifindex == 0` means unknown.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

/// [`FlowV4::kind`]: a client -> VIP packet, to be sent to the backend.
pub const FLOW_TO_BACKEND: u32 = 1;
/// [`FlowV4::kind`]: a backend -> client reply of a NAT flow, to be sent
/// back as coming from the VIP.
pub const FLOW_TO_CLIENT: u32 = 2;

/// Connection-table value. A NAT flow has two entries, one per direction,
/// in the same table, so either direction costs one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowV4 {
    /// `FLOW_TO_*`.
    pub kind: u32,
    pub backend_id: u32,
    pub vip_id: u32,
    /// FLOW_TO_CLIENT: the VIP to put back as the source.
    pub vip_addr: u32,
    /// FLOW_TO_CLIENT: network byte order.
    pub vip_port: u16,
    pub pad: [u8; 2],
    /// FLOW_TO_CLIENT: the interface and MACs the client's first packet
    /// came with, so replies need no route lookup.
    pub to_client: NextHop,
}

/// Packet and byte counters (per CPU in the maps).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for VipKeyV4 {}
    unsafe impl aya::Pod for VipInfo {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKeyV4 {}
    unsafe impl aya::Pod for FlowV4 {}
    unsafe impl aya::Pod for NextHop {}
    unsafe impl aya::Pod for Counters {}
}

/// Bytes of the benchmark template frame (Ethernet + IPv4 + TCP + 10 bytes).
pub const BENCH_FRAME_LEN: usize = 64;

/// The benchmark harness's configuration (see `xdp-ebpf/src/bench.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchConfig {
    pub frame: [u8; BENCH_FRAME_LEN],
    /// Non-zero: every run gets a new source address and port.
    pub new_flow_each_run: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for BenchConfig {}
