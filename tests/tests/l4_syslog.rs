//! Syslog steering with real traffic: a UDP VIP 198.18.0.100:514 with
//! `steering = "syslog"` over three receivers (`lab-backend --udp
//! 198.18.1.1K:514`, one stdout line per datagram). One sender, from ONE
//! source port (a single 5-tuple, which flow steering would pin to one
//! receiver), sends 300 numbered datagrams; each receiver must get
//! 100 ± 20% of them, none lost or duplicated.

use std::{
    collections::BTreeSet,
    net::{SocketAddr, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use xlb_lab::{
    L4Topology, Lab, Process,
    backend::BACKEND_READY_TIMEOUT,
    l4traffic::{
        L4Config, deltas, packets, run_xlb, server_entries, server_names, snmp_each, socket_addrs,
        stat,
    },
    lab_backend_path,
};

const TEST: &str = "l4syslog";
const PORT: u16 = 514;
const SENDER_PORT: u16 = 40514;
const DATAGRAMS: usize = 300;
/// 100 ± 20%.
const SHARE: std::ops::RangeInclusive<usize> = 80..=120;
/// Pause between datagrams: the receivers write a line per datagram, and
/// the test is about the spread, not about overrunning socket buffers.
const PACE: Duration = Duration::from_millis(2);
/// How long the receivers get to log the last datagrams.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const PREFIX: &str = "<13>xlb-syslog-test seq=";

/// A UDP VIP with syslog steering over `log1..`, no health checks.
fn config(topo: &L4Topology, names: &[String], addrs: &[SocketAddr], global: &str) -> String {
    L4Config {
        health: None,
        protocol: "udp",
        mode: ("steering", "syslog"),
        ..L4Config::nat(
            topo,
            "logs",
            "syslog-l4",
            SocketAddr::from((topo.vip(), PORT)),
            server_entries(names, addrs),
        )
    }
    .render(global)
}

/// The sequence numbers a receiver logged so far.
fn received(p: &Process) -> Vec<usize> {
    p.stdout_lines()
        .iter()
        .filter_map(|l| l.strip_prefix(PREFIX))
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn one_syslog_sender_is_spread_over_three_receivers() {
    let topo = L4Topology::build(Lab::new(TEST).unwrap(), 3).unwrap_or_else(|e| panic!("{e:#}"));
    let bin = lab_backend_path().unwrap();
    let bin = bin.to_string_lossy();
    let names = server_names("log", 3);
    let addrs = socket_addrs(topo.backend_addrs(), PORT);
    let receivers: Vec<Process> = names
        .iter()
        .zip(&addrs)
        .enumerate()
        .map(|(i, (name, udp))| {
            let udp = udp.to_string();
            topo.backend(i + 1)
                .spawn_ready(
                    &[&bin, "--name", name, "--udp", &udp],
                    "listening on udp",
                    BACKEND_READY_TIMEOUT,
                )
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .collect();
    let (_cfg, daemon) = run_xlb(&topo, TEST, |g| config(&topo, &names, &addrs, g))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let in_before = snmp_each(topo.backends(), "Udp", "InDatagrams").unwrap();

    let vip = SocketAddr::from((topo.vip(), PORT));
    let src = SocketAddr::from((topo.client_addr(), SENDER_PORT));
    topo.client()
        .with(|| -> std::io::Result<()> {
            let sock = UdpSocket::bind(src)?;
            for seq in 0..DATAGRAMS {
                sock.send_to(format!("{PREFIX}{seq}").as_bytes(), vip)?;
                thread::sleep(PACE);
            }
            Ok(())
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("sending from {src}: {e}"));

    // Bounded wait until every datagram has been logged somewhere.
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while receivers.iter().map(|r| received(r).len()).sum::<usize>() < DATAGRAMS
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(20));
    }
    let got: Vec<Vec<usize>> = receivers.iter().map(received).collect();
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    let in_delta = deltas(
        &snmp_each(topo.backends(), "Udp", "InDatagrams").unwrap(),
        &in_before,
    );
    let stats = daemon.stats().unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("xlb stats:\n{stats}");
    eprintln!("datagrams per receiver (log1..log3): {counts:?}; Udp InDatagrams: {in_delta:?}");

    let all: BTreeSet<usize> = got.iter().flatten().copied().collect();
    let total: usize = counts.iter().sum();
    assert_eq!(
        total,
        DATAGRAMS,
        "{total} of {DATAGRAMS} datagrams logged (per receiver {counts:?}); xlb stderr:\n{}",
        daemon.stderr()
    );
    assert_eq!(
        all.len(),
        DATAGRAMS,
        "datagrams duplicated or out of range: per receiver {counts:?}"
    );
    for (k, &n) in counts.iter().enumerate() {
        assert!(
            SHARE.contains(&n),
            "log{} got {n} of {DATAGRAMS} datagrams from one sender, outside {SHARE:?}: {counts:?}",
            k + 1
        );
    }
    for (k, (&n, &d)) in counts.iter().zip(&in_delta).enumerate() {
        assert_eq!(
            d as usize,
            n,
            "log{}: kernel Udp InDatagrams {d} vs {n} logged",
            k + 1
        );
    }
    let vip_packets = packets(&stats, "vip syslog-l4 ").expect("vip line in xlb stats");
    assert_eq!(
        vip_packets, DATAGRAMS as u64,
        "the VIP counted {vip_packets} packets for {DATAGRAMS} datagrams"
    );
    let spread = stat(&stats, "syslog_spread").expect("syslog_spread in xlb stats");
    assert_eq!(
        spread, DATAGRAMS as u64,
        "syslog_spread = {spread} for {DATAGRAMS} datagrams"
    );
}
