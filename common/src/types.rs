//! Map keys and values. Addresses and ports are kept exactly as they sit in
//! the packet (network byte order), so the data path never swaps bytes.
//! An IPv4 address uses `addr[0]`; the other words are zero.

pub const AF_INET: u8 = 4;
pub const AF_INET6: u8 = 6;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// `[[l4]]` forwarding mode, in [`VipInfo::forward`].
pub const FORWARD_NAT: u8 = 0;
pub const FORWARD_DSR: u8 = 1;

/// `[[l4]]` UDP steering, in [`VipInfo::steering`].
pub const STEER_FLOW: u8 = 0;
pub const STEER_SYSLOG: u8 = 1;
pub const STEER_QUIC: u8 = 2;

/// Backend state, written only by the daemon (health checker and runtime
/// API), read by both tiers.
pub const BACKEND_UP: u8 = 0;
pub const BACKEND_DOWN: u8 = 1;
pub const BACKEND_DRAIN: u8 = 2;
pub const BACKEND_MAINT: u8 = 3;
/// Slot not in use (no server has this id).
pub const BACKEND_UNUSED: u8 = 255;

/// A VIP: address, port, protocol. Port 0 is the entry IP fragments use
/// (they carry no ports): the daemon writes one per VIP address and
/// protocol, pointing at the first VIP configured for them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKey {
    pub addr: [u32; 4],
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipInfo {
    /// Index of this VIP's Maglev table in the ring map and of its counters.
    pub vip_id: u32,
    /// `FORWARD_*`.
    pub forward: u8,
    /// `STEER_*` (UDP only).
    pub steering: u8,
    /// QUIC: where the server id sits in the destination connection id.
    pub quic_sid_offset: u8,
    /// QUIC: server id length in bytes (1..=4; 0 = no CID steering).
    pub quic_sid_len: u8,
    /// UDP `flow` steering: a flow idle longer than this is chosen anew.
    pub udp_idle_timeout_ms: u32,
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

/// A 5-tuple as seen in the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub pad: [u8; 2],
}

/// Where to send a frame without a route lookup: the egress interface, the
/// MAC addresses to write and the path MTU. `ifindex == 0` means unknown.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub mtu: u16,
    pub pad: u16,
}

/// [`Flow::kind`]: a client -> VIP packet, to be sent to the backend.
pub const FLOW_TO_BACKEND: u8 = 1;
/// [`Flow::kind`]: a backend -> client reply of a NAT flow, to be sent
/// back as coming from the VIP.
pub const FLOW_TO_CLIENT: u8 = 2;

/// Connection-table value. A NAT flow has two entries, one per direction,
/// in the same table, so either direction costs one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// `FLOW_TO_*`.
    pub kind: u8,
    /// The VIP's `FORWARD_*`, so a hit needs no VIP lookup.
    pub forward: u8,
    /// FLOW_TO_CLIENT: the VIP port to put back, network byte order.
    pub vip_port: u16,
    pub backend_id: u32,
    pub vip_id: u32,
    /// UDP: a flow idle longer than this is chosen anew (0: never).
    pub idle_timeout_ms: u32,
    /// FLOW_TO_CLIENT: the VIP to put back as the source.
    pub vip_addr: [u32; 4],
    /// FLOW_TO_CLIENT: the interface and MACs the client's first packet
    /// came with, so replies need no route lookup.
    pub to_client: NextHop,
    /// FLOW_TO_BACKEND: the VIP's `STEER_*`; QUIC flows check the
    /// connection id before trusting the entry.
    pub steering: u8,
    pub pad: [u8; 3],
    /// UDP: when the flow last saw a packet (`bpf_ktime_get_ns`).
    pub last_seen_ns: u64,
}

/// QUIC server-id lookup key: VIP and the id read from the connection id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuicServerKey {
    pub vip_id: u32,
    pub server_id: u32,
}

/// Most live backends a VIP spreads syslog datagrams over.
pub const MAX_SYSLOG_BACKENDS: usize = 64;

/// The live backends of a VIP, in a fixed order, for per-datagram round
/// robin (`syslog` steering).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveSet {
    pub count: u32,
    pub ids: [u32; MAX_SYSLOG_BACKENDS],
}

impl Default for LiveSet {
    fn default() -> Self {
        LiveSet {
            count: 0,
            ids: [0; MAX_SYSLOG_BACKENDS],
        }
    }
}

/// Flood guard state per CPU: new flows seen in the current second.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodWindow {
    pub window_start_ns: u64,
    pub new_flows: u64,
}

/// Data-path settings from `[global]`, written once by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// New flows per second per CPU above which new flows bypass the
    /// connection table (0: never).
    pub flood_new_flows_per_sec: u64,
    /// DSR outer IPv4 source: this prefix (network byte order) with its
    /// host bits (`dsr_source_v4_host_mask`, host order) from the flow hash,
    /// so the backend's receive hashing spreads flows.
    pub dsr_source_v4: u32,
    pub dsr_source_v4_host_mask: u32,
    /// DSR outer IPv6 source: this prefix with its last 16 bits from the
    /// flow hash.
    pub dsr_source_v6: [u32; 4],
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
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipInfo {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Flow {}
    unsafe impl aya::Pod for QuicServerKey {}
    unsafe impl aya::Pod for LiveSet {}
    unsafe impl aya::Pod for FloodWindow {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for NextHop {}
    unsafe impl aya::Pod for Counters {}
}

/// Bytes of every benchmark template frame (padded with payload).
pub const BENCH_FRAME_LEN: usize = 96;

/// The benchmark harness's configuration (see `xdp-ebpf/src/bench.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchConfig {
    pub frame: [u8; BENCH_FRAME_LEN],
    /// Non-zero: every run gets a new source address and port.
    pub new_flow_each_run: u32,
    /// Where the source address's last two bytes and the source port sit.
    pub src_addr_low_off: u32,
    pub src_port_off: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for BenchConfig {}
