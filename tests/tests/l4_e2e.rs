//! End to end through the XDP NAT data path: real TCP from the client
//! namespace to the VIP, `xlb run` in the lb namespace, three `lab-backend`
//! servers. Every client connection uses a fixed source port, so the set of
//! flows (and Maglev's verdict for each) is the same on every run.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xlb_lab::{L4Topology, Lab, Namespace, Process, XlbDaemon, xlb_daemon::XLB_READY_TIMEOUT};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const VIP_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// A batch of connections stops at this many failures.
const MAX_FAILURES: usize = 5;

// Health check parameters written into the config.
const INTERVAL_MS: u64 = 300;
const TIMEOUT_MS: u64 = 200;
const RISE: u64 = 2;
const FALL: u64 = 2;
/// Scheduling slack allowed on top of the health check arithmetic.
const SLACK_MS: u64 = 300;

/// A config directory under the temp dir, removed on drop.
struct TempConfig {
    dir: PathBuf,
    file: PathBuf,
}

impl TempConfig {
    /// The lab config (`examples/lab.toml`) with this test's socket, pin
    /// path, health timings and native XDP.
    fn new(tag: &str) -> Result<TempConfig> {
        let dir = std::env::temp_dir().join(format!("xlb-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("xlb.toml");
        let servers: String = (1..=3)
            .map(|k| {
                format!(
                    "  [[backend.server]]\n  name = \"web{k}\"\n  address = \"198.18.1.{}:{BACKEND_PORT}\"\n\n",
                    10 + k
                )
            })
            .collect();
        let text = format!(
            r#"[global]
api_socket = "{sock}"
bpf_pin_path = "/sys/fs/bpf/xlb-{tag}"

[[xdp]]
interface = "eth0"
mode = "auto"

[[backend]]
name = "web"
balance = "maglev"
health = {{ check = "http", path = "/healthz", interval_ms = {INTERVAL_MS}, timeout_ms = {TIMEOUT_MS}, rise = {RISE}, fall = {FALL} }}

{servers}[[l4]]
name = "web-l4"
vip = "{VIP}:{VIP_PORT}"
protocol = "tcp"
backend = "web"
forward = "nat"
"#,
            sock = dir.join("xlb.sock").display(),
        );
        std::fs::write(&file, text)?;
        Ok(TempConfig { dir, file })
    }

    fn path(&self) -> &Path {
        &self.file
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `lab-backend --name webK` on backend K's address.
fn spawn_web(topo: &L4Topology, k: usize) -> Result<Process> {
    let addr = SocketAddr::from((topo.backend_addrs()[k - 1], BACKEND_PORT));
    topo.backend(k).spawn_backend(&format!("web{k}"), addr)
}

/// A TCP connection from CLIENT:`src_port` to the VIP (the calling thread
/// must be in the client namespace). Connect, read and write time out
/// after [`IO_TIMEOUT`].
fn connect_from(src_port: u16) -> Result<TcpStream> {
    fn check(rc: libc::c_int, what: &str) -> Result<()> {
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context(what.to_owned());
        }
        Ok(())
    }
    fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    // SAFETY: plain socket syscalls on a descriptor we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("socket");
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        check(
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            ),
            "SO_REUSEADDR",
        )?;
        // On Linux a blocking connect() gives up after SO_SNDTIMEO.
        let tv = libc::timeval {
            tv_sec: IO_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        check(
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            ),
            "SO_SNDTIMEO",
        )?;
        let local = sockaddr(CLIENT, src_port);
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        check(
            libc::bind(
                fd.as_raw_fd(),
                (&local as *const libc::sockaddr_in).cast(),
                len,
            ),
            &format!("bind {CLIENT}:{src_port}"),
        )?;
        let remote = sockaddr(VIP, VIP_PORT);
        if libc::connect(
            fd.as_raw_fd(),
            (&remote as *const libc::sockaddr_in).cast(),
            len,
        ) != 0
        {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINPROGRESS) {
                bail!("connect from port {src_port}: timed out after {IO_TIMEOUT:?}");
            }
            return Err(e).with_context(|| format!("connect from port {src_port}"));
        }
        let stream = TcpStream::from(fd);
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(stream)
    }
}

