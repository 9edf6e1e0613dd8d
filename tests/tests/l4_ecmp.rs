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
//!   each node takes over exactly the flows the other one saw (table
//!   misses) and sends every one to the same backend as before.
//! - 20 keep-alive connections opened through ECMP, then the route flipped
//!   to `lb1` only, to `lb2` only, and back: every request on every
//!   connection is answered by the connection's first backend, no reset.
//!   Each node missed every flow exactly once in its connection table, so
//!   the node that never saw a connection's SYN carried it mid-flow.
//! - Dropping the lab removes its namespaces and config directories.

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
    Lab, Process, TempDir, XlbDaemon,
    ecmp::{EcmpTopology, HOST_IFACE, ROUTER_FABRIC_ADDR, VipRoute},
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

/// The running lab: the topology, the servers' names and the lb nodes.
struct Cluster {
    topo: EcmpTopology,
    names: Vec<String>,
    nodes: Vec<Node>,
}

impl Cluster {
    fn vip(&self) -> SocketAddr {
        SocketAddr::from((self.topo.vip(), PORT))
    }

    /// Each node's counters now.
    fn counters(&self) -> Vec<VipCounters> {
        self.nodes.iter().map(Node::counters).collect()
    }

    fn route(&self, route: VipRoute) {
        self.topo
            .route_vip(route)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Maglev's picks for `ports` by lb node `n`'s config.
    fn picks(&self, n: usize, ports: Range<u16>) -> Vec<String> {
        maglev_picks(&self.nodes[n - 1].dir.config_path(), &self.topo, ports)
    }

    /// The short connections from `SHORT_PORTS`: all must succeed, each
    /// answered by the model's pick. Returns the per-node deltas.
    fn short_batch(&self, picks: &[String], when: &str) -> Vec<(u64, u64)> {
        let before = self.counters();
        let answers = run_batch(
            self.topo.client(),
            IpAddr::V4(self.topo.client_addr()),
            SHORT_PORTS,
            self.vip(),
            &self.names,
        )
        .unwrap_or_else(|e| {
            let logs: Vec<String> = self.nodes.iter().map(|n| n.daemon.stderr()).collect();
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
        let d = deltas(&self.counters(), &before);
        eprintln!("{when}, per node (VIP packets, flow misses): {d:?}");
        d
    }

    /// Opens one keep-alive connection per port in the client namespace
    /// and makes the first request on each.
    fn open_conns(&self, ports: Range<u16>) -> Vec<Conn> {
        let (vip, src) = (self.vip(), self.topo.client_addr());
        self.topo
            .client()
            .with(|| {
                ports
                    .map(|port| {
                        let mut stream = connect_from(SocketAddr::from((src, port)), vip)
                            .unwrap_or_else(|e| panic!("opening from port {port}: {e:#}"));
                        let mut reader = BufReader::new(stream.try_clone().unwrap());
                        let body = request(&mut stream, &mut reader, &host_header(vip), false)
                            .unwrap_or_else(|e| panic!("first request from port {port}: {e:#}"));
                        let backend = server_name(&body, &self.names).unwrap();
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

    /// One more request on every connection (the sockets belong to the
    /// client namespace already): each must be answered by its first
    /// backend. Returns the per-node deltas.
    fn request_all(&self, conns: &mut [Conn], when: &str) -> Vec<(u64, u64)> {
        let before = self.counters();
        let host = host_header(self.vip());
        for c in conns {
            let answer = request(&mut c.stream, &mut c.reader, &host, false)
                .and_then(|b| server_name(&b, &self.names))
                .unwrap_or_else(|e| panic!("{when}: the connection from port {}: {e:#}", c.port));
            assert_eq!(
                answer, c.backend,
                "{when}: the connection from port {} moved from {} to {answer}",
                c.port, c.backend
            );
        }
        deltas(&self.counters(), &before)
    }
}

/// Builds the lab: DSR backends replying through the router, then one
/// `xlb run` per lb node.
fn start() -> (Cluster, Vec<Process>) {
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
    let mut guards: Vec<Process> = topo
        .backends()
        .iter()
        .map(|ns| {
            dsr_receiver(ns, HOST_IFACE, topo.vip(), DECAP_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .collect();
    let client = topo.client_addr().to_string();
    for ns in topo.backends() {
        let out = ns
            .ip(&["route", "get", &client, "from", &topo.vip().to_string()])
            .unwrap();
        let route = String::from_utf8_lossy(&out.stdout);
        assert!(
            route.contains(&format!("via {ROUTER_FABRIC_ADDR}")),
            "{}: replies must go via the router, not an lb: {route}",
            ns.name()
        );
    }
    guards.extend(
        topo.spawn_backends(&names, PORT)
            .unwrap_or_else(|e| panic!("{e:#}")),
    );
    let nodes = (1..=LBS)
        .map(|n| {
            let (dir, daemon) = run_xlb_in(topo.lb(n), &format!("{TEST}-lb{n}"), |g| {
                config(&topo, &names, n - 1, g)
            })
            .unwrap_or_else(|e| panic!("lb{n}: {e:#}"));
            Node { dir, daemon }
        })
        .collect();
    (Cluster { topo, names, nodes }, guards)
}

/// Step 1: ECMP spreads the short connections over both nodes. Returns each
/// node's flow misses (the flows it saw).
fn spread_through_ecmp(cluster: &Cluster, picks: &[String]) -> Vec<u64> {
    cluster.route(VipRoute::Ecmp);
    let spread = cluster.short_batch(picks, "through ECMP");
    for (i, &(packets, misses)) in spread.iter().enumerate() {
        assert!(
            packets > 0 && misses > 0,
            "lb{} forwarded no short connection through ECMP: {spread:?}",
            i + 1
        );
    }
    spread.iter().map(|&(_, m)| m).collect()
}

/// Step 2: The same 5-tuples, all through one node, then the other: each node
/// takes over exactly the flows the other one saw (they miss its table)
/// and sends each to the same backend.
fn replay_via_each_node(cluster: &Cluster, picks: &[String], seen: &[u64]) {
    for n in 1..=LBS {
        cluster.route(VipRoute::Only(n));
        let d = cluster.short_batch(picks, &format!("via lb{n} only"));
        let others: u64 = seen.iter().sum::<u64>() - seen[n - 1];
        assert_eq!(
            d[n - 1].1,
            others,
            "lb{n} must miss exactly the {others} flows the other node saw: {d:?}"
        );
        for (i, &(packets, _)) in d.iter().enumerate() {
            if i + 1 != n {
                assert_eq!(packets, 0, "lb{} got packets, routed via lb{n} only", i + 1);
            }
        }
    }
}

/// Step 3: Keep-alive connections opened through ECMP keep their backend, with
/// no reset, while the route sends them all via `lb1`, all via `lb2`, and
/// through ECMP again; the node that never saw a connection's SYN carries
/// it mid-flow.
fn long_lived_survive_route_flips(cluster: &Cluster, picks: &[String]) {
    let client = cluster.topo.client();
    let resets_before = snmp(client, "Tcp", "EstabResets").unwrap();
    cluster.route(VipRoute::Ecmp);
    let before = cluster.counters();
    let mut conns = cluster.open_conns(LONG_PORTS);
    for (c, pick) in conns.iter().zip(picks) {
        assert_eq!(
            &c.backend, pick,
            "port {} was answered by {}, Maglev picks {pick}",
            c.port, c.backend
        );
    }
    // One table miss per connection, on the node ECMP gave its SYN.
    let syns: Vec<u64> = deltas(&cluster.counters(), &before)
        .iter()
        .map(|&(_, m)| m)
        .collect();
    let mut taken_over = Vec::new();
    for n in 1..=LBS {
        cluster.route(VipRoute::Only(n));
        let d = cluster.request_all(&mut conns, &format!("via lb{n} only"));
        assert!(d[n - 1].0 > 0, "lb{n} forwarded nothing: {d:?}");
        taken_over.push(d[n - 1].1);
    }
    cluster.route(VipRoute::Ecmp);
    cluster.request_all(&mut conns, "through ECMP again");
    let total = deltas(&cluster.counters(), &before);
    let resets = snmp(client, "Tcp", "EstabResets").unwrap() - resets_before;
    eprintln!(
        "long-lived: SYNs per node {syns:?}; taken over mid-flow per node {taken_over:?}; \
         in all (VIP packets, flow misses) {total:?}; client resets {resets}"
    );
    let flows = LONG_PORTS.len() as u64;
    assert_eq!(syns.iter().sum::<u64>(), flows, "SYNs per node {syns:?}");
    for n in 1..=LBS {
        // The router hashes with a fixed seed: these ports split 9/11.
        assert!(syns[n - 1] > 0, "ECMP gave no SYN to lb{n}: {syns:?}");
        assert_eq!(
            total[n - 1].1,
            flows,
            "lb{n} must miss each connection once, then keep it: {total:?}"
        );
    }
    // Each node carried, mid-flow, exactly the connections whose SYN the
    // other one took.
    assert_eq!(
        taken_over,
        vec![syns[1], syns[0]],
        "taken over mid-flow {taken_over:?} vs SYNs per node {syns:?}"
    );
    assert_eq!(resets, 0, "the client saw {resets} connection resets");
}

/// Step 4: Dropping the lab leaves no config directory and no namespace.
fn assert_removed(cluster: Cluster, guards: Vec<Process>) {
    let dirs: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| n.dir.path().to_owned())
        .collect();
    drop(guards);
    drop(cluster);
    for dir in dirs {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
    let prefix = format!("xlb-{TEST}-");
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn a_flow_keeps_its_backend_whichever_node_ecmp_picks() {
    let started = Instant::now();
    let (mut cluster, mut guards) = start();

    // The model picks the same from either node's config.
    let short_picks = cluster.picks(1, SHORT_PORTS);
    let lb2_picks = cluster.picks(2, SHORT_PORTS);
    let differ: Vec<u16> = SHORT_PORTS
        .zip(short_picks.iter().zip(&lb2_picks))
        .filter_map(|(port, (a, b))| (a != b).then_some(port))
        .collect();
    assert!(
        differ.is_empty(),
        "the model picks differently from lb2's config for ports {differ:?}"
    );

    let seen = spread_through_ecmp(&cluster, &short_picks);
    replay_via_each_node(&cluster, &short_picks, &seen);
    long_lived_survive_route_flips(&cluster, &cluster.picks(1, LONG_PORTS));

    for node in &mut cluster.nodes {
        stop_xlb(&mut node.daemon).unwrap_or_else(|e| panic!("{e:#}"));
    }
    for g in &mut guards {
        let running = g.is_running();
        assert!(running, "a backend process died:\n{}", stderr_text(g));
    }
    assert_removed(cluster, guards);
    let elapsed = started.elapsed();
    eprintln!("l4_ecmp took {elapsed:?}");
    assert!(elapsed < TEST_BUDGET, "the test took {elapsed:?}");
}
