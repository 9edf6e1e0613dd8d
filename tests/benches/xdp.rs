//! `cargo xtask bench xdp`: XDP cost per packet through BPF_PROG_TEST_RUN
//! with `repeat`, as a ratio to a trivial program measured in the same run.
//!
//! Method (see DESIGN.md, "Measuring"): the harness program `xlb_bench`
//! restores the template frame every run (and for new flows gives it a
//! fresh source address and port), then tail-calls the program under
//! test. Its own cost is measured by tail-calling the trivial program, and
//! subtracted. Counters confirm every run took the intended path.

#[path = "../tests/xdp/mod.rs"]
mod xdp;

use std::net::IpAddr;

use aya::{
    maps::{Array, ProgramArray},
    programs::Xdp,
};
use etherparse::PacketBuilder;
use xdp::{CLIENT, CLIENT_MAC, CLIENT6, Dut, LB_MAC, VIP, VIP_PORT, VIP6, config_dual};
use xlb::{
    config::{Forward, Protocol, Steering},
    dataplane::object::{PROG_BENCH, PROG_L4, PROG_PASS, load_xdp},
};
use xlb_common::{BENCH_FRAME_LEN, BenchConfig, MAP_BENCH_CFG, MAP_BENCH_JUMP, Stat};

const ROUNDS: usize = 5;
const DSR_PORT: u16 = 81;
const QUIC_PORT: u16 = 443;

/// Where a frame's source address low bytes and source port sit.
const VARY_V4: (u32, u32) = (28, 34);
const VARY_V6: (u32, u32) = (36, 54);

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// Some: every run is a new flow (source varied at these offsets).
    vary: Option<(u32, u32)>,
    /// The counter every run must bump once.
    path: Stat,
}

fn main() {
    let repeat: u32 = std::env::var("XLB_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut dut = Dut::new("benchxdp", bench_config());
    for name in [PROG_PASS, PROG_BENCH] {
        let p: &mut Xdp = dut.ebpf.program_mut(name).unwrap().try_into().unwrap();
        load_xdp(p).expect("load");
    }
    println!(
        "xdp bench: {repeat} runs x {ROUNDS} rounds per case (new flows: 1/10 of the runs), median ns/packet"
    );

    let v4 = tcp(VIP.into(), VIP_PORT);
    let floor = median(|| time(&dut, PROG_PASS, &v4, repeat));
    set_jump(&mut dut, PROG_PASS);
    set_template(&mut dut, &v4, None);
    let harness = median(|| time(&dut, PROG_BENCH, &v4, repeat)) - floor;
    set_jump(&mut dut, PROG_L4);

    let mut rows = Vec::new();
    for case in cases() {
        let runs = if case.vary.is_some() {
            repeat / 10
        } else {
            repeat
        };
        set_template(&mut dut, &case.frame, case.vary);
        // Establish the template's own flow, so hit cases hit from run one.
        time(&dut, PROG_BENCH, &case.frame, 1);
        let before = dut.stats().stat(case.path).unwrap();
        let ns = median(|| time(&dut, PROG_BENCH, &case.frame, runs)) - harness;
        let took = dut.stats().stat(case.path).unwrap() - before;
        assert_eq!(
            took,
            runs as u64 * ROUNDS as u64,
            "{}: every run must take the {} path",
            case.name,
            case.path.name()
        );
        rows.push((case.name, ns));
    }

    println!("{:<44} {:>9} {:>8}", "case", "ns/pkt", "x floor");
    let row = |name: &str, ns: f64| println!("{name:<44} {ns:>9.1} {:>8.2}", ns / floor);
    row("trivial XDP (floor)", floor);
    row("harness overhead (subtracted)", harness);
    for (name, ns) in rows {
        row(name, ns);
    }
}

/// The fixture config plus DSR VIPs (port 81) and a QUIC VIP (udp 443)
/// whose servers carry QUIC server ids 1..3.
fn bench_config() -> xlb::config::Config {
    let mut c = config_dual(3);
    c.global.maglev_size = xlb_common::DEFAULT_RING_SIZE;
    for (i, s) in c.backend[0].server.iter_mut().enumerate() {
        s.quic_server_id = Some(i as u32 + 1);
    }
    let mut extra = Vec::new();
    for v in &c.l4 {
        if v.protocol == Protocol::Tcp {
            let mut dsr = v.clone();
            dsr.name = format!("{}-dsr", v.name);
            dsr.vip.set_port(DSR_PORT);
            dsr.forward = Forward::Dsr;
            extra.push(dsr);
        }
    }
    let mut quic = c.l4[1].clone();
    quic.name = "quic".into();
    quic.vip.set_port(QUIC_PORT);
    quic.steering = Steering::Quic;
    extra.push(quic);
    c.l4.extend(extra);
    c
}

fn cases() -> Vec<Case> {
    let v4 = tcp(VIP.into(), VIP_PORT);
    let v6 = tcp(VIP6.into(), VIP_PORT);
    let v4_dsr = tcp(VIP.into(), DSR_PORT);
    let v6_dsr = tcp(VIP6.into(), DSR_PORT);
    let case = |name, frame: &Vec<u8>, vary, path| Case {
        name,
        frame: frame.clone(),
        vary,
        path,
    };
    vec![
        case("ipv4 nat, connection-table hit", &v4, None, Stat::FlowHit),
        case("ipv4 nat, new flow", &v4, Some(VARY_V4), Stat::FlowMiss),
        case("ipv6 nat, connection-table hit", &v6, None, Stat::FlowHit),
        case("ipv6 nat, new flow", &v6, Some(VARY_V6), Stat::FlowMiss),
        case(
            "ipv4 dsr (ipip), connection-table hit",
            &v4_dsr,
            None,
            Stat::FlowHit,
        ),
        case(
            "ipv4 dsr (ipip), new flow",
            &v4_dsr,
            Some(VARY_V4),
            Stat::FlowMiss,
        ),
        case(
            "ipv6 dsr (ip6ip6), connection-table hit",
            &v6_dsr,
            None,
            Stat::FlowHit,
        ),
        case(
            "ipv6 dsr (ip6ip6), new flow",
            &v6_dsr,
            Some(VARY_V6),
            Stat::FlowMiss,
        ),
        case(
            "quic short header, new 5-tuple (by CID)",
            &quic_short(2),
            Some(VARY_V4),
            Stat::QuicCidHit,
        ),
        case(
            "ipv4 non-vip packet (pass)",
            &tcp("198.18.0.1".parse().unwrap(), 22),
            None,
            Stat::PassNotVip,
        ),
    ]
}

/// A TCP segment from the client, padded to BENCH_FRAME_LEN.
fn tcp(dst: IpAddr, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    let (b, header) = match dst {
        IpAddr::V4(d) => (b.ipv4(CLIENT.octets(), d.octets(), 64), 54),
        IpAddr::V6(d) => (b.ipv6(CLIENT6.octets(), d.octets(), 64), 74),
    };
    let b = b.tcp(40000, dport, 1, 64240).ack(1);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0u8; BENCH_FRAME_LEN - header])
        .unwrap();
    out
}

