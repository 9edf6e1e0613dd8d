//! NAT rewrites with incremental checksum updates (IPv4 header and the
//! TCP/UDP pseudo-header).

use aya_ebpf::programs::XdpContext;
use xlb_common::{PROTO_TCP, csum};

use crate::{
    headers::{ETH_HLEN, Ipv4Hdr, TCP_CSUM_OFF, UDP_CSUM_OFF},
    packet::ptr_at,
};

/// Which end of the flow a rewrite changes.
#[derive(Clone, Copy)]
pub enum End {
    /// Destination: client -> VIP becomes client -> backend.
    Destination,
    /// Source: backend -> client becomes VIP -> client.
    Source,
}

/// Replace one end's IPv4 address and port. `l4_off` is the TCP/UDP header
/// offset; the caller has checked that the whole L4 header is present.
#[inline(always)]
pub fn rewrite_v4(
    ctx: &XdpContext,
    l4_off: usize,
    proto: u8,
    end: End,
    new_addr: u32,
    new_port: u16,
) -> Option<()> {
    let (addr_off, port_off) = match end {
        End::Source => (12, 0),
        End::Destination => (16, 2),
    };
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN)?;
    let addr = ptr_at::<u32>(ctx, ETH_HLEN + addr_off)?;
    let port = ptr_at::<u16>(ctx, l4_off + port_off)?;
    let is_tcp = proto == PROTO_TCP;
    let check = ptr_at::<u16>(
        ctx,
        l4_off + if is_tcp { TCP_CSUM_OFF } else { UDP_CSUM_OFF },
    )?;
    unsafe {
        let old_addr = *addr;
        let old_port = *port;
        (*ip).check = csum::replace32((*ip).check, old_addr, new_addr);
        let c = *check;
        *check = if is_tcp {
            csum::replace16(csum::replace32(c, old_addr, new_addr), old_port, new_port)
        } else {
            csum::udp_replace16(
                csum::udp_replace32(c, old_addr, new_addr),
                old_port,
                new_port,
            )
        };
        *addr = new_addr;
        *port = new_port;
    }
    Some(())
}
