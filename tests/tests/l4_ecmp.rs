//! Several xlb nodes behind ECMP, with real traffic: a router spreads the
//! DSR VIP 198.18.2.100:80 over two lb namespaces (`lb1`, `lb2`), each
//! running its own `xlb run` with the same `[[l4]]` VIP over three
//! backends (`lb2` lists the servers in another order, so its server ids
//! differ). Backends decapsulate with `xlb decap` and answer the client
//! through the router, so no lb sees a reply. See `ecmp.rs` for the lab.
//!
//! - Spread: 100 short connections from fixed client ports all succeed,
//!   both nodes forward some of them, and each is answered by the backend
//!   the user-space Maglev model picks for its 5-tuple.
//! - The same 5-tuples again, routed all via `lb1`, then all via `lb2`:
//!   each node takes the flows the other one had (table misses) and sends
//!   every one to the same backend as before.
//! - 20 keep-alive connections opened through ECMP, then the route flipped
//!   to `lb1` only, to `lb2` only, and back: every request on every
//!   connection is answered by the connection's first backend, no reset.
//!   Each node missed every flow exactly once in its connection table, so
//!   the node that never saw a connection's SYN carried it mid-flow.

use std::{
    io::BufReader,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    ops::Range,
    path::Path,
    time::{Duration, Instant},
};

use xlb::{config, dataplane::model::ReferenceModel, registry::Registry};
use xlb_common::{AF_INET, FlowKey, PROTO_TCP};
use xlb_lab::{
    Lab, TempDir, XlbDaemon,
    ecmp::{EcmpTopology, HOST_IFACE, VipRoute},
    l4traffic::{
        L4Config, LAB_HEALTH, VipCounters, connect_from, dsr_receiver, host_header, request,
        run_batch, run_xlb_in, server_entries, server_name, server_names, snmp, socket_addrs,
        stderr_text, stop_xlb, vip_counters,
    },
};

const TEST: &str = "l4ecmp";
const PORT: u16 = 80;
const VIP_NAME: &str = "web-ecmp";
const BACKENDS: usize = 3;
const LBS: usize = 2;
/// Client ports of the short connections.
const SHORT_PORTS: Range<u16> = 31000..31100;
/// Client ports of the long-lived connections.
const LONG_PORTS: Range<u16> = 32000..32020;
const DECAP_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole test must stay well within a minute.
const TEST_BUDGET: Duration = Duration::from_secs(60);

/// One lb node's config: the same VIP and servers on every node, listed
/// from the `rotate`-th on (so the nodes' server ids differ).
fn config(topo: &EcmpTopology, names: &[String], rotate: usize, global: &str) -> String {
    let mut servers = server_entries(names, &socket_addrs(topo.backend_addrs(), PORT));
    servers.rotate_left(rotate);
    L4Config {
        iface: HOST_IFACE,
        pool: "web",
        health: Some(LAB_HEALTH),
        servers,
        vip_name: VIP_NAME,
        vip: SocketAddr::from((topo.vip(), PORT)),
        protocol: "tcp",
        mode: ("forward", "dsr"),
    }
    .render(global)
}

/// The server Maglev picks for each client port, by the user-space
/// reference model of the data path on the node config at `path`.
fn maglev_picks(path: &Path, topo: &EcmpTopology, ports: Range<u16>) -> Vec<String> {
    let config = config::load(path).unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::from_config(&config).unwrap();
    let mut model = ReferenceModel::new(&config, &registry);
    let ip = |a: Ipv4Addr| [u32::from_ne_bytes(a.octets()), 0, 0, 0];
    ports
        .map(|sport| {
            let key = FlowKey {
                src: ip(topo.client_addr()),
                dst: ip(topo.vip()),
                sport: sport.to_be(),
                dport: PORT.to_be(),
                proto: PROTO_TCP,
                family: AF_INET,
                pad: [0; 2],
            };
            let id = model.choose(0, &key).expect("a live server");
            registry.get(id).unwrap().name.clone()
        })
        .collect()
}

/// One lb node: its namespace's `xlb run` and config directory.
struct Node {
    dir: TempDir,
    daemon: XlbDaemon,
}

impl Node {
    fn counters(&self) -> VipCounters {
        let stats = self.daemon.stats().unwrap_or_else(|e| panic!("{e:#}"));
        vip_counters(&stats, VIP_NAME).unwrap_or_else(|e| panic!("{e:#}\n{stats}"))
    }
}

/// Each node's counters now.
fn counters(nodes: &[Node]) -> Vec<VipCounters> {
    nodes.iter().map(Node::counters).collect()
}

/// Per node: (VIP packets, flow misses) from `before` to `after`.
fn deltas(after: &[VipCounters], before: &[VipCounters]) -> Vec<(u64, u64)> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| (a.packets - b.packets, a.flow_miss - b.flow_miss))
        .collect()
}

