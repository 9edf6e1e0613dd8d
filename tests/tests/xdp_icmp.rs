//! Packet fixtures for ICMP errors about a VIP flow, run through
//! BPF_PROG_TEST_RUN on the real object. An error arriving for the VIP
//! quotes the VIP -> client packet the LB (NAT) or the backend (DSR) sent;
//! it must reach the flow's backend:
//! - NAT: the outer destination and the quoted source address and port
//!   become the backend's, with the outer IPv4 header checksum, the quoted
//!   IPv4 header checksum, the quoted TCP/UDP checksum (when quoted) and the
//!   ICMP checksum (ICMPv6: with its pseudo-header) all right;
//! - DSR: encapsulated to the backend unchanged, from the outer source
//!   the packets of the flow it is about get (the quoted flow's hash).
//!
//! An error a NAT backend sends about the client's packet (it quotes the
//! client -> backend packet it got) must reach the client from the VIP:
//! the outer source and the quoted destination address and port become
//! the VIP's, every checksum right, out the way replies go.
//!
//! Errors about unknown flows and non-errors (echo) pass untouched.
//! Expected frames are built with etherparse from their fields (the quoted
//! packet as the backend sent it, every checksum from scratch), and every
//! output is re-checked with an independent checksum routine.

mod xdp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IcmpEchoHeader, Icmpv4Type, Icmpv6Type,
    icmpv4::{DestUnreachableHeader, TimeExceededCode},
    icmpv6::{DestUnreachableCode, TimeExceededCode as TimeExceededCode6},
};
use xdp::{
    BACKEND_PORT, CLIENT, CLIENT_MAC, CLIENT6, Case, Dut, LB_MAC, VIP, VIP_PORT, VIP6, XDP_PASS,
    XDP_TX, backend_ip, backend_ip6, backend_mac, config_dual, frame, hex,
    packets::{Kind, Seg, dsr_source_v4, dsr_source_v6, flow_key, icmp4, icmp6, ip6_tunnel, ipip},
};
use xlb::config::Forward;
use xlb_common::Stat;
use xlb_lab::checksum::{ones_sum, verify_checksums};

const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);

/// The client's flows the errors are about (each opened first).
fn client_flows() -> Vec<Seg> {
    vec![
        Seg::new(CLIENT.into(), 40000, VIP.into(), VIP_PORT, Kind::Syn),
        Seg::new(CLIENT.into(), 5353, VIP.into(), VIP_PORT, Kind::Udp).payload(b"q"),
        Seg::new(CLIENT6.into(), 40000, VIP6.into(), VIP_PORT, Kind::Syn),
        Seg::new(CLIENT6.into(), 5353, VIP6.into(), VIP_PORT, Kind::Udp).payload(b"q"),
    ]
}

/// A VIP -> client packet of flow `cport` as it went out (TTL already
/// decremented once on its way, as a quoting router saw it).
fn vip_to_client(vip: IpAddr, client: IpAddr, cport: u16, kind: Kind) -> Seg {
    Seg::new(vip, VIP_PORT, client, cport, kind)
        .ttl(63)
        .payload(b"HTTP/1.1 200 OK\r\n")
}

/// The same packet with the backend as its source: what the quote must
/// say after NAT.
fn from_backend(seg: &Seg) -> Seg {
    let be: IpAddr = match seg.src {
        IpAddr::V4(_) => backend_ip(1).into(),
        IpAddr::V6(_) => backend_ip6(1).into(),
    };
    seg.clone().from(be, BACKEND_PORT)
}

