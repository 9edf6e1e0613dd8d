//! Packet fixtures for IPv6 NAT, run through BPF_PROG_TEST_RUN on the real
//! object: client -> VIP6 rewritten to the IPv6 backend and sent with the
//! neighbour's MACs, the backend's replies rewritten back to VIP6, and the
//! kernel's choice checked against the reference model on random flows.
//! Expected frames are built independently with etherparse (every checksum
//! from scratch).

mod xdp;

use std::net::{IpAddr, Ipv6Addr};

use xdp::{
    BACKEND_PORT, CLIENT_MAC, CLIENT6, Case, Dut, LB_MAC, VIP_PORT, VIP6, XDP_PASS, XDP_TX,
    backend_ip6, backend_mac, config_dual,
    packets::{Kind, Seg},
};
use xlb::dataplane::model::ReferenceModel;
use xlb_common::Stat;
use xlb_lab::checksum::verify_checksums;

/// VIP ids in `config_dual`: tcp, udp (IPv4), tcp6, udp6.
const VIP6_TCP: u32 = 2;
const VIP6_UDP: u32 = 3;

fn client(sport: u16, kind: Kind) -> Seg {
    Seg::new(CLIENT6.into(), sport, VIP6.into(), VIP_PORT, kind)
}

fn be6(i: usize) -> IpAddr {
    backend_ip6(i).into()
}

/// The client's packet as the LB sends it to backend `i`.
fn to_backend(seg: &Seg, i: usize) -> Seg {
    seg.clone()
        .to(be6(i), BACKEND_PORT)
        .macs(LB_MAC, backend_mac(i))
}

/// Backend `i`'s reply to the client's `sport`, as the backend sends it.
fn reply(i: usize, sport: u16, kind: Kind, payload: &[u8]) -> Seg {
    Seg::new(be6(i), BACKEND_PORT, CLIENT6.into(), sport, kind)
        .macs(backend_mac(i), LB_MAC)
        .payload(payload)
}

/// The reply as the LB sends it on to the client.
fn reply_out(seg: &Seg) -> Seg {
    seg.clone()
        .from(VIP6.into(), VIP_PORT)
        .macs(LB_MAC, CLIENT_MAC)
}

fn case(name: &'static str, input: &Seg, action: u32, output: Option<&Seg>) -> Case {
    Case {
        name,
        input: input.build(),
        action,
        output: output.map(Seg::build),
    }
}

fn nat6_cases() -> Vec<Case> {
    let syn = client(40000, Kind::Syn);
    let data = client(40000, Kind::Data).payload(b"GET / HTTP/1.1\r\nHost: vip6\r\n\r\n");
    let answer = reply(1, 40000, Kind::Data, b"HTTP/1.1 200 OK\r\n\r\n");
    let udp = client(5353, Kind::Udp).payload(b"hello over udp6");
    let udp_answer = reply(1, 5353, Kind::Udp, b"answer over udp6");
    // Traffic class, flow label and hop limit are the client's business.
    let marked = client(40001, Kind::Syn)
        .tos(0xb8)
        .flow_label(0xabcde)
        .ttl(7);
    let mut other_port = client(40002, Kind::Syn);
    other_port.dport = 22;
    let mut not_vip = client(40003, Kind::Syn);
    not_vip.dst = "2001:db8::1".parse::<Ipv6Addr>().unwrap().into();

    let mut cases = vec![
        case(
            "tcp syn client6 -> vip6:80 goes to the ipv6 backend:8080, out the same interface",
            &syn,
            XDP_TX,
            Some(&to_backend(&syn, 1)),
        ),
        case(
            "tcp data of the same flow (connection-table hit)",
            &data,
            XDP_TX,
            Some(&to_backend(&data, 1)),
        ),
        case(
            "backend reply goes back to the client as vip6:80",
            &answer,
            XDP_TX,
            Some(&reply_out(&answer)),
        ),
        case(
            "udp datagram to vip6",
            &udp,
            XDP_TX,
            Some(&to_backend(&udp, 1)),
        ),
        case(
            "udp reply goes back to the client as vip6:80",
            &udp_answer,
            XDP_TX,
            Some(&reply_out(&udp_answer)),
        ),
        case(
            "traffic class, flow label and hop limit are kept",
            &marked,
            XDP_TX,
            Some(&to_backend(&marked, 1)),
        ),
        case(
            "vip6 address on a port with no vip passes",
            &other_port,
            XDP_PASS,
            None,
        ),
        case(
            "tcp to the lb's own ipv6 address passes",
            &not_vip,
            XDP_PASS,
            None,
        ),
    ];
    // A hop-by-hop options header before TCP: passed to the kernel as is.
    let mut hbh = syn.build();
    let tcp = hbh.split_off(14 + 40);
    hbh[14 + 6] = 0; // next header: hop-by-hop options
    let plen = u16::from_be_bytes([hbh[18], hbh[19]]) + 8;
    hbh[18..20].copy_from_slice(&plen.to_be_bytes());
    hbh.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // next TCP, PadN
    hbh.extend_from_slice(&tcp);
    cases.push(Case::kept(
        "ipv6 with a hop-by-hop header passes",
        hbh,
        XDP_PASS,
    ));
    cases
}

