//! DSR with real traffic: `xlb run` in the lb namespace forwards the TCP
//! VIP 198.18.0.100:80 with `forward = "dsr"` (IPIP to the backend), and
//! every backend runs `xlb decap --interface eth0 --vip 198.18.0.100`, has
//! the VIP on `lo` and a `lab-backend` on 0.0.0.0:80 (DSR keeps the port).
//! The backends reach the client directly (a connected route for the
//! client subnet on their shared bridge), so replies, sourced from the VIP,
//! go straight from backend to client and the lb never sees one:
//!
//! - 150 HTTP requests from fixed client source ports all succeed and
//!   spread over the three backends;
//! - on the lb, `flow_miss` > 0 and `nat_reverse` == 0, and the VIP's
//!   packet count equals the client's TCP segments sent (client -> VIP
//!   only, not the replies), within a few packets;
//! - the backends' decap counters add up to what the lb encapsulated.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use xlb_lab::{
    L4Topology, Lab, Namespace, Process,
    l4traffic::{TempConfig, count_by_name, packets, run_batch, snmp, stat},
    xlb_daemon::{XLB_READY_TIMEOUT, strip_ansi},
    xlb_path,
};

const TEST: &str = "l4dsr";
const PORT: u16 = 80;
const FLOWS: u16 = 150;
/// Each server's share of [`FLOWS`] (see `l4_ipv6.rs`: 50 ± 30%, about
/// ±2.6 sd of the binomial spread).
const SHARE: std::ops::RangeInclusive<usize> = 35..=65;
const DECAP_TIMEOUT: Duration = Duration::from_secs(30);

fn config(cfg: &TempConfig, topo: &L4Topology) -> String {
    let servers: String = topo
        .backend_addrs()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "  [[backend.server]]\n  name = \"web{}\"\n  address = \"{a}:{PORT}\"\n\n",
                i + 1
            )
        })
        .collect();
    format!(
        r#"{global}
[[xdp]]
interface = "{iface}"
mode = "auto"

[[backend]]
name = "web"
balance = "maglev"
health = {{ check = "http", path = "/healthz", interval_ms = 300, timeout_ms = 200, rise = 2, fall = 2 }}

{servers}[[l4]]
name = "web-dsr"
vip = "{vip}:{PORT}"
protocol = "tcp"
backend = "web"
forward = "dsr"
"#,
        global = cfg.global(TEST),
        iface = topo.lb_iface(),
        vip = topo.vip(),
    )
}

