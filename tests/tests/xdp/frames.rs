//! Frame builders and probes for the steering, odd-traffic and fuzz
//! fixtures (`xdp_steering.rs`, `xdp_odd.rs`, `xdp_fuzz.rs`), which include
//! this file with `#[path]`. Every expected frame is built with etherparse
//! (checksums from scratch); fragmenting and tagging only move bytes.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::HashMap as BpfHashMap;
use etherparse::{IpHeaders, IpNumber, Ipv4Header, Ipv6Header, PacketBuilder, PacketBuilderStep};
use xlb::dataplane::{addr::ip_words, maglev};
use xlb_common::{Flow, FlowKey, MAP_FLOWS, hash::flow_hash};

use crate::xdp::{
    BACKEND_PORT, CLIENT_MAC, Dut, LB_MAC, VIP_PORT, backend_ip, backend_ip6, backend_mac,
    packets::icmp6,
};

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

/// Per-CPU state (syslog round-robin position, flood-guard window) is only
/// deterministic when every BPF_PROG_TEST_RUN of a test runs on the same
/// CPU: the run happens on the calling thread's CPU, so pin the thread.
pub fn pin_to_current_cpu() {
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity");
    }
}

/// Ethernet + IPv4 or IPv6 (by the addresses; TTL 64), for PacketBuilder.
fn eth_ip(macs: ([u8; 6], [u8; 6]), src: IpAddr, dst: IpAddr) -> PacketBuilderStep<IpHeaders> {
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families {src} -> {dst}"),
    }
}

