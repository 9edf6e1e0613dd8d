//! Draining a server with real traffic: the NAT VIP 198.18.0.100:80 over
//! three `lab-backend` servers. A long-lived keep-alive connection (one
//! request every 100 ms) lands on server K; the config is rewritten with
//! K's weight = 0 and the daemon gets SIGHUP. After the daemon logs
//! `config reloaded`, 150 new connections from fixed source ports must all
//! go to the other two servers, while the long-lived connection keeps
//! being answered by K, with zero failures, before, during and after the
//! reload.

use std::{
    io::BufReader,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use xlb_lab::{
    L4Topology, Lab, Namespace, Process,
    l4traffic::{
        TempConfig, connect_from, count_by_name, host_header, packets, request, run_batch,
        server_name,
    },
    xlb_daemon::XLB_READY_TIMEOUT,
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

fn config(cfg: &TempConfig, topo: &L4Topology, drained: Option<usize>) -> String {
    let servers: String = topo
        .backend_addrs()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let weight = if drained == Some(i + 1) { 0 } else { 100 };
            format!(
                "  [[backend.server]]\n  name = \"web{}\"\n  address = \"{a}:{BACKEND_PORT}\"\n  weight = {weight}\n\n",
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
name = "web-l4"
vip = "{vip}:{VIP_PORT}"
protocol = "tcp"
backend = "web"
forward = "nat"
"#,
        global = cfg.global(TEST),
        iface = topo.lb_iface(),
        vip = topo.vip(),
    )
}

/// The long-lived keep-alive connection, driven by a background thread in
/// the client namespace: one request every 100 ms until stopped or the
/// first failure.
struct LongLived {
    stop: Arc<AtomicBool>,
    answers: Arc<AtomicUsize>,
    thread: thread::JoinHandle<Report>,
}

#[derive(Debug, Default)]
struct Report {
    ok: usize,
    failures: Vec<String>,
    /// Every server that answered, in order of first appearance.
    servers: Vec<String>,
}

impl LongLived {
    /// Opens the connection from `local`, makes the first request and
    /// returns the server that answered it.
    fn start(
        client: &Namespace,
        local: SocketAddr,
        vip: SocketAddr,
        names: &[String],
    ) -> Result<(LongLived, String)> {
        let client = client.clone();
        let names = names.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop2, answers2) = (stop.clone(), answers.clone());
        let thread = thread::spawn(move || {
            let mut report = Report::default();
            let host = host_header(vip);
            let first = (|| -> Result<_> {
                let inside = client.enter()?;
                let mut stream = connect_from(local, vip)?;
                let mut reader = BufReader::new(stream.try_clone()?);
                let name = server_name(&request(&mut stream, &mut reader, &host, false)?, &names)?;
                Ok((inside, stream, reader, name))
            })();
            let (_inside, mut stream, mut reader, name) = match first {
                Ok(v) => v,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return report;
                }
            };
            report.ok += 1;
            report.servers.push(name.clone());
            answers2.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(Ok(name));
            let started = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
                let t = started.elapsed();
                match request(&mut stream, &mut reader, &host, false)
                    .and_then(|b| server_name(&b, &names))
                {
                    Ok(name) => {
                        report.ok += 1;
                        if !report.servers.contains(&name) {
                            report.servers.push(name);
                        }
                        answers2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        report
                            .failures
                            .push(format!("request {} at {t:?}: {e:#}", report.ok + 1));
                        break; // the connection is unusable after an error
                    }
                }
            }
            report
        });
        let first = rx
            .recv_timeout(Duration::from_secs(10))
            .context("long-lived connection: no first answer")??;
        Ok((
            LongLived {
                stop,
                answers,
                thread,
            },
            first,
        ))
    }

    fn answers(&self) -> usize {
        self.answers.load(Ordering::Relaxed)
    }

    /// Waits (bounded by `timeout`) until `n` answers in all, unless the
    /// thread has stopped on a failure.
    fn wait_answers(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.answers() < n && !self.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("long-lived thread panicked")
    }
}

#[test]
fn drained_server_keeps_its_connection_and_takes_no_new_ones() {
    let topo = L4Topology::build(Lab::new(TEST).unwrap(), 3).unwrap_or_else(|e| panic!("{e:#}"));
    let names: Vec<String> = (1..=3).map(|k| format!("web{k}")).collect();
    let _backends: Vec<Process> = topo
        .backend_addrs()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            topo.backend(i + 1)
                .spawn_backend(&names[i], SocketAddr::from((*a, BACKEND_PORT)))
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .collect();
    let cfg = TempConfig::new(TEST).unwrap();
    cfg.write(&config(&cfg, &topo, None)).unwrap();
    let mut daemon = topo
        .lb()
        .spawn_xlb(cfg.path(), XLB_READY_TIMEOUT)
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
    cfg.write(&config(&cfg, &topo, Some(k))).unwrap();
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
    let status = daemon
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        status.success(),
        "xlb exited {status}; stderr:\n{}",
        daemon.stderr()
    );
}
