//! Packet fixtures for the L4 NAT data path, run through BPF_PROG_TEST_RUN
//! on the real object. Each case: input frame, expected action, expected
//! output bytes (built independently with etherparse, so every checksum in
//! an expected frame is computed from scratch).

mod xdp;

use xdp::{
    BACKEND_PORT, CLIENT, CLIENT_MAC, Dut, LB_MAC, VIP, VIP_PORT, XDP_DROP, XDP_PASS, XDP_TX,
    backend_ip, backend_mac, config, frame, hex, verify_checksums,
};
use xlb_common::Stat;

/// Client -> VIP TCP segment of flow `sport`.
fn client_tcp(sport: u16, syn: bool, payload: &[u8]) -> frame::Tcp {
    frame::Tcp {
        src_mac: CLIENT_MAC,
        dst_mac: LB_MAC,
        src: CLIENT,
        sport,
        dst: VIP,
        dport: VIP_PORT,
        syn,
        payload: payload.to_vec(),
    }
}

/// The same segment as the LB must send it to backend 1.
fn to_backend1(mut f: frame::Tcp) -> frame::Tcp {
    f.src_mac = LB_MAC;
    f.dst_mac = backend_mac(1);
    f.dst = backend_ip(1);
    f.dport = BACKEND_PORT;
    f
}

fn client_udp(payload: &[u8]) -> frame::Udp {
    frame::Udp {
        src_mac: CLIENT_MAC,
        dst_mac: LB_MAC,
        src: CLIENT,
        sport: 5353,
        dst: VIP,
        dport: VIP_PORT,
        payload: payload.to_vec(),
    }
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    action: u32,
    /// None: the packet must come out unchanged.
    output: Option<Vec<u8>>,
}