fn stderr_text(p: &Process) -> String {
    p.stderr_lines()
        .iter()
        .map(|l| strip_ansi(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits (bounded) for a stderr line of `p` containing `needle`.
fn wait_stderr(p: &mut Process, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if p.stderr_lines()
            .iter()
            .any(|l| strip_ansi(l).contains(needle))
        {
            return;
        }
        assert!(
            p.is_running(),
            "xlb decap exited before logging {needle:?}; stderr:\n{}",
            stderr_text(p)
        );
        assert!(
            Instant::now() < deadline,
            "no {needle:?} within {timeout:?}; stderr:\n{}",
            stderr_text(p)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Makes `ns` a DSR backend: the VIP on `lo` (not announced in ARP), a
/// direct route to the client subnet, no reverse path filter, and
/// `xlb decap` on eth0 (running once this returns).
fn dsr_backend(ns: &Namespace, topo: &L4Topology) -> Process {
    let vip = topo.vip();
    ns.add_addr("lo", &format!("{vip}/32")).unwrap();
    ns.sysctl("net.ipv4.conf.all.arp_ignore", "1").unwrap();
    ns.sysctl("net.ipv4.conf.all.arp_announce", "2").unwrap();
    for dev in ["all", "default", "eth0", "lo"] {
        ns.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")
            .unwrap();
    }
    // All hosts share the bridge: the client is one ARP away.
    ns.add_dev_route("198.18.0.0/24", "eth0").unwrap();
    let client = topo.client_addr().to_string();
    let route = ns
        .ip(&["route", "get", &client, "from", &vip.to_string()])
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        route.contains("dev eth0") && !route.contains(" via "),
        "{}: the route to the client must not go through the lb: {route}",
        ns.name()
    );
    let bin = xlb_path().unwrap();
    let vip_s = vip.to_string();
    let mut decap = ns
        .spawn(&[
            "env",
            "NO_COLOR=1",
            "RUST_LOG=info",
            &bin.to_string_lossy(),
            "decap",
            "--interface",
            "eth0",
            "--vip",
            &vip_s,
        ])
        .unwrap();
    wait_stderr(&mut decap, xlb::decap::READY, DECAP_TIMEOUT);
    decap
}

/// Stops `xlb decap` with SIGTERM and returns its `decap_ipip` counter
/// from the stop line.
fn stop_decap(decap: &mut Process) -> u64 {
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(decap.pid() as i32, libc::SIGTERM) };
    wait_stderr(decap, "xlb decap stopping", DECAP_TIMEOUT);
    let log = stderr_text(decap);
    log.split_whitespace()
        .find_map(|w| w.strip_prefix("decap_ipip="))
        .and_then(|n| n.trim_end_matches(',').parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no decap_ipip counter in:\n{log}"))
}

#[test]
fn dsr_replies_go_straight_from_backend_to_client() {
    let topo = L4Topology::build(Lab::new(TEST).unwrap(), 3).unwrap_or_else(|e| panic!("{e:#}"));
    let names: Vec<String> = (1..=3).map(|k| format!("web{k}")).collect();
    for dev in ["all", "default", "eth0"] {
        topo.client()
            .sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")
            .unwrap();
    }
    let mut decaps: Vec<Process> = topo
        .backends()
        .iter()
        .map(|ns| dsr_backend(ns, &topo))
        .collect();
    let _backends: Vec<Process> = topo
        .backends()
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            ns.spawn_backend(&names[i], SocketAddr::from(([0, 0, 0, 0], PORT)))
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .collect();
    let cfg = TempConfig::new(TEST).unwrap();
    cfg.write(&config(&cfg, &topo)).unwrap();
    let daemon = topo
        .lb()
        .spawn_xlb(cfg.path(), XLB_READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));

    let client = topo.client();
    let vip = SocketAddr::new(IpAddr::V4(topo.vip()), PORT);
    let segs_before = snmp(client, "Tcp", "OutSegs").unwrap();
    let backend_segs_before: Vec<u64> = topo
        .backends()
        .iter()
        .map(|ns| snmp(ns, "Tcp", "OutSegs").unwrap())
        .collect();
    let forw_before = snmp(topo.lb(), "Ip", "ForwDatagrams").unwrap();
    let result = run_batch(
        client,
        IpAddr::V4(topo.client_addr()),
        21000..21000 + FLOWS,
        vip,
        &names,
    );
    let client_segs = snmp(client, "Tcp", "OutSegs").unwrap() - segs_before;
    let forwarded = snmp(topo.lb(), "Ip", "ForwDatagrams").unwrap() - forw_before;
    let backend_segs: Vec<u64> = topo
        .backends()
        .iter()
        .zip(&backend_segs_before)
        .map(|(ns, b)| snmp(ns, "Tcp", "OutSegs").unwrap() - b)
        .collect();
    let stats = daemon.stats().unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("xlb stats:\n{stats}");
    eprintln!(
        "client TCP segments sent: {client_segs}; backends' TCP segments sent (incl. health \
         checks): {backend_segs:?}; lb kernel Ip ForwDatagrams: {forwarded}"
    );
    let answers = result.unwrap_or_else(|e| {
        panic!(
            "DSR batch: {e:#}\nxlb stderr:\n{}\ndecap stderr:\n{}",
            daemon.stderr(),
            decaps
                .iter()
                .map(stderr_text)
                .collect::<Vec<_>>()
                .join("\n--\n")
        )
    });
    let counts = count_by_name(&answers, &names);
    eprintln!("spread over {FLOWS} DSR flows: {counts:?}");

    assert_eq!(answers.len(), usize::from(FLOWS), "every request answered");
    for (name, &n) in &counts {
        assert!(
            SHARE.contains(&n),
            "{name} got {n} of {FLOWS} DSR flows, outside {SHARE:?}: {counts:?}"
        );
    }
    let vip_packets = packets(&stats, "vip web-dsr ").expect("vip line in xlb stats");
    let flow_miss = stat(&stats, "flow_miss").expect("flow_miss in xlb stats");
    let nat_reverse = stat(&stats, "nat_reverse").expect("nat_reverse in xlb stats");
    assert!(
        flow_miss >= u64::from(FLOWS),
        "flow_miss = {flow_miss} after {FLOWS} new DSR flows"
    );
    assert_eq!(
        nat_reverse, 0,
        "nat_reverse = {nat_reverse}: the lb saw replies of DSR flows"
    );
    // Client -> VIP only: every segment the client sent (all of them to the
    // VIP) and nothing the backends sent back. A reply path through the lb
    // would roughly double the count.
    assert!(
        vip_packets.abs_diff(client_segs) <= client_segs / 20 + 5,
        "the VIP counted {vip_packets} packets but the client sent {client_segs} TCP segments: \
         the lb must see client -> VIP packets only"
    );
    assert!(
        forwarded <= 10,
        "the lb kernel forwarded {forwarded} datagrams during the DSR batch"
    );

    // Every encapsulated packet was decapsulated on some backend, and each
    // backend got its share.
    let mut daemon = daemon;
    let status = daemon
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        status.success(),
        "xlb exited {status}; stderr:\n{}",
        daemon.stderr()
    );
    let decapped: Vec<u64> = decaps.iter_mut().map(stop_decap).collect();
    eprintln!("decap_ipip per backend: {decapped:?}");
    for (k, &n) in decapped.iter().enumerate() {
        assert!(n > 0, "backend{} decapsulated nothing", k + 1);
    }
    let total: u64 = decapped.iter().sum();
    assert_eq!(
        total, vip_packets,
        "the backends decapsulated {total} packets, the lb forwarded {vip_packets} to the VIP"
    );
}
