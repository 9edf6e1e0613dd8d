//! Packet fixtures for odd and hostile traffic: VLAN tags, IP fragments
//! (IPv4 and the IPv6 fragment header), TCP without SYN for an unknown
//! flow, the SYN flood guard, and backends that drain, go into
//! maintenance, go down or leave the config while flows are established.
//! Exact output bytes (etherparse-built), counters, and the user-space
//! reference model.

#[path = "xdp/frames.rs"]
mod frames;
mod xdp;

use std::net::IpAddr;

use frames::{
    TPID_8021AD, TPID_8021Q, backend_addr_like, flow_entry, fragment_v4, fragment_v6,
    icmp4_frag_needed, index_of, key, maglev_id, pin_to_current_cpu, sent_to, server_id, tagged,
    udp_nat,
};
use xdp::{
    BACKEND_PORT, CLIENT, CLIENT_MAC, CLIENT6, Dut, LB_MAC, VIP, VIP_PORT, VIP6, XDP_PASS, XDP_TX,
    config, config_dual,
    frame::{self, client_tcp},
    hex,
};
use xlb::{dataplane::model::ReferenceModel, registry::Admin};
use xlb_common::{FLOW_TO_BACKEND, FLOW_TO_CLIENT, FlowKey, PROTO_TCP, PROTO_UDP, Stat};
use xlb_lab::checksum::verify_checksums;

const TCP_VIP: u32 = 0;
const UDP_VIP: u32 = 1;
/// `config_dual()`'s IPv6 UDP VIP.
const UDP6_VIP: u32 = 3;

/// Run a client segment; it must leave by XDP_TX to a lab backend with
/// exactly the NAT bytes for it. Returns the backend (1-based).
fn run_tcp(dut: &Dut, name: &str, seg: &frame::Tcp) -> usize {
    let (action, out) = dut.run(&seg.build());
    assert_eq!(action, XDP_TX, "{name}: action");
    let i = sent_to(&out).unwrap_or_else(|| panic!("{name}: not to a backend: {}", hex(&out)));
    assert_eq!(
        hex(&out),
        hex(&seg.clone().nat_to_backend(i).build()),
        "{name}: bytes"
    );
    verify_checksums(&out, name);
    i
}

fn tcp_model_choice(dut: &Dut, model: &mut ReferenceModel, sport: u16) -> usize {
    let k = key(CLIENT.into(), sport, VIP.into(), VIP_PORT, PROTO_TCP);
    index_of(dut, model.choose(TCP_VIP, &k).expect("a live backend"))
}

/// The key of the reverse (backend `i` -> client) entry of a NAT flow from
/// `client`:`sport`.
fn reverse_key(client: IpAddr, sport: u16, i: usize, proto: u8) -> FlowKey {
    key(
        backend_addr_like(client, i),
        BACKEND_PORT,
        client,
        sport,
        proto,
    )
}

/// For UDP from `client` to `vip`:[`VIP_PORT`] over `pool`: the backend
/// Maglev gives the addresses alone, and the first source port from 47000
/// whose 5-tuple choice differs from it, so a test tells the two rules
/// apart.
fn split_choice(dut: &Dut, pool: &str, client: IpAddr, vip: IpAddr) -> (usize, u16) {
    let portless = key(client, 0, vip, 0, PROTO_UDP);
    let by_addr = index_of(dut, maglev_id(dut, pool, &portless));
    let sport = (47000..47100)
        .find(|&p| {
            let k = key(client, p, vip, VIP_PORT, PROTO_UDP);
            index_of(dut, maglev_id(dut, pool, &k)) != by_addr
        })
        .unwrap();
    (by_addr, sport)
}

