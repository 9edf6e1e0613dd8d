//! The L7 tier end to end: `xlb run` in the lb namespace with `[[frontend]]`
//! listeners on the VIP (on the lb's `lo`; XDP passes their packets to the
//! stack), three `lab-backend` servers, curl from the client namespace.
//!
//! - `balancing_by_algorithm`: roundrobin strictly in turn (also on one
//!   keep-alive client connection), weights honoured exactly, `source`
//!   sticky per client address, `uri` sticky per path, server connections
//!   pooled (the access log shows `connect=0.0` for reused ones).
//! - `health_down_agrees_in_both_tiers`: a server the health checker marks
//!   down (while it actually answers again) gets neither new L7 requests
//!   nor new L4 flows, and both tiers take it back once it is up.

use std::{
    collections::{BTreeMap, BTreeSet},
    thread,
    time::{Duration, Instant},
};

use xlb_lab::{
    L4Topology, Lab, Namespace, Process, TempDir, XlbDaemon,
    l7::{
        CurlMany, VIP, access_lines, curl_many, curl_ok, frontend_toml, head_toml, start_servers,
    },
};

const BACKEND_PORT: u16 = 8080;
const INTERVAL_MS: u64 = 300;
/// Long rise: a restarted server stays DOWN for RISE * INTERVAL_MS while it
/// already answers, so a tier that ignored health would reach it.
const RISE: u64 = 40;
const FALL: u64 = 2;

fn servers(weights: [u32; 3]) -> String {
    (1..=3)
        .map(|k| {
            format!(
                "  [[backend.server]]\n  name = \"web{k}\"\n  address = \"198.18.1.{}:{BACKEND_PORT}\"\n  weight = {}\n\n",
                10 + k,
                weights[k - 1]
            )
        })
        .collect()
}

fn config(dir: &TempDir, tag: &str) -> std::path::PathBuf {
    let frontends: String = [
        ("rr", 8080, "web"),
        ("weighted", 8081, "weighted"),
        ("src", 8082, "src"),
        ("uri", 8083, "path"),
    ]
    .iter()
    .map(|&(name, port, backend)| frontend_toml(name, port, backend, ""))
    .collect();
    let text = format!(
        r#"{head}[[backend]]
name = "web"
balance = "roundrobin"
health = {{ check = "http", path = "/healthz", interval_ms = {INTERVAL_MS}, timeout_ms = 200, rise = {RISE}, fall = {FALL} }}

{web}[[backend]]
name = "weighted"
balance = "roundrobin"
health = {{ check = "none" }}

{weighted}[[backend]]
name = "src"
balance = "source"
health = {{ check = "none" }}

{plain}[[backend]]
name = "path"
balance = "uri"
health = {{ check = "none" }}

{plain}[[l4]]
name = "web-l4"
vip = "{VIP}:80"
backend = "web"
forward = "nat"

{frontends}"#,
        head = head_toml(dir, tag),
        web = servers([100, 100, 100]),
        weighted = servers([300, 100, 100]),
        plain = servers([100, 100, 100]),
    );
    dir.write_config(&text).unwrap()
}

/// `lab-backend` servers `webK` for each `K` in `ks`.
fn spawn_web(topo: &L4Topology, ks: impl IntoIterator<Item = usize>) -> Vec<Process> {
    start_servers(topo, ks, BACKEND_PORT, Namespace::spawn_backend).unwrap()
}

fn start(topo: &L4Topology, dir: &TempDir, tag: &str) -> XlbDaemon {
    let path = config(dir, tag);
    topo.lb().start_xlb(&path)
}

/// `n` requests, one curl (one connection) each; the answering names.
fn names(topo: &L4Topology, url: &str, n: usize, extra: &[&str]) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut args = extra.to_vec();
            args.push(url);
            curl_ok(topo.client(), &args)
                .unwrap_or_else(|e| panic!("{url}: {e:#}"))
                .trim()
                .to_string()
        })
        .collect()
}

