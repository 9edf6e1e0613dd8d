//! Packet fixtures for the L4 NAT data path, run through BPF_PROG_TEST_RUN
//! on the real object. Each case: input frame, expected action, expected
//! output bytes (built independently with etherparse, so every checksum in
//! an expected frame is computed from scratch).

#[path = "xdp/frames.rs"]
mod frames;
mod xdp;

use std::net::IpAddr;

use frames::udp_nat;
use xdp::{
    BACKEND_PORT, CLIENT, CLIENT_MAC, CLIENT6, Case, Dut, LB_MAC, VIP, VIP_PORT, VIP6, XDP_DROP,
    XDP_PASS, XDP_TX, backend_ip, backend_ip6, backend_mac, config, config_dual,
    frame::{self, client_tcp},
    hex,
    packets::{Kind, Seg, too_big},
};
use xlb_common::Stat;
use xlb_lab::checksum::{fix_ipv4_checksum, verify_checksums};

fn nat_cases() -> Vec<Case> {
    let request = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n";
    let reply = frame::backend_reply(1, 40000);
    let (udp, udp_out) = udp_nat(CLIENT.into(), 5353, VIP.into(), 1, b"hello over udp");
    let mut udp_no_csum = udp.clone();
    udp_no_csum[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let mut udp_no_csum_out = udp_out.clone();
    udp_no_csum_out[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);

    vec![
        Case::tx(
            "tcp syn to the vip goes to the backend, out the same interface",
            client_tcp(40000, true, b"").build(),
            client_tcp(40000, true, b"").nat_to_backend(1).build(),
        ),
        Case::tx(
            "tcp data of the same flow (connection-table hit)",
            client_tcp(40000, false, request).build(),
            client_tcp(40000, false, request).nat_to_backend(1).build(),
        ),
        Case::tx(
            "backend reply goes back to the client as vip:port",
            reply.build(),
            reply.nat_to_client().build(),
        ),
        Case::tx("udp datagram to the vip", udp, udp_out),
        Case::tx(
            "udp without checksum keeps a zero checksum",
            udp_no_csum,
            udp_no_csum_out,
        ),
    ]
}

#[test]
fn nat_fixtures_exact_bytes() {
    let dut = Dut::new("fixnat", config(1));
    dut.run_cases(nat_cases());
    assert_eq!(dut.stat(Stat::FlowMiss), 2, "syn and udp are new flows");
    assert_eq!(dut.stat(Stat::FlowHit), 2, "data and udp (no csum) hit");
    assert_eq!(dut.stat(Stat::NatReverse), 1);
    let vip = dut.stats().vip(0).unwrap();
    assert_eq!(vip.packets, 3, "tcp vip: syn, data, reply");
}

/// Frames the data path must leave alone or drop by the documented rule.
fn parse_rule_cases() -> Vec<Case> {
    let syn = client_tcp(40001, true, b"").build();
    let mut other_port = client_tcp(40001, true, b"");
    other_port.dport = 22;
    let mut not_vip = client_tcp(40001, true, b"");
    not_vip.dst = "198.18.0.1".parse().unwrap();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&VIP.octets());
    let mut bad_ihl = syn.clone();
    bad_ihl[14] = 0x44;
    let mut bad_version = syn.clone();
    bad_version[14] = 0x65;
    let mut too_long = syn.clone();
    too_long[16..18].copy_from_slice(&1500u16.to_be_bytes());
    let mut short_tcp = syn[..14 + 20 + 10].to_vec();
    short_tcp[16..18].copy_from_slice(&30u16.to_be_bytes());
    vec![
        Case::kept(
            "vip address on a port with no vip passes",
            other_port.build(),
            XDP_PASS,
        ),
        Case::kept(
            "tcp to the lb's own address passes",
            not_vip.build(),
            XDP_PASS,
        ),
        Case::kept("arp passes", arp, XDP_PASS),
        Case::kept(
            "ipv6 passes (v1)",
            frame::ipv6_tcp(CLIENT_MAC, LB_MAC),
            XDP_PASS,
        ),
        // (A frame shorter than Ethernet cannot be fed: BPF_PROG_TEST_RUN
        // rejects inputs below 14 bytes; the program passes such frames.)
        Case::kept(
            "ipv4 header cut short is dropped",
            syn[..14 + 12].to_vec(),
            XDP_DROP,
        ),
        Case::kept("ihl below 5 is dropped", bad_ihl, XDP_DROP),
        Case::kept(
            "version 6 in an ipv4 frame is dropped",
            bad_version,
            XDP_DROP,
        ),
        Case::kept(
            "total length beyond the frame is dropped",
            too_long,
            XDP_DROP,
        ),
        Case::kept("tcp header cut short is dropped", short_tcp, XDP_DROP),
    ]
}

#[test]
fn parse_rules() {
    let dut = Dut::new("fixparse", config(1));
    for case in parse_rule_cases() {
        let (action, out) = dut.run(&case.input);
        assert_eq!(action, case.action, "{}: action", case.name);
        if action == XDP_PASS {
            assert_eq!(
                hex(&out),
                hex(&case.input),
                "{}: passes untouched",
                case.name
            );
        }
    }
    assert_eq!(dut.stat(Stat::DropMalformedIp), 4);
    assert_eq!(dut.stat(Stat::DropMalformedL4), 1);
    assert_eq!(dut.stat(Stat::FlowMiss), 0, "nothing reached a vip");
}