/// `seg` (a VIP -> client UDP datagram) with two bytes put in front of its
/// payload so that, with the backend as its source, its UDP checksum comes
/// out zero, which is sent as 0xffff (RFC 768).
fn zero_after_nat(seg: &Seg) -> Seg {
    let csum = if seg.src.is_ipv4() { 20 + 6 } else { 40 + 6 };
    let mut payload = vec![0, 0];
    payload.extend_from_slice(&seg.payload);
    // The checksum with the two bytes zero is the complement of the sum;
    // adding it as a word makes the sum 0xffff, the checksum zero.
    let probe = from_backend(&seg.clone().payload(&payload)).ip_packet();
    payload[..2].copy_from_slice(&probe[csum..csum + 2]);
    let out = seg.clone().payload(&payload);
    let nat = from_backend(&out).ip_packet();
    assert_eq!(nat[csum..csum + 2], [0xff, 0xff], "a computed zero");
    assert_ne!(
        out.ip_packet()[csum..csum + 2],
        [0, 0],
        "not \"no checksum\""
    );
    out
}

/// The first `len` bytes of an IP packet (None: all of it).
fn quote(ip: &[u8], len: Option<usize>) -> Vec<u8> {
    ip[..len.unwrap_or(ip.len())].to_vec()
}

/// An ICMPv4 error from `from` to the VIP (input) and the same error as
/// the LB must send it on to backend 1 (output).
fn error4(from: Ipv4Addr, kind: Icmpv4Type, quoted: &[u8], rewritten: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (
        icmp4((CLIENT_MAC, LB_MAC), from, VIP, 64, kind.clone(), quoted),
        icmp4(
            (LB_MAC, backend_mac(1)),
            from,
            backend_ip(1),
            64,
            kind,
            rewritten,
        ),
    )
}

fn error6(from: Ipv6Addr, kind: Icmpv6Type, quoted: &[u8], rewritten: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (
        icmp6((CLIENT_MAC, LB_MAC), from, VIP6, 64, kind, quoted),
        icmp6(
            (LB_MAC, backend_mac(1)),
            from,
            backend_ip6(1),
            64,
            kind,
            rewritten,
        ),
    )
}

fn forwarded(name: &'static str, (input, output): (Vec<u8>, Vec<u8>)) -> Case {
    Case::tx(name, input, output)
}

fn passed(name: &'static str, input: Vec<u8>) -> Case {
    Case::kept(name, input, XDP_PASS)
}

