//! Packet fixtures for `xlb_decap` (the DSR backend's decapsulation), run
//! through BPF_PROG_TEST_RUN on the real object inside a lab namespace.
//! Each case: input frame, expected action, expected output bytes (built
//! independently with etherparse) and the counter it must bump. After a
//! decapsulation BPF_PROG_TEST_RUN returns the shortened frame.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions};
use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6Header, PacketBuilder};
use xlb::decap::Decap;
use xlb_common::DecapStat;
use xlb_lab::{Lab, NetnsGuard, checksum::fix_ipv4_checksum};

const XDP_PASS: u32 = 2;

/// The LB's MAC (outer source) and the backend's (destination).
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x11];

const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const OTHER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
const LB4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const BACKEND4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
fn client6() -> Ipv6Addr {
    v6("2001:db8::2")
}
fn vip6() -> Ipv6Addr {
    v6("2001:db8::100")
}
fn lb6() -> Ipv6Addr {
    v6("2001:db8:1::1")
}
fn backend6() -> Ipv6Addr {
    v6("2001:db8:1::11")
}

/// The program loaded in a namespace of its own.
struct Dut {
    decap: Decap,
    _inside: NetnsGuard,
    _lab: Lab,
}

impl Dut {
    fn new(test: &str, vips: &[IpAddr]) -> Dut {
        let lab = Lab::new(test).expect("lab");
        let ns = lab.namespace("dut").expect("namespace");
        let inside = ns.enter().expect("enter namespace");
        let mut decap = Decap::load().expect("load xlb_decap");
        for vip in vips {
            decap.add_vip(*vip).expect("add vip");
        }
        Dut {
            decap,
            _inside: inside,
            _lab: lab,
        }
    }

    fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 256];
        let result = self
            .decap
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat: 1,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }
}

fn eth(ether_type: EtherType) -> Vec<u8> {
    Ethernet2Header {
        source: LB_MAC,
        destination: BACKEND_MAC,
        ether_type,
    }
    .to_bytes()
    .to_vec()
}