#[test]
fn vlan_tagged_frames_are_forwarded_with_their_tags() {
    let dut = Dut::new("fxvlan", config(1));
    let q = [(TPID_8021Q, 100)];
    let qinq = [(TPID_8021AD, 0x2007), (TPID_8021Q, 0x0064)];
    let syn = |sport| client_tcp(sport, true, b"");
    let data = client_tcp(42001, false, b"GET / HTTP/1.1\r\n\r\n");
    let reply = frame::backend_reply(1, 42002);
    // (name, frame in, frame out, tags of both)
    let cases = [
        (
            "802.1Q SYN: NAT, tag kept, XDP_TX",
            syn(42001),
            syn(42001).nat_to_backend(1),
            &q[..],
        ),
        (
            "802.1Q data of that flow (table hit)",
            data.clone(),
            data.nat_to_backend(1),
            &q[..],
        ),
        (
            "QinQ (802.1ad + 802.1Q) SYN: both tags kept",
            syn(42002),
            syn(42002).nat_to_backend(1),
            &qinq[..],
        ),
        (
            "QinQ reply from the backend: back to the client as the VIP",
            reply.clone(),
            reply.nat_to_client(),
            &qinq[..],
        ),
    ];
    for (name, input, output, tags) in cases {
        let (action, out) = dut.run(&tagged(&input.build(), tags));
        assert_eq!(action, XDP_TX, "{name}: action");
        assert_eq!(
            hex(&out),
            hex(&tagged(&output.build(), tags)),
            "{name}: bytes"
        );
        verify_checksums(&out, name);
    }
    assert_eq!(dut.stat(Stat::Vlan), 2, "the two tagged new flows");
    assert_eq!(dut.stat(Stat::FlowMiss), 2);
    assert_eq!(dut.stat(Stat::FlowHit), 1);
    assert_eq!(dut.stat(Stat::NatReverse), 1);
}

/// An IPv4 fragment's UDP checksum covers the whole datagram: only its
/// header checksum can be checked on its own (verify_checksums refuses
/// fragments); the expected bytes hold etherparse's UDP checksum.
fn verify_fragment_checksum(out: &[u8], name: &str) {
    let ip = etherparse::Ipv4HeaderSlice::from_slice(&out[14..]).unwrap();
    assert_eq!(
        ip.header_checksum(),
        ip.to_header().calc_header_checksum(),
        "{name}: ip checksum"
    );
}

/// IPv4 fragments of one UDP datagram: every fragment (first with ports,
/// later without, in any order) goes to the backend Maglev gives the
/// addresses alone; NAT rewrites the first fragment's address, port and
/// UDP checksum (which covers the whole datagram) and only the address
/// (and header checksum) of later ones.
#[test]
fn ipv4_fragments_follow_the_addresses() {
    let dut = Dut::new("fxfrag4", config(3));
    let payload: Vec<u8> = (0..120u8).collect();
    let (by_addr, sport) = split_choice(&dut, "pool", CLIENT.into(), VIP.into());
    let (datagram, nat) = udp_nat(CLIENT.into(), sport, VIP.into(), by_addr, &payload);
    let input = fragment_v4(&datagram, &[48, 96], 0x4242);
    let output = fragment_v4(&nat, &[48, 96], 0x4242);
    let cases = [
        ("last fragment (offset 96) before the first", 2),
        ("first fragment (MF, with ports)", 0),
        ("middle fragment (MF, offset 48)", 1),
        ("last fragment again", 2),
    ];
    for (name, n) in cases {
        let (action, out) = dut.run(&input[n]);
        assert_eq!(action, XDP_TX, "{name}: action");
        assert_eq!(hex(&out), hex(&output[n]), "{name}: bytes (to b{by_addr})");
        verify_fragment_checksum(&out, name);
    }
    assert_eq!(dut.stat(Stat::Fragment), 4);
    assert_eq!(
        dut.stat(Stat::FlowMiss),
        0,
        "fragments take no 5-tuple path"
    );
    // The first fragment leaves the reverse entry replies need, and no
    // client -> VIP entry (the next datagram is not a fragment and goes by
    // its 5-tuple).
    let fwd = key(CLIENT.into(), sport, VIP.into(), VIP_PORT, PROTO_UDP);
    assert_eq!(flow_entry(&dut, &fwd), None, "no entry for the 5-tuple");
    let back = reverse_key(CLIENT.into(), sport, by_addr, PROTO_UDP);
    let entry = flow_entry(&dut, &back).expect("reverse entry for replies");
    assert_eq!(entry.kind, FLOW_TO_CLIENT);
    assert_eq!(entry.vip_id, UDP_VIP);
}