fn nat_cases() -> Vec<Case> {
    let (c4, c6): (IpAddr, IpAddr) = (CLIENT.into(), CLIENT6.into());
    let (v4, v6): (IpAddr, IpAddr) = (VIP.into(), VIP6.into());
    let tcp4 = vip_to_client(v4, c4, 40000, Kind::Data);
    let udp4 = vip_to_client(v4, c4, 5353, Kind::Udp);
    let tcp6 = vip_to_client(v6, c6, 40000, Kind::Data);
    let udp6 = vip_to_client(v6, c6, 5353, Kind::Udp);
    let unknown4 = vip_to_client(v4, c4, 41000, Kind::Data);
    let unknown6 = vip_to_client(v6, c6, 41000, Kind::Data);
    let q = |s: &Seg, len| quote(&s.ip_packet(), len);
    let qb = |s: &Seg, len| quote(&from_backend(s).ip_packet(), len);

    // A UDP datagram sent without a checksum: it must stay zero.
    let mut udp4_nocsum = udp4.ip_packet();
    udp4_nocsum[26..28].copy_from_slice(&[0, 0]);
    let mut udp4_nocsum_b = from_backend(&udp4).ip_packet();
    udp4_nocsum_b[26..28].copy_from_slice(&[0, 0]);
    // Quoted UDP checksums that come out zero after the NAT: sent as 0xffff.
    let udp4_zero = zero_after_nat(&udp4);
    let udp6_zero = zero_after_nat(&udp6);
    // A quoted IPv4 header with options: the quoted ports are found by IHL.
    let with_opts = |s: &Seg| frame::with_ip_options(&s.build())[14..].to_vec();

    let port_unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    vec![
        forwarded(
            "v4 port unreachable from the client about a tcp flow, whole packet quoted",
            error4(
                CLIENT,
                port_unreach.clone(),
                &q(&tcp4, None),
                &qb(&tcp4, None),
            ),
        ),
        forwarded(
            "v4 fragmentation needed from a router, ip header + 8 bytes quoted",
            error4(
                ROUTER,
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400,
                }),
                &q(&tcp4, Some(28)),
                &qb(&tcp4, Some(28)),
            ),
        ),
        forwarded(
            "v4 time exceeded about a udp flow",
            error4(
                ROUTER,
                Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
                &q(&udp4, None),
                &qb(&udp4, None),
            ),
        ),
        forwarded(
            "v4 quoted udp without checksum keeps a zero checksum",
            error4(CLIENT, port_unreach.clone(), &udp4_nocsum, &udp4_nocsum_b),
        ),
        forwarded(
            "v4 quoted udp checksum that comes out zero is sent as 0xffff",
            error4(
                CLIENT,
                port_unreach.clone(),
                &q(&udp4_zero, None),
                &qb(&udp4_zero, None),
            ),
        ),
        forwarded(
            "v4 quoted ip header with options",
            error4(
                CLIENT,
                port_unreach.clone(),
                &with_opts(&tcp4),
                &with_opts(&from_backend(&tcp4)),
            ),
        ),
        forwarded(
            "v6 port unreachable (type 1 code 4) about a tcp flow",
            error6(
                CLIENT6,
                Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port),
                &q(&tcp6, None),
                &qb(&tcp6, None),
            ),
        ),
        forwarded(
            "v6 packet too big from a router about a tcp flow",
            error6(
                ROUTER6,
                Icmpv6Type::PacketTooBig { mtu: 1280 },
                &q(&tcp6, None),
                &qb(&tcp6, None),
            ),
        ),
        forwarded(
            "v6 time exceeded about a udp flow",
            error6(
                ROUTER6,
                Icmpv6Type::TimeExceeded(TimeExceededCode6::HopLimitExceeded),
                &q(&udp6, None),
                &qb(&udp6, None),
            ),
        ),
        forwarded(
            "v6 quoted udp checksum that comes out zero is sent as 0xffff",
            error6(
                CLIENT6,
                Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port),
                &q(&udp6_zero, None),
                &qb(&udp6_zero, None),
            ),
        ),
        passed(
            "v4 error about an unknown flow passes",
            error4(CLIENT, port_unreach, &q(&unknown4, None), &[]).0,
        ),
        passed(
            "v6 error about an unknown flow passes",
            error6(
                CLIENT6,
                Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port),
                &q(&unknown6, None),
                &[],
            )
            .0,
        ),
        passed("v4 echo request to the vip passes", echo4()),
        passed("v6 echo request to the vip passes", echo6()),
    ]
}

fn echo4() -> Vec<u8> {
    let echo = Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 7, seq: 1 });
    icmp4((CLIENT_MAC, LB_MAC), CLIENT, VIP, 64, echo, b"ping")
}

fn echo6() -> Vec<u8> {
    let echo = Icmpv6Type::EchoRequest(IcmpEchoHeader { id: 7, seq: 1 });
    icmp6((CLIENT_MAC, LB_MAC), CLIENT6, VIP6, 64, echo, b"ping")
}

fn open_flows(dut: &Dut) {
    for seg in client_flows() {
        let (action, _) = dut.run(&seg.build());
        assert_eq!(action, XDP_TX, "opening {seg:?}");
    }
}

#[test]
fn nat_icmp_errors_follow_the_flow_to_its_backend() {
    let dut = Dut::new("fixicmp", config_dual(1));
    open_flows(&dut);
    dut.run_cases(nat_cases());
    let stats = dut.stats();
    assert_eq!(dut.stat(Stat::IcmpToBackend), 10);
    assert_eq!(dut.stat(Stat::FlowMiss), 4, "only the 4 flows");
    assert_eq!(dut.stat(Stat::NatReverse), 0);
    let packets = |id| stats.vip(id).unwrap().packets;
    assert_eq!(packets(0), 1 + 3, "v4 tcp: syn + 3 errors");
    assert_eq!(packets(1), 1 + 3, "v4 udp: datagram + 3 errors");
    assert_eq!(packets(2), 1 + 2, "v6 tcp: syn + 2 errors");
    assert_eq!(packets(3), 1 + 2, "v6 udp: datagram + 2 errors");
}