/// An inner packet: IP header, transport header, payload (no Ethernet).
fn inner_udp4(dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4(CLIENT4.octets(), dst.octets(), 64).udp(40000, 5140);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn inner_tcp4(dst: Ipv4Addr) -> Vec<u8> {
    let b = PacketBuilder::ipv4(CLIENT4.octets(), dst.octets(), 64)
        .tcp(40001, 80, 0x1234_5678, 64240)
        .syn();
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

fn inner_tcp6(dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv6(client6().octets(), dst.octets(), 64)
        .tcp(40002, 443, 7, 64240)
        .ack(1)
        .psh();
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// `inner` in an outer IPv4 header (LB -> backend) with `options` (a
/// multiple of 4 bytes) and the given protocol.
fn outer4_with(inner: &[u8], proto: IpNumber, options: &[u8]) -> Vec<u8> {
    let mut ip = Ipv4Header::new(
        inner.len() as u16,
        64,
        proto,
        LB4.octets(),
        BACKEND4.octets(),
    )
    .unwrap();
    if !options.is_empty() {
        ip.options = etherparse::Ipv4Options::try_from(options).unwrap();
        ip.total_len += options.len() as u16;
    }
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = eth(EtherType::IPV4);
    ip.write(&mut out).unwrap();
    out.extend_from_slice(inner);
    out
}

fn ipip(inner: &[u8]) -> Vec<u8> {
    outer4_with(inner, IpNumber::IPV4, &[])
}

/// `inner` in an outer IPv6 header (LB -> backend), next header `proto`.
fn outer6(inner: &[u8], proto: IpNumber) -> Vec<u8> {
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: inner.len() as u16,
        next_header: proto,
        hop_limit: 64,
        source: lb6().octets(),
        destination: backend6().octets(),
    };
    let mut out = eth(EtherType::IPV6);
    ip.write(&mut out).unwrap();
    out.extend_from_slice(inner);
    out
}

/// What the stack must get: the same MACs, the inner family's ethertype,
/// the inner packet unchanged.
fn decapsulated(inner: &[u8], ether_type: EtherType) -> Vec<u8> {
    let mut out = eth(ether_type);
    out.extend_from_slice(inner);
    out
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    /// None: the frame must come out unchanged.
    output: Option<Vec<u8>>,
    stat: DecapStat,
}

fn decap_cases() -> Vec<Case> {
    let udp4 = inner_udp4(VIP4, b"syslog line over dsr");
    let tcp4 = inner_tcp4(VIP4);
    let tcp6 = inner_tcp6(vip6(), b"GET / HTTP/1.1\r\n\r\n");
    let mut padded = ipip(&udp4);
    padded.extend_from_slice(&[0; 6]);
    let mut padded_out = decapsulated(&udp4, EtherType::IPV4);
    padded_out.extend_from_slice(&[0; 6]);
    vec![
        Case {
            name: "ipv4 in ipv4, udp to the vip",
            input: ipip(&udp4),
            output: Some(decapsulated(&udp4, EtherType::IPV4)),
            stat: DecapStat::DecapIpip,
        },
        Case {
            name: "ipv4 in ipv4, tcp syn to the vip",
            input: ipip(&tcp4),
            output: Some(decapsulated(&tcp4, EtherType::IPV4)),
            stat: DecapStat::DecapIpip,
        },
        Case {
            name: "ipv4 in ipv4 with outer ip options: the whole outer header goes",
            input: outer4_with(&udp4, IpNumber::IPV4, &[1, 1, 1, 0, 1, 1, 1, 0]),
            output: Some(decapsulated(&udp4, EtherType::IPV4)),
            stat: DecapStat::DecapIpip,
        },
        Case {
            name: "ipv4 in ipv4 with ethernet padding: the padding stays",
            input: padded,
            output: Some(padded_out),
            stat: DecapStat::DecapIpip,
        },
        Case {
            name: "ipv6 in ipv6, tcp to the vip",
            input: outer6(&tcp6, IpNumber::IPV6),
            output: Some(decapsulated(&tcp6, EtherType::IPV6)),
            stat: DecapStat::DecapIp6ip6,
        },
        Case {
            name: "ipv4 in ipv6, udp to the vip",
            input: outer6(&udp4, IpNumber::IPV4),
            output: Some(decapsulated(&udp4, EtherType::IPV4)),
            stat: DecapStat::DecapIp4in6,
        },
        Case {
            name: "ipv4 in ipv6, tcp to the vip",
            input: outer6(&tcp4, IpNumber::IPV4),
            output: Some(decapsulated(&tcp4, EtherType::IPV4)),
            stat: DecapStat::DecapIp4in6,
        },
    ]
}

fn untouched(name: &'static str, input: Vec<u8>, stat: DecapStat) -> Case {
    Case {
        name,
        input,
        output: None,
        stat,
    }
}

fn pass_cases() -> Vec<Case> {
    let udp4 = inner_udp4(VIP4, b"hello");
    let tcp6 = inner_tcp6(vip6(), b"x");
    let ipip_ok = ipip(&udp4);
    let ip6ip6_ok = outer6(&tcp6, IpNumber::IPV6);
    let mut cases = vec![
        // Not for a VIP: the stack decides (here it has no tunnel device).
        untouched(
            "ipv4 in ipv4 for another address",
            ipip(&inner_udp4(OTHER4, b"hello")),
            DecapStat::PassNotVip,
        ),
        untouched(
            "ipv6 in ipv6 for another address",
            outer6(&inner_tcp6(v6("2001:db8::101"), b"x"), IpNumber::IPV6),
            DecapStat::PassNotVip,
        ),
        untouched(
            "ipv4 in ipv6 for another address",
            outer6(&inner_tcp4(OTHER4), IpNumber::IPV4),
            DecapStat::PassNotVip,
        ),
        // Not a tunnel.
        untouched(
            "plain udp to the vip",
            decapsulated(&udp4, EtherType::IPV4),
            DecapStat::PassNotTunnel,
        ),
        untouched(
            "plain ipv6 tcp to the vip",
            decapsulated(&tcp6, EtherType::IPV6),
            DecapStat::PassNotTunnel,
        ),
        untouched(
            "ipv6 in ipv4 (protocol 41) is not one of ours",
            outer4_with(&tcp6, IpNumber::IPV6, &[]),
            DecapStat::PassNotTunnel,
        ),
        untouched("arp", arp(), DecapStat::PassNotTunnel),
        untouched(
            "vlan-tagged ipip",
            vlan_tagged(&ipip_ok),
            DecapStat::PassNotTunnel,
        ),
        // Truncated or malformed outer headers.
        untouched(
            "outer ipv4 header cut short",
            ipip_ok[..14 + 12].to_vec(),
            DecapStat::PassMalformed,
        ),
        untouched(
            "outer ipv4 total length beyond the frame",
            ipip_ok[..ipip_ok.len() - 1].to_vec(),
            DecapStat::PassMalformed,
        ),
        untouched(
            "outer ipv4 ihl below 5",
            with_byte(&ipip_ok, 14, 0x44),
            DecapStat::PassMalformed,
        ),
        untouched(
            "outer ipv4 version not 4",
            with_byte(&ipip_ok, 14, 0x55),
            DecapStat::PassMalformed,
        ),
        untouched(
            "outer ipv6 header cut short",
            ip6ip6_ok[..14 + 30].to_vec(),
            DecapStat::PassMalformed,
        ),
        untouched(
            "outer ipv6 payload length beyond the frame",
            ip6ip6_ok[..ip6ip6_ok.len() - 1].to_vec(),
            DecapStat::PassMalformed,
        ),
        untouched(
            "outer ipv6 version not 6",
            with_byte(&ip6ip6_ok, 14, 0x40),
            DecapStat::PassMalformed,
        ),
        // Truncated or malformed inner headers (outer lengths consistent).
        untouched(
            "inner ipv4 header cut short",
            ipip(&udp4[..12]),
            DecapStat::PassMalformed,
        ),
        untouched(
            "inner ipv4 total length beyond the outer payload",
            ipip(&udp4[..udp4.len() - 1]),
            DecapStat::PassMalformed,
        ),
        untouched(
            "inner ipv4 version not 4",
            ipip(&with_byte(&udp4, 0, 0x65)),
            DecapStat::PassMalformed,
        ),
        untouched(
            "inner ipv4 ihl below 5",
            ipip(&with_byte(&udp4, 0, 0x44)),
            DecapStat::PassMalformed,
        ),
        untouched(
            "inner ipv6 header cut short",
            outer6(&tcp6[..30], IpNumber::IPV6),
            DecapStat::PassMalformed,
        ),
        untouched(
            "inner ipv6 payload length beyond the outer payload",
            outer6(&tcp6[..tcp6.len() - 1], IpNumber::IPV6),
            DecapStat::PassMalformed,
        ),
        untouched(
            "inner ipv4 in ipv6 cut short",
            outer6(&udp4[..19], IpNumber::IPV4),
            DecapStat::PassMalformed,
        ),
        untouched(
            "inner ipv6 version not 6",
            outer6(&with_byte(&tcp6, 0, 0x40), IpNumber::IPV6),
            DecapStat::PassMalformed,
        ),
    ];
    // An outer fragment (MF set) cannot be decapsulated alone.
    let mut first_fragment = ipip_ok.clone();
    first_fragment[14 + 6] |= 0x20;
    fix_ipv4_checksum(&mut first_fragment, 14);
    cases.push(untouched(
        "outer ipv4 fragment",
        first_fragment,
        DecapStat::PassFragment,
    ));
    let mut later_fragment = ipip_ok.clone();
    later_fragment[14 + 6] = 0;
    later_fragment[14 + 7] = 0x10;
    fix_ipv4_checksum(&mut later_fragment, 14);
    cases.push(untouched(
        "outer ipv4 later fragment",
        later_fragment,
        DecapStat::PassFragment,
    ));
    cases
}

fn with_byte(b: &[u8], i: usize, v: u8) -> Vec<u8> {
    let mut out = b.to_vec();
    out[i] = v;
    out
}

fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&LB4.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&VIP4.octets());
    f
}

