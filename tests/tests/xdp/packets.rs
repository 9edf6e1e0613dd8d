//! Frame builders for the IPv6, DSR and ICMP fixtures (`xdp_ipv6.rs`,
//! `xdp_dsr.rs`, `xdp_icmp.rs`; `too_big` for `xdp_nat.rs` too). Additions
//! only: nothing in `mod.rs` depends on this module.
//!
//! Every expected frame is built from its fields with etherparse (which
//! computes each checksum from scratch); the tunnel headers and the DSR
//! outer source are written out here from the rules in the brief, not from
//! the data path's code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    EtherType, Ethernet2Header, Icmpv4Type, Icmpv6Type, IpHeaders, IpNumber, Ipv4Dscp, Ipv4Ecn,
    Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder, icmpv4::DestUnreachableHeader,
};
use xlb_common::{AF_INET, AF_INET6, FlowKey, PROTO_TCP, PROTO_UDP, hash::encap_source_bits};

use super::{CLIENT_MAC, LB_MAC};

/// What a [`Seg`] carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// TCP SYN.
    Syn,
    /// TCP ACK+PSH with data.
    Data,
    Udp,
}

/// One TCP or UDP packet, IPv4 or IPv6 (by the addresses), in an Ethernet
/// frame.
#[derive(Clone, Debug)]
pub struct Seg {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub kind: Kind,
    /// IPv4 TOS byte / IPv6 traffic class.
    pub tos: u8,
    /// IPv6 only.
    pub flow_label: u32,
    /// TTL / hop limit.
    pub ttl: u8,
    pub payload: Vec<u8>,
}

impl Seg {
    /// Client MAC -> LB MAC, TOS 0, TTL 64, no payload.
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, kind: Kind) -> Seg {
        Seg {
            src_mac: CLIENT_MAC,
            dst_mac: LB_MAC,
            src,
            sport,
            dst,
            dport,
            kind,
            tos: 0,
            flow_label: 0,
            ttl: 64,
            payload: Vec::new(),
        }
    }

    pub fn payload(mut self, payload: &[u8]) -> Seg {
        self.payload = payload.to_vec();
        self
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Seg {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    pub fn tos(mut self, tos: u8) -> Seg {
        self.tos = tos;
        self
    }

    pub fn flow_label(mut self, label: u32) -> Seg {
        self.flow_label = label;
        self
    }

    pub fn ttl(mut self, ttl: u8) -> Seg {
        self.ttl = ttl;
        self
    }

    /// The destination end replaced (what NAT does to a client packet).
    pub fn to(mut self, dst: IpAddr, dport: u16) -> Seg {
        self.dst = dst;
        self.dport = dport;
        self
    }

    /// The source end replaced (what NAT does to a backend reply).
    pub fn from(mut self, src: IpAddr, sport: u16) -> Seg {
        self.src = src;
        self.sport = sport;
        self
    }

    /// A payload that makes the IP packet exactly `ip_len` bytes long.
    pub fn ip_len(mut self, ip_len: usize) -> Seg {
        let ip = if self.src.is_ipv4() { 20 } else { 40 };
        let l4 = if self.kind == Kind::Udp { 8 } else { 20 };
        self.payload = (0..ip_len - ip - l4).map(|i| (i % 251) as u8).collect();
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let ip = ip_headers(self.src, self.dst, self.ttl, self.tos, self.flow_label);
        let b = PacketBuilder::ethernet2(self.src_mac, self.dst_mac).ip(ip);
        let mut out = Vec::new();
        match self.kind {
            Kind::Syn => b
                .tcp(self.sport, self.dport, 0x1234_5678, 64240)
                .syn()
                .write(&mut out, &self.payload),
            Kind::Data => b
                .tcp(self.sport, self.dport, 0x1234_5678, 64240)
                .ack(1)
                .psh()
                .write(&mut out, &self.payload),
            Kind::Udp => b.udp(self.sport, self.dport).write(&mut out, &self.payload),
        }
        .unwrap();
        out
    }

    /// The IP packet alone (no Ethernet header).
    pub fn ip_packet(&self) -> Vec<u8> {
        self.build()[14..].to_vec()
    }

    /// The flow key as the data path sees this packet.
    pub fn key(&self) -> FlowKey {
        flow_key(self.src, self.sport, self.dst, self.dport, self.proto())
    }

    pub fn proto(&self) -> u8 {
        if self.kind == Kind::Udp {
            PROTO_UDP
        } else {
            PROTO_TCP
        }
    }
}

/// An IP header for PacketBuilder (lengths, protocol and checksum are
/// filled in when written). IPv4 gets DF, as Linux sends TCP.
pub fn ip_headers(src: IpAddr, dst: IpAddr, ttl: u8, tos: u8, flow_label: u32) -> IpHeaders {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(0, ttl, IpNumber::TCP, s.octets(), d.octets()).unwrap();
            h.dscp = Ipv4Dscp::try_new(tos >> 2).unwrap();
            h.ecn = Ipv4Ecn::try_new(tos & 3).unwrap();
            IpHeaders::Ipv4(h, Default::default())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: tos,
                flow_label: Ipv6FlowLabel::try_new(flow_label).unwrap(),
                payload_length: 0,
                next_header: IpNumber::TCP,
                hop_limit: ttl,
                source: s.octets(),
                destination: d.octets(),
            },
            Default::default(),
        ),
        _ => panic!("mixed address families {src} -> {dst}"),
    }
}

