//! Packet fixtures for UDP steering that does not follow the 5-tuple:
//! syslog round robin over a VIP's live backends, and QUIC short headers
//! routed by the server id in their destination connection id. Exact
//! output bytes (etherparse-built) and counters, on the real object.

#[path = "xdp/frames.rs"]
mod frames;
mod xdp;

use frames::{
    dcid_with, index_of, key, pin_to_current_cpu, quic_initial, quic_short, sent_to, server_id,
    udp4,
};
use xdp::{
    BACKEND_PORT, CLIENT, CLIENT_MAC, Dut, LB_MAC, VIP, VIP_PORT, XDP_TX, backend_ip, backend_mac,
    config, hex,
};
use xlb::{config::Steering, dataplane::model::ReferenceModel};
use xlb_common::{PROTO_UDP, Stat};
use xlb_lab::checksum::verify_checksums;

/// VIP id of `config()`'s UDP VIP.
const UDP_VIP: u32 = 1;

fn to_vip(sport: u16, payload: &[u8]) -> Vec<u8> {
    udp4(
        (CLIENT_MAC, LB_MAC),
        (CLIENT, sport),
        (VIP, VIP_PORT),
        payload,
    )
}

/// The datagram as the LB must send it to backend `i` (NAT).
fn to_backend(i: usize, sport: u16, payload: &[u8]) -> Vec<u8> {
    udp4(
        (LB_MAC, backend_mac(i)),
        (CLIENT, sport),
        (backend_ip(i), BACKEND_PORT),
        payload,
    )
}

/// Run a client datagram; it must be sent (XDP_TX) to some lab backend
/// with exactly the NAT bytes for that backend. Returns the backend.
fn run_udp(dut: &Dut, name: &str, sport: u16, payload: &[u8]) -> usize {
    let (action, out) = dut.run(&to_vip(sport, payload));
    assert_eq!(action, XDP_TX, "{name}: action");
    let i = sent_to(&out).unwrap_or_else(|| panic!("{name}: not sent to a backend: {}", hex(&out)));
    assert_eq!(
        hex(&out),
        hex(&to_backend(i, sport, payload)),
        "{name}: bytes"
    );
    verify_checksums(&out, name);
    i
}

#[test]
fn syslog_spreads_one_flow_over_every_live_backend() {
    // The round-robin position is per CPU: keep every run on one CPU.
    pin_to_current_cpu();
    let mut c = config(3);
    c.l4[UDP_VIP as usize].steering = Steering::Syslog;
    let mut dut = Dut::new("fxsyslog", c);
    let msg = b"<13>Nov 26 12:00:00 edge1 app[42]: one busy sender";
    let sport = 5140;

    // One flow (same 5-tuple), three datagrams: the live set in id order.
    for (n, want) in [1, 2, 3].into_iter().enumerate() {
        let name = format!("datagram {n} of one flow");
        let (action, out) = dut.run(&to_vip(sport, msg));
        assert_eq!(action, XDP_TX, "{name}: action");
        assert_eq!(hex(&out), hex(&to_backend(want, sport, msg)), "{name}");
        verify_checksums(&out, &name);
    }
    assert_eq!(dut.stat(Stat::SyslogSpread), 3);
    assert_eq!(dut.stat(Stat::FlowMiss), 0, "syslog takes no table");
    assert_eq!(dut.stat(Stat::FlowHit), 0, "syslog takes no table");
    for i in 1..=3 {
        let id = server_id(&dut, "pool", &format!("b{i}"));
        assert_eq!(dut.stats().backend(id).unwrap().packets, 1, "b{i}");
    }

    // b2 goes down: it leaves the rotation, the other two alternate.
    let b2 = server_id(&dut, "pool", "b2");
    dut.registry.set_healthy(b2, false);
    dut.sync();
    let seq: Vec<usize> = (0..6)
        .map(|n| run_udp(&dut, &format!("b2 down, datagram {n}"), sport, msg))
        .collect();
    assert!(
        !seq.contains(&2),
        "a down backend is in the rotation: {seq:?}"
    );
    assert!(
        seq.windows(2).all(|w| w[0] != w[1]),
        "b1 and b3 alternate: {seq:?}"
    );

    // Back up: three datagrams in a row reach all three again.
    dut.registry.set_healthy(b2, true);
    dut.sync();
    let mut seq: Vec<usize> = (0..3)
        .map(|n| run_udp(&dut, &format!("b2 up, datagram {n}"), sport, msg))
        .collect();
    seq.sort();
    assert_eq!(seq, vec![1, 2, 3]);
    assert_eq!(dut.stat(Stat::SyslogSpread), 12);
}

