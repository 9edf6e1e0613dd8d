//! Packet fixtures for DSR forwarding, run through BPF_PROG_TEST_RUN on the
//! real object: IPv4-in-IPv4, IPv6-in-IPv6 and IPv4-in-IPv6 (an IPv4 VIP
//! with an IPv6 backend), and the ICMP "fragmentation needed" / "packet too
//! big" answer to a client whose packet would not fit the tunnel (eth0's
//! MTU is 1500).
//!
//! Expected frames are written out independently: the outer header field
//! by field (TOS / traffic class from the inner packet, id 0, no flags, TTL
//! or hop limit 64, protocol 4 or 41, source = the configured DSR prefix
//! with the low 16 bits of the client flow's hash), then the client's IP
//! packet unchanged; ICMP answers with etherparse, checksums from scratch.

mod xdp;

use std::net::SocketAddr;

use xdp::{
    CLIENT, CLIENT6, Case, Dut, VIP, VIP_PORT, VIP6, backend_ip, backend_ip6, backend_mac,
    config_dual, hex,
    packets::{Kind, Seg, dsr_source_v4, dsr_source_v6, ip6_tunnel, ipip, too_big},
};
use xlb::config::{Config, Forward};
use xlb_common::Stat;
use xlb_lab::checksum::verify_checksums;

/// VIP ids: `config_dual`'s four, plus 198.18.0.100:443/tcp on the IPv6
/// pool (IPv4 inside IPv6).
const VIP_TCP: u32 = 0;
const VIP_UDP: u32 = 1;
const VIP6_TCP: u32 = 2;
const VIP6_UDP: u32 = 3;
const VIP_4IN6: u32 = 4;
const PORT_4IN6: u16 = 443;

/// Every VIP forwarded by DSR; IPv4 VIPs on backend b1 (198.18.1.11),
/// IPv6 VIPs and the 4in6 VIP on b6-1 (2001:db8:1::11).
fn dsr_config() -> Config {
    let mut c = config_dual(1);
    let mut v = c.l4[0].clone();
    v.name = "tcp4in6".into();
    v.vip = SocketAddr::new(VIP.into(), PORT_4IN6);
    v.backend = "pool6".into();
    c.l4.push(v);
    for l4 in &mut c.l4 {
        l4.forward = Forward::Dsr;
    }
    c
}

fn v4(sport: u16, kind: Kind) -> Seg {
    Seg::new(CLIENT.into(), sport, VIP.into(), VIP_PORT, kind)
}

fn v6(sport: u16, kind: Kind) -> Seg {
    Seg::new(CLIENT6.into(), sport, VIP6.into(), VIP_PORT, kind)
}

fn v4in6(sport: u16, kind: Kind) -> Seg {
    Seg::new(CLIENT.into(), sport, VIP.into(), PORT_4IN6, kind)
}

/// The client's packet in IPIP to backend 1.
fn ipip_out(seg: &Seg) -> Vec<u8> {
    ipip(
        &seg.ip_packet(),
        dsr_source_v4(&seg.key()),
        backend_ip(1),
        backend_mac(1),
    )
}

/// The client's packet (IPv6 or IPv4) in IPv6 to backend b6-1.
fn ip6_out(seg: &Seg) -> Vec<u8> {
    ip6_tunnel(
        &seg.ip_packet(),
        dsr_source_v6(&seg.key()),
        backend_ip6(1),
        backend_mac(1),
    )
}

fn case(name: &'static str, input: &Seg, output: Vec<u8>) -> Case {
    Case::tx(name, input.build(), output)
}