/// A QUIC short-header datagram whose connection id carries `server_id`
/// at bytes 1..3 (the VIP's default sid offset 1, length 2).
fn quic_short(server_id: u16) -> Vec<u8> {
    let mut payload = vec![0u8; BENCH_FRAME_LEN - 42];
    payload[0] = 0x40;
    payload[2..4].copy_from_slice(&server_id.to_be_bytes());
    let b = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(CLIENT.octets(), VIP.octets(), 64)
        .udp(40000, QUIC_PORT);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

fn set_jump(dut: &mut Dut, target: &str) {
    let fd = {
        let p: &Xdp = dut.ebpf.program(target).unwrap().try_into().unwrap();
        p.fd().unwrap().try_clone().unwrap()
    };
    let mut jump = ProgramArray::try_from(dut.ebpf.map_mut(MAP_BENCH_JUMP).unwrap()).unwrap();
    jump.set(0, &fd, 0).expect("set tail-call target");
}

fn set_template(dut: &mut Dut, frame: &[u8], vary: Option<(u32, u32)>) {
    let mut cfg: Array<_, BenchConfig> =
        Array::try_from(dut.ebpf.map_mut(MAP_BENCH_CFG).unwrap()).unwrap();
    let mut bytes = [0u8; BENCH_FRAME_LEN];
    bytes.copy_from_slice(frame);
    let (a, p) = vary.unwrap_or((0, 0));
    let value = BenchConfig {
        frame: bytes,
        new_flow_each_run: vary.is_some() as u32,
        src_addr_low_off: a,
        src_port_off: p,
    };
    cfg.set(0, value, 0).expect("bench config");
}

/// Average ns per run, as the kernel reports it. The frame arrives on the
/// lab interface, so forwarded packets take the XDP_TX path, as in the lab.
fn time(dut: &Dut, program: &str, frame: &[u8], repeat: u32) -> f64 {
    let (r, _) = dut
        .test_run(program, frame, repeat)
        .expect("BPF_PROG_TEST_RUN");
    r.duration.as_nanos() as f64
}

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..ROUNDS).map(|_| f()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[ROUNDS / 2]
}