/// A client -> backend packet of flow `cport` as the backend got it
/// (after NAT), and the same packet as the client sent it (to the VIP).
fn client_to_backend(v6: bool, cport: u16, kind: Kind) -> (Seg, Seg) {
    let (client, vip, be): (IpAddr, IpAddr, IpAddr) = if v6 {
        (CLIENT6.into(), VIP6.into(), backend_ip6(1).into())
    } else {
        (CLIENT.into(), VIP.into(), backend_ip(1).into())
    };
    let sent = Seg::new(client, cport, vip, VIP_PORT, kind).payload(b"GET / HTTP/1.1\r\n");
    let got = Seg::new(client, cport, be, BACKEND_PORT, kind).payload(b"GET / HTTP/1.1\r\n");
    (got, sent)
}

/// Errors backend 1 sends about client packets, as they arrive at the LB
/// (input) and as the client must get them (output).
fn backend_cases() -> Vec<Case> {
    let q = |s: &Seg, len| quote(&s.ip_packet(), len);
    let port_unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    let from_be4 = |kind: Icmpv4Type, got: &[u8], sent: &[u8]| {
        (
            icmp4(
                (backend_mac(1), LB_MAC),
                backend_ip(1),
                CLIENT,
                64,
                kind.clone(),
                got,
            ),
            icmp4((LB_MAC, CLIENT_MAC), VIP, CLIENT, 64, kind, sent),
        )
    };
    let (udp4_got, udp4_sent) = client_to_backend(false, 5353, Kind::Udp);
    let (tcp4_got, tcp4_sent) = client_to_backend(false, 40000, Kind::Data);
    let (udp6_got, udp6_sent) = client_to_backend(true, 5353, Kind::Udp);
    let (unknown_got, _) = client_to_backend(false, 41000, Kind::Udp);
    let unreach6 = Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port);
    vec![
        forwarded(
            "v4 port unreachable from the backend about a udp flow",
            from_be4(
                port_unreach.clone(),
                &q(&udp4_got, None),
                &q(&udp4_sent, None),
            ),
        ),
        forwarded(
            "v4 error from the backend about a tcp flow, ip header + 8 bytes quoted",
            from_be4(
                port_unreach.clone(),
                &q(&tcp4_got, Some(28)),
                &q(&tcp4_sent, Some(28)),
            ),
        ),
        forwarded(
            "v6 port unreachable from the backend about a udp flow",
            (
                icmp6(
                    (backend_mac(1), LB_MAC),
                    backend_ip6(1),
                    CLIENT6,
                    64,
                    unreach6,
                    &q(&udp6_got, None),
                ),
                icmp6(
                    (LB_MAC, CLIENT_MAC),
                    VIP6,
                    CLIENT6,
                    64,
                    unreach6,
                    &q(&udp6_sent, None),
                ),
            ),
        ),
        passed(
            "v4 error from the backend about an unknown flow passes",
            from_be4(port_unreach, &q(&unknown_got, None), &[]).0,
        ),
    ]
}

#[test]
fn nat_icmp_errors_from_a_backend_reach_the_client_from_the_vip() {
    let dut = Dut::new("fixicmpbe", config_dual(1));
    open_flows(&dut);
    dut.run_cases(backend_cases());
    let stats = dut.stats();
    assert_eq!(dut.stat(Stat::IcmpToClient), 3);
    assert_eq!(dut.stat(Stat::IcmpToBackend), 0);
    assert_eq!(dut.stat(Stat::NatReverse), 0);
    let packets = |id| stats.vip(id).unwrap().packets;
    assert_eq!(packets(0), 1 + 1, "v4 tcp: syn + 1 error");
    assert_eq!(packets(1), 1 + 1, "v4 udp: datagram + 1 error");
    assert_eq!(packets(3), 1 + 1, "v6 udp: datagram + 1 error");
}

