//! Wire headers, laid out as on the wire. Multi-byte fields stay in network
//! byte order.

use core::mem::offset_of;

pub const ETH_P_IP: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6: u16 = 0x86DDu16.to_be();
pub const ETH_P_8021Q: u16 = 0x8100u16.to_be();
pub const ETH_P_8021AD: u16 = 0x88A8u16.to_be();
pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
/// Tags read before giving up (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
/// IPv4 "don't fragment" flag.
pub const IP_DF: u16 = 0x4000u16.to_be();
pub const IP_MF: u16 = 0x2000u16.to_be();
pub const IP_OFFSET_MASK: u16 = 0x1fffu16.to_be();

pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_IPV6: u8 = 41;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: u16,
}

#[repr(C)]
pub struct VlanHdr {
    pub tci: u16,
    pub ether_type: u16,
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub version_tc_flow: u32,
    pub payload_len: u16,
    pub next_hdr: u8,
    pub hop_limit: u8,
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
}

#[repr(C)]
pub struct Ipv6FragHdr {
    pub next_hdr: u8,
    pub reserved: u8,
    /// Offset (13 bits) << 3 | M flag.
    pub frag_off: u16,
    pub id: u32,
}

/// The first 4 bytes of TCP and UDP.
#[repr(C)]
pub struct Ports {
    pub sport: u16,
    pub dport: u16,
}

/// ICMP and ICMPv6 share this 8-byte header.
#[repr(C)]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    /// Type-specific: "next-hop MTU" (v4: low 16 bits), "MTU" (v6), unused.
    pub rest: u32,
}

/// Offsets of the fields the NAT rewrites touch.
pub const IPV4_CSUM_OFF: usize = offset_of!(Ipv4Hdr, check);
pub const IPV4_SADDR_OFF: usize = offset_of!(Ipv4Hdr, saddr);
pub const IPV4_DADDR_OFF: usize = offset_of!(Ipv4Hdr, daddr);
pub const IPV6_SADDR_OFF: usize = offset_of!(Ipv6Hdr, saddr);
pub const IPV6_DADDR_OFF: usize = offset_of!(Ipv6Hdr, daddr);
pub const SPORT_OFF: usize = offset_of!(Ports, sport);
pub const DPORT_OFF: usize = offset_of!(Ports, dport);
pub const ICMP_CSUM_OFF: usize = offset_of!(IcmpHdr, check);
/// Offset of the checksum inside the TCP and UDP headers.
pub const TCP_CSUM_OFF: usize = 16;
pub const UDP_CSUM_OFF: usize = 6;
/// Minimum header sizes, the part the data path reads or writes.
pub const TCP_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const ICMP_HLEN: usize = 8;
