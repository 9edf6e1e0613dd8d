//! NAT rewrites with incremental checksum updates: the IPv4 header
//! checksum and the TCP/UDP checksum, whose pseudo-header covers the
//! addresses (IPv4 and IPv6).

use aya_ebpf::programs::XdpContext;
use xlb_common::{AF_INET, PROTO_TCP, PROTO_UDP, csum};

use crate::{
    headers::{TCP_CSUM_OFF, UDP_CSUM_OFF},
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

/// Replace one end's address and port (the port only where the packet
/// carries one: not in later fragments).
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, pkt: &Pkt, end: End, addr: &[u32; 4], port: u16) -> Option<()> {
    let l4_check = l4_checksum(ctx, pkt);
    if pkt.key.family == AF_INET {
        let addr_off = match end {
            End::Source => 12,
            End::Destination => 16,
        };
        let field = ptr_at::<u32>(ctx, pkt.l3_off + addr_off)?;
        let ip_check = ptr_at::<u16>(ctx, pkt.l3_off + 10)?;
        unsafe {
            let old = *field;
            *ip_check = csum::replace32(*ip_check, old, addr[0]);
            if let Some(c) = l4_check {
                *c = l4_replace32(pkt.key.proto, *c, old, addr[0]);
            }
            *field = addr[0];
        }
    } else {
        let addr_off = match end {
            End::Source => 8,
            End::Destination => 24,
        };
        let field = ptr_at::<[u32; 4]>(ctx, pkt.l3_off + addr_off)?;
        unsafe {
            let old = *field;
            if let Some(c) = l4_check {
                let mut v = *c;
                for i in 0..4 {
                    v = l4_replace32(pkt.key.proto, v, old[i], addr[i]);
                }
                *c = v;
            }
            *field = *addr;
        }
    }
    if pkt.fragment != Fragment::Later {
        let port_off = match end {
            End::Source => 0,
            End::Destination => 2,
        };
        let field = ptr_at::<u16>(ctx, pkt.l4_off + port_off)?;
        unsafe {
            let old = *field;
            if let Some(c) = l4_check {
                *c = l4_replace16(pkt.key.proto, *c, old, port);
            }
            *field = port;
        }
    }
    Some(())
}

/// The TCP/UDP checksum field, if this packet carries it.
#[inline(always)]
fn l4_checksum(ctx: &XdpContext, pkt: &Pkt) -> Option<*mut u16> {
    if pkt.fragment == Fragment::Later {
        return None;
    }
    match pkt.key.proto {
        PROTO_TCP => ptr_at::<u16>(ctx, pkt.l4_off + TCP_CSUM_OFF),
        PROTO_UDP => ptr_at::<u16>(ctx, pkt.l4_off + UDP_CSUM_OFF),
        _ => None,
    }
}

#[inline(always)]
fn l4_replace32(proto: u8, check: u16, old: u32, new: u32) -> u16 {
    if proto == PROTO_UDP {
        csum::udp_replace32(check, old, new)
    } else {
        csum::replace32(check, old, new)
    }
}

#[inline(always)]
fn l4_replace16(proto: u8, check: u16, old: u16, new: u16) -> u16 {
    if proto == PROTO_UDP {
        csum::udp_replace16(check, old, new)
    } else {
        csum::replace16(check, old, new)
    }
}