#[test]
fn ipv6_fragment_header_follows_the_addresses() {
    let dut = Dut::new("fxfrag6", config_dual(3));
    let payload: Vec<u8> = (0..120u8).map(|b| b ^ 0x3c).collect();
    let (by_addr, sport) = split_choice(&dut, "pool6", CLIENT6.into(), VIP6.into());
    let (datagram, nat) = udp_nat(CLIENT6.into(), sport, VIP6.into(), by_addr, &payload);
    let input = fragment_v6(&datagram, &[64], 0x0bad_cafe);
    let output = fragment_v6(&nat, &[64], 0x0bad_cafe);
    let cases = [
        ("v6 later fragment before the first", 1),
        ("v6 first fragment (M, with ports)", 0),
        ("v6 later fragment (offset 64)", 1),
    ];
    for (name, n) in cases {
        let (action, out) = dut.run(&input[n]);
        assert_eq!(action, XDP_TX, "{name}: action");
        assert_eq!(
            hex(&out),
            hex(&output[n]),
            "{name}: bytes (to b6-{by_addr})"
        );
    }
    assert_eq!(dut.stat(Stat::Fragment), 3);
    assert_eq!(dut.stat(Stat::FlowMiss), 0);
    let back = reverse_key(CLIENT6.into(), sport, by_addr, PROTO_UDP);
    let entry = flow_entry(&dut, &back).expect("reverse entry for replies");
    assert_eq!((entry.kind, entry.vip_id), (FLOW_TO_CLIENT, UDP6_VIP));

    // An atomic fragment (fragment header, offset 0, M clear) is a whole
    // datagram (RFC 6946): it goes by its 5-tuple, ports rewritten.
    let tuple = key(CLIENT6.into(), sport, VIP6.into(), VIP_PORT, PROTO_UDP);
    let by_tuple = index_of(&dut, maglev_id(&dut, "pool6", &tuple));
    let (_, nat) = udp_nat(CLIENT6.into(), sport, VIP6.into(), by_tuple, &payload);
    let (action, out) = dut.run(&fragment_v6(&datagram, &[], 7)[0]);
    assert_eq!(action, XDP_TX, "atomic fragment: action");
    assert_eq!(
        hex(&out),
        hex(&fragment_v6(&nat, &[], 7)[0]),
        "atomic fragment: bytes (to b6-{by_tuple})"
    );
    verify_checksums(&out, "atomic fragment");
    assert_eq!(dut.stat(Stat::Fragment), 3, "not counted as a fragment");
    assert_eq!(dut.stat(Stat::FlowMiss), 1);
}

/// Deterministic pseudo-random client flows (a 64-bit LCG).
struct Flows(u64);

impl Flows {
    fn next(&mut self) -> (std::net::Ipv4Addr, u16) {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (self.0 >> 16) as u32;
        let addr = std::net::Ipv4Addr::from(0xc612_0000 | (r & 0x1_ffff)); // 198.18.0.0/15
        (addr, 1024 + (self.0 >> 48) as u16 % 60000)
    }
}

/// TCP without SYN for a flow nobody knows (an LB node that restarted, or
/// ECMP moved the flow here): Maglev, like every other node would pick.
#[test]
fn tcp_without_syn_for_an_unknown_flow_goes_by_maglev() {
    let dut = Dut::new("fxnosyn", config(3));
    let mut model = ReferenceModel::new(&dut.config, &dut.registry);
    let mut rng = Flows(0x5eed);
    let flows: Vec<_> = (0..500).map(|_| rng.next()).collect();
    for &(src, sport) in &flows {
        let seg = frame::Tcp {
            src,
            ..client_tcp(sport, false, b"mid-stream")
        };
        let name = format!("ack of unknown flow {src}:{sport}");
        let got = run_tcp(&dut, &name, &seg);
        let k = key(src.into(), sport, VIP.into(), VIP_PORT, PROTO_TCP);
        let want = index_of(&dut, model.choose(TCP_VIP, &k).unwrap());
        assert_eq!(got, want, "{name}: kernel vs model");
    }
    assert_eq!(dut.stat(Stat::FlowMiss), 500);
    // They are in the table now.
    for &(src, sport) in &flows[..50] {
        let seg = frame::Tcp {
            src,
            ..client_tcp(sport, false, b"more")
        };
        run_tcp(&dut, "second segment", &seg);
    }
    assert_eq!(dut.stat(Stat::FlowHit), 50);
}