/// The frame with an 802.1Q tag (VLAN 7) after the MACs.
fn vlan_tagged(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    out.extend_from_slice(&frame[12..]);
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn decap_fixtures_exact_bytes_and_counters() {
    let dut = Dut::new("fixdecap", &[VIP4.into(), vip6().into()]);
    assert_eq!(
        dut.decap.vips().unwrap(),
        [IpAddr::from(VIP4), IpAddr::from(vip6())].into(),
        "vip map"
    );
    let mut expected = [0u64; xlb_common::DECAP_STAT_COUNT as usize];
    for case in decap_cases().into_iter().chain(pass_cases()) {
        let (action, out) = dut.run(&case.input);
        assert_eq!(action, XDP_PASS, "{}: action", case.name);
        let want = case.output.unwrap_or_else(|| case.input.clone());
        assert_eq!(hex(&out), hex(&want), "{}: bytes", case.name);
        expected[case.stat as usize] += 1;
        let got: Vec<u64> = dut.decap.stats().unwrap().iter().map(|s| s.1).collect();
        assert_eq!(got, expected, "{}: counters after this case", case.name);
    }
    for (stat, n) in dut.decap.stats().unwrap() {
        assert_eq!(n, expected[stat as usize], "{}", stat.name());
    }
    assert!(dut.decap.stat(DecapStat::DecapIpip).unwrap() >= 4);
}

/// The decapsulated frames parse as ordinary packets with valid checksums
/// (the program leaves the inner packet as the client sent it).
#[test]
fn decapsulated_frames_are_ordinary_packets() {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let dut = Dut::new("fixdecap2", &[VIP4.into(), vip6().into()]);
    for case in decap_cases() {
        let (_, out) = dut.run(&case.input);
        let p = SlicedPacket::from_ethernet(&out).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        match (&p.net, &p.transport) {
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(udp))) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "{}", case.name);
                assert_eq!(h.destination, VIP4.octets());
                let want = udp
                    .to_header()
                    .calc_checksum_ipv4(&h, udp.payload())
                    .unwrap();
                assert_eq!(udp.checksum(), want, "{}: udp checksum", case.name);
            }
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) => {
                let h = ip.header().to_header();
                assert_eq!(h.destination, VIP4.octets());
                let want = tcp
                    .to_header()
                    .calc_checksum_ipv4(&h, tcp.payload())
                    .unwrap();
                assert_eq!(tcp.checksum(), want, "{}: tcp checksum", case.name);
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(tcp))) => {
                let h = ip.header().to_header();
                assert_eq!(h.destination, vip6().octets());
                let want = tcp
                    .to_header()
                    .calc_checksum_ipv6(&h, tcp.payload())
                    .unwrap();
                assert_eq!(tcp.checksum(), want, "{}: tcp checksum", case.name);
            }
            other => panic!("{}: unexpected {other:?}", case.name),
        }
    }
}

