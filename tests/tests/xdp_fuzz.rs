//! A bounded mutation fuzz of the L4 program through BPF_PROG_TEST_RUN:
//! valid frames of every kind the data path handles (IPv4/IPv6 TCP/UDP,
//! VLAN, fragments, ICMP errors, QUIC, syslog, DSR, NAT replies) are
//! mutated (bit flips, field values, truncation, extension, splices) with a
//! fixed seed and run one by one. For every case:
//! - the syscall succeeds and the action is PASS, DROP, TX or REDIRECT
//!   (never ABORTED or anything else);
//! - PASS and DROP leave the frame exactly as it came (except a PASS
//!   counted as `pass_no_route`/`pass_no_neigh`: NAT already rewrote it
//!   when the route lookup failed, and the kernel forwards it; that frame
//!   must be well-formed like a sent one);
//! - a TX/REDIRECT output is a well-formed frame (Ethernet, VLAN tags, an
//!   IP header whose lengths fit the frame, no growth beyond one tunnel
//!   header) whose IPv4 header checksums verify: always for headers the
//!   program built (DSR outer header, ICMP answers, with their ICMP
//!   checksum), and for rewritten ones when the input's checksum was right.
//!
//! Every violation is reported with the input in hex; the run is
//! reproducible from SEED.

#[path = "xdp/frames.rs"]
mod frames;
mod xdp;

use std::net::Ipv4Addr;

use frames::{
    TPID_8021AD, TPID_8021Q, dcid_with, fragment_v4, fragment_v6, icmp4_frag_needed, icmp6_too_big,
    pin_to_current_cpu, quic_initial, quic_short, tagged, tcp6, udp4, udp6,
};
use xdp::{
    BACKEND_PORT, CLIENT, CLIENT_MAC, CLIENT6, Dut, LB_MAC, VIP, VIP_PORT, VIP6, XDP_DROP,
    XDP_PASS, XDP_REDIRECT, XDP_TX, backend_ip, backend_ip6, backend_mac, config_dual, frame, hex,
};
use xlb::{
    config::{Config, Forward, Protocol, Steering},
    dataplane::object::PROG_L4,
};
use xlb_common::Stat;
use xlb_lab::{
    checksum::{fix_ipv4_checksum, ones_sum},
    fuzz::{self, Rng},
};

/// Defaults; `XLB_FUZZ_SEED` (hex) and `XLB_FUZZ_CASES` override them for
/// longer hunts or to replay a reported case.
const SEED: u64 = 0x00c0_ffee_5eed_2026;
const CASES: usize = 20_000;

/// Inputs stay within one Ethernet frame (1500-byte MTU + header), the
/// largest a NAT'ed packet can be and still fit the lab's path.
const MAX_FRAME: usize = 1514;

/// Everything the data path can do, on one object: NAT v4/v6 (TCP, UDP
/// with QUIC steering), syslog, DSR IPIP / IP6IP6 / IPv4-in-IPv6, flood
/// guard on.
fn fuzz_config() -> Config {
    let mut c = config_dual(3);
    c.global.flood_new_flows_per_sec = 5000;
    for pool in &mut c.backend {
        for (i, s) in pool.server.iter_mut().enumerate() {
            s.quic_server_id = Some(i as u32 + 1);
        }
    }
    c.l4[1].steering = Steering::Quic; // udp VIP:80
    c.l4[3].steering = Steering::Quic; // udp VIP6:80
    let mut add = |name: &str, ip: std::net::IpAddr, port, protocol, pool: &str, f, s| {
        let mut v = c.l4[0].clone();
        v.name = name.into();
        v.vip = std::net::SocketAddr::new(ip, port);
        v.protocol = protocol;
        v.backend = pool.into();
        v.forward = f;
        v.steering = s;
        c.l4.push(v);
    };
    use Protocol::{Tcp, Udp};
    let (v4, v6) = (VIP.into(), VIP6.into());
    add(
        "syslog",
        v4,
        514,
        Udp,
        "pool",
        Forward::Nat,
        Steering::Syslog,
    );
    add("dsr", v4, 443, Tcp, "pool", Forward::Dsr, Steering::Flow);
    add("dsr6", v6, 443, Tcp, "pool6", Forward::Dsr, Steering::Flow);
    add(
        "dsr4in6",
        v4,
        444,
        Tcp,
        "pool6",
        Forward::Dsr,
        Steering::Flow,
    );
    add("dsrudp", v4, 443, Udp, "pool", Forward::Dsr, Steering::Flow);
    c
}