fn counts(names: &[String]) -> BTreeMap<String, usize> {
    let mut c: BTreeMap<String, usize> = (1..=3).map(|k| (format!("web{k}"), 0)).collect();
    for n in names {
        *c.entry(n.clone()).or_default() += 1;
    }
    c
}

fn assert_in_turn(names: &[String]) {
    let first: BTreeSet<&String> = names[..3].iter().collect();
    assert_eq!(first.len(), 3, "the first three went to {names:?}");
    for (i, n) in names.iter().enumerate() {
        assert_eq!(n, &names[i % 3], "request {i} out of turn: {names:?}");
    }
}

#[test]
fn balancing_by_algorithm() {
    let topo = L4Topology::build(Lab::new("l7bal").unwrap(), 3).unwrap();
    let _web = spawn_web(&topo, 1..=3);
    let dir = TempDir::new("l7bal").unwrap();
    let daemon = start(&topo, &dir, "l7bal");
    let mark = daemon.stderr_lines().len();

    // roundrobin, a new connection per request: strictly in turn.
    let rr = names(&topo, &format!("http://{VIP}:8080/"), 12, &[]);
    eprintln!("roundrobin: {rr:?}");
    assert_in_turn(&rr);

    // roundrobin on one keep-alive client connection: still in turn, per request.
    let url = format!("http://{VIP}:8080/");
    let urls: Vec<&str> = (0..9).map(|_| url.as_str()).collect();
    let mut args = vec!["-w", "connects=%{num_connects}\\n"];
    args.extend(&urls);
    let CurlMany {
        out,
        names: ka,
        connects,
    } = curl_many(topo.client(), &args).unwrap();
    eprintln!("keep-alive: {ka:?}, client connections opened: {connects}");
    assert_eq!(ka.len(), 9, "{out}");
    assert_in_turn(&ka);
    assert_eq!(
        connects, 1,
        "curl opened {connects} connections for 9 requests"
    );

    // Server connections are pooled: after each server's first request,
    // requests reuse a connection (connect=0.0 in the access log).
    thread::sleep(Duration::from_millis(200));
    let lines: Vec<_> = access_lines(&daemon, mark)
        .into_iter()
        .filter(|l| l.frontend == "rr")
        .collect();
    assert_eq!(lines.len(), 21, "access log lines: {lines:#?}");
    assert!(lines.iter().all(|l| l.status == 200 && l.bytes == 5));
    let fresh = lines
        .iter()
        .filter(|l| l.timing("connect") != Some(0.0))
        .count();
    eprintln!("{fresh} of 21 requests opened a server connection");
    assert!(
        fresh <= 6,
        "{fresh} of 21 requests opened a new server connection: not pooled: {lines:#?}"
    );

    // Weights 300/100/100: exactly 3:1:1 per five requests, interleaved.
    let w = names(&topo, &format!("http://{VIP}:8081/"), 20, &[]);
    let c = counts(&w);
    eprintln!("weighted: {c:?} {w:?}");
    assert_eq!(c["web1"], 12, "{w:?}");
    assert_eq!(c["web2"], 4, "{w:?}");
    assert_eq!(c["web3"], 4, "{w:?}");
    assert!(
        !w.windows(4).any(|x| x.iter().all(|n| n == "web1")),
        "not smooth: {w:?}"
    );

    // source: sticky per client address, spread over addresses.
    let mut by_addr = BTreeMap::new();
    for host in 3..=14 {
        let addr = format!("198.18.0.{host}");
        topo.client()
            .add_addr("eth0", &format!("{addr}/24"))
            .unwrap();
        let got = names(
            &topo,
            &format!("http://{VIP}:8082/"),
            4,
            &["--interface", &addr],
        );
        assert!(
            got.iter().all(|n| n == &got[0]),
            "source {addr} moved between servers: {got:?}"
        );
        by_addr.insert(addr, got[0].clone());
    }
    eprintln!("source: {by_addr:?}");
    let used: BTreeSet<_> = by_addr.values().collect();
    assert!(used.len() >= 2, "12 client addresses all on {used:?}");

    // uri: sticky per path, spread over paths.
    let mut by_path = BTreeMap::new();
    for p in 0..12 {
        let path = format!("/item/{p}?q={p}");
        let got = names(&topo, &format!("http://{VIP}:8083{path}"), 3, &[]);
        assert!(
            got.iter().all(|n| n == &got[0]),
            "uri {path} moved between servers: {got:?}"
        );
        by_path.insert(path, got[0].clone());
    }
    eprintln!("uri: {by_path:?}");
    let used: BTreeSet<_> = by_path.values().collect();
    assert!(used.len() >= 2, "12 paths all on {used:?}");
}

