//! End to end through the XDP NAT data path: real TCP from the client
//! namespace to the VIP, `xlb run` in the lb namespace, three `lab-backend`
//! servers. Every client connection uses a fixed source port, so the set of
//! flows (and Maglev's verdict for each) is the same on every run.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;
use xlb_lab::{
    L4Topology, Lab, Process, TempDir, XlbDaemon,
    l4traffic::{
        HttpHealth, L4Config, LAB_HEALTH, LongLived, count_by_name, http_get, packets, run_batch,
        run_xlb, server_entries, server_names, snmp, socket_addrs, stat, stop_xlb,
    },
};

const VIP_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;

/// The health check written into the config (interval 300 ms, timeout
/// 200 ms, rise 2, fall 2).
const HEALTH: HttpHealth = LAB_HEALTH;
/// Scheduling slack allowed on top of the health check arithmetic.
const SLACK_MS: u64 = 300;

const LONG_LIVED_PORT: u16 = 30000;

/// The test's view of the lab: three `lab-backend` servers `web1..web3`
/// on backend K's address, port [`BACKEND_PORT`], behind the NAT VIP.
struct Web {
    names: Vec<String>,
    addrs: Vec<SocketAddr>,
    client: IpAddr,
    vip: SocketAddr,
}

impl Web {
    fn new(topo: &L4Topology) -> Web {
        Web {
            names: server_names("web", 3),
            addrs: socket_addrs(topo.backend_addrs(), BACKEND_PORT),
            client: IpAddr::V4(topo.client_addr()),
            vip: SocketAddr::from((topo.vip(), VIP_PORT)),
        }
    }

    /// The lab config (`examples/lab.toml`) with this test's health
    /// timings, after the `[global]` table `global`.
    fn config(&self, topo: &L4Topology, global: &str) -> String {
        L4Config {
            health: Some(HEALTH),
            ..L4Config::nat(
                topo,
                "web",
                "web-l4",
                self.vip,
                server_entries(&self.names, &self.addrs),
            )
        }
        .render(global)
    }

    /// `lab-backend --name webK` on backend K's address.
    fn spawn(&self, topo: &L4Topology, k: usize) -> Result<Process> {
        topo.backend(k)
            .spawn_backend(&self.names[k - 1], self.addrs[k - 1])
    }

    /// One HTTP connection per source port (see `run_batch`); how many
    /// each server answered (all three listed).
    fn spread(
        &self,
        topo: &L4Topology,
        ports: std::ops::Range<u16>,
    ) -> Result<BTreeMap<String, usize>> {
        let answers = run_batch(topo.client(), self.client, ports, self.vip, &self.names)?;
        Ok(count_by_name(&answers, &self.names))
    }
}

/// Waits for the daemon's health transition line for `server` (e.g.
/// `web/web2`; UP if `up`, else DOWN) logged after stderr line `from`, and
/// checks that it came at most `bound` after `since` (`event`: what
/// happened then; `rule`: the bound's arithmetic). Returns the line's
/// index.
fn expect_transition(
    daemon: &mut XlbDaemon,
    from: usize,
    server: &str,
    up: bool,
    (since, event): (Instant, &str),
    (bound, rule): (Duration, &str),
) -> usize {
    let state = if up { "UP" } else { "DOWN" };
    let what = format!("server is {state}");
    let field = format!("server={server}");
    let (i, _) = daemon
        .wait_for_stderr(from, bound + Duration::from_secs(5), |l| {
            l.contains(&what) && l.split_whitespace().any(|w| w == field)
        })
        .unwrap_or_else(|e| panic!("{server} never reported {state}: {e:#}"));
    let took = since.elapsed();
    eprintln!("{server} {state} {} ms after its {event}", ms(took));
    assert!(
        took <= bound,
        "{server} went {state} {} ms after the {event}; bound {rule} = {} ms",
        ms(took),
        ms(bound)
    );
    i
}

