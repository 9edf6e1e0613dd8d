//! The runtime API end to end: `xlb run` in the lb namespace with an L4
//! NAT VIP (198.18.0.100:80) and an L7 frontend (198.18.0.100:8080,
//! roundrobin) over the same pool `web` of `lab-backend` servers web1..web3
//! (web4 runs too, but is only in the pool once `add server` puts it
//! there). Every change made with `xlb ctl` must show in `show stat` and
//! in where new L4 connections and new L7 requests go, in both tiers.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use xlb_lab::{
    L4Topology, Lab, TempDir, XlbDaemon,
    api::{ctl, ctl_ok, raw_exchange, stat_rows, statuses},
    l4traffic::{
        LAB_HEALTH, count_by_name, run_batch, server_names, socket_addrs, spawn_backends, stop_xlb,
    },
    l7::{
        NO_ACCESS_LOG, ROUNDROBIN, VIP, curl_many, frontend_toml, head_toml, l4_toml, pool_toml,
        web_servers,
    },
};

const TEST: &str = "apirt";
const BACKEND_PORT: u16 = 8080;
/// New L4 connections per check, from fresh fixed source ports each time.
const FLOWS: u16 = 60;
/// L7 requests per check (roundrobin: 20 per live server of three).
const REQUESTS: usize = 30;

/// Pool `web` (roundrobin, HTTP health checks) of web1..web3, the L4 VIP
/// `web-l4` on port 80 and the L7 frontend `web-l7` on 8080 over it.
fn config_text(dir: &TempDir) -> String {
    let keys = format!("{ROUNDROBIN}health = {}\n", LAB_HEALTH.toml());
    format!(
        "{}{}{}{}",
        head_toml(dir, TEST),
        pool_toml("web", &keys, &web_servers(1..=3, BACKEND_PORT)),
        l4_toml("web-l4", 80, "web"),
        frontend_toml("web-l7", 8080, "web", NO_ACCESS_LOG),
    )
}

struct Rig {
    topo: L4Topology,
    names: Vec<String>,
    next_port: u16,
}

impl Rig {
    /// Servers answering `FLOWS` new L4 connections.
    fn l4(&mut self, daemon: &XlbDaemon) -> BTreeMap<String, usize> {
        let vip = SocketAddr::new(IpAddr::V4(self.topo.vip()), 80);
        let src = IpAddr::V4(self.topo.client_addr());
        let ports = self.next_port..self.next_port + FLOWS;
        self.next_port += FLOWS;
        let answers = run_batch(self.topo.client(), src, ports, vip, &self.names)
            .unwrap_or_else(|e| panic!("L4 batch: {e:#}\nxlb stderr:\n{}", daemon.stderr()));
        count_by_name(&answers, &self.names)
    }

    /// Servers answering `REQUESTS` L7 requests (one keep-alive connection).
    fn l7(&self, daemon: &XlbDaemon) -> BTreeMap<String, usize> {
        let url = format!("http://{VIP}:8080/");
        let mut args: Vec<&str> = vec![url.as_str(); REQUESTS];
        args.extend(["-w", "connects=%{num_connects}\n"]);
        let got = curl_many(self.topo.client(), &args)
            .unwrap_or_else(|e| panic!("L7 requests: {e:#}\nxlb stderr:\n{}", daemon.stderr()));
        assert_eq!(got.names.len(), REQUESTS, "curl output: {}", got.out);
        assert_eq!(got.connects, 1, "one keep-alive connection: {}", got.out);
        count_by_name(&got.names, &self.names)
    }
}

fn assert_status(socket: &Path, server: &str, want: &str) {
    let s = statuses(socket).unwrap();
    assert_eq!(s.get(server).map(String::as_str), Some(want), "{s:?}");
}