/// A config whose UDP VIP steers QUIC by server id (offset 1, 2 bytes, as
/// `config()` sets them) over b1..b3 with server ids 1..3.
fn quic_config() -> xlb::config::Config {
    let mut c = config(3);
    c.l4[UDP_VIP as usize].steering = Steering::Quic;
    assert_eq!(
        (
            c.l4[UDP_VIP as usize].quic_sid_offset,
            c.l4[UDP_VIP as usize].quic_sid_len
        ),
        (1, 2)
    );
    for (i, s) in c.backend[0].server.iter_mut().enumerate() {
        s.quic_server_id = Some(i as u32 + 1);
    }
    c
}

/// The Maglev/table choice (lab index) for a new client flow on `sport`.
fn model_choice(dut: &Dut, model: &mut ReferenceModel, sport: u16) -> usize {
    let k = key(CLIENT.into(), sport, VIP.into(), VIP_PORT, PROTO_UDP);
    index_of(dut, model.choose(UDP_VIP, &k).expect("a live backend"))
}

/// The first source port from `from` whose Maglev choice is not `avoid`,
/// so a CID-routed answer cannot be mistaken for a Maglev one.
fn port_not_on(dut: &Dut, from: u16, avoid: usize) -> u16 {
    let ring = frames::maglev_id;
    (from..from + 100)
        .find(|&p| {
            let k = key(CLIENT.into(), p, VIP.into(), VIP_PORT, PROTO_UDP);
            index_of(dut, ring(dut, "pool", &k)) != avoid
        })
        .expect("a port off that backend")
}

struct QuicCase {
    name: &'static str,
    payload: Vec<u8>,
    /// None: wherever the reference model (table, then Maglev) says.
    backend: Option<usize>,
    hits: u64,
    misses: u64,
}