fn lab_namespaces(test: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(out.status.success(), "ip netns list: {out:?}");
    let prefix = format!("xlb-{test}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[test]
fn nat_spread_failover_recovery_and_long_lived_flow() {
    let topo = L4Topology::build(Lab::new("l4e2e").unwrap(), 3).unwrap();
    let web = Web::new(&topo);
    let mut backends: Vec<Option<Process>> = (1..=3)
        .map(|k| Some(web.spawn(&topo, k).unwrap()))
        .collect();
    let (_config, mut daemon) =
        run_xlb(&topo, "l4e2e", |g| web.config(&topo, g)).unwrap_or_else(|e| panic!("{e:#}"));
    let client = topo.client();

    // 1. Spread: 300 flows with fixed source ports.
    let forw_before = snmp(topo.lb(), "Ip", "ForwDatagrams").unwrap();
    let client_segs_before = snmp(client, "Tcp", "OutSegs").unwrap();
    let client_retrans_before = snmp(client, "Tcp", "RetransSegs").unwrap();
    let counts = web
        .spread(&topo, 20000..20300)
        .unwrap_or_else(|e| panic!("spread: {e:#}\nxlb stderr:\n{}", daemon.stderr()));
    eprintln!("spread over 300 flows: {counts:?}");
    for (name, &n) in &counts {
        assert!(
            (80..=120).contains(&n),
            "{name} got {n} of 300 flows, outside 100 ± 20%: {counts:?}"
        );
    }
    let forw_after = snmp(topo.lb(), "Ip", "ForwDatagrams").unwrap();
    eprintln!(
        "client TCP during the spread: {} segments sent, {} retransmitted",
        snmp(client, "Tcp", "OutSegs").unwrap() - client_segs_before,
        snmp(client, "Tcp", "RetransSegs").unwrap() - client_retrans_before
    );
    let stats = daemon.stats().unwrap();
    eprintln!("xlb stats after the spread:\n{stats}");
    let vip_packets = packets(&stats, "vip web-l4 ").expect("vip line in xlb stats");
    let flow_miss = stat(&stats, "flow_miss").expect("flow_miss in xlb stats");
    assert!(
        vip_packets >= 300 * 4,
        "VIP counted {vip_packets} packets for 300 connections (>= 4 each expected)"
    );
    assert!(
        flow_miss >= 300,
        "flow_miss = {flow_miss} after 300 new flows: they did not all go through XDP"
    );
    let forwarded = forw_after - forw_before;
    eprintln!("lb kernel Ip ForwDatagrams during the spread: {forwarded}");
    assert!(
        forwarded <= 10,
        "the lb kernel forwarded {forwarded} datagrams during 300 connections: \
         traffic bypassed XDP"
    );

    // 2. A long-lived keep-alive connection; kill a backend it does not use.
    let local = SocketAddr::new(web.client, LONG_LIVED_PORT);
    let (long_lived, ll_server) = LongLived::start(client, local, web.vip, &web.names).unwrap();
    eprintln!("long-lived connection (port {LONG_LIVED_PORT}) is served by {ll_server}");
    let victim = (1..=3usize)
        .find(|k| format!("web{k}") != ll_server)
        .unwrap();
    let victim_name = format!("web{victim}");
    let victim_key = format!("web/{victim_name}");

    // 3. Health down.
    let mark = daemon.stderr_lines().len();
    drop(backends[victim - 1].take());
    let killed = Instant::now();
    let down_bound =
        Duration::from_millis(HEALTH.fall * HEALTH.interval_ms + HEALTH.timeout_ms + SLACK_MS);
    let down_at = expect_transition(
        &mut daemon,
        mark,
        &victim_key,
        false,
        (killed, "kill"),
        (down_bound, "fall*interval+timeout+slack"),
    );
    // The log line precedes the map update by microseconds.
    thread::sleep(Duration::from_millis(100));
    let counts = web
        .spread(&topo, 21000..21150)
        .unwrap_or_else(|e| panic!("after {victim_key} DOWN: {e:#}"));
    eprintln!("150 flows with {victim_name} down: {counts:?}");
    assert_eq!(
        counts[&victim_name], 0,
        "{victim_name} is down yet got flows: {counts:?}"
    );

    // 4. Recovery.
    backends[victim - 1] = Some(web.spawn(&topo, victim).unwrap());
    let restarted = Instant::now();
    let up_bound =
        Duration::from_millis(HEALTH.rise * HEALTH.interval_ms + HEALTH.timeout_ms + SLACK_MS);
    expect_transition(
        &mut daemon,
        down_at + 1,
        &victim_key,
        true,
        (restarted, "restart"),
        (up_bound, "rise*interval+timeout+slack"),
    );
    thread::sleep(Duration::from_millis(100));
    let counts = web
        .spread(&topo, 22000..22150)
        .unwrap_or_else(|e| panic!("after {victim_key} UP: {e:#}"));
    eprintln!("150 flows after {victim_name} recovered: {counts:?}");
    assert!(
        counts[&victim_name] >= 30,
        "{victim_name} is back up but got only {} of 150 new flows (< 20%): {counts:?}",
        counts[&victim_name]
    );

    // 5. The long-lived connection never broke and never moved. Wait (at
    // most 3 s) for two more answers, so the report covers the present.
    long_lived.wait_answers(long_lived.answers() + 2, Duration::from_secs(3));
    let report = long_lived.finish();
    eprintln!(
        "long-lived connection: {} answers, servers {:?}, failures {:?}",
        report.ok, report.servers, report.failures
    );
    assert!(
        report.failures.is_empty(),
        "the long-lived connection on {ll_server} failed after {} good answers: {:?}",
        report.ok,
        report.failures
    );
    assert_eq!(
        report.servers,
        std::slice::from_ref(&ll_server),
        "the long-lived connection moved between servers"
    );
    assert_eq!(report.last.as_deref(), Some(ll_server.as_str()));
    assert!(
        report.ok >= 5,
        "only {} long-lived answers through steps 3-5",
        report.ok
    );

    // 6. Teardown: graceful stop, XDP detached, then the lab.
    stop_xlb(&mut daemon).unwrap_or_else(|e| panic!("{e:#}"));
    let link = topo.lb().ip(&["link", "show", "dev", "eth0"]).unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        !link.contains("xdp"),
        "XDP still attached to lb eth0 after xlb exited: {link}"
    );
    drop(daemon);
    drop(backends);
    drop(topo);
    assert_eq!(lab_namespaces("l4e2e"), Vec::<String>::new());
}

#[test]
fn second_daemon_on_same_interface_is_refused() {
    let topo = L4Topology::build(Lab::new("l4dup").unwrap(), 3).unwrap();
    let web = Web::new(&topo);
    let _backends: Vec<Process> = (1..=3).map(|k| web.spawn(&topo, k).unwrap()).collect();
    let (_first_cfg, mut first) =
        run_xlb(&topo, "l4dup1", |g| web.config(&topo, g)).unwrap_or_else(|e| panic!("{e:#}"));

    let second_dir = TempDir::new("l4dup2").unwrap();
    let second_cfg = second_dir
        .write_config(&web.config(&topo, &second_dir.global_toml("l4dup2")))
        .unwrap();
    let second = topo.lb().spawn_xlb_nowait(&second_cfg).unwrap();
    let status = second
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "a second xlb on the same interface still runs after 10 s; stderr:\n{}",
                second.stderr()
            )
        });
    thread::sleep(Duration::from_millis(100)); // let stderr drain
    let stderr = second.stderr();
    eprintln!("second xlb exited {status}; stderr:\n{stderr}");
    assert!(!status.success(), "second xlb exited 0; stderr:\n{stderr}");
    assert!(
        stderr.contains("already has an XDP program attached"),
        "second xlb failed with an unexpected message:\n{stderr}"
    );

    // The first daemon is unaffected and still forwards.
    assert!(
        first.exit_status().is_none(),
        "first xlb exited; stderr:\n{}",
        first.stderr()
    );
    let name = topo
        .client()
        .with(|| http_get(SocketAddr::new(web.client, 20000), web.vip, &web.names))
        .unwrap()
        .unwrap_or_else(|e| panic!("VIP after the refused second daemon: {e:#}"));
    eprintln!("VIP still answers from {name}");
    stop_xlb(&mut first).unwrap_or_else(|e| panic!("first xlb: {e:#}"));
    drop(second);
    drop(first);
    drop(topo);
    assert_eq!(lab_namespaces("l4dup"), Vec::<String>::new());
}
