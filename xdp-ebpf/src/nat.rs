//! NAT rewrites with incremental checksum updates: the IPv4 header
//! checksum and the TCP/UDP checksum, whose pseudo-header covers the
//! addresses (IPv4 and IPv6). The field offsets and the checksum helpers
//! here also serve the NAT of ICMP errors (`icmp::rewrite_error`).

use aya_ebpf::programs::XdpContext;
use xlb_common::{
    AF_INET, PROTO_TCP, PROTO_UDP,
    csum::{self, l4_replace16, l4_replace32},
};

use crate::{
    headers::{
        DPORT_OFF, IPV4_CSUM_OFF, IPV4_DADDR_OFF, IPV4_SADDR_OFF, IPV6_DADDR_OFF, IPV6_SADDR_OFF,
        SPORT_OFF, TCP_CSUM_OFF, UDP_CSUM_OFF,
    },
    packet::ptr_at,
    parse::{Fragment, Pkt},
};

/// Which end of the flow a rewrite changes.
#[derive(Clone, Copy)]
pub enum End {
    /// Destination: client -> VIP becomes client -> backend.
    Destination,
    /// Source: backend -> client becomes VIP -> client.
    Source,
}

impl End {
    /// The other end: a quoted packet went the other way.
    #[inline(always)]
    pub fn other(self) -> End {
        match self {
            End::Destination => End::Source,
            End::Source => End::Destination,
        }
    }

    /// Offset of this end's address in the IPv4 or IPv6 header.
    #[inline(always)]
    pub fn addr_off(self, v4: bool) -> usize {
        match (self, v4) {
            (End::Source, true) => IPV4_SADDR_OFF,
            (End::Destination, true) => IPV4_DADDR_OFF,
            (End::Source, false) => IPV6_SADDR_OFF,
            (End::Destination, false) => IPV6_DADDR_OFF,
        }
    }

    /// Offset of this end's port in the TCP/UDP header.
    #[inline(always)]
    pub fn port_off(self) -> usize {
        match self {
            End::Source => SPORT_OFF,
            End::Destination => DPORT_OFF,
        }
    }
}

/// Replace one end's address and port (the port only where the packet
/// carries one: not in later fragments).
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, pkt: &Pkt, end: End, addr: &[u32; 4], port: u16) -> Option<()> {
    let proto = pkt.key.proto;
    let l4_check = if pkt.fragment == Fragment::Later {
        None
    } else {
        l4_checksum(ctx, proto, pkt.l4_off)
    };
    if pkt.key.family == AF_INET {
        let old = set_v4_addr(ctx, pkt.l3_off, end, addr[0])?;
        if let Some(c) = l4_check {
            unsafe { *c = l4_replace32(proto, *c, old, addr[0]) };
        }
    } else {
        let field = ptr_at::<[u32; 4]>(ctx, pkt.l3_off + end.addr_off(false))?;
        unsafe {
            let old = *field;
            if let Some(c) = l4_check {
                let mut v = *c;
                for i in 0..4 {
                    v = l4_replace32(proto, v, old[i], addr[i]);
                }
                *c = v;
            }
            *field = *addr;
        }
    }
    if pkt.fragment != Fragment::Later {
        let field = ptr_at::<u16>(ctx, pkt.l4_off + end.port_off())?;
        unsafe {
            let old = *field;
            if let Some(c) = l4_check {
                *c = l4_replace16(proto, *c, old, port);
            }
            *field = port;
        }
    }
    Some(())
}

/// Set `end`'s address in the IPv4 header at `l3_off`, keeping the header
/// checksum right; returns the old address.
#[inline(always)]
pub fn set_v4_addr(ctx: &XdpContext, l3_off: usize, end: End, addr: u32) -> Option<u32> {
    let field = ptr_at::<u32>(ctx, l3_off + end.addr_off(true))?;
    let check = ptr_at::<u16>(ctx, l3_off + IPV4_CSUM_OFF)?;
    unsafe {
        let old = *field;
        *check = csum::replace32(*check, old, addr);
        *field = addr;
        Some(old)
    }
}

/// The checksum field of the TCP or UDP header at `l4_off`, if `proto` is
/// one of them and the packet holds it.
#[inline(always)]
pub fn l4_checksum(ctx: &XdpContext, proto: u8, l4_off: usize) -> Option<*mut u16> {
    match proto {
        PROTO_TCP => ptr_at::<u16>(ctx, l4_off + TCP_CSUM_OFF),
        PROTO_UDP => ptr_at::<u16>(ctx, l4_off + UDP_CSUM_OFF),
        _ => None,
    }
}