/// The outer source a DSR packet of the client's flow `cport` (TCP to the
/// VIP) gets: the prefix with the hash of that flow.
fn flow_source4(cport: u16) -> Ipv4Addr {
    dsr_source_v4(&Seg::new(CLIENT.into(), cport, VIP.into(), VIP_PORT, Kind::Data).key())
}

fn flow_source6(cport: u16) -> Ipv6Addr {
    dsr_source_v6(&Seg::new(CLIENT6.into(), cport, VIP6.into(), VIP_PORT, Kind::Data).key())
}

/// DSR: the error goes to the backend encapsulated, as it came. The outer
/// source is the one the packets of the flow it is about get (the client
/// -> VIP flow of the quoted packet), so the backend's receive hashing
/// puts it with its connection; not one hashed from the ICMP packet's
/// own addresses (router -> VIP, no ports).
fn dsr_cases() -> Vec<Case> {
    let unknown4 = vip_to_client(VIP.into(), CLIENT.into(), 41000, Kind::Data).ip_packet();
    let (err4, err6) = (dsr_error4(40000), dsr_error6(40000));
    let (src4, src6) = (flow_source4(40000), flow_source6(40000));
    let port_unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    let err4_out = ipip(&err4[14..], src4, backend_ip(1), backend_mac(1));
    let err6_out = ip6_tunnel(&err6[14..], src6, backend_ip6(1), backend_mac(1));
    vec![
        Case::tx(
            "dsr: v4 fragmentation needed about a flow, in ipip to its backend",
            err4,
            err4_out,
        ),
        Case::tx(
            "dsr: v6 packet too big about a flow, in ip6ip6 to its backend",
            err6,
            err6_out,
        ),
        passed(
            "dsr: error about an unknown flow passes",
            icmp4(
                (CLIENT_MAC, LB_MAC),
                CLIENT,
                VIP,
                64,
                port_unreach,
                &unknown4,
            ),
        ),
        passed("dsr: v4 echo request passes", echo4()),
        passed("dsr: v6 echo request passes", echo6()),
    ]
}

/// A router's "fragmentation needed" about the VIP -> client packet of
/// the client's TCP flow `cport`, as it reaches the LB.
fn dsr_error4(cport: u16) -> Vec<u8> {
    let tcp4 = vip_to_client(VIP.into(), CLIENT.into(), cport, Kind::Data).ip_packet();
    let frag_needed =
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1400,
        });
    icmp4((CLIENT_MAC, LB_MAC), ROUTER, VIP, 64, frag_needed, &tcp4)
}

/// A router's "packet too big" about the VIP -> client packet of the
/// client's IPv6 TCP flow `cport`.
fn dsr_error6(cport: u16) -> Vec<u8> {
    let tcp6 = vip_to_client(VIP6.into(), CLIENT6.into(), cport, Kind::Data).ip_packet();
    icmp6(
        (CLIENT_MAC, LB_MAC),
        ROUTER6,
        VIP6,
        64,
        Icmpv6Type::PacketTooBig { mtu: 1280 },
        &tcp6,
    )
}

#[test]
fn dsr_icmp_errors_are_encapsulated_unchanged() {
    let mut config = config_dual(1);
    for l4 in &mut config.l4 {
        l4.forward = Forward::Dsr;
    }
    let dut = Dut::new("fixicmpdsr", config);
    open_flows(&dut);
    dut.run_cases(dsr_cases());
    let stats = dut.stats();
    assert_eq!(dut.stat(Stat::IcmpToBackend), 2);
    assert_eq!(dut.stat(Stat::IcmpTooBig), 0);
    assert_eq!(stats.vip(0).unwrap().packets, 1 + 1, "v4 tcp: syn + error");
    assert_eq!(stats.vip(2).unwrap().packets, 1 + 1, "v6 tcp: syn + error");
}

