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
    time::Duration,
};

use xlb_lab::{
    L4Topology, Lab, Namespace, Process,
    l4traffic::{
        L4Config, VipCounters, assert_spread, deltas, hold_vip, run_batch, run_xlb, server_entries,
        server_names, snmp, snmp_each, socket_addrs, spawn_backends, spawn_decap, stderr_text,
        stop_decap, stop_xlb, vip_counters,
    },
};

const TEST: &str = "l4dsr";
const PORT: u16 = 80;
const FLOWS: u16 = 150;
/// Each server's share of [`FLOWS`] (see `l4_ipv6.rs`: 50 ± 30%, about
/// ±2.6 sd of the binomial spread).
const SHARE: std::ops::RangeInclusive<usize> = 35..=65;
const DECAP_TIMEOUT: Duration = Duration::from_secs(30);

fn config(topo: &L4Topology, names: &[String], global: &str) -> String {
    let servers = server_entries(names, &socket_addrs(topo.backend_addrs(), PORT));
    let vip = SocketAddr::from((topo.vip(), PORT));
    L4Config {
        mode: ("forward", "dsr"),
        ..L4Config::nat(topo, "web", "web-dsr", vip, servers)
    }
    .render(global)
}

/// Makes `ns` a DSR backend: the VIP on `lo` (not announced in ARP), a
/// direct route to the client subnet, no reverse path filter, and
/// `xlb decap` on eth0 (running once this returns).
fn dsr_backend(ns: &Namespace, topo: &L4Topology) -> Process {
    let vip = topo.vip();
    hold_vip(ns, vip).unwrap();
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
    spawn_decap(ns, "eth0", vip, DECAP_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn dsr_replies_go_straight_from_backend_to_client() {
    let topo = L4Topology::build(Lab::new(TEST).unwrap(), 3).unwrap_or_else(|e| panic!("{e:#}"));
    let names = server_names("web", 3);
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
    // DSR keeps the port and the VIP as destination: listen on any address.
    let any = vec![SocketAddr::from(([0, 0, 0, 0], PORT)); names.len()];
    let _backends = spawn_backends(&topo, &names, &any).unwrap_or_else(|e| panic!("{e:#}"));
    let (_cfg, mut daemon) =
        run_xlb(&topo, TEST, |g| config(&topo, &names, g)).unwrap_or_else(|e| panic!("{e:#}"));

    let client = topo.client();
    let vip = SocketAddr::new(IpAddr::V4(topo.vip()), PORT);
    let segs_before = snmp(client, "Tcp", "OutSegs").unwrap();
    let backend_segs_before = snmp_each(topo.backends(), "Tcp", "OutSegs").unwrap();
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
    let backend_segs = deltas(
        &snmp_each(topo.backends(), "Tcp", "OutSegs").unwrap(),
        &backend_segs_before,
    );
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
    assert_spread(&answers, &names, FLOWS, &SHARE, "DSR flows");
    let VipCounters {
        packets: vip_packets,
        flow_miss,
        nat_reverse,
    } = vip_counters(&stats, "web-dsr").unwrap_or_else(|e| panic!("{e:#}"));
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
    stop_xlb(&mut daemon).unwrap_or_else(|e| panic!("{e:#}"));
    let decapped: Vec<u64> = decaps
        .iter_mut()
        .map(|d| stop_decap(d, DECAP_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}")))
        .collect();
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