fn tcp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, syn: bool, len: usize) -> Vec<u8> {
    frame::Tcp {
        src_mac: CLIENT_MAC,
        dst_mac: LB_MAC,
        src,
        sport,
        dst,
        dport,
        syn,
        payload: (0..len).map(|i| i as u8).collect(),
    }
    .build()
}

/// Valid frames, one or more per path.
fn seeds() -> Vec<Vec<u8>> {
    let c2l = (CLIENT_MAC, LB_MAC);
    let mut s = vec![
        tcp4(CLIENT, 40000, VIP, VIP_PORT, true, 0),
        tcp4(CLIENT, 40000, VIP, VIP_PORT, false, 100),
        tcp4(CLIENT, 40001, VIP, 443, true, 0),
        tcp4(CLIENT, 40001, VIP, 443, false, 1450), // too big for the tunnel
        tcp4(CLIENT, 40002, VIP, 444, true, 0),
        tcp4(CLIENT, 40003, VIP, 22, true, 0), // no VIP
        tcp4(CLIENT, 40004, "198.18.0.1".parse().unwrap(), 80, true, 0), // the LB
        frame::with_ip_options(&tcp4(CLIENT, 40005, VIP, VIP_PORT, true, 0)),
        udp4(
            c2l,
            (CLIENT, 5000),
            (VIP, VIP_PORT),
            &quic_short(&dcid_with(2, 1, 2)),
        ),
        udp4(
            c2l,
            (CLIENT, 5001),
            (VIP, VIP_PORT),
            &quic_short(&dcid_with(9, 1, 2)),
        ),
        udp4(
            c2l,
            (CLIENT, 5002),
            (VIP, VIP_PORT),
            &quic_initial(&dcid_with(1, 1, 2)),
        ),
        udp4(c2l, (CLIENT, 5003), (VIP, 514), b"<13>syslog line"),
        udp4(c2l, (CLIENT, 5004), (VIP, 443), b"dsr udp"),
        tcp6(c2l, (CLIENT6, 40000), (VIP6, VIP_PORT), true, b""),
        tcp6(c2l, (CLIENT6, 40000), (VIP6, VIP_PORT), false, &[7; 64]),
        tcp6(c2l, (CLIENT6, 40001), (VIP6, 443), true, b""),
        tcp6(c2l, (CLIENT6, 40001), (VIP6, 443), false, &[9; 1420]), // too big
        udp6(
            c2l,
            (CLIENT6, 5000),
            (VIP6, VIP_PORT),
            &quic_short(&dcid_with(3, 1, 2)),
        ),
        tagged(
            &tcp4(CLIENT, 40010, VIP, VIP_PORT, true, 0),
            &[(TPID_8021Q, 100)],
        ),
        tagged(
            &udp4(c2l, (CLIENT, 5010), (VIP, 514), b"tagged syslog"),
            &[(TPID_8021AD, 7), (TPID_8021Q, 100)],
        ),
        tagged(
            &tcp6(c2l, (CLIENT6, 40010), (VIP6, 443), true, b""),
            &[(TPID_8021Q, 5)],
        ),
    ];
    // Replies from each backend to the first client flows (NAT reverse).
    for i in 1..=3 {
        s.push(
            frame::Tcp {
                src_mac: backend_mac(i),
                dst_mac: LB_MAC,
                src: backend_ip(i),
                sport: BACKEND_PORT,
                dst: CLIENT,
                dport: 40000,
                syn: false,
                payload: b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            }
            .build(),
        );
        s.push(tcp6(
            (backend_mac(i), LB_MAC),
            (backend_ip6(i), BACKEND_PORT),
            (CLIENT6, 40000),
            false,
            b"reply",
        ));
    }
    // Fragments (v4 and v6), first and later.
    let dgram4 = udp4(c2l, (CLIENT, 6000), (VIP, VIP_PORT), &[0x33; 120]);
    s.extend(fragment_v4(&dgram4, &[48, 96], 77));
    let dgram6 = udp6(c2l, (CLIENT6, 6000), (VIP6, VIP_PORT), &[0x44; 120]);
    s.extend(fragment_v6(&dgram6, &[64], 78));
    s.extend(fragment_v6(&dgram6, &[], 79));
    // ICMP errors about the first flows (the quoted packet went VIP -> client).
    let router4: Ipv4Addr = "198.18.0.254".parse().unwrap();
    let quoted4 = frame::Tcp {
        src_mac: LB_MAC,
        dst_mac: CLIENT_MAC,
        src: VIP,
        sport: VIP_PORT,
        dst: CLIENT,
        dport: 40000,
        syn: false,
        payload: vec![1; 32],
    }
    .build();
    s.push(icmp4_frag_needed(c2l, router4, VIP, &quoted4));
    let quoted6 = tcp6(
        (LB_MAC, CLIENT_MAC),
        (VIP6, VIP_PORT),
        (CLIENT6, 40000),
        false,
        &[2; 32],
    );
    let router6 = "2001:db8::fe".parse().unwrap();
    s.push(icmp6_too_big(c2l, router6, VIP6, &quoted6));
    // Not IP.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 20]);
    s.push(arp);
    s
}

