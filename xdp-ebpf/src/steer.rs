//! UDP steering that does not follow the 5-tuple: syslog round robin and
//! QUIC connection-id routing (QUIC-LB style server ids).

use aya_ebpf::programs::XdpContext;
use xlb_common::{MAX_SYSLOG_BACKENDS, NO_BACKEND, QuicServerKey, Stat, VipInfo};

use crate::{
    headers::UDP_HLEN,
    maps::{XLB_LIVE, XLB_QUIC_SIDS, XLB_SYSLOG_RR},
    packet::ptr_at,
    parse::Pkt,
    stats::count,
};

/// Most bytes of a QUIC short header the server id may sit in: the first
/// byte and a connection id of at most 20 bytes.
const QUIC_CID_MAX: usize = 20;

/// The next live backend of the VIP, in turn (per CPU).
#[inline(always)]
pub fn syslog_next(vip_id: u32) -> u32 {
    let (Some(set), Some(pos)) = (XLB_LIVE.get(vip_id), XLB_SYSLOG_RR.get_ptr_mut(vip_id)) else {
        return NO_BACKEND;
    };
    let n = set.count;
    if n == 0 || n as usize > set.ids.len() {
        return NO_BACKEND;
    }
    let i = unsafe {
        let i = *pos % n;
        *pos = (*pos).wrapping_add(1);
        // i < n <= 64 already, but the compiler drops a plain mask for that
        // reason; the verifier needs to see it, so hide i from the compiler.
        core::ptr::read_volatile(&i) as usize & (MAX_SYSLOG_BACKENDS - 1)
    };
    match set.ids.get(i) {
        Some(&id) => {
            count(Stat::SyslogSpread);
            id
        }
        None => NO_BACKEND,
    }
}

/// For a QUIC short-header packet, the backend named by the server id in
/// its destination connection id, if the VIP has one configured; counts
/// the misses it sees here (the caller counts hits, since only it knows
/// whether the backend is live). Long headers (and non-QUIC) give None.
#[inline(always)]
pub fn quic_server(ctx: &XdpContext, pkt: &Pkt, info: &VipInfo) -> Option<u32> {
    let len = info.quic_sid_len as usize;
    if len == 0 || len > 4 {
        return None;
    }
    let payload = pkt.l4_off + UDP_HLEN;
    // Two bytes, not one: a one-byte bounds check at a variable offset
    // compiles to a form the verifier draws no range from.
    let first = ptr_at::<[u8; 2]>(ctx, payload)?;
    if unsafe { (*first)[0] } & 0x80 != 0 {
        return None; // long header: handshake, by table or Maglev
    }
    let start = payload + 1 + (info.quic_sid_offset as usize % QUIC_CID_MAX);
    // A 4-byte window (any real short-header packet is far longer: CID,
    // packet number, AEAD tag); the id is its first `len` bytes.
    let Some(window) = ptr_at::<[u8; 4]>(ctx, start) else {
        count(Stat::QuicCidMiss);
        return None;
    };
    let server_id = u32::from_be_bytes(unsafe { *window }) >> (8 * (4 - len));
    let key = QuicServerKey {
        vip_id: info.vip_id,
        server_id,
    };
    match unsafe { XLB_QUIC_SIDS.get(&key) } {
        Some(&id) => Some(id),
        None => {
            count(Stat::QuicCidMiss);
            None
        }
    }
}