#[test]
fn ctl_changes_apply_to_both_tiers() {
    let topo = L4Topology::build(Lab::new(TEST).unwrap(), 4).unwrap_or_else(|e| panic!("{e:#}"));
    let names = server_names("web", 4);
    let addrs = socket_addrs(topo.backend_addrs(), BACKEND_PORT);
    let mut servers = spawn_backends(&topo, &names, &addrs).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = TempDir::new(TEST).unwrap();
    let cfg = dir.write_config(&config_text(&dir)).unwrap();
    let mut daemon = topo.lb().start_xlb(&cfg);
    let sock = dir.socket();
    let mut rig = Rig {
        topo,
        names,
        next_port: 20000,
    };

    // show stat: CSV, a '# ' header with the contract's columns, all UP.
    let csv = ctl_ok(&sock, "show stat").unwrap();
    eprintln!("show stat:\n{csv}");
    assert!(csv.starts_with("# backend,server,status,weight,"), "{csv}");
    let rows = stat_rows(&csv).unwrap();
    assert_eq!(rows.len(), 3, "{csv}");
    for r in &rows {
        assert_eq!(r["status"], "UP", "{csv}");
        assert_eq!(r["weight"], "100", "{csv}");
        assert!(r["address"].starts_with("198.18.1.1"), "{csv}");
    }
    let before = rig.l4(&daemon);
    let l7 = rig.l7(&daemon);
    eprintln!("all up: L4 {before:?} L7 {l7:?}");
    for k in 1..=3 {
        assert!(before[&format!("web{k}")] > 0, "L4 {before:?}");
        assert_eq!(l7[&format!("web{k}")], REQUESTS / 3, "L7 {l7:?}");
    }
    assert_eq!(before["web4"] + l7["web4"], 0);
    // The L7 tier's per-server counts: what each server answered, none
    // still in flight.
    let csv = ctl_ok(&sock, "show stat").unwrap();
    for r in stat_rows(&csv).unwrap() {
        assert_eq!(
            r["l7_total"],
            l7[&r["server"]].to_string(),
            "l7_total of {}: {csv}",
            r["server"]
        );
        assert_eq!(r["l7_current"], "0", "{csv}");
    }

    // maint: out of both tiers at once.
    let answer = ctl_ok(&sock, "set server web/web2 state maint").unwrap();
    assert!(answer.contains("MAINT"), "{answer}");
    assert_status(&sock, "web2", "MAINT");
    let (l4, l7) = (rig.l4(&daemon), rig.l7(&daemon));
    eprintln!("web2 in maint: L4 {l4:?} L7 {l7:?}");
    assert_eq!(l4["web2"], 0, "L4 went to web2 in maint: {l4:?}");
    assert_eq!(l7["web2"], 0, "L7 went to web2 in maint: {l7:?}");
    assert_eq!(l7["web1"] + l7["web3"], REQUESTS);

    // ready: back in both.
    ctl_ok(&sock, "set server web/web2 state ready").unwrap();
    assert_status(&sock, "web2", "UP");
    let (l4, l7) = (rig.l4(&daemon), rig.l7(&daemon));
    eprintln!("web2 ready: L4 {l4:?} L7 {l7:?}");
    assert!(l4["web2"] > 0, "{l4:?}");
    assert_eq!(l7["web2"], REQUESTS / 3, "{l7:?}");

    // weight 0 drains; weight 100 undoes it.
    ctl_ok(&sock, "set server web/web2 weight 0").unwrap();
    assert_status(&sock, "web2", "DRAIN");
    let (l4, l7) = (rig.l4(&daemon), rig.l7(&daemon));
    eprintln!("web2 weight 0: L4 {l4:?} L7 {l7:?}");
    assert_eq!(l4["web2"] + l7["web2"], 0, "L4 {l4:?} L7 {l7:?}");
    ctl_ok(&sock, "set server web/web2 weight 100").unwrap();
    assert_status(&sock, "web2", "UP");

    // add server: web4 joins both tiers.
    let answer = ctl_ok(&sock, "add server web/web4 198.18.1.14:8080 weight 100").unwrap();
    assert!(answer.contains("web/web4"), "{answer}");
    assert_status(&sock, "web4", "UP");
    let (l4, l7) = (rig.l4(&daemon), rig.l7(&daemon));
    eprintln!("web4 added: L4 {l4:?} L7 {l7:?}");
    assert!(l4["web4"] > 0, "L4 never reached the added web4: {l4:?}");
    assert!(l7["web4"] >= 7, "L7 roundrobin over 4 skipped web4: {l7:?}");
    // It has a health checker of its own: stop web4 and it goes DOWN
    // (fall 2 x 300 ms interval).
    drop(servers.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    while statuses(&sock).unwrap()["web4"] != "DOWN" {
        assert!(
            Instant::now() < deadline,
            "web4 stopped but never went DOWN: no health check for an added server"
        );
        thread::sleep(Duration::from_millis(100));
    }

    // del server: gone from show stat and from both tiers.
    ctl_ok(&sock, "del server web/web4").unwrap();
    assert!(!statuses(&sock).unwrap().contains_key("web4"));
    let (l4, l7) = (rig.l4(&daemon), rig.l7(&daemon));
    eprintln!("web4 deleted: L4 {l4:?} L7 {l7:?}");
    assert_eq!(l4["web4"] + l7["web4"], 0, "L4 {l4:?} L7 {l7:?}");

    // Reload (as SIGHUP): the file is the truth again, maint survives it.
    ctl_ok(&sock, "add server web/web4 198.18.1.14:8080").unwrap();
    ctl_ok(&sock, "set server web/web3 state maint").unwrap();
    let answer = ctl_ok(&sock, "reload").unwrap();
    assert!(answer.contains("config reloaded"), "{answer}");
    let s = statuses(&sock).unwrap();
    assert!(
        !s.contains_key("web4"),
        "an API-added server outlived the reload: {s:?}"
    );
    assert_eq!(s["web3"], "MAINT", "{s:?}");
    ctl_ok(&sock, "set server web/web3 state ready").unwrap();

    let info = ctl_ok(&sock, "show info").unwrap();
    assert!(info.contains(&format!("Pid: {}", daemon.pid())), "{info}");
    assert!(info.contains("Servers: 3"), "{info}");
    let state = ctl_ok(&sock, "show servers state").unwrap();
    assert!(state.starts_with("# backend server"), "{state}");
    assert_eq!(state.lines().count(), 4, "{state}");
    assert!(ctl_ok(&sock, "help").unwrap().contains("set server"));

    stop_xlb(&mut daemon).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!sock.exists(), "the API socket outlived the daemon");
}