fn encap_cases() -> Vec<Case> {
    let syn = v4(40000, Kind::Syn).tos(0x28);
    let data = v4(40000, Kind::Data).tos(0x28).payload(&[0x5a; 1000]);
    let udp = v4(5353, Kind::Udp).tos(0x01).payload(b"dsr over udp");
    let syn6 = v6(40000, Kind::Syn).tos(0x28).flow_label(0x12345);
    let data6 = v6(40000, Kind::Data).tos(0x28).payload(&[0xa5; 1000]);
    let udp6 = v6(5353, Kind::Udp).tos(0xb9).payload(b"dsr over udp6");
    let syn46 = v4in6(40000, Kind::Syn).tos(0xb8);
    let data46 = v4in6(40000, Kind::Data).tos(0xb8).payload(&[0x3c; 1000]);
    let fit4 = v4(40020, Kind::Data).ip_len(1480);
    let fit6 = v6(40020, Kind::Data).ip_len(1460);
    let fit46 = v4in6(40020, Kind::Data).ip_len(1460);
    vec![
        case("ipip: tcp syn (tos copied)", &syn, ipip_out(&syn)),
        case(
            "ipip: data of the same flow (table hit)",
            &data,
            ipip_out(&data),
        ),
        case("ipip: udp datagram", &udp, ipip_out(&udp)),
        case(
            "ip6ip6: tcp syn (traffic class copied, flow label not)",
            &syn6,
            ip6_out(&syn6),
        ),
        case(
            "ip6ip6: data of the same flow (table hit)",
            &data6,
            ip6_out(&data6),
        ),
        case("ip6ip6: udp datagram", &udp6, ip6_out(&udp6)),
        case(
            "4in6: ipv4 vip with an ipv6 backend, tcp syn",
            &syn46,
            ip6_out(&syn46),
        ),
        case(
            "4in6: data of the same flow (table hit)",
            &data46,
            ip6_out(&data46),
        ),
        case(
            "ipip: a 1480-byte packet fills the 1500-byte mtu exactly",
            &fit4,
            ipip_out(&fit4),
        ),
        case(
            "ip6ip6: a 1460-byte packet fills the 1500-byte mtu exactly",
            &fit6,
            ip6_out(&fit6),
        ),
        case(
            "4in6: a 1460-byte packet fills the 1500-byte mtu exactly",
            &fit46,
            ip6_out(&fit46),
        ),
    ]
}

#[test]
fn dsr_encapsulation_exact_bytes() {
    let dut = Dut::new("fixdsr", dsr_config());
    // Distinct flows get distinct outer sources (the point of the rule).
    let a = dsr_source_v4(&v4(40000, Kind::Syn).key());
    let b = dsr_source_v4(&v4(5353, Kind::Udp).key());
    assert_ne!(a, b, "test flows should differ in outer source");
    dut.run_cases(encap_cases());
    let stats = dut.stats();
    assert_eq!(dut.stat(Stat::FlowMiss), 8, "8 new flows");
    assert_eq!(dut.stat(Stat::FlowHit), 3, "3 data packets hit");
    assert_eq!(dut.stat(Stat::IcmpTooBig), 0);
    assert_eq!(dut.stat(Stat::DropEncap), 0);
    assert_eq!(dut.stat(Stat::NatReverse), 0);
    let packets = |id| stats.vip(id).unwrap().packets;
    assert_eq!(packets(VIP_TCP), 3, "syn, data, fit4");
    assert_eq!(packets(VIP_UDP), 1);
    assert_eq!(packets(VIP6_TCP), 3, "syn6, data6, fit6");
    assert_eq!(packets(VIP6_UDP), 1);
    assert_eq!(packets(VIP_4IN6), 3, "syn46, data46, fit46");
    // Bytes: the client's frame as it came in (no outer header).
    let syn = v4(40000, Kind::Syn).ip_packet().len() as u64;
    let fit4 = 1480u64;
    let vip = stats.vip(VIP_TCP).unwrap();
    assert_eq!(vip.bytes, 14 * 3 + syn + (syn + 1000) + fit4, "vip bytes");
}