/// Interesting byte values for header fields.
const BYTES: [u8; 14] = [
    0x00, 0x01, 0x04, 0x06, 0x11, 0x2c, 0x3a, 0x40, 0x45, 0x4f, 0x60, 0x7f, 0x80, 0xff,
];

fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut f = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        // Headers sit in the first ~100 bytes: aim there most of the time.
        let pos = |rng: &mut Rng, len: usize| {
            if rng.chance(5) {
                rng.below(len)
            } else {
                rng.below(len.min(100))
            }
        };
        match rng.below(7) {
            0 => {
                let p = pos(rng, f.len());
                fuzz::flip_bit(rng, &mut f, p);
            }
            1 => {
                let p = pos(rng, f.len());
                f[p] = BYTES[rng.below(BYTES.len())];
            }
            2 => {
                let p = pos(rng, f.len());
                f[p] = rng.byte();
            }
            3 => {
                let p = pos(rng, f.len() - 1);
                let v: u16 = match rng.below(5) {
                    0 => 0,
                    1 => 0xffff,
                    2 => f.len() as u16,
                    3 => (f.len() as u16).wrapping_sub(rng.below(64) as u16),
                    _ => rng.next_u64() as u16,
                };
                f[p..p + 2].copy_from_slice(&v.to_be_bytes());
            }
            // Never shorter than the Ethernet header.
            4 => fuzz::truncate(rng, &mut f, 14),
            5 => fuzz::extend(rng, &mut f, MAX_FRAME),
            // A piece of another seed in at the same place.
            _ => fuzz::splice(rng, &mut f, seeds),
        }
    }
    if !rng.chance(4) {
        // Most mutants get a right IPv4 header checksum again, so they go
        // past the header check.
        if let Some((0x0800, off)) = l3(&f)
            && ipv4_header_len(&f, off).is_some()
        {
            fix_ipv4_checksum(&mut f, off);
        }
    }
    f
}

/// Ethernet, up to two VLAN tags: the EtherType and the L3 offset.
fn l3(frame: &[u8]) -> Option<(u16, usize)> {
    let mut off = 12;
    for _ in 0..=2 {
        let t = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().unwrap());
        if t == TPID_8021Q || t == TPID_8021AD {
            off += 4;
            continue;
        }
        return Some((t, off + 2));
    }
    None
}

/// The IPv4 header at `off`, if one is there in full: its length.
fn ipv4_header_len(f: &[u8], off: usize) -> Option<usize> {
    let first = *f.get(off)?;
    let ihl = (first & 0x0f) as usize * 4;
    (first >> 4 == 4 && ihl >= 20 && off + ihl <= f.len()).then_some(ihl)
}