/// An address as the data path's map keys hold it: the packet's bytes,
/// four at a time, in memory order; IPv4 in the first word.
pub fn words(ip: IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut w = [0u32; 4];
            for (i, word) in w.iter_mut().enumerate() {
                *word = u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]);
            }
            w
        }
    }
}

pub fn flow_key(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: words(src),
        dst: words(dst),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto,
        family: if src.is_ipv4() { AF_INET } else { AF_INET6 },
        pad: [0; 2],
    }
}

fn hash(key: &FlowKey) -> u32 {
    encap_source_bits(&key.src, key.sport, key.dport)
}

/// DSR outer IPv4 source for a flow: the fixture config's 198.19.0.0/16
/// with the low 16 bits of `encap_source_bits` of the flow.
pub fn dsr_source_v4(key: &FlowKey) -> Ipv4Addr {
    let h = hash(key);
    Ipv4Addr::new(198, 19, (h >> 8) as u8, h as u8)
}

/// DSR outer IPv6 source for a flow: the fixture config's 2001:db8:ffff::
/// with the last 16 bits of `encap_source_bits` of the flow.
pub fn dsr_source_v6(key: &FlowKey) -> Ipv6Addr {
    let h = hash(key);
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, h as u16)
}

/// The TOS / traffic class byte of an IP packet.
pub fn tos_of(ip: &[u8]) -> u8 {
    if ip[0] >> 4 == 4 {
        ip[1]
    } else {
        (ip[0] << 4) | (ip[1] >> 4)
    }
}

/// The frame the LB sends for DSR to an IPv4 backend: Ethernet LB ->
/// `dst_mac`, a 20-byte outer IPv4 header (TOS from the inner packet, no
/// id, no flags, TTL 64, protocol 4 or 41), then `inner` unchanged.
pub fn ipip(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, dst_mac: [u8; 6]) -> Vec<u8> {
    let tos = tos_of(inner);
    let outer = Ipv4Header {
        dscp: Ipv4Dscp::try_new(tos >> 2).unwrap(),
        ecn: Ipv4Ecn::try_new(tos & 3).unwrap(),
        total_len: (20 + inner.len()) as u16,
        identification: 0,
        dont_fragment: false,
        more_fragments: false,
        fragment_offset: Default::default(),
        time_to_live: 64,
        protocol: tunnelled(inner),
        header_checksum: 0,
        source: src.octets(),
        destination: dst.octets(),
        options: Default::default(),
    };
    // `write` computes the header checksum.
    from_lb(
        dst_mac,
        EtherType::IPV4,
        |out| outer.write(out).unwrap(),
        inner,
    )
}