#[test]
fn bad_commands_answer_error_and_the_daemon_stays_up() {
    const TAG: &str = "apibad";
    let topo = L4Topology::build(Lab::new(TAG).unwrap(), 1).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = TempDir::new(TAG).unwrap();
    let sock = dir.socket();
    let text = format!(
        "{}{}{}",
        head_toml(&dir, TAG),
        pool_toml("web", "", &web_servers([1], BACKEND_PORT)),
        l4_toml("web-l4", 80, "web"),
    );
    let cfg = dir.write_config(&text).unwrap();
    let mut daemon = topo.lb().start_xlb(&cfg);

    for bad in [
        "bogus",
        "show",
        "set server web/nope state maint",
        "set server web/web1 state sideways",
        "set server web/web1 weight 5000",
        "set server nope/web1 weight 1",
        "add server web/web1 198.18.1.11:8080",
        "add server web/v6 [2001:db8:1::11]:8080",
        "add server web/x 198.18.1.12",
        "del server web/nope",
    ] {
        let a = ctl(&sock, bad).unwrap();
        eprintln!("{bad:?} -> {}", a.stdout.trim());
        assert!(!a.success, "{bad:?} exited 0: {a:?}");
        assert!(a.stdout.starts_with("error:"), "{bad:?}: {a:?}");
        assert_eq!(a.stdout.trim_end().lines().count(), 1, "{bad:?}: {a:?}");
    }
    // Hostile bytes on the raw socket: an over-long line, NUL and invalid
    // UTF-8, an empty line, several commands in one write.
    let long = raw_exchange(&sock, &vec![b'x'; 100_000]).unwrap();
    assert!(long.starts_with("error:"), "{long:?}");
    let junk = raw_exchange(&sock, b"\xff\xfe\x00\n\n\0\0\nshow info\n").unwrap();
    let answers: Vec<&str> = junk.split("\n\n").filter(|a| !a.is_empty()).collect();
    assert_eq!(answers.len(), 3, "{junk:?}");
    assert!(answers[0].starts_with("error:") && answers[1].starts_with("error:"));
    assert!(answers[2].starts_with("Name: xlb"), "{junk:?}");

    // Several clients at once.
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let sock = sock.clone();
            thread::spawn(move || {
                for _ in 0..10 {
                    let csv = ctl_ok(&sock, "show stat").unwrap();
                    assert_eq!(stat_rows(&csv).unwrap().len(), 1);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a concurrent client failed");
    }

    // A second daemon on the same socket refuses before touching anything.
    let second = topo.lb().spawn_xlb_nowait(&cfg).unwrap();
    let status = second
        .wait_exit(Duration::from_secs(10))
        .expect("a second xlb on the same socket kept running");
    assert!(!status.success());
    assert!(
        second.stderr().contains("another xlb answers"),
        "{}",
        second.stderr()
    );

    assert!(
        daemon.exit_status().is_none(),
        "xlb died:\n{}",
        daemon.stderr()
    );
    assert!(ctl_ok(&sock, "show info").unwrap().contains("Name: xlb"));
    stop_xlb(&mut daemon).unwrap_or_else(|e| panic!("{e:#}"));

    let missing = ctl(&sock, "show info").unwrap();
    assert!(!missing.success);
    assert!(missing.stderr.contains("no API socket"), "{missing:?}");
}