/// Without any VIP nothing is decapsulated.
#[test]
fn no_vips_no_decap() {
    let dut = Dut::new("fixdecap3", &[]);
    for case in decap_cases() {
        let (action, out) = dut.run(&case.input);
        assert_eq!(action, XDP_PASS, "{}", case.name);
        assert_eq!(hex(&out), hex(&case.input), "{}", case.name);
    }
    let n = decap_cases().len() as u64;
    assert_eq!(dut.decap.stat(DecapStat::PassNotVip).unwrap(), n);
    for s in [
        DecapStat::DecapIpip,
        DecapStat::DecapIp6ip6,
        DecapStat::DecapIp4in6,
    ] {
        assert_eq!(dut.decap.stat(s).unwrap(), 0, "{}", s.name());
    }
}

/// `xlb decap` without `--vip` (the contract's plain form): every
/// well-formed tunnel is stripped, whatever its inner destination.
#[test]
fn any_vip_entry_decapsulates_every_tunnel() {
    let mut dut = Dut::new("fixdecap4", &[]);
    dut.decap.add_any_vip().expect("any-destination entry");
    for case in decap_cases() {
        let (action, out) = dut.run(&case.input);
        assert_eq!(action, XDP_PASS, "{}", case.name);
        let expected = case.output.unwrap_or_else(|| case.input.clone());
        assert_eq!(hex(&out), hex(&expected), "{}", case.name);
    }
    assert_eq!(dut.decap.stat(DecapStat::PassNotVip).unwrap(), 0);
}