/// The frame the LB sends for DSR to an IPv6 backend: Ethernet LB ->
/// `dst_mac`, a 40-byte outer IPv6 header (traffic class from the inner
/// packet, flow label 0, hop limit 64, next header 41 for IPv6 inside, 4
/// for IPv4 inside), then `inner` unchanged.
pub fn ip6_tunnel(inner: &[u8], src: Ipv6Addr, dst: Ipv6Addr, dst_mac: [u8; 6]) -> Vec<u8> {
    let outer = Ipv6Header {
        traffic_class: tos_of(inner),
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: inner.len() as u16,
        next_header: tunnelled(inner),
        hop_limit: 64,
        source: src.octets(),
        destination: dst.octets(),
    };
    from_lb(
        dst_mac,
        EtherType::IPV6,
        |out| outer.write(out).unwrap(),
        inner,
    )
}

/// The outer header's protocol for `inner`: 4 (IPv4 inside) or 41 (IPv6).
fn tunnelled(inner: &[u8]) -> IpNumber {
    if inner[0] >> 4 == 4 {
        IpNumber::IPV4
    } else {
        IpNumber::IPV6
    }
}

/// A tunnel frame the LB sends: Ethernet LB -> `dst_mac` of `ether_type`,
/// the outer header (`write_outer`), then `inner` unchanged.
fn from_lb(
    dst_mac: [u8; 6],
    ether_type: EtherType,
    write_outer: impl FnOnce(&mut Vec<u8>),
    inner: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    Ethernet2Header {
        source: LB_MAC,
        destination: dst_mac,
        ether_type,
    }
    .write(&mut out)
    .unwrap();
    write_outer(&mut out);
    out.extend_from_slice(inner);
    out
}

/// An ICMPv4 message in an Ethernet frame: IPv4 header with TOS 0, id 0,
/// no flags, TTL `ttl`; the ICMP checksum computed from scratch.
pub fn icmp4(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    kind: Icmpv4Type,
    body: &[u8],
) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, ttl, IpNumber::ICMP, src.octets(), dst.octets()).unwrap();
    ip.dont_fragment = false;
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ip(IpHeaders::Ipv4(ip, Default::default()))
        .icmpv4(kind);
    let mut out = Vec::new();
    b.write(&mut out, body).unwrap();
    out
}

/// An ICMPv6 message in an Ethernet frame: traffic class 0, flow label 0,
/// hop limit `hop_limit`; the checksum (with its pseudo-header) from scratch.
pub fn icmp6(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    kind: Icmpv6Type,
    body: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv6(src.octets(), dst.octets(), hop_limit)
        .icmpv6(kind);
    let mut out = Vec::new();
    b.write(&mut out, body).unwrap();
    out
}

/// The LB's answer to a client packet too big for the path to its backend
/// (DSR: with the tunnel header): from the VIP to the client, the way the
/// packet came, quoting its IP header and the next 8 bytes; `mtu` is what
/// fits.
pub fn too_big(seg: &Seg, mtu: u16) -> Vec<u8> {
    let ip = seg.ip_packet();
    match (seg.dst, seg.src) {
        (IpAddr::V4(vip), IpAddr::V4(client)) => icmp4(
            (LB_MAC, CLIENT_MAC),
            vip,
            client,
            64,
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: mtu,
            }),
            &ip[..20 + 8],
        ),
        (IpAddr::V6(vip), IpAddr::V6(client)) => icmp6(
            (LB_MAC, CLIENT_MAC),
            vip,
            client,
            64,
            Icmpv6Type::PacketTooBig { mtu: mtu as u32 },
            &ip[..40 + 8],
        ),
        _ => unreachable!(),
    }
}