fn ipv4_checksum_ok(f: &[u8], off: usize) -> bool {
    ipv4_header_len(f, off).is_some_and(|ihl| ones_sum(0, &f[off..off + ihl]) == 0xffff)
}

/// Check one IP packet at `off` of `out`. `built`: the program wrote this
/// header itself, so its checksum must verify whatever the input was.
/// Returns the protocol and the payload offset for the caller to look
/// inside tunnels and ICMP answers.
fn check_ip(
    out: &[u8],
    ether_type: u16,
    off: usize,
    built: bool,
    input: &[u8],
    in_off: usize,
) -> Result<(u8, usize, usize), String> {
    match ether_type {
        0x0800 => {
            let ihl = ipv4_header_len(out, off).ok_or("bad IPv4 header")?;
            let total = u16::from_be_bytes([out[off + 2], out[off + 3]]) as usize;
            if total < ihl || off + total > out.len() {
                return Err(format!("IPv4 total length {total} does not fit"));
            }
            let must = built || ipv4_checksum_ok(input, in_off);
            if must && !ipv4_checksum_ok(out, off) {
                return Err(format!("IPv4 header checksum wrong at {off}"));
            }
            Ok((out[off + 9], off + ihl, off + total))
        }
        0x86dd => {
            if out.len() < off + 40 || out[off] >> 4 != 6 {
                return Err("bad IPv6 header".into());
            }
            let payload = u16::from_be_bytes([out[off + 4], out[off + 5]]) as usize;
            if off + 40 + payload > out.len() {
                return Err(format!("IPv6 payload length {payload} does not fit"));
            }
            Ok((out[off + 6], off + 40, off + 40 + payload))
        }
        t => Err(format!("EtherType {t:#06x} out of an L4 VIP path")),
    }
}

/// The properties of one TX/REDIRECT output.
fn check_sent(input: &[u8], out: &[u8]) -> Result<(), String> {
    if out.len() > input.len() + 40 {
        return Err(format!("grew by {} bytes", out.len() - input.len()));
    }
    let (t, off) = l3(out).ok_or("no EtherType")?;
    let (in_t, in_off) = l3(input).ok_or("input had no EtherType")?;
    if in_off != off {
        return Err("VLAN tags changed".into());
    }
    let same_size = out.len() == input.len();
    let (proto, l4, end) = check_ip(out, t, off, !same_size, input, in_off)?;
    if same_size {
        return Ok(()); // NAT: addresses/ports rewritten in place
    }
    match (t, proto) {
        // DSR: the client's packet, unchanged, inside.
        (_, 4) => check_ip(out, 0x0800, l4, false, input, in_off).map(|_| ()),
        (_, 41) => check_ip(out, 0x86dd, l4, false, input, in_off).map(|_| ()),
        (0x0800, 1) => {
            if ones_sum(0, &out[l4..end]) != 0xffff {
                return Err("ICMP checksum wrong".into());
            }
            Ok(())
        }
        (0x86dd, 58) => {
            let pseudo = ones_sum(0, &out[off + 8..off + 40]) as u32 + (end - l4) as u32 + 58;
            if ones_sum(pseudo, &out[l4..end]) != 0xffff {
                return Err("ICMPv6 checksum wrong".into());
            }
            Ok(())
        }
        _ => Err(format!(
            "length changed ({} -> {}) but no tunnel or ICMP answer (proto {proto}, input EtherType {in_t:#06x})",
            input.len(),
            out.len()
        )),
    }
}

fn try_run(dut: &Dut, packet: &[u8]) -> Result<(u32, Vec<u8>), String> {
    let (r, out) = dut
        .test_run(PROG_L4, packet, 1)
        .map_err(|e| format!("BPF_PROG_TEST_RUN failed: {e}"))?;
    Ok((r.return_value, out))
}