#[test]
fn ip_options_are_kept_and_the_l4_header_found_by_ihl() {
    let dut = Dut::new("fixopts", config(1));
    let input = frame::with_ip_options(&client_tcp(40002, true, b"").build());
    let expected = frame::with_ip_options(&client_tcp(40002, true, b"").nat_to_backend(1).build());
    let (action, out) = dut.run(&input);
    assert_eq!(action, XDP_TX);
    assert_eq!(hex(&out), hex(&expected));
    verify_checksums(&out, "ip options");
}

#[test]
fn vip_without_live_backend_drops() {
    let mut dut = Dut::new("fixnobe", config(1));
    let id = dut.registry.find("pool", "b1").unwrap().id;
    dut.registry.set_healthy(id, false);
    dut.sync();
    let (action, _) = dut.run(&client_tcp(40003, true, b"").build());
    assert_eq!(action, XDP_DROP);
    assert_eq!(dut.stat(Stat::DropNoBackend), 1);
}

/// Packets over the route's MTU (eth0's 1500) of a new and of an
/// established flow, IPv4 and IPv6, and one that fits; the IPv4 one again
/// without DF.
fn too_big_cases() -> Vec<Case> {
    let v4 = |sport| Seg::new(CLIENT.into(), sport, VIP.into(), VIP_PORT, Kind::Data);
    let v6 = |sport| Seg::new(CLIENT6.into(), sport, VIP6.into(), VIP_PORT, Kind::Data);
    let nat = |seg: &Seg, be: IpAddr| {
        seg.clone()
            .to(be, BACKEND_PORT)
            .macs(LB_MAC, backend_mac(1))
            .build()
    };
    let (be4, be6): (IpAddr, IpAddr) = (backend_ip(1).into(), backend_ip6(1).into());
    let syn4 = Seg {
        kind: Kind::Syn,
        ..v4(40031)
    };
    let syn6 = Seg {
        kind: Kind::Syn,
        ..v6(40031)
    };
    let (new4, over4, fit4) = (
        v4(40030).ip_len(1501),
        v4(40031).ip_len(1501),
        v4(40031).ip_len(1500),
    );
    let (new6, over6, fit6) = (
        v6(40030).ip_len(1501),
        v6(40031).ip_len(1501),
        v6(40031).ip_len(1500),
    );
    vec![
        Case::tx(
            "v4 new flow, 1501 bytes",
            new4.build(),
            too_big(&new4, 1500),
        ),
        Case::tx("v4 syn of a flow", syn4.build(), nat(&syn4, be4)),
        Case::tx(
            "v4 established, 1501 bytes",
            over4.build(),
            too_big(&over4, 1500),
        ),
        Case::tx(
            "v4 established, 1500 bytes fit",
            fit4.build(),
            nat(&fit4, be4),
        ),
        // The same over-sized segment without DF: rewritten, then passed.
        Case {
            name: "v4 established, 1501 bytes, no df",
            input: clear_df(&over4.build()),
            action: XDP_PASS,
            output: Some(clear_df(&over4.clone().to(be4, BACKEND_PORT).build())),
        },
        Case::tx(
            "v6 new flow, 1501 bytes",
            new6.build(),
            too_big(&new6, 1500),
        ),
        Case::tx("v6 syn of a flow", syn6.build(), nat(&syn6, be6)),
        Case::tx(
            "v6 established, 1501 bytes",
            over6.build(),
            too_big(&over6, 1500),
        ),
        Case::tx(
            "v6 established, 1500 bytes fit",
            fit6.build(),
            nat(&fit6, be6),
        ),
    ]
}

/// A NAT packet over the route's MTU (eth0's 1500) gets what DSR gives a
/// packet that would not fit its tunnel: ICMP "fragmentation needed" /
/// "packet too big" from the VIP, quoting the packet as the client sent
/// it, whether the route comes from a fresh lookup (new flow) or from the
/// cache (established flow). An IPv4 packet without DF goes to the kernel
/// (rewritten), which may fragment it.
#[test]
fn over_the_route_mtu_answers_too_big() {
    let dut = Dut::new("fixnatmtu", config_dual(1));
    dut.run_cases(too_big_cases());
    assert_eq!(dut.stat(Stat::IcmpTooBig), 4);
    assert_eq!(dut.stat(Stat::FlowMiss), 4, "2 big + 2 syn");
    assert_eq!(dut.stat(Stat::FlowHit), 5, "2 over, 2 fit, no df");
}

/// The IPv4 frame with DF cleared (header checksum made right again).
fn clear_df(frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[14 + 6] &= !0x40;
    fix_ipv4_checksum(&mut out, 14);
    out
}

/// Policy routing by IP protocol sees a NAT packet as the protocol it
/// leaves with: with a rule sending TCP by way of table 100 (a gateway),
/// the SYN goes to the gateway's MAC, not to the server's own neighbour
/// entry the main table gives. (The lookup once asked for the DSR tunnel's
/// protocol for every packet, which such a rule never matches.)
#[test]
fn nat_route_lookup_asks_for_the_packets_protocol() {
    const GATEWAY: &str = "198.18.1.254";
    const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0xfe];
    let dut = Dut::new("fixnatrule", config(1));
    // The test thread is inside the DUT's namespace: these commands are too.
    for line in [
        format!("ip neigh add {GATEWAY} lladdr 02:00:00:00:01:fe dev eth0 nud permanent"),
        format!(
            "ip route add {}/32 via {GATEWAY} dev eth0 table 100",
            backend_ip(1)
        ),
        "ip rule add ipproto tcp lookup 100 pref 100".to_string(),
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {out:?}");
    }
    let mut expected = client_tcp(40010, true, b"").nat_to_backend(1);
    expected.dst_mac = GATEWAY_MAC;
    dut.run_cases([Case::tx(
        "tcp syn routed by the tcp rule's table",
        client_tcp(40010, true, b"").build(),
        expected.build(),
    )]);
}