/// Sends one `GET /` and reads one response; returns the body if the
/// status is 200.
fn request(stream: &mut TcpStream, reader: &mut impl BufRead, close: bool) -> Result<String> {
    let conn = if close { "close" } else { "keep-alive" };
    // One write, one segment.
    let req = format!("GET / HTTP/1.1\r\nHost: {VIP}\r\nConnection: {conn}\r\n\r\n");
    stream.write_all(req.as_bytes())?;
    let mut line = String::new();
    reader.read_line(&mut line).context("reading status")?;
    if !line.starts_with("HTTP/1.1 200 ") {
        bail!("status line {line:?}");
    }
    let mut len = None;
    loop {
        line.clear();
        if reader.read_line(&mut line).context("reading headers")? == 0 {
            bail!("EOF in headers");
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = Some(v.trim().parse::<usize>()?);
        }
    }
    let mut body = vec![0; len.context("no Content-Length")?];
    reader.read_exact(&mut body).context("reading body")?;
    Ok(String::from_utf8(body)?)
}

/// One HTTP/1.1 `GET /` with `Connection: close` from CLIENT:`src_port`
/// to the VIP; returns the server name from the body (`webK\n`). The
/// calling thread must be in the client namespace.
fn http_get_via(src_port: u16) -> Result<String> {
    let mut stream = connect_from(src_port)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let body = request(&mut stream, &mut reader, true)
        .with_context(|| format!("request from port {src_port}"))?;
    server_name(&body)
}

fn server_name(body: &str) -> Result<String> {
    match body.strip_suffix('\n') {
        Some(name @ ("web1" | "web2" | "web3")) => Ok(name.to_owned()),
        _ => bail!("unexpected body {body:?}"),
    }
}

/// Runs [`http_get_via`] for each port on a thread in `client`; returns
/// the answering server per port, or every failure.
fn run_batch(client: &Namespace, ports: std::ops::Range<u16>) -> Result<Vec<String>> {
    // Stops after a few failures: a broken data path must not cost 2 s per
    // remaining connection.
    let results = client.with(|| {
        let mut results = Vec::new();
        let mut failed = 0;
        for p in ports {
            let r = http_get_via(p);
            failed += usize::from(r.is_err());
            results.push((p, r));
            if failed == MAX_FAILURES {
                break;
            }
        }
        results
    })?;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(p, r)| r.as_ref().err().map(|e| format!("port {p}: {e:#}")))
        .collect();
    if !failures.is_empty() {
        bail!(
            "{} of {} connections failed (stopping at {MAX_FAILURES}):\n{}",
            failures.len(),
            results.len(),
            failures.join("\n")
        );
    }
    Ok(results.into_iter().map(|(_, r)| r.unwrap()).collect())
}

/// How many responses each server gave (all three servers listed).
fn count_by_backend(names: &[String]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = (1..=3).map(|k| (format!("web{k}"), 0)).collect();
    for n in names {
        *counts.entry(n.clone()).or_default() += 1;
    }
    counts
}

/// A counter of the namespace's `/proc/net/snmp`, e.g. `("Ip",
/// "ForwDatagrams")` or `("Tcp", "RetransSegs")`.
fn snmp(ns: &Namespace, group: &str, name: &str) -> Result<u64> {
    let out = ns.run(&["cat", "/proc/net/snmp"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tag = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&tag));
    let (names, values) = (
        lines.next().context("no header line")?,
        lines.next().context("no value line")?,
    );
    let i = names
        .split_whitespace()
        .position(|n| n == name)
        .with_context(|| format!("no {group} {name}"))?;
    Ok(values
        .split_whitespace()
        .nth(i)
        .context("short value line")?
        .parse()?)
}