#[test]
fn ipv6_nat_fixtures_exact_bytes() {
    let dut = Dut::new("fixv6nat", config_dual(1));
    dut.run_cases(nat6_cases());
    let stats = dut.stats();
    assert_eq!(
        dut.stat(Stat::FlowMiss),
        3,
        "syn, udp and the marked syn are new flows"
    );
    assert_eq!(dut.stat(Stat::FlowHit), 1, "tcp data hits");
    assert_eq!(dut.stat(Stat::NatReverse), 2, "tcp and udp reply");
    let tcp = stats.vip(VIP6_TCP).unwrap();
    assert_eq!(tcp.packets, 4, "vip6 tcp: syn, data, reply, marked syn");
    let udp = stats.vip(VIP6_UDP).unwrap();
    assert_eq!(udp.packets, 2, "vip6 udp: datagram and reply");
    assert_eq!(stats.vip(0).unwrap().packets, 0, "ipv4 vips untouched");
}

/// Deterministic pseudo-random IPv6 clients (a 64-bit LCG), so a failure
/// replays: addresses all over 2001:db8::/32, any port above 1023.
struct Flows(u64);

impl Flows {
    fn step(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }

    fn next(&mut self) -> (Ipv6Addr, u16) {
        let (a, b) = (self.step(), self.step());
        let addr = Ipv6Addr::new(
            0x2001,
            0xdb8,
            (a >> 48) as u16,
            (a >> 32) as u16,
            (a >> 16) as u16,
            (b >> 48) as u16,
            (b >> 32) as u16,
            (b >> 16) as u16,
        );
        let port = 1024 + (b as u16) % 60000;
        (addr, port)
    }
}

const BACKENDS: usize = 3;

fn segment(src: Ipv6Addr, sport: u16, kind: Kind) -> Seg {
    Seg::new(src.into(), sport, VIP6.into(), VIP_PORT, kind)
}

/// Which backend (1-based) the kernel sent the frame to; the frame's
/// checksums must hold (random addresses and ports test the data path's
/// incremental updates far beyond the fixtures' few).
fn kernel_choice(dut: &Dut, seg: &Seg) -> usize {
    let (action, out) = dut.run(&seg.build());
    assert_eq!(action, XDP_TX, "{seg:?}");
    verify_checksums(&out, &format!("[{}]:{}", seg.src, seg.sport));
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&out[14 + 24..14 + 40]);
    let dst = Ipv6Addr::from(dst);
    (1..=BACKENDS)
        .find(|&i| backend_ip6(i) == dst)
        .unwrap_or_else(|| panic!("sent to {dst}, not a backend"))
}

fn model_choice(dut: &Dut, model: &mut ReferenceModel, seg: &Seg) -> usize {
    let id = model
        .choose(VIP6_TCP, &seg.key())
        .expect("model has a backend");
    let addr = dut.registry.get(id).unwrap().address;
    (1..=BACKENDS)
        .find(|&i| be6(i) == addr.ip())
        .unwrap_or_else(|| panic!("model chose {addr}, not an ipv6 backend"))
}

#[test]
fn kernel_and_model_agree_on_ipv6_flows() {
    let mut dut = Dut::new("fixv6model", config_dual(BACKENDS));
    let mut model = ReferenceModel::new(&dut.config, &dut.registry);
    let mut rng = Flows(11);
    let flows: Vec<(Ipv6Addr, u16)> = (0..2000).map(|_| rng.next()).collect();

    let mut first_choice = Vec::with_capacity(flows.len());
    let mut per_backend = [0usize; BACKENDS + 1];
    for &(src, sport) in &flows {
        let seg = segment(src, sport, Kind::Syn);
        let k = kernel_choice(&dut, &seg);
        assert_eq!(
            k,
            model_choice(&dut, &mut model, &seg),
            "new flow [{src}]:{sport}"
        );
        per_backend[k] += 1;
        first_choice.push(k);
    }
    for (i, &n) in per_backend.iter().enumerate().skip(1) {
        assert!(
            (530..=800).contains(&n),
            "backend {i} got {n} of 2000 new flows"
        );
    }

    // Backend 2 goes down: its flows move (kernel and model agree where),
    // the others stay put through the connection table.
    let down = dut.registry.find("pool6", "b6-2").unwrap().id;
    dut.registry.set_healthy(down, false);
    dut.sync();
    model.update(&dut.config, &dut.registry);
    for (&(src, sport), &before) in flows.iter().zip(&first_choice) {
        let seg = segment(src, sport, Kind::Data);
        let k = kernel_choice(&dut, &seg);
        assert_eq!(
            k,
            model_choice(&dut, &mut model, &seg),
            "after down [{src}]:{sport}"
        );
        if before == 2 {
            assert_ne!(k, 2, "[{src}]:{sport} still went to the down backend");
        } else {
            assert_eq!(
                k, before,
                "[{src}]:{sport} moved although its backend is up"
            );
        }
    }
}