/// A keep-alive connection from a fixed client port and the backend that
/// answered its first request.
struct Conn {
    port: u16,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    backend: String,
}

/// Opens one keep-alive connection per port in the client namespace and
/// makes the first request on each.
fn open_conns(topo: &EcmpTopology, ports: Range<u16>, names: &[String]) -> Vec<Conn> {
    let vip = SocketAddr::from((topo.vip(), PORT));
    let src = topo.client_addr();
    topo.client()
        .with(|| {
            ports
                .map(|port| {
                    let mut stream = connect_from(SocketAddr::from((src, port)), vip)
                        .unwrap_or_else(|e| panic!("opening from port {port}: {e:#}"));
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let body = request(&mut stream, &mut reader, &host_header(vip), false)
                        .unwrap_or_else(|e| panic!("first request from port {port}: {e:#}"));
                    let backend = server_name(&body, names).unwrap();
                    Conn {
                        port,
                        stream,
                        reader,
                        backend,
                    }
                })
                .collect()
        })
        .unwrap()
}

/// One more request on every connection (the sockets live in the client
/// namespace already): each must be answered by its first backend.
fn request_all(conns: &mut [Conn], topo: &EcmpTopology, names: &[String], when: &str) {
    let host = host_header(SocketAddr::from((topo.vip(), PORT)));
    for c in conns {
        let answer = request(&mut c.stream, &mut c.reader, &host, false)
            .and_then(|b| server_name(&b, names))
            .unwrap_or_else(|e| panic!("{when}: the connection from port {}: {e:#}", c.port));
        assert_eq!(
            answer, c.backend,
            "{when}: the connection from port {} moved from {} to {answer}",
            c.port, c.backend
        );
    }
}

/// The short connections from `SHORT_PORTS`; every answer must be the
/// model's pick.
fn short_batch(
    topo: &EcmpTopology,
    names: &[String],
    picks: &[String],
    nodes: &[Node],
    when: &str,
) {
    let vip = SocketAddr::from((topo.vip(), PORT));
    let answers = run_batch(
        topo.client(),
        IpAddr::V4(topo.client_addr()),
        SHORT_PORTS,
        vip,
        names,
    )
    .unwrap_or_else(|e| {
        let logs: Vec<String> = nodes.iter().map(|n| n.daemon.stderr()).collect();
        panic!(
            "{when}: {e:#}\nxlb stderr per node:\n{}",
            logs.join("\n--\n")
        )
    });
    for ((port, answer), pick) in SHORT_PORTS.zip(&answers).zip(picks) {
        assert_eq!(
            answer, pick,
            "{when}: port {port} was answered by {answer}, Maglev picks {pick}"
        );
    }
}