/// Packets the data path forwarded (NAT rewrite done) but handed to the
/// kernel because the route lookup failed (no neighbour yet, or the FIB
/// refuses, e.g. an IPv6 multicast or link-local source).
fn handed_to_kernel(dut: &Dut) -> u64 {
    dut.stat(Stat::PassNoRoute) + dut.stat(Stat::PassNoNeigh)
}

fn check(dut: &Dut, input: &[u8]) -> Result<u32, String> {
    let handed = handed_to_kernel(dut);
    let (action, out) = try_run(dut, input)?;
    match action {
        // The one documented exception (forward.rs, `NoRoute::Pass`): a
        // rewritten packet whose route lookup failed goes to the kernel
        // as it is, counted, to be forwarded or answered there.
        XDP_PASS if out != input && handed_to_kernel(dut) > handed => {
            check_sent(input, &out).map_err(|e| format!("pass after rewrite: {e}"))?
        }
        XDP_PASS | XDP_DROP => {
            if out != input {
                return Err(format!(
                    "action {action} changed the frame: out {}",
                    hex(&out)
                ));
            }
        }
        XDP_TX | XDP_REDIRECT => check_sent(input, &out)
            .map_err(|e| format!("action {action}: {e}; out {}", hex(&out)))?,
        other => return Err(format!("action {other}")),
    }
    Ok(action)
}

#[test]
fn mutated_frames_never_abort_or_corrupt() {
    // The flood window and syslog position are per CPU; one CPU keeps the
    // run reproducible.
    pin_to_current_cpu();
    let dut = Dut::new("fxfuzz", fuzz_config());
    let seeds = seeds();
    let mut violations = Vec::new();
    let mut actions = [0usize; 5];
    // The seeds themselves first (they also fill the connection table, so
    // mutated packets of known flows take the hit and reply paths).
    for s in &seeds {
        match check(&dut, s) {
            Ok(a) => actions[a as usize] += 1,
            Err(e) => violations.push(format!("seed: {e}\n  input {}", hex(s))),
        }
    }
    let (seed, cases) = fuzz::seed_and_cases(SEED, CASES);
    let found = fuzz::hunt(
        &mut Rng(seed),
        cases,
        None,
        |rng| {
            let base = rng.pick(&seeds);
            mutate(rng, base, &seeds)
        },
        |input| format!("input {}", hex(input)),
        |input| {
            let a = check(&dut, input)?;
            actions[a as usize] += 1;
            Ok(true)
        },
    );
    violations.extend(found.violations);
    eprintln!(
        "{cases} cases (seed {seed:#x}) in {:?}: drop {} pass {} tx {} redirect {}; flow_miss {} flow_hit {} \
         nat_reverse {} quic_hit {} quic_miss {} syslog {} fragment {} icmp_to_backend {} \
         icmp_too_big {} malformed_ip {} malformed_l4 {}",
        found.elapsed,
        actions[1],
        actions[2],
        actions[3],
        actions[4],
        dut.stat(Stat::FlowMiss),
        dut.stat(Stat::FlowHit),
        dut.stat(Stat::NatReverse),
        dut.stat(Stat::QuicCidHit),
        dut.stat(Stat::QuicCidMiss),
        dut.stat(Stat::SyslogSpread),
        dut.stat(Stat::Fragment),
        dut.stat(Stat::IcmpToBackend),
        dut.stat(Stat::IcmpTooBig),
        dut.stat(Stat::DropMalformedIp),
        dut.stat(Stat::DropMalformedL4),
    );
    fuzz::assert_none("XDP fuzz", seed, &violations, 10);
    // The fuzz reached every path it is meant to stress.
    for s in [
        Stat::FlowMiss,
        Stat::FlowHit,
        Stat::NatReverse,
        Stat::QuicCidHit,
        Stat::SyslogSpread,
        Stat::Fragment,
        Stat::IcmpToBackend,
        Stat::IcmpTooBig,
        Stat::DropMalformedIp,
        Stat::DropMalformedL4,
    ] {
        assert!(dut.stat(s) > 0, "no case reached {}", s.name());
    }
    assert!(actions[1] > 0 && actions[2] > 0 && actions[3] > 0);
}