/// Flood guard at 5 new flows per second per CPU. BPF_PROG_TEST_RUN runs
/// on the calling thread's CPU (pinned here), and the whole test takes a
/// few milliseconds, well inside one 1 s window, so the count is exact.
#[test]
fn flood_guard_forwards_without_filling_the_table() {
    pin_to_current_cpu();
    let mut c = config(3);
    c.global.flood_new_flows_per_sec = 5;
    let dut = Dut::new("fxflood", c);
    let mut model = ReferenceModel::new(&dut.config, &dut.registry);
    let started = std::time::Instant::now();
    let sports: Vec<u16> = (48001..=48008).collect();
    let mut chosen = Vec::new();
    for (n, &sport) in sports.iter().enumerate() {
        let got = run_tcp(
            &dut,
            &format!("new flow {n}"),
            &client_tcp(sport, true, b""),
        );
        assert_eq!(
            got,
            tcp_model_choice(&dut, &mut model, sport),
            "flow {n}: Maglev"
        );
        chosen.push(got);
    }
    assert_eq!(dut.stat(Stat::FlowMiss), 8);
    assert_eq!(
        dut.stat(Stat::FloodBypass),
        3,
        "flows 6..8 bypass the table"
    );
    for (n, (&sport, &be)) in sports.iter().zip(&chosen).enumerate() {
        let fwd = key(CLIENT.into(), sport, VIP.into(), VIP_PORT, PROTO_TCP);
        let entry = flow_entry(&dut, &fwd);
        if n < 5 {
            assert_eq!(
                entry.map(|e| e.kind),
                Some(FLOW_TO_BACKEND),
                "flow {n} remembered"
            );
        } else {
            assert_eq!(
                entry, None,
                "flow {n} above the limit must not be remembered"
            );
        }
        // NAT: the reverse entry is written anyway, or replies would not
        // be translated back.
        let back = reverse_key(CLIENT.into(), sport, be, PROTO_TCP);
        assert_eq!(
            flow_entry(&dut, &back).map(|e| e.kind),
            Some(FLOW_TO_CLIENT),
            "flow {n}: reverse entry"
        );
    }
    // Second packets: a remembered flow hits; a bypassed one misses again
    // (still the same backend, still no entry).
    let hit = run_tcp(&dut, "flow 0 again", &client_tcp(sports[0], false, b"x"));
    assert_eq!(hit, chosen[0]);
    assert_eq!(dut.stat(Stat::FlowHit), 1);
    let again = run_tcp(&dut, "flow 5 again", &client_tcp(sports[5], false, b"x"));
    assert_eq!(again, chosen[5], "same backend by Maglev");
    assert_eq!(dut.stat(Stat::FlowMiss), 9, "a bypassed flow misses again");
    assert_eq!(dut.stat(Stat::FloodBypass), 4);
    let fwd = key(CLIENT.into(), sports[5], VIP.into(), VIP_PORT, PROTO_TCP);
    assert_eq!(flow_entry(&dut, &fwd), None);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "the test must run inside one flood window (took {:?})",
        started.elapsed()
    );
}