/// Ethernet + IPv4 or IPv6 (by the addresses) + UDP.
pub fn udp<A: Into<IpAddr>>(
    macs: ([u8; 6], [u8; 6]),
    src: (A, u16),
    dst: (A, u16),
    payload: &[u8],
) -> Vec<u8> {
    let b = eth_ip(macs, src.0.into(), dst.0.into()).udp(src.1, dst.1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

// Not every fixture that includes this file uses both names.
/// Ethernet + IPv4 + UDP ([`udp`] of IPv4 addresses).
#[allow(unused_imports)]
pub use self::udp as udp4;
/// Ethernet + IPv6 + UDP ([`udp`] of IPv6 addresses).
#[allow(unused_imports)]
pub use self::udp as udp6;

/// Ethernet + IPv6 + TCP (SYN, or ACK+PSH).
pub fn tcp6(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let b = eth_ip(macs, src.0.into(), dst.0.into()).tcp(src.1, dst.1, 0x1234_5678, 64240);
    let b = if syn { b.syn() } else { b.ack(1).psh() };
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// Backend `i`'s lab address in the family of `like`.
pub fn backend_addr_like(like: IpAddr, i: usize) -> IpAddr {
    match like {
        IpAddr::V4(_) => backend_ip(i).into(),
        IpAddr::V6(_) => backend_ip6(i).into(),
    }
}

/// A client -> VIP UDP datagram (from `client`:`sport`, client MAC -> LB
/// MAC, to `vip`:[`VIP_PORT`]) and the same datagram as the LB must send
/// it to backend `i` (NAT: LB -> backend MAC, backend `i`'s address in the
/// same family, [`BACKEND_PORT`]).
pub fn udp_nat(
    client: IpAddr,
    sport: u16,
    vip: IpAddr,
    i: usize,
    payload: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let to_vip = udp(
        (CLIENT_MAC, LB_MAC),
        (client, sport),
        (vip, VIP_PORT),
        payload,
    );
    let to_backend = udp(
        (LB_MAC, backend_mac(i)),
        (client, sport),
        (backend_addr_like(client, i), BACKEND_PORT),
        payload,
    );
    (to_vip, to_backend)
}

/// The frame with VLAN tags `(TPID, TCI)` inserted after the MAC
/// addresses, outermost first.
pub fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for &(tpid, tci) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// Split an untagged Ethernet + IPv4 (no options) frame into fragments at
/// the IP payload offsets `splits` (ascending multiples of 8): the first
/// (MF, offset 0) carries the L4 header, middle ones have MF and an
/// offset, the last has an offset only. Header checksums are computed from
/// scratch.
pub fn fragment_v4(frame: &[u8], splits: &[usize], id: u16) -> Vec<Vec<u8>> {
    let (ip, payload) = Ipv4Header::from_slice(&frame[14..]).unwrap();
    let payload = &payload[..ip.total_len as usize - ip.header_len()];
    pieces(payload, splits)
        .map(|(offset, bytes, more)| {
            let mut h = ip.clone();
            h.identification = id;
            h.dont_fragment = false;
            h.more_fragments = more;
            h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap();
            h.total_len = (h.header_len() + bytes.len()) as u16;
            h.header_checksum = h.calc_header_checksum();
            let mut out = frame[..14].to_vec();
            h.write(&mut out).unwrap();
            out.extend_from_slice(bytes);
            out
        })
        .collect()
}

/// (offset, bytes, more fragments follow) of each piece.
fn pieces<'a>(
    payload: &'a [u8],
    splits: &'a [usize],
) -> impl Iterator<Item = (usize, &'a [u8], bool)> + 'a {
    assert!(splits.iter().all(|s| s % 8 == 0 && *s < payload.len()));
    let starts = std::iter::once(0).chain(splits.iter().copied());
    let ends = splits.iter().copied().chain(std::iter::once(payload.len()));
    starts
        .zip(ends)
        .map(move |(a, b)| (a, &payload[a..b], b < payload.len()))
}

/// The same for Ethernet + IPv6 (no extension headers): a fragment header
/// goes between the IPv6 header and the upper-layer bytes. No splits: one
/// atomic fragment (offset 0, M clear).
pub fn fragment_v6(frame: &[u8], splits: &[usize], id: u32) -> Vec<Vec<u8>> {
    let (ip, payload) = Ipv6Header::from_slice(&frame[14..]).unwrap();
    let payload = &payload[..ip.payload_length as usize];
    pieces(payload, splits)
        .map(|(offset, bytes, more)| {
            let mut h = ip.clone();
            h.next_header = IpNumber::IPV6_FRAGMENTATION_HEADER;
            h.payload_length = (8 + bytes.len()) as u16;
            let mut out = frame[..14].to_vec();
            h.write(&mut out).unwrap();
            // Written by hand: etherparse 0.16's `Ipv6FragmentHeader`
            // encodes offset and M flag in the wrong bits (fixed upstream
            // in 0.20, etherparse#149), so its "first fragment" reads as
            // offset 128. RFC 8200: offset << 3 | M, big-endian.
            let field = ((offset / 8) as u16) << 3 | u16::from(more);
            out.extend_from_slice(&[ip.next_header.0, 0]);
            out.extend_from_slice(&field.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(bytes);
            out
        })
        .collect()
}

/// A QUIC short-header payload: first byte 0x40, then the destination
/// connection id, then a packet number and opaque bytes.
pub fn quic_short(dcid: &[u8]) -> Vec<u8> {
    let mut p = vec![0x41];
    p.extend_from_slice(dcid);
    p.extend_from_slice(&[0x00, 0x07]);
    p.extend((0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5a));
    p
}

/// A QUIC v1 Initial (long header) payload with this destination id.
pub fn quic_initial(dcid: &[u8]) -> Vec<u8> {
    let mut p = vec![0xc3, 0, 0, 0, 1, dcid.len() as u8];
    p.extend_from_slice(dcid);
    p.push(8);
    p.extend_from_slice(&[0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8]);
    p.push(0); // token length
    p.extend_from_slice(&[0x40, 0x40]); // length (varint 64)
    p.extend((0..64u8).map(|i| i ^ 0xa5));
    p
}

/// An 8-byte destination connection id with `server_id` big-endian at
/// byte offset `offset`, `len` bytes long.
pub fn dcid_with(server_id: u32, offset: usize, len: usize) -> Vec<u8> {
    let mut cid = vec![0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89];
    let be = server_id.to_be_bytes();
    cid[offset..offset + len].copy_from_slice(&be[4 - len..]);
    cid
}

/// ICMPv4 "fragmentation needed" from `router` to `to`, quoting the IPv4
/// packet of `quoted` (an Ethernet frame) up to 8 bytes past its header.
pub fn icmp4_frag_needed(
    macs: ([u8; 6], [u8; 6]),
    router: Ipv4Addr,
    to: Ipv4Addr,
    quoted: &[u8],
) -> Vec<u8> {
    use etherparse::{Icmpv4Type, icmpv4::DestUnreachableHeader};
    let ihl = (quoted[14] & 0x0f) as usize * 4;
    let quote = &quoted[14..14 + ihl + 8];
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(router.octets(), to.octets(), 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ));
    let mut out = Vec::new();
    b.write(&mut out, quote).unwrap();
    out
}

/// ICMPv6 "packet too big" from `router` to `to`, quoting the IPv6 packet
/// of `quoted` up to 8 bytes past its (fixed) header.
pub fn icmp6_too_big(
    macs: ([u8; 6], [u8; 6]),
    router: Ipv6Addr,
    to: Ipv6Addr,
    quoted: &[u8],
) -> Vec<u8> {
    let quote = &quoted[14..14 + 40 + 8];
    icmp6(
        macs,
        router,
        to,
        64,
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 },
        quote,
    )
}

/// A flow key as the data path builds it from a packet.
pub fn key(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> FlowKey {
    let (src, family) = ip_words(src);
    let (dst, _) = ip_words(dst);
    FlowKey {
        src,
        dst,
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto,
        family,
        pad: [0; 2],
    }
}

/// The connection-table entry for `key`, read from the loaded object.
pub fn flow_entry(dut: &Dut, key: &FlowKey) -> Option<Flow> {
    let map = dut.ebpf.map(MAP_FLOWS).expect("flow map");
    let flows: BpfHashMap<_, FlowKey, Flow> = BpfHashMap::try_from(map).expect("flow map type");
    flows.get(key, 0).ok()
}

/// The backend id Maglev gives `key` in `pool`'s table (as the daemon
/// builds it now), straight from `flow_hash`.
pub fn maglev_id(dut: &Dut, pool: &str, key: &FlowKey) -> u32 {
    let size = dut.config.global.maglev_size;
    let table = maglev::build(&dut.registry.ring_members(pool), size);
    let h = flow_hash(&key.src, &key.dst, key.sport, key.dport, key.proto);
    table[(h % size) as usize]
}

/// The registry id of server `name` in backend pool `pool`.
pub fn server_id(dut: &Dut, pool: &str, name: &str) -> u32 {
    dut.registry.find(pool, name).expect("server").id
}

/// Which of backends 1..=8 (IPv4 or IPv6 lab addresses) an output frame
/// was sent to, by its destination address; None for anything else.
pub fn sent_to(out: &[u8]) -> Option<usize> {
    use etherparse::{LaxNetSlice, LaxSlicedPacket};
    let p = LaxSlicedPacket::from_ethernet(out).ok()?;
    let dst: IpAddr = match p.net? {
        LaxNetSlice::Ipv4(ip) => ip.header().destination_addr().into(),
        LaxNetSlice::Ipv6(ip) => ip.header().destination_addr().into(),
    };
    backend_index(dst)
}

/// Which of backends 1..=8 has lab address `ip` (IPv4 or IPv6).
fn backend_index(ip: IpAddr) -> Option<usize> {
    (1..=8).find(|&i| backend_addr_like(ip, i) == ip)
}

/// The lab index (1-based) of a registry id's server, by address.
pub fn index_of(dut: &Dut, id: u32) -> usize {
    let ip = dut.registry.get(id).expect("server id").address.ip();
    backend_index(ip).expect("a lab backend address")
}