#[test]
fn quic_short_header_follows_the_server_id() {
    let mut dut = Dut::new("fxquic", quic_config());
    let mut model = ReferenceModel::new(&dut.config, &dut.registry);
    let cid = |sid| dcid_with(sid, 1, 2);
    let cases = [
        QuicCase {
            name: "short header, server id 2: backend 2",
            payload: quic_short(&cid(2)),
            backend: Some(2),
            hits: 1,
            misses: 0,
        },
        QuicCase {
            name: "short header, server id 3: backend 3",
            payload: quic_short(&cid(3)),
            backend: Some(3),
            hits: 1,
            misses: 0,
        },
        QuicCase {
            name: "short header, server id 1: backend 1",
            payload: quic_short(&cid(1)),
            backend: Some(1),
            hits: 1,
            misses: 0,
        },
        QuicCase {
            name: "short header, unknown server id 0x0777: Maglev",
            payload: quic_short(&cid(0x0777)),
            backend: None,
            hits: 0,
            misses: 1,
        },
        QuicCase {
            name: "short header, server id 0: Maglev",
            payload: quic_short(&cid(0)),
            backend: None,
            hits: 0,
            misses: 1,
        },
        QuicCase {
            name: "long header (Initial) naming server id 2: Maglev, no CID lookup",
            payload: quic_initial(&cid(2)),
            backend: None,
            hits: 0,
            misses: 0,
        },
    ];
    let mut sport = 44000;
    for case in &cases {
        // A fresh 5-tuple per case, whose Maglev choice is not the
        // backend the CID names (2 for the Initial).
        sport = port_not_on(&dut, sport + 1, case.backend.unwrap_or(2));
        let (hits, misses, flow_miss) = (
            dut.stat(Stat::QuicCidHit),
            dut.stat(Stat::QuicCidMiss),
            dut.stat(Stat::FlowMiss),
        );
        let got = run_udp(&dut, case.name, sport, &case.payload);
        let want = match case.backend {
            Some(i) => i,
            None => model_choice(&dut, &mut model, sport),
        };
        assert_eq!(got, want, "{}: backend", case.name);
        assert_eq!(
            dut.stat(Stat::QuicCidHit),
            hits + case.hits,
            "{}: hits",
            case.name
        );
        assert_eq!(
            dut.stat(Stat::QuicCidMiss),
            misses + case.misses,
            "{}: misses",
            case.name
        );
        let maglev = u64::from(case.backend.is_none());
        assert_eq!(
            dut.stat(Stat::FlowMiss),
            flow_miss + maglev,
            "{}: flow_miss",
            case.name
        );
    }
    // The Initial's flow is in the table now: its next packet hits it.
    let hit = dut.stat(Stat::FlowHit);
    let again = run_udp(
        &dut,
        "second Initial of the same flow",
        sport,
        &quic_initial(&cid(2)),
    );
    assert_eq!(again, model_choice(&dut, &mut model, sport));
    assert_eq!(dut.stat(Stat::FlowHit), hit + 1);

    // A CID naming a DOWN server falls back to Maglev (and the model).
    let b2 = server_id(&dut, "pool", "b2");
    dut.registry.set_healthy(b2, false);
    dut.sync();
    model.update(&dut.config, &dut.registry);
    for n in 0..20u16 {
        let sport = 45000 + n;
        let misses = dut.stat(Stat::QuicCidMiss);
        let got = run_udp(&dut, "server id 2, b2 down", sport, &quic_short(&cid(2)));
        assert_ne!(got, 2, "sent to a down backend by its CID");
        assert_eq!(
            got,
            model_choice(&dut, &mut model, sport),
            "fallback = model"
        );
        assert_eq!(dut.stat(Stat::QuicCidMiss), misses + 1);
    }

    // Draining keeps existing connections: a CID naming a draining server
    // (a connection it already serves) still reaches it.
    dut.registry.set_healthy(b2, true);
    dut.registry.set_admin(b2, xlb::registry::Admin::Drain);
    dut.sync();
    let hits = dut.stat(Stat::QuicCidHit);
    let got = run_udp(
        &dut,
        "server id 2, b2 draining",
        45100,
        &quic_short(&cid(2)),
    );
    assert_eq!(got, 2);
    assert_eq!(dut.stat(Stat::QuicCidHit), hits + 1);
}

/// The issue's rule: a short header "goes to that backend if it is known
/// and healthy, else falls back to the connection table/Maglev" (QUIC-LB;
/// Katran also routes by CID before its LRU). A 5-tuple can already be in
/// the table for another backend after NAT rebinding: a client whose
/// connection lives on b2 is rebound to a public port that, within the
/// UDP idle timeout, belonged to a connection on another backend. Only the CID
/// says where this connection lives.
#[test]
fn quic_server_id_wins_over_a_stale_table_entry() {
    let dut = Dut::new("fxquictbl", quic_config());
    let cid2 = dcid_with(2, 1, 2);
    let sport = port_not_on(&dut, 46000, 2);
    // An earlier connection on this 5-tuple (its Initial went by Maglev).
    let first = run_udp(
        &dut,
        "earlier connection's Initial",
        sport,
        &quic_initial(&cid2),
    );
    assert_ne!(first, 2);
    // Now a short header of the connection that lives on b2.
    let hits = dut.stat(Stat::QuicCidHit);
    let got = run_udp(
        &dut,
        "short header naming b2 on that tuple",
        sport,
        &quic_short(&cid2),
    );
    assert_eq!(
        got,
        2,
        "short header with live server id 2 from port {sport} went to b{got} (the table \
         entry its Initial left) instead of b2; input {}",
        hex(&to_vip(sport, &quic_short(&cid2)))
    );
    assert_eq!(dut.stat(Stat::QuicCidHit), hits + 1);
}