/// NAT first fragments are new flows to the flood guard (2 per second
/// here): they count towards its rate and, above it, as bypassing the
/// table; the way back for replies is written all the same, as for any
/// new NAT flow. Then the guard holds for the next new flow too.
#[test]
fn first_fragments_count_towards_the_flood_guard() {
    pin_to_current_cpu();
    let mut c = config(3);
    c.global.flood_new_flows_per_sec = 2;
    let dut = Dut::new("fxfragflood", c);
    let started = std::time::Instant::now();
    let payload: Vec<u8> = (0..120u8).collect();
    let portless = key(CLIENT.into(), 0, VIP.into(), 0, PROTO_UDP);
    let by_addr = index_of(&dut, maglev_id(&dut, "pool", &portless));
    for (n, sport) in (47201..=47203).enumerate() {
        let (datagram, nat) = udp_nat(CLIENT.into(), sport, VIP.into(), by_addr, &payload);
        let id = 0x4300 + n as u16;
        let (input, output) = (
            fragment_v4(&datagram, &[48], id),
            fragment_v4(&nat, &[48], id),
        );
        let (action, out) = dut.run(&input[0]);
        assert_eq!(action, XDP_TX, "first fragment {n}: action");
        assert_eq!(hex(&out), hex(&output[0]), "first fragment {n}: bytes");
        verify_fragment_checksum(&out, &format!("first fragment {n}"));
        let back = reverse_key(CLIENT.into(), sport, by_addr, PROTO_UDP);
        assert_eq!(
            flow_entry(&dut, &back).map(|e| e.kind),
            Some(FLOW_TO_CLIENT),
            "first fragment {n}: the way back"
        );
    }
    assert_eq!(dut.stat(Stat::Fragment), 3);
    assert_eq!(dut.stat(Stat::FloodBypass), 1, "the third is over");
    assert_eq!(dut.stat(Stat::FlowInsertFailed), 0);
    run_tcp(&dut, "new tcp flow", &client_tcp(47204, true, b""));
    assert_eq!(dut.stat(Stat::FloodBypass), 2, "the fragments used it up");
    let fwd = key(CLIENT.into(), 47204, VIP.into(), VIP_PORT, PROTO_TCP);
    assert_eq!(flow_entry(&dut, &fwd), None, "over the limit: no entry");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "the test must run inside one flood window (took {:?})",
        started.elapsed()
    );
}