#[test]
fn a_flow_keeps_its_backend_whichever_node_ecmp_picks() {
    let started = Instant::now();
    let topo = EcmpTopology::build(Lab::new(TEST).unwrap(), LBS, BACKENDS)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let names = server_names("web", BACKENDS);
    // The 5-tuples are replayed below: a client port in TIME_WAIT may
    // connect again at once (the backends accept a SYN on TIME_WAIT).
    for (key, value) in [("tcp_tw_reuse", "1"), ("tcp_tw_reuse_delay", "1")] {
        topo.client()
            .sysctl(&format!("net.ipv4.{key}"), value)
            .unwrap();
    }
    let mut decaps: Vec<_> = topo
        .backends()
        .iter()
        .map(|ns| {
            dsr_receiver(ns, HOST_IFACE, topo.vip(), DECAP_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .collect();
    // Replies go back through the router, never through an lb.
    let client = topo.client_addr().to_string();
    for ns in topo.backends() {
        let out = ns
            .ip(&["route", "get", &client, "from", &topo.vip().to_string()])
            .unwrap();
        let route = String::from_utf8_lossy(&out.stdout);
        assert!(
            route.contains(&format!("via {}", xlb_lab::ecmp::ROUTER_FABRIC_ADDR)),
            "{}: replies must go via the router: {route}",
            ns.name()
        );
    }
    let _backends = topo
        .spawn_backends(&names, PORT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut nodes: Vec<Node> = (1..=LBS)
        .map(|n| {
            let (dir, daemon) = run_xlb_in(topo.lb(n), &format!("{TEST}-lb{n}"), |g| {
                config(&topo, &names, n - 1, g)
            })
            .unwrap_or_else(|e| panic!("lb{n}: {e:#}"));
            Node { dir, daemon }
        })
        .collect();

    // The model's picks, the same from either node's config.
    let config_of = |n: &Node| n.dir.config_path();
    let short_picks = maglev_picks(&config_of(&nodes[0]), &topo, SHORT_PORTS);
    let long_picks = maglev_picks(&config_of(&nodes[0]), &topo, LONG_PORTS);
    assert_eq!(
        maglev_picks(&config_of(&nodes[1]), &topo, SHORT_PORTS),
        short_picks,
        "the model picks differently from lb2's config"
    );

    // 1. Spread: ECMP sends the short connections over both nodes.
    let before = counters(&nodes);
    short_batch(&topo, &names, &short_picks, &nodes, "through ECMP");
    let spread = deltas(&counters(&nodes), &before);
    eprintln!("through ECMP, per node (VIP packets, flow misses): {spread:?}");
    for (i, &(packets, misses)) in spread.iter().enumerate() {
        assert!(
            packets > 0 && misses > 0,
            "lb{} forwarded no short connection through ECMP: {spread:?}",
            i + 1
        );
    }

    // 2. The same 5-tuples, all through one node: it takes over the other
    // node's flows (they miss its table) and agrees on every backend.
    // (The backends hold the previous connections in TIME_WAIT; a new SYN
    // reopens them. The client may close first: it may reuse its own.)
    for n in 1..=LBS {
        topo.route_vip(VipRoute::Only(n)).unwrap();
        let before = counters(&nodes);
        short_batch(
            &topo,
            &names,
            &short_picks,
            &nodes,
            &format!("via lb{n} only"),
        );
        let moved = deltas(&counters(&nodes), &before);
        eprintln!("via lb{n} only, per node (VIP packets, flow misses): {moved:?}");
        for (i, &(packets, misses)) in moved.iter().enumerate() {
            if i + 1 == n {
                // Its table holds only the flows it saw through ECMP.
                assert!(
                    misses > 0,
                    "lb{n} missed no flow though it had not seen them all: {moved:?}"
                );
            } else {
                assert_eq!(packets, 0, "lb{} got packets, routed via lb{n} only", i + 1);
            }
        }
    }

    // 3. Long-lived connections survive the route flips.
    topo.route_vip(VipRoute::Ecmp).unwrap();
    let resets_before = snmp(topo.client(), "Tcp", "EstabResets").unwrap();
    let before = counters(&nodes);
    let mut conns = open_conns(&topo, LONG_PORTS, &names);
    for (c, pick) in conns.iter().zip(&long_picks) {
        assert_eq!(
            &c.backend, pick,
            "port {} was answered by {}, Maglev picks {pick}",
            c.port, c.backend
        );
    }
    let opened = deltas(&counters(&nodes), &before);
    let mut taken_over = Vec::new();
    for n in 1..=LBS {
        topo.route_vip(VipRoute::Only(n)).unwrap();
        let mark = counters(&nodes);
        request_all(&mut conns, &topo, &names, &format!("via lb{n} only"));
        let d = deltas(&counters(&nodes), &mark);
        assert!(d[n - 1].0 > 0, "lb{n} forwarded nothing: {d:?}");
        // The flows it had not seen before: those whose SYN the other
        // node took.
        taken_over.push(d[n - 1].1);
    }
    topo.route_vip(VipRoute::Ecmp).unwrap();
    request_all(&mut conns, &topo, &names, "through ECMP again");
    let total = deltas(&counters(&nodes), &before);
    let resets = snmp(topo.client(), "Tcp", "EstabResets").unwrap() - resets_before;
    eprintln!(
        "long-lived: SYNs per node (VIP packets, misses) {opened:?}; taken over mid-flow per \
         node {taken_over:?}; in all {total:?}; client resets {resets}"
    );
    let flows = LONG_PORTS.len() as u64;
    let syns: Vec<u64> = opened.iter().map(|&(_, m)| m).collect();
    assert_eq!(
        syns.iter().sum::<u64>(),
        flows,
        "one table miss per new connection, on the node ECMP chose: {opened:?}"
    );
    for n in 1..=LBS {
        assert!(
            syns[n - 1] > 0,
            "ECMP sent no connection's SYN to lb{n}: {opened:?}"
        );
        assert_eq!(
            total[n - 1].1,
            flows,
            "lb{n} must miss each connection once (and then keep it): {total:?}"
        );
    }
    // With two nodes: each carried, mid-flow, exactly the connections
    // whose SYN went to the other.
    assert_eq!(
        taken_over,
        vec![syns[1], syns[0]],
        "taken over mid-flow {taken_over:?} vs SYNs per node {syns:?}"
    );
    assert_eq!(resets, 0, "the client saw {resets} connection resets");
    drop(conns);

    for node in &mut nodes {
        stop_xlb(&mut node.daemon).unwrap_or_else(|e| panic!("{e:#}"));
    }
    for d in &mut decaps {
        let running = d.is_running();
        assert!(running, "xlb decap died:\n{}", stderr_text(d));
    }
    let elapsed = started.elapsed();
    eprintln!("l4_ecmp took {elapsed:?}");
    assert!(elapsed < TEST_BUDGET, "the test took {elapsed:?}");
}