/// `N` of the `stat NAME N` line of `xlb stats` output.
fn stat(stats: &str, name: &str) -> Option<u64> {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("stat {name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// `packets=N` of the `xlb stats` line starting with `prefix`.
fn packets(stats: &str, prefix: &str) -> Option<u64> {
    let line = stats.lines().find(|l| l.starts_with(prefix))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("packets="))
        .and_then(|v| v.parse().ok())
}

/// Waits for the daemon's health transition line for `server` (e.g.
/// `web/web2`) logged after stderr line `from`; returns its index.
fn wait_transition(
    daemon: &mut XlbDaemon,
    from: usize,
    server: &str,
    up: bool,
    timeout: Duration,
) -> Result<usize> {
    let what = if up { "server is UP" } else { "server is DOWN" };
    let field = format!("server={server}");
    let (i, _) = daemon.wait_for_stderr(from, timeout, |l| {
        l.contains(what) && l.split_whitespace().any(|w| w == field)
    })?;
    Ok(i)
}

/// The long-lived keep-alive connection (source port 30000), driven by a
/// background thread in the client namespace every 100 ms.
struct LongLived {
    stop: Arc<AtomicBool>,
    /// Good answers so far.
    answers: Arc<AtomicUsize>,
    thread: thread::JoinHandle<LongLivedReport>,
}

#[derive(Debug, Default)]
struct LongLivedReport {
    ok: usize,
    failures: Vec<String>,
    /// Every server that answered, in order of first appearance.
    servers: Vec<String>,
    /// The server of the last answer.
    last: Option<String>,
}

impl LongLivedReport {
    fn record(&mut self, name: String) {
        self.ok += 1;
        if !self.servers.contains(&name) {
            self.servers.push(name.clone());
        }
        self.last = Some(name);
    }
}

const LONG_LIVED_PORT: u16 = 30000;

impl LongLived {
    /// Opens the connection, makes the first request and returns the
    /// server that answered it; requests then continue in the background
    /// until [`LongLived::finish`] or the first failure.
    fn start(client: &Namespace) -> Result<(LongLived, String)> {
        let client = client.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop2, answers2) = (stop.clone(), answers.clone());
        let thread = thread::spawn(move || {
            let mut report = LongLivedReport::default();
            let first = (|| -> Result<_> {
                let inside = client.enter()?;
                let mut stream = connect_from(LONG_LIVED_PORT)?;
                let mut reader = BufReader::new(stream.try_clone()?);
                let name = server_name(&request(&mut stream, &mut reader, false)?)?;
                Ok((inside, stream, reader, name))
            })();
            let (_inside, mut stream, mut reader, name) = match first {
                Ok(v) => v,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return report;
                }
            };
            report.record(name.clone());
            answers2.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(Ok(name));
            let started = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
                let t = started.elapsed();
                match request(&mut stream, &mut reader, false).and_then(|b| server_name(&b)) {
                    Ok(name) => {
                        report.record(name);
                        answers2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        report
                            .failures
                            .push(format!("request {} at {t:?}: {e:#}", report.ok + 1));
                        // The connection is unusable after an error.
                        break;
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

    /// Waits (at most 3 s) for two more answers, so the report covers the
    /// present, then stops the thread and returns its report.
    fn finish(self) -> LongLivedReport {
        let target = self.answers.load(Ordering::Relaxed) + 2;
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.answers.load(Ordering::Relaxed) < target
            && !self.thread.is_finished()
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("long-lived thread panicked")
    }
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
    let mut backends: Vec<Option<Process>> = (1..=3)
        .map(|k| Some(spawn_web(&topo, k).unwrap()))
        .collect();
    let config = TempConfig::new("l4e2e").unwrap();
    let mut daemon = topo
        .lb()
        .spawn_xlb(config.path(), XLB_READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let client = topo.client();

    // 1. Spread: 300 flows with fixed source ports.
    let forw_before = snmp(topo.lb(), "Ip", "ForwDatagrams").unwrap();
    let client_segs_before = snmp(client, "Tcp", "OutSegs").unwrap();
    let client_retrans_before = snmp(client, "Tcp", "RetransSegs").unwrap();
    let names = run_batch(client, 20000..20300)
        .unwrap_or_else(|e| panic!("spread: {e:#}\nxlb stderr:\n{}", daemon.stderr()));
    let counts = count_by_backend(&names);
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
    let (long_lived, ll_server) = LongLived::start(client).unwrap();
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
    let down_bound = Duration::from_millis(FALL * INTERVAL_MS + TIMEOUT_MS + SLACK_MS);
    let down_at = wait_transition(
        &mut daemon,
        mark,
        &victim_key,
        false,
        down_bound + Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("{victim_key} never reported DOWN: {e:#}"));
    let to_down = killed.elapsed();
    eprintln!("{victim_key} DOWN {} ms after its kill", ms(to_down));
    assert!(
        to_down <= down_bound,
        "{victim_key} went DOWN {} ms after the kill; bound fall*interval+timeout+slack = {} ms",
        ms(to_down),
        ms(down_bound)
    );
    // The log line precedes the map update by microseconds.
    thread::sleep(Duration::from_millis(100));
    let names = run_batch(client, 21000..21150)
        .unwrap_or_else(|e| panic!("after {victim_key} DOWN: {e:#}"));
    let counts = count_by_backend(&names);
    eprintln!("150 flows with {victim_name} down: {counts:?}");
    assert_eq!(
        counts[&victim_name], 0,
        "{victim_name} is down yet got flows: {counts:?}"
    );

    // 4. Recovery.
    backends[victim - 1] = Some(spawn_web(&topo, victim).unwrap());
    let restarted = Instant::now();
    let up_bound = Duration::from_millis(RISE * INTERVAL_MS + TIMEOUT_MS + SLACK_MS);
    wait_transition(
        &mut daemon,
        down_at + 1,
        &victim_key,
        true,
        up_bound + Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("{victim_key} never reported UP: {e:#}"));
    let to_up = restarted.elapsed();
    eprintln!("{victim_key} UP {} ms after its restart", ms(to_up));
    assert!(
        to_up <= up_bound,
        "{victim_key} came UP {} ms after the restart; bound rise*interval+timeout+slack = {} ms",
        ms(to_up),
        ms(up_bound)
    );
    thread::sleep(Duration::from_millis(100));
    let names =
        run_batch(client, 22000..22150).unwrap_or_else(|e| panic!("after {victim_key} UP: {e:#}"));
    let counts = count_by_backend(&names);
    eprintln!("150 flows after {victim_name} recovered: {counts:?}");
    assert!(
        counts[&victim_name] >= 30,
        "{victim_name} is back up but got only {} of 150 new flows (< 20%): {counts:?}",
        counts[&victim_name]
    );

    // 5. The long-lived connection never broke and never moved.
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
    let status = daemon
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        status.success(),
        "xlb exited with {status} after SIGTERM; stderr:\n{}",
        daemon.stderr()
    );
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
    let _backends: Vec<Process> = (1..=3).map(|k| spawn_web(&topo, k).unwrap()).collect();
    let first_cfg = TempConfig::new("l4dup1").unwrap();
    let mut first = topo
        .lb()
        .spawn_xlb(first_cfg.path(), XLB_READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));

    let second_cfg = TempConfig::new("l4dup2").unwrap();
    let second = topo.lb().spawn_xlb_nowait(second_cfg.path()).unwrap();
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
        .with(|| http_get_via(20000))
        .unwrap()
        .unwrap_or_else(|e| panic!("VIP after the refused second daemon: {e:#}"));
    eprintln!("VIP still answers from {name}");
    let status = first.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "first xlb exited {status}");
    drop(second);
    drop(first);
    drop(topo);
    assert_eq!(lab_namespaces("l4dup"), Vec::<String>::new());
}