/// Establish `n` flows (SYNs from CLIENT, ports from `base`), checked
/// against the model; returns (port, backend).
fn establish(dut: &Dut, model: &mut ReferenceModel, base: u16, n: u16) -> Vec<(u16, usize)> {
    (base..base + n)
        .map(|sport| {
            let got = run_tcp(dut, "syn", &client_tcp(sport, true, b""));
            assert_eq!(got, tcp_model_choice(dut, model, sport), "syn {sport}");
            (sport, got)
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Change {
    Drain,
    Weight0,
    Maint,
    Down,
}

/// DRAIN (admin state, or weight 0) keeps established flows on the
/// backend while new flows avoid it;
/// MAINT and DOWN move its established flows to live backends (where the
/// model says); every other flow stays put.
#[test]
fn drain_keeps_flows_maint_and_down_move_them() {
    for (ns, change, stays) in [
        ("fxdrain", Change::Drain, true),
        ("fxweight0", Change::Weight0, true),
        ("fxmaint", Change::Maint, false),
        ("fxdown", Change::Down, false),
    ] {
        let mut dut = Dut::new(ns, config(3));
        let mut model = ReferenceModel::new(&dut.config, &dut.registry);
        let flows = establish(&dut, &mut model, 43000, 60);
        let on_b2 = flows.iter().filter(|f| f.1 == 2).count();
        assert!(on_b2 >= 5, "{change:?}: only {on_b2} of 60 flows on b2");

        let b2 = server_id(&dut, "pool", "b2");
        match change {
            Change::Drain => dut.registry.set_admin(b2, Admin::Drain),
            Change::Weight0 => {
                // `set server pool/b2 weight 0` (or a reload saying so).
                let mut c = dut.config.clone();
                c.backend[0].server[1].weight = 0;
                dut.registry.reconcile(&c).unwrap();
                dut.config = c;
                true
            }
            Change::Maint => dut.registry.set_admin(b2, Admin::Maint),
            Change::Down => dut.registry.set_healthy(b2, false),
        };
        dut.sync();
        model.update(&dut.config, &dut.registry);

        let hits = dut.stat(Stat::FlowHit);
        let mut now = Vec::new();
        for &(sport, before) in &flows {
            let name = format!("{change:?}: established {sport} (was b{before})");
            let got = run_tcp(&dut, &name, &client_tcp(sport, false, b"data"));
            assert_eq!(
                got,
                tcp_model_choice(&dut, &mut model, sport),
                "{name}: model"
            );
            if before == 2 && !stays {
                assert_ne!(got, 2, "{name}: still on b2");
            } else {
                assert_eq!(got, before, "{name}: moved");
            }
            now.push(got);
        }
        let expect_hits = if stays { 60 } else { 60 - on_b2 as u64 };
        assert_eq!(
            dut.stat(Stat::FlowHit),
            hits + expect_hits,
            "{change:?}: hits"
        );
        // Rescheduled flows stay where they went.
        for (&(sport, _), &went) in flows.iter().zip(&now) {
            let got = run_tcp(&dut, "again", &client_tcp(sport, false, b"more"));
            assert_eq!(got, went, "{change:?}: {sport} moved again");
        }
        // New flows never go to b2.
        for sport in 50000..50300 {
            let got = run_tcp(&dut, "new", &client_tcp(sport, true, b""));
            assert_ne!(got, 2, "{change:?}: new flow {sport} to b2");
            assert_eq!(
                got,
                tcp_model_choice(&dut, &mut model, sport),
                "{change:?}: new"
            );
        }
    }
}

/// A backend removed from the config (reload): no packet is sent to it
/// again, not by a connection-table hit, a new flow, or an ICMP error about
/// one of its flows.
#[test]
fn removed_backend_is_never_sent_to_again() {
    let mut dut = Dut::new("fxremoved", config(3));
    let mut model = ReferenceModel::new(&dut.config, &dut.registry);
    let flows = establish(&dut, &mut model, 43000, 60);
    assert!(flows.iter().any(|f| f.1 == 3));

    let mut reloaded = dut.config.clone();
    reloaded.backend[0].server.retain(|s| s.name != "b3");
    dut.registry.reconcile(&reloaded).unwrap();
    dut.config = reloaded;
    dut.sync();
    model.update(&dut.config, &dut.registry);

    // An ICMP error about a flow that lived on b3, whose entry still names
    // the retired id: passed to the kernel untouched, not sent to b3.
    let (sport3, _) = *flows.iter().find(|f| f.1 == 3).unwrap();
    let vip_to_client = frame::Tcp {
        src_mac: LB_MAC,
        dst_mac: CLIENT_MAC,
        src: VIP,
        sport: VIP_PORT,
        dst: CLIENT,
        dport: sport3,
        syn: false,
        payload: vec![0; 64],
    }
    .build();
    let router: std::net::Ipv4Addr = "198.18.0.254".parse().unwrap();
    let icmp = icmp4_frag_needed((CLIENT_MAC, LB_MAC), router, VIP, &vip_to_client);
    let (action, out) = dut.run(&icmp);
    assert_eq!(
        action, XDP_PASS,
        "icmp error about a removed backend's flow"
    );
    assert_eq!(hex(&out), hex(&icmp), "passed untouched");

    for &(sport, before) in &flows {
        let name = format!("established {sport} (was b{before})");
        let got = run_tcp(&dut, &name, &client_tcp(sport, false, b"data"));
        assert_ne!(got, 3, "{name}: sent to the removed backend");
        assert_eq!(
            got,
            tcp_model_choice(&dut, &mut model, sport),
            "{name}: model"
        );
        if before != 3 {
            assert_eq!(got, before, "{name}: moved");
        }
    }
    for sport in 50000..50300 {
        let got = run_tcp(&dut, "new flow", &client_tcp(sport, true, b""));
        assert_ne!(got, 3, "new flow {sport} to the removed backend");
    }
}