/// An ICMP error about a DSR flow leaves from exactly the outer source a
/// data packet of that flow leaves from, both as the program sends them
/// (IPv4 in IPIP, IPv6 in IP6IP6), and byte for byte as expected. The
/// error's own addresses would hash to another source: the check tells
/// the flow's source from that one.
#[test]
fn dsr_icmp_error_leaves_from_its_flows_outer_source() {
    let mut config = config_dual(1);
    for l4 in &mut config.l4 {
        l4.forward = Forward::Dsr;
    }
    let dut = Dut::new("fixicmpdsrsrc", config);
    open_flows(&dut);
    let (err4, err6) = (dsr_error4(40000), dsr_error6(40000));
    let cases = [
        (
            "v4",
            Seg::new(CLIENT.into(), 40000, VIP.into(), VIP_PORT, Kind::Data),
            // The outer IPv4 source, after the Ethernet header.
            14 + 12..14 + 16,
            ipip(
                &err4[14..],
                flow_source4(40000),
                backend_ip(1),
                backend_mac(1),
            ),
            err4,
            IpAddr::from(dsr_source_v4(&flow_key(ROUTER.into(), 0, VIP.into(), 0, 1))),
        ),
        (
            "v6",
            Seg::new(CLIENT6.into(), 40000, VIP6.into(), VIP_PORT, Kind::Data),
            14 + 8..14 + 24,
            ip6_tunnel(
                &err6[14..],
                flow_source6(40000),
                backend_ip6(1),
                backend_mac(1),
            ),
            err6,
            IpAddr::from(dsr_source_v6(&flow_key(
                ROUTER6.into(),
                0,
                VIP6.into(),
                0,
                58,
            ))),
        ),
    ];
    for (what, data, outer_src, expected, error, own) in cases {
        let (action, data_out) = dut.run(&data.payload(b"GET /").build());
        assert_eq!(action, XDP_TX, "{what}: data packet");
        let (action, error_out) = dut.run(&error);
        assert_eq!(action, XDP_TX, "{what}: error");
        let flow_src = &data_out[outer_src.clone()];
        let own = match own {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        assert_ne!(
            flow_src, own,
            "{what}: the fixture must tell the flow's source from the error's own"
        );
        assert_eq!(
            hex(&error_out[outer_src]),
            hex(flow_src),
            "{what}: the error's outer source is its flow's"
        );
        assert_eq!(hex(&error_out), hex(&expected), "{what}: error bytes");
        verify_checksums(&error_out, what);
    }
    assert_eq!(dut.stat(Stat::IcmpToBackend), 2);
}

/// The independent checker itself catches a wrong ICMP checksum and a
/// wrong quoted IPv4 header checksum (no kernel needed).
#[test]
fn checksum_checker_catches_bad_icmp_and_quoted_header() {
    let tcp4 = vip_to_client(VIP.into(), CLIENT.into(), 40000, Kind::Data).ip_packet();
    let port_unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    let good = icmp4((CLIENT_MAC, LB_MAC), ROUTER, VIP, 64, port_unreach, &tcp4);
    verify_checksums(&good, "good");
    let mut bad_icmp = good.clone();
    bad_icmp[14 + 20 + 2] ^= 0x01;
    let mut bad_quote = good.clone();
    // Quoted source changed, ICMP checksum fixed up, quoted header checksum
    // left stale: only the quoted-header check can see it.
    bad_quote[14 + 20 + 8 + 12] ^= 0x01;
    bad_quote[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&[0, 0]);
    let icmp_sum = !ones_sum(0, &bad_quote[14 + 20..]);
    bad_quote[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&icmp_sum.to_be_bytes());
    for (frame, what) in [
        (bad_icmp, "icmp checksum"),
        (bad_quote, "quoted ipv4 header"),
    ] {
        let caught = std::panic::catch_unwind(|| verify_checksums(&frame, what));
        assert!(caught.is_err(), "a bad {what} went unnoticed");
    }
}