fn nat_cases() -> Vec<Case> {
    let request = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n";
    let reply = frame::Tcp {
        src_mac: backend_mac(1),
        dst_mac: LB_MAC,
        src: backend_ip(1),
        sport: BACKEND_PORT,
        dst: CLIENT,
        dport: 40000,
        syn: false,
        payload: b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
    };
    let reply_out = frame::Tcp {
        src_mac: LB_MAC,
        dst_mac: CLIENT_MAC,
        src: VIP,
        sport: VIP_PORT,
        ..reply.clone()
    };
    let udp = client_udp(b"hello over udp");
    let udp_out = frame::Udp {
        src_mac: LB_MAC,
        dst_mac: backend_mac(1),
        dst: backend_ip(1),
        dport: BACKEND_PORT,
        ..udp.clone()
    };
    let mut udp_no_csum = udp.build();
    udp_no_csum[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let mut udp_no_csum_out = udp_out.build();
    udp_no_csum_out[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);

    vec![
        Case {
            name: "tcp syn to the vip goes to the backend, out the same interface",
            input: client_tcp(40000, true, b"").build(),
            action: XDP_TX,
            output: Some(to_backend1(client_tcp(40000, true, b"")).build()),
        },
        Case {
            name: "tcp data of the same flow (connection-table hit)",
            input: client_tcp(40000, false, request).build(),
            action: XDP_TX,
            output: Some(to_backend1(client_tcp(40000, false, request)).build()),
        },
        Case {
            name: "backend reply goes back to the client as vip:port",
            input: reply.build(),
            action: XDP_TX,
            output: Some(reply_out.build()),
        },
        Case {
            name: "udp datagram to the vip",
            input: udp.build(),
            action: XDP_TX,
            output: Some(udp_out.build()),
        },
        Case {
            name: "udp without checksum keeps a zero checksum",
            input: udp_no_csum,
            action: XDP_TX,
            output: Some(udp_no_csum_out),
        },
    ]
}

#[test]
fn nat_fixtures_exact_bytes() {
    let dut = Dut::new("fixnat", config(1));
    for case in nat_cases() {
        let (action, out) = dut.run(&case.input);
        assert_eq!(action, case.action, "{}: action", case.name);
        let expected = case.output.unwrap_or(case.input.clone());
        assert_eq!(hex(&out), hex(&expected), "{}: bytes", case.name);
        verify_checksums(&out, case.name);
    }
    let stats = dut.stats();
    assert_eq!(
        stats.stat(Stat::FlowMiss).unwrap(),
        2,
        "syn and udp are new flows"
    );
    assert_eq!(
        stats.stat(Stat::FlowHit).unwrap(),
        2,
        "data and udp (no csum) hit"
    );
    assert_eq!(stats.stat(Stat::NatReverse).unwrap(), 1);
    let vip = stats.vip(0).unwrap();
    assert_eq!(vip.packets, 3, "tcp vip: syn, data, reply");
}

/// Frames the data path must leave alone or drop by the documented rule.
fn parse_rule_cases() -> Vec<Case> {
    let syn = client_tcp(40001, true, b"").build();
    let mut cases = Vec::new();

    let mut other_port = client_tcp(40001, true, b"");
    other_port.dport = 22;
    cases.push(Case {
        name: "vip address on a port with no vip passes",
        input: other_port.build(),
        action: XDP_PASS,
        output: None,
    });
    let mut not_vip = client_tcp(40001, true, b"");
    not_vip.dst = "198.18.0.1".parse().unwrap();
    cases.push(Case {
        name: "tcp to the lb's own address passes",
        input: not_vip.build(),
        action: XDP_PASS,
        output: None,
    });
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&VIP.octets());
    cases.push(Case {
        name: "arp passes",
        input: arp,
        action: XDP_PASS,
        output: None,
    });
    cases.push(Case {
        name: "ipv6 passes (v1)",
        input: frame::ipv6_tcp(CLIENT_MAC, LB_MAC),
        action: XDP_PASS,
        output: None,
    });
    // (A frame shorter than Ethernet cannot be fed: BPF_PROG_TEST_RUN
    // rejects inputs below 14 bytes; the program passes such frames.)
    cases.push(Case {
        name: "ipv4 header cut short is dropped",
        input: syn[..14 + 12].to_vec(),
        action: XDP_DROP,
        output: None,
    });
    let mut bad_ihl = syn.clone();
    bad_ihl[14] = 0x44;
    cases.push(Case {
        name: "ihl below 5 is dropped",
        input: bad_ihl,
        action: XDP_DROP,
        output: None,
    });
    let mut bad_version = syn.clone();
    bad_version[14] = 0x65;
    cases.push(Case {
        name: "version 6 in an ipv4 frame is dropped",
        input: bad_version,
        action: XDP_DROP,
        output: None,
    });
    let mut too_long = syn.clone();
    too_long[16..18].copy_from_slice(&1500u16.to_be_bytes());
    cases.push(Case {
        name: "total length beyond the frame is dropped",
        input: too_long,
        action: XDP_DROP,
        output: None,
    });
    let mut short_tcp = syn[..14 + 20 + 10].to_vec();
    short_tcp[16..18].copy_from_slice(&30u16.to_be_bytes());
    cases.push(Case {
        name: "tcp header cut short is dropped",
        input: short_tcp,
        action: XDP_DROP,
        output: None,
    });
    cases
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
    let stats = dut.stats();
    assert_eq!(stats.stat(Stat::DropMalformedIp).unwrap(), 4);
    assert_eq!(stats.stat(Stat::DropMalformedL4).unwrap(), 1);
    assert_eq!(
        stats.stat(Stat::FlowMiss).unwrap(),
        0,
        "nothing reached a vip"
    );
}

#[test]
fn ip_options_are_kept_and_the_l4_header_found_by_ihl() {
    let dut = Dut::new("fixopts", config(1));
    let input = frame::with_ip_options(&client_tcp(40002, true, b"").build());
    let expected = frame::with_ip_options(&to_backend1(client_tcp(40002, true, b"")).build());
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
    assert_eq!(dut.stats().stat(Stat::DropNoBackend).unwrap(), 1);
}
