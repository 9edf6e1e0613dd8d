//! The kernel's backend choice agrees with the user-space reference model
//! on thousands of random flows: new flows, connection-table hits, and
//! after a backend goes down (its flows move, nobody else's do).

mod xdp;

use std::net::Ipv4Addr;

use xdp::{CLIENT_MAC, Dut, LB_MAC, VIP, VIP_PORT, XDP_TX, backend_ip, config, frame};
use xlb::dataplane::model::ReferenceModel;
use xlb_common::{AF_INET, FlowKey, PROTO_TCP};
use xlb_lab::checksum::verify_checksums;

const BACKENDS: usize = 3;

/// Deterministic pseudo-random flows (a 64-bit LCG), so a failure replays.
struct Flows(u64);

impl Flows {
    fn next(&mut self) -> (Ipv4Addr, u16) {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (self.0 >> 16) as u32;
        let addr = Ipv4Addr::from(0xc612_0000 | (r & 0x1_ffff)); // 198.18.0.0/15
        let port = 1024 + (self.0 >> 48) as u16 % 60000;
        (addr, port)
    }
}

fn segment(src: Ipv4Addr, sport: u16, syn: bool) -> Vec<u8> {
    frame::Tcp {
        src_mac: CLIENT_MAC,
        dst_mac: LB_MAC,
        src,
        sport,
        dst: VIP,
        dport: VIP_PORT,
        syn,
        payload: vec![],
    }
    .build()
}

fn key(src: Ipv4Addr, sport: u16) -> FlowKey {
    FlowKey {
        src: [u32::from_ne_bytes(src.octets()), 0, 0, 0],
        dst: [u32::from_ne_bytes(VIP.octets()), 0, 0, 0],
        sport: sport.to_be(),
        dport: VIP_PORT.to_be(),
        proto: PROTO_TCP,
        family: AF_INET,
        pad: [0; 2],
    }
}

/// Which backend (1-based) the kernel sent the frame to; the frame's
/// checksums must hold (random addresses and ports test the data path's
/// incremental updates far beyond the fixtures' few).
fn kernel_choice(dut: &Dut, frame: &[u8]) -> usize {
    let (action, out) = dut.run(frame);
    assert_eq!(action, XDP_TX);
    verify_checksums(&out, "random flow");
    let dst = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
    (1..=BACKENDS)
        .find(|&i| backend_ip(i) == dst)
        .unwrap_or_else(|| panic!("sent to {dst}, not a backend"))
}

fn model_choice(dut: &Dut, model: &mut ReferenceModel, src: Ipv4Addr, sport: u16) -> usize {
    let id = model
        .choose(0, &key(src, sport))
        .expect("model has a backend");
    let addr = dut.registry.get(id).unwrap().address;
    (1..=BACKENDS)
        .find(|&i| std::net::IpAddr::from(backend_ip(i)) == addr.ip())
        .unwrap()
}

#[test]
fn kernel_and_model_agree_on_every_flow() {
    let mut dut = Dut::new("fixmodel", config(BACKENDS));
    let mut model = ReferenceModel::new(&dut.config, &dut.registry);
    let mut rng = Flows(7);
    let flows: Vec<(Ipv4Addr, u16)> = (0..3000).map(|_| rng.next()).collect();

    let mut first_choice = Vec::with_capacity(flows.len());
    let mut per_backend = [0usize; BACKENDS + 1];
    for &(src, sport) in &flows {
        let k = kernel_choice(&dut, &segment(src, sport, true));
        assert_eq!(
            k,
            model_choice(&dut, &mut model, src, sport),
            "new flow {src}:{sport}"
        );
        per_backend[k] += 1;
        first_choice.push(k);
    }
    for (i, &n) in per_backend.iter().enumerate().skip(1) {
        assert!(
            (800..=1200).contains(&n),
            "backend {i} got {n} of 3000 new flows"
        );
    }

    // Take backend 2 down: its flows move (kernel and model agree where),
    // every other flow stays put through the connection table.
    let down = dut.registry.find("pool", "b2").unwrap().id;
    dut.registry.set_healthy(down, false);
    dut.sync();
    model.update(&dut.config, &dut.registry);
    for (&(src, sport), &before) in flows.iter().zip(&first_choice) {
        let k = kernel_choice(&dut, &segment(src, sport, false));
        assert_eq!(
            k,
            model_choice(&dut, &mut model, src, sport),
            "after down {src}:{sport}"
        );
        if before == 2 {
            assert_ne!(k, 2, "{src}:{sport} still went to the down backend");
        } else {
            assert_eq!(k, before, "{src}:{sport} moved although its backend is up");
        }
    }
    for _ in 0..1000 {
        let (src, sport) = rng.next();
        let k = kernel_choice(&dut, &segment(src, sport, true));
        assert_eq!(
            k,
            model_choice(&dut, &mut model, src, sport),
            "new flow {src}:{sport}"
        );
        assert_ne!(k, 2, "a new flow went to the down backend");
    }
}

/// Several xlb nodes behind ECMP must send a flow to the same backend
/// whichever node the router picks. Two nodes load the same servers
/// listed in a different order (so their server ids differ) and see the
/// same 2000 new flows, then the same flows' later segments as table
/// misses (a node that never saw the SYN: ECMP rehashed after a change):
/// every flow reaches the same backend on both.
#[test]
fn two_nodes_with_the_same_servers_choose_the_same_backend() {
    let mut rng = Flows(11);
    let flows: Vec<(Ipv4Addr, u16)> = (0..2000).map(|_| rng.next()).collect();
    let choices = |name: &str, config| -> Vec<usize> {
        let dut = Dut::new(name, config);
        flows
            .iter()
            .map(|&(src, sport)| kernel_choice(&dut, &segment(src, sport, true)))
            .collect()
    };
    let node_a = choices("fixnodea", config(BACKENDS));
    let mut reordered = config(BACKENDS);
    reordered.backend[0].server.rotate_left(1);
    let first = reordered.backend[0].server[0].name.clone();
    assert_eq!(first, "b2", "node B lists its servers in another order");
    let node_b = choices("fixnodeb", reordered.clone());
    for (i, (a, b)) in node_a.iter().zip(&node_b).enumerate() {
        let (src, sport) = flows[i];
        assert_eq!(a, b, "{src}:{sport}: node A chose backend {a}, node B {b}");
    }
    // A node that missed the SYNs still agrees on the flows' next segments.
    let dut = Dut::new("fixnodec", reordered);
    for (&(src, sport), &a) in flows.iter().zip(&node_a) {
        let c = kernel_choice(&dut, &segment(src, sport, false));
        assert_eq!(c, a, "{src}:{sport}: a mid-flow segment on node C");
    }
}