/// IPv4 clients (IPIP and 4in6): ICMP "fragmentation needed".
fn frag_needed_cases() -> Vec<Case> {
    // A new flow whose first packet is too big: the route lookup says so.
    let new4 = v4(40030, Kind::Data).ip_len(1500);
    let new46 = v4in6(40030, Kind::Data).ip_len(1500);
    // An established flow: the cached route's MTU says so.
    let syn4 = v4(40031, Kind::Syn);
    let over4 = v4(40031, Kind::Data).ip_len(1481);
    let fit4 = v4(40031, Kind::Data).ip_len(1480);
    let syn46 = v4in6(40031, Kind::Syn);
    let over46 = v4in6(40031, Kind::Data).ip_len(1461);
    vec![
        case(
            "ipip new flow, 1500 bytes: fragmentation needed, mtu 1480",
            &new4,
            too_big(&new4, 1480),
        ),
        case("ipip syn of a flow", &syn4, ipip_out(&syn4)),
        case(
            "ipip established flow, 1481 bytes: fragmentation needed, mtu 1480",
            &over4,
            too_big(&over4, 1480),
        ),
        case(
            "ipip established flow, 1480 bytes fit",
            &fit4,
            ipip_out(&fit4),
        ),
        case(
            "4in6 new flow, 1500 bytes: fragmentation needed, mtu 1460",
            &new46,
            too_big(&new46, 1460),
        ),
        case("4in6 syn of a flow", &syn46, ip6_out(&syn46)),
        case(
            "4in6 established flow, 1461 bytes: fragmentation needed, mtu 1460",
            &over46,
            too_big(&over46, 1460),
        ),
    ]
}

/// Bytes 4-7 of the ICMP header are checked on their own first: 4-5 are
/// unused (zero) and 6-7 hold the next-hop MTU (RFC 1191). The checksum
/// would be right with the two halves swapped, so only the bytes show it.
#[test]
fn too_big_for_ipip_and_4in6_answers_fragmentation_needed() {
    let dut = Dut::new("fixdsrbig4", dsr_config());
    for case in frag_needed_cases() {
        let (action, out) = dut.run(&case.input);
        assert_eq!(action, case.action, "{}: action", case.name);
        let expected = case.expected();
        let expected_icmp = expected[14 + 20] == 3;
        if expected_icmp {
            let icmp = &out[14 + 20..];
            assert_eq!((icmp[0], icmp[1]), (3, 4), "{}: type 3 code 4", case.name);
            assert_eq!(
                hex(&icmp[4..8]),
                hex(&expected[14 + 20 + 4..14 + 20 + 8]),
                "{}: bytes 4-7 of the ICMP header must be 0000 (unused) then the \
                 next-hop MTU (RFC 1191); the MTU is in the unused half",
                case.name
            );
        }
        assert_eq!(hex(&out), hex(expected), "{}: bytes", case.name);
        verify_checksums(&out, case.name);
    }
    assert_eq!(dut.stat(Stat::IcmpTooBig), 4);
    assert_eq!(dut.stat(Stat::FlowMiss), 4, "2 big + 2 syn");
    assert_eq!(dut.stat(Stat::FlowHit), 3, "2 over + 1 fit");
    assert_eq!(dut.stat(Stat::DropEncap), 0);
}

/// IPv6 clients (IP6IP6): ICMPv6 "packet too big".
fn packet_too_big_cases() -> Vec<Case> {
    let new6 = v6(40030, Kind::Data).ip_len(1500);
    let syn6 = v6(40031, Kind::Syn);
    let over6 = v6(40031, Kind::Data).ip_len(1461);
    let fit6 = v6(40031, Kind::Data).ip_len(1460);
    vec![
        case(
            "ip6ip6 new flow, 1500 bytes: packet too big, mtu 1460",
            &new6,
            too_big(&new6, 1460),
        ),
        case("ip6ip6 syn of a flow", &syn6, ip6_out(&syn6)),
        case(
            "ip6ip6 established flow, 1461 bytes: packet too big, mtu 1460",
            &over6,
            too_big(&over6, 1460),
        ),
        case(
            "ip6ip6 established flow, 1460 bytes fit",
            &fit6,
            ip6_out(&fit6),
        ),
    ]
}

#[test]
fn too_big_for_ip6ip6_answers_packet_too_big() {
    let dut = Dut::new("fixdsrbig6", dsr_config());
    dut.run_cases(packet_too_big_cases());
    assert_eq!(dut.stat(Stat::IcmpTooBig), 2);
    assert_eq!(dut.stat(Stat::FlowMiss), 2, "1 big + 1 syn");
    assert_eq!(dut.stat(Stat::FlowHit), 2, "1 over + 1 fit");
    assert_eq!(dut.stat(Stat::DropEncap), 0);
}
