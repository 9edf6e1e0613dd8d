//! Draining a server with real traffic: the NAT VIP 198.18.0.100:80 over
//! three `lab-backend` servers. A long-lived keep-alive connection (one
//! request every 100 ms) lands on server K; the config is rewritten with
//! K's weight = 0 and the daemon gets SIGHUP. After the daemon logs
//! `config reloaded`, 150 new connections from fixed source ports must all
//! go to the other two servers, while the long-lived connection keeps
//! being answered by K, with zero failures, before, during and after the
//! reload.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use xlb_lab::{
    L4Topology, Lab,
    l4traffic::{
        L4Config, LongLived, count_by_name, packets, run_batch, run_xlb, server_entries,
        server_names, socket_addrs, spawn_backends, stop_xlb,
    },
};

const TEST: &str = "l4drain";
const VIP_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const FLOWS: u16 = 150;
const LONG_LIVED_PORT: u16 = 30000;
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Long-lived answers required after the reload (about 2 s of them) on top
/// of the new-connection batch.
const AFTER_RELOAD_ANSWERS: usize = 20;

/// Every server at weight 100, except `drained` (1-based) at 0.
fn config(
    topo: &L4Topology,
    names: &[String],
    addrs: &[SocketAddr],
    drained: Option<usize>,
    global: &str,
) -> String {
    let mut servers = server_entries(names, addrs);
    for (i, s) in servers.iter_mut().enumerate() {
        s.weight = Some(if drained == Some(i + 1) { 0 } else { 100 });
    }
    let vip = SocketAddr::from((topo.vip(), VIP_PORT));
    L4Config::nat(topo, "web", "web-l4", vip, servers).render(global)
}

#[test]
fn drained_server_keeps_its_connection_and_takes_no_new_ones() {
    let topo = L4Topology::build(Lab::new(TEST).unwrap(), 3).unwrap_or_else(|e| panic!("{e:#}"));
    let names = server_names("web", 3);
    let addrs = socket_addrs(topo.backend_addrs(), BACKEND_PORT);
    let _backends = spawn_backends(&topo, &names, &addrs).unwrap_or_else(|e| panic!("{e:#}"));
    let (dir, mut daemon) = run_xlb(&topo, TEST, |g| config(&topo, &names, &addrs, None, g))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let client = topo.client();
    let src = IpAddr::V4(topo.client_addr());
    let vip = SocketAddr::from((topo.vip(), VIP_PORT));

    // 1. Before: every server takes new connections.
    let before = run_batch(client, src, 20000..20000 + FLOWS, vip, &names)
        .unwrap_or_else(|e| panic!("before the drain: {e:#}\nxlb stderr:\n{}", daemon.stderr()));
    let before = count_by_name(&before, &names);
    eprintln!("{FLOWS} new flows before the drain: {before:?}");
    assert!(
        before.values().all(|&n| n > 0),
        "a server got no flows before the drain: {before:?}"
    );

    // 2. The long-lived connection; its server is the one drained.
    let local = SocketAddr::new(src, LONG_LIVED_PORT);
    let (long_lived, drained) = LongLived::start(client, local, vip, &names)
        .unwrap_or_else(|e| panic!("long-lived connection: {e:#}"));
    let k: usize = drained[3..].parse().unwrap();
    eprintln!("long-lived connection from port {LONG_LIVED_PORT} is served by {drained}");
    long_lived.wait_answers(5, Duration::from_secs(5));

    // 3. Drain K: weight 0, SIGHUP, wait for `config reloaded`.
    dir.write_config(&config(
        &topo,
        &names,
        &addrs,
        Some(k),
        &dir.global_toml(TEST),
    ))
    .unwrap();
    let reloaded_at = Instant::now();
    daemon
        .reload(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("drain reload: {e:#}"));
    eprintln!(
        "config reloaded {} ms after SIGHUP",
        reloaded_at.elapsed().as_millis()
    );
    let answers_at_reload = long_lived.answers();

    // 4. New connections (new fixed ports) avoid K.
    let stats_before = daemon.stats().unwrap_or_else(|e| panic!("{e:#}"));
    let after = run_batch(client, src, 21000..21000 + FLOWS, vip, &names);
    let stats_after = daemon.stats().unwrap_or_else(|e| panic!("{e:#}"));
    let key = format!("server web/{drained} ");
    let k_packets = packets(&stats_after, &key).unwrap_or_default()
        - packets(&stats_before, &key).unwrap_or_default();

    // 5. The long-lived connection keeps going on K after the batch too.
    long_lived.wait_answers(
        answers_at_reload + AFTER_RELOAD_ANSWERS,
        Duration::from_secs(10),
    );
    let report = long_lived.finish();
    eprintln!(
        "long-lived connection: {} answers ({} after the reload), servers {:?}, failures {:?}",
        report.ok,
        report.ok.saturating_sub(answers_at_reload),
        report.servers,
        report.failures
    );
    eprintln!("xlb stats after the drain batch:\n{stats_after}");
    eprintln!("packets to {drained} during the drain batch: {k_packets} (the long-lived flow's)");

    let after = after.unwrap_or_else(|e| panic!("after the drain: {e:#}"));
    let after = count_by_name(&after, &names);
    eprintln!("{FLOWS} new flows with {drained} drained: {after:?}");
    assert_eq!(
        after[&drained], 0,
        "{drained} is drained (weight 0) yet took new flows: {after:?}"
    );
    assert_eq!(after.values().sum::<usize>(), usize::from(FLOWS));
    assert!(
        report.failures.is_empty(),
        "the long-lived connection on drained {drained} failed after {} good answers: {:?}",
        report.ok,
        report.failures
    );
    assert_eq!(
        report.servers,
        std::slice::from_ref(&drained),
        "the long-lived connection moved between servers"
    );
    assert!(
        report.ok >= answers_at_reload + AFTER_RELOAD_ANSWERS,
        "only {} long-lived answers after the reload (>= {AFTER_RELOAD_ANSWERS} expected)",
        report.ok - answers_at_reload
    );
    stop_xlb(&mut daemon).unwrap_or_else(|e| panic!("{e:#}"));
}
