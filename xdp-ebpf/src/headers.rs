//! Wire headers, laid out as on the wire. Multi-byte fields stay in network
//! byte order.

pub const ETH_P_IP: u16 = 0x0800u16.to_be();
pub const ETH_HLEN: usize = 14;
pub const IP_MF_OFFSET_MASK: u16 = 0x3fffu16.to_be();

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
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

/// The first 8 bytes of TCP and UDP: ports, then (UDP) length and checksum.
#[repr(C)]
pub struct Ports {
    pub sport: u16,
    pub dport: u16,
}

/// Offset of the checksum inside the TCP and UDP headers.
pub const TCP_CSUM_OFF: usize = 16;
pub const UDP_CSUM_OFF: usize = 6;
/// Minimum header sizes, the part the data path reads or writes.
pub const TCP_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
