//! `cargo xtask bench xdp`: XDP cost per packet through BPF_PROG_TEST_RUN
//! with `repeat`, as a ratio to a trivial program measured in the same run.
//!
//! Method (see DESIGN.md, "Measuring"): the harness program `xlb_bench`
//! restores the template frame every iteration (and for new flows gives it
//! a fresh source address and port), then tail-calls the program under
//! test. Its own cost is measured by tail-calling the trivial program, and
//! subtracted. Counters confirm every iteration took the intended path.

#[path = "../tests/xdp/mod.rs"]
mod xdp;

use aya::{
    maps::{Array, ProgramArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use xdp::{BACKEND_PORT, CLIENT, CLIENT_MAC, Dut, LB_MAC, VIP, VIP_PORT, config, frame};
use xlb::dataplane::object::{PROG_BENCH, PROG_L4, PROG_PASS};
use xlb_common::{BENCH_FRAME_LEN, BenchConfig, MAP_BENCH_CFG, MAP_BENCH_JUMP, Stat};

const ROUNDS: usize = 5;

fn main() {
    let repeat: u32 = std::env::var("XLB_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut cfg = config(3);
    cfg.global.maglev_size = xlb_common::DEFAULT_RING_SIZE;
    let mut dut = Dut::new("benchxdp", cfg);
    for name in [PROG_PASS, PROG_BENCH] {
        let p: &mut Xdp = dut.ebpf.program_mut(name).unwrap().try_into().unwrap();
        p.load().expect("load");
    }

    let vip_frame = template(VIP, VIP_PORT);
    let other_frame = template("198.18.0.1".parse().unwrap(), 22);
    println!("xdp bench: {repeat} runs x {ROUNDS} rounds per case, median ns/packet");

    let floor = median(|| time_direct(&dut, PROG_PASS, &vip_frame, repeat));
    set_jump(&mut dut, PROG_PASS);
    set_template(&mut dut, &vip_frame, false);
    let harness = median(|| time_direct(&dut, PROG_BENCH, &vip_frame, repeat)) - floor;

    set_jump(&mut dut, PROG_L4);
    // Establish the flow once so every timed run is a connection-table hit.
    time_direct(&dut, PROG_BENCH, &vip_frame, 1);
    let hits_before = dut.stats().stat(Stat::FlowHit).unwrap();
    let hit = median(|| time_direct(&dut, PROG_BENCH, &vip_frame, repeat)) - harness;
    let hits = dut.stats().stat(Stat::FlowHit).unwrap() - hits_before;
    assert_eq!(
        hits,
        repeat as u64 * ROUNDS as u64,
        "every hit run hit the table"
    );

    set_template(&mut dut, &vip_frame, true);
    let miss_before = dut.stats().stat(Stat::FlowMiss).unwrap();
    let new_repeat = repeat / 10;
    let new_flow = median(|| time_direct(&dut, PROG_BENCH, &vip_frame, new_repeat)) - harness;
    let misses = dut.stats().stat(Stat::FlowMiss).unwrap() - miss_before;
    assert_eq!(
        misses,
        new_repeat as u64 * ROUNDS as u64,
        "every run was a new flow"
    );

    set_template(&mut dut, &other_frame, false);
    let pass = median(|| time_direct(&dut, PROG_BENCH, &other_frame, repeat)) - harness;

    println!("{:<36} {:>9} {:>8}", "case", "ns/pkt", "x floor");
    let row = |name: &str, ns: f64| println!("{name:<36} {ns:>9.1} {:>8.2}", ns / floor);
    row("trivial XDP (floor)", floor);
    row("harness overhead (subtracted)", harness);
    row("ipv4 nat, connection-table hit", hit);
    row("ipv4 nat, new flow", new_flow);
    row("ipv4 non-vip packet (pass)", pass);
}

fn template(dst: std::net::Ipv4Addr, dport: u16) -> Vec<u8> {
    let f = frame::Tcp {
        src_mac: CLIENT_MAC,
        dst_mac: LB_MAC,
        src: CLIENT,
        sport: 40000,
        dst,
        dport,
        syn: false,
        payload: vec![0; 10],
    }
    .build();
    assert_eq!(f.len(), BENCH_FRAME_LEN);
    let _ = BACKEND_PORT;
    f
}

fn set_jump(dut: &mut Dut, target: &str) {
    let fd = {
        let p: &Xdp = dut.ebpf.program(target).unwrap().try_into().unwrap();
        p.fd().unwrap().try_clone().unwrap()
    };
    let mut jump = ProgramArray::try_from(dut.ebpf.map_mut(MAP_BENCH_JUMP).unwrap()).unwrap();
    jump.set(0, &fd, 0).expect("set tail-call target");
}

fn set_template(dut: &mut Dut, frame: &[u8], new_flow_each_run: bool) {
    let mut cfg: Array<_, BenchConfig> =
        Array::try_from(dut.ebpf.map_mut(MAP_BENCH_CFG).unwrap()).unwrap();
    let mut bytes = [0u8; BENCH_FRAME_LEN];
    bytes.copy_from_slice(frame);
    let value = BenchConfig {
        frame: bytes,
        new_flow_each_run: new_flow_each_run as u32,
    };
    cfg.set(0, value, 0).expect("bench config");
}

/// Average ns per run, as the kernel reports it. The frame arrives on the
/// lab interface, so forwarded packets take the XDP_TX path, as in the lab.
fn time_direct(dut: &Dut, program: &str, frame: &[u8], repeat: u32) -> f64 {
    let p: &Xdp = dut.ebpf.program(program).unwrap().try_into().unwrap();
    let mut out = vec![0u8; frame.len() + 64];
    let ctx = dut.ctx_in(frame.len());
    let r = p
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    r.duration.as_nanos() as f64
}

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..ROUNDS).map(|_| f()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[ROUNDS / 2]
}