#[test]
fn health_down_agrees_in_both_tiers() {
    let topo = L4Topology::build(Lab::new("l7health").unwrap(), 3).unwrap();
    let mut web: Vec<Option<Process>> = spawn_web(&topo, 1..=3).into_iter().map(Some).collect();
    let dir = TempDir::new("l7health").unwrap();
    let mut daemon = start(&topo, &dir, "l7health");
    let l7_url = format!("http://{VIP}:8080/");
    let l4_url = format!("http://{VIP}:80/");

    let before = counts(&names(&topo, &l7_url, 9, &[]));
    assert_eq!(before["web2"], 3, "{before:?}");

    // web2 dies; the checker marks it DOWN after FALL failed checks.
    let mark = daemon.stderr_lines().len();
    drop(web[1].take());
    daemon
        .wait_for_stderr(mark, Duration::from_secs(10), |l| {
            l.contains("server is DOWN") && l.contains("server=web/web2")
        })
        .unwrap_or_else(|e| panic!("web2 never went DOWN: {e:#}"));
    thread::sleep(Duration::from_millis(100));

    // web2 answers again at once but stays DOWN until RISE good checks.
    web[1] = spawn_web(&topo, [2]).pop();
    let restarted = Instant::now();
    let l7 = names(&topo, &l7_url, 30, &[]);
    let l4 = names(&topo, &l4_url, 30, &[]);
    let window = restarted.elapsed();
    let (c7, c4) = (counts(&l7), counts(&l4));
    eprintln!("web2 alive but DOWN ({window:?}): L7 {c7:?}, L4 {c4:?}");
    let up_logged = daemon
        .stderr_lines()
        .iter()
        .skip(mark)
        .any(|l| l.contains("server is UP") && l.contains("server=web/web2"));
    assert!(
        !up_logged && window < Duration::from_millis(RISE * INTERVAL_MS),
        "web2 came UP during the check window ({window:?}): the test proves nothing"
    );
    assert_eq!(c7["web2"], 0, "L7 sent requests to a DOWN server: {c7:?}");
    assert_eq!(c4["web2"], 0, "L4 sent flows to a DOWN server: {c4:?}");
    assert_eq!(
        c7["web1"], 15,
        "L7 roundrobin over the two up servers: {c7:?}"
    );
    assert!(c4["web1"] > 0 && c4["web3"] > 0, "{c4:?}");

    // Up again: both tiers use it.
    daemon
        .wait_for_stderr(mark, Duration::from_secs(40), |l| {
            l.contains("server is UP") && l.contains("server=web/web2")
        })
        .unwrap_or_else(|e| panic!("web2 never came back UP: {e:#}"));
    thread::sleep(Duration::from_millis(100));
    let c7 = counts(&names(&topo, &l7_url, 9, &[]));
    let c4 = counts(&names(&topo, &l4_url, 60, &[]));
    eprintln!("web2 UP again: L7 {c7:?}, L4 {c4:?}");
    assert_eq!(c7["web2"], 3, "{c7:?}");
    assert!(c4["web2"] > 0, "{c4:?}");

    let status = daemon.terminate(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "xlb exited {status}:\n{}",
        daemon.stderr()
    );
}
