//! `cargo xtask bench http`: the same small response (1 KB, `text/plain`,
//! from one in-process hyper backend in `backend1`) through xlb, HAProxy
//! and nginx, one at a time in the same `L4Topology` lab, each listening
//! on the VIP in the lb namespace with the same thread count (one per
//! core): `198.18.0.100:8080` HTTP/1.1, `:8081` HTTP/2 prior knowledge
//! (h2c), `:8443` TLS (ALPN h2, http/1.1). Access logs off everywhere;
//! every peer adds only `X-Forwarded-For` (xlb `forwarded_headers =
//! ["x-forwarded-for"]`, HAProxy `option forwardfor`, nginx
//! `proxy_set_header X-Forwarded-For`) and keeps server connections alive.
//!
//! Measured from the client namespace, per peer:
//! - HTTP/1.1 keep-alive: `wrk -t T -c 64 -d S --latency` (req/s, p50, p99)
//!   and the peer's CPU time per request (user + system, and user alone,
//!   from `/proc/PID/stat`: steadier than req/s when the machine is
//!   shared);
//! - HTTP/2: `h2load -c 16 -m 16 -D S --warm-up-time 1` over h2c (req/s;
//!   Debian's h2load 1.52 has no per-request log, so for HTTP/2 the table
//!   shows h2load's mean and max "time for request" instead of p50/p99);
//! - TLS handshakes: `wrk -H "Connection: close"` over https, so every
//!   request is a new connection and a full handshake (conn/s);
//! - memory: RSS growth of the peer's processes with 1000 idle keep-alive
//!   client connections (each made one request), per connection, measured
//!   on a freshly started peer (after the loads, pools and allocator
//!   caches would hide it).
//!
//! plus the load generators' ceiling: the same loads straight to the
//! backend (no proxy). Then the ratios xlb/HAProxy and xlb/nginx.
//!
//! Then "instructions per request", a figure that does not move with the
//! machine's other load (req/s on a shared 2-vCPU VM varies by ±15% from
//! run to run): each peer runs under `valgrind --tool=callgrind` in the
//! lb namespace, as one process with one thread (xlb `l7_threads = 1`,
//! HAProxy `nbthread 1` with `-db`, nginx `master_process off`; callgrind
//! traces only the process it starts), and, once it answers (allowed 90
//! s), serves a fixed number of requests from h2load: HTTP/1.1
//! `h2load --h1 -n N -c 16`, h2c `h2load -n N -c 4 -m 16`. SIGTERM stops
//! it and callgrind writes its total of user-space instructions (`Ir`).
//! Two runs, N = 1000 and N = 6000, per peer and protocol give
//! `(Ir(6000) - Ir(1000)) / 5000`, free of start-up and shutdown. Only
//! the proxy's own user space is counted, not the kernel (nor `xlb`'s
//! XDP program, so `xlb` and `xlb-l7` should agree). Printed with the
//! ratios xlb/HAProxy and xlb/nginx; about a minute in all (each run
//! takes a few seconds); `XLB_BENCH_INSTRUCTIONS=0` skips it. One more
//! peer is counted there, `xlb-log`: `xlb-l7` with its access log on (to
//! a file), and its difference to `xlb-l7` is what a logged request
//! costs.
//!
//! Two xlb rows: `xlb` is the daemon as deployed, its XDP program on the
//! lb's interface, so every packet into the lb namespace runs it first;
//! `xlb-l7` is the same daemon with no `[[xdp]]` (the L7 tier alone), the
//! environment HAProxy and nginx run in. On a veth an XDP program costs a
//! copy of every received packet into a page-pool page (the kernel's veth
//! XDP path needs the headroom); a real NIC runs XDP before any skb
//! exists, so the difference between the two rows is mostly the lab's.
//! The machine runs client, proxy and backend on the same cores, so the
//! numbers are for comparison within one run.
//!
//! Every load runs in `XLB_BENCH_ROUNDS` rounds (default 3) that take the
//! peers in turn; the table shows the median of each figure.
//!
//! Environment: `XLB_BENCH_BACKEND` (`hyper`, the default, or `nginx`:
//! nginx 1.22 in `backend1`, one worker per core, serving the same 1024
//! bytes from a file; proxies' tail latency depends on the server behind
//! them, see the README), `XLB_BENCH_SECS` (each load's window, default 6),
//! `XLB_BENCH_PEERS` (which peers, default `xlb,xlb-l7,haproxy,nginx`),
//! `XLB_BENCH_LOADS` (which loads, default `h1,h2,tls,rss`; the figures
//! of the others show as NaN),
//! `XLB_BENCH_INSTRUCTIONS` (`0`: no callgrind runs), `XLB_BIN_PLAIN` (a
//! second `xlb`, counted by callgrind as `xlb-plain`: the xtask passes
//! the release build without profile guidance), `XLB_BENCH_TRAIN=1` (the
//! profile-guided build's training run: `xlb` alone, one round, then a
//! clean stop). Needs root, `wrk`,
//! `h2load`, `haproxy`, `nginx` and `valgrind` (`cargo xtask bench http`
//! installs them) and the release `xlb` (`$XLB_BIN`, set by the xtask).

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xlb_lab::{
    L4Topology, Lab, Namespace, Process, TempDir, XlbDaemon, check_root,
    http_backend::HttpBackend,
    l7::{NO_ACCESS_LOG, TestCa, VIP, frontend_toml, head_toml_with, pool_toml, read_response},
    xlb_daemon::XLB_READY_TIMEOUT,
    xlb_path,
};

const BACKEND: &str = "198.18.1.11:8080";
const PATH: &str = "/text/1024";
const IDLE_CONNS: usize = 1000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench http: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// CPU time per request in µs: user + system, and user alone (the
/// proxy's own code; the system part is mostly the kernel's TCP path,
/// much the same for every peer).
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    total_us: f64,
    user_us: f64,
}

impl Cpu {
    const NONE: Cpu = Cpu {
        total_us: f64::NAN,
        user_us: f64::NAN,
    };

    /// The CPU the peer used while `requests` were served.
    fn per_request(before: Ticks, after: Ticks, requests: f64) -> Cpu {
        // Clock ticks are 10 ms.
        let us = |t: u64| t as f64 * 10_000.0 / requests;
        Cpu {
            total_us: us((after.user + after.system).saturating_sub(before.user + before.system)),
            user_us: us(after.user.saturating_sub(before.user)),
        }
    }

    fn cell(&self) -> String {
        if self.total_us.is_nan() {
            "-".into()
        } else {
            format!("{:.1} ({:.1})", self.total_us, self.user_us)
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Row {
    name: String,
    h1_rps: f64,
    h1_p50: f64,
    h1_p99: f64,
    /// The peer's CPU time per HTTP/1.1 request, in µs: less sensitive
    /// to other load on the machine than req/s.
    h1_cpu: Cpu,
    h2_rps: f64,
    h2_mean: f64,
    h2_max: f64,
    h2_cpu: Cpu,
    tls_cps: f64,
    /// Bytes of RSS per idle client connection (None for the direct row).
    rss_per_conn: Option<f64>,
}

fn secs() -> u64 {
    std::env::var("XLB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

/// Which loads run: `XLB_BENCH_LOADS`, a comma-separated subset of
/// `h1,h2,tls,rss` (the default, all of them); the figures of the others
/// show as NaN.
#[derive(Clone, Copy)]
struct Loads {
    h1: bool,
    h2: bool,
    tls: bool,
    rss: bool,
}

impl Loads {
    const ALL: Loads = Loads {
        h1: true,
        h2: true,
        tls: true,
        rss: true,
    };

    fn from_env() -> Result<Loads> {
        let Ok(list) = std::env::var("XLB_BENCH_LOADS") else {
            return Ok(Loads::ALL);
        };
        let mut loads = Loads {
            h1: false,
            h2: false,
            tls: false,
            rss: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "h1" => loads.h1 = true,
                "h2" => loads.h2 = true,
                "tls" => loads.tls = true,
                "rss" => loads.rss = true,
                other => bail!("XLB_BENCH_LOADS: unknown load {other:?} (h1, h2, tls, rss)"),
            }
        }
        Ok(loads)
    }
}

/// `XLB_BENCH_ROUNDS` (default 3).
fn rounds() -> usize {
    std::env::var("XLB_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

/// Each figure's median over the rounds (NaN stays NaN).
fn median_row(name: &str, rows: &[Row]) -> Row {
    let median = |f: &dyn Fn(&Row) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Row {
        name: name.to_string(),
        h1_rps: median(&|r| r.h1_rps),
        h1_p50: median(&|r| r.h1_p50),
        h1_p99: median(&|r| r.h1_p99),
        h1_cpu: Cpu {
            total_us: median(&|r| r.h1_cpu.total_us),
            user_us: median(&|r| r.h1_cpu.user_us),
        },
        h2_rps: median(&|r| r.h2_rps),
        h2_mean: median(&|r| r.h2_mean),
        h2_max: median(&|r| r.h2_max),
        h2_cpu: Cpu {
            total_us: median(&|r| r.h2_cpu.total_us),
            user_us: median(&|r| r.h2_cpu.user_us),
        },
        tls_cps: median(&|r| r.tls_cps),
        rss_per_conn: None,
    }
}

/// The server behind every peer, kept running for the whole bench.
enum Backend {
    /// xlb-lab's own hyper server, in this process.
    Hyper { _server: HttpBackend },
    /// nginx serving the same response from a file.
    Nginx { _process: xlb_lab::process::Process },
}

/// `XLB_BENCH_BACKEND`: `hyper` (default) or `nginx`.
fn backend_kind() -> Result<String> {
    let kind = std::env::var("XLB_BENCH_BACKEND").unwrap_or_else(|_| "hyper".into());
    match kind.trim() {
        k @ ("hyper" | "nginx") => Ok(k.to_string()),
        other => bail!("XLB_BENCH_BACKEND={other}: expected hyper or nginx"),
    }
}

/// Starts the `kind` of backend ([`backend_kind`]) in `backend1`: both answer
/// `GET /text/1024` with the same 1024 bytes of `text/plain` and keep
/// connections alive; nginx runs one worker per core.
fn start_backend(topo: &L4Topology, dir: &TempDir, threads: usize, kind: &str) -> Result<Backend> {
    if kind == "hyper" {
        let server = HttpBackend::start(topo.backend(1), "web1", BACKEND.parse()?)?;
        return Ok(Backend::Hyper { _server: server });
    }
    let root = dir.path().join("backend-root");
    std::fs::create_dir_all(root.join("text"))?;
    std::fs::write(
        root.join("text/1024"),
        xlb_lab::http_backend::text_body(1024),
    )?;
    let d = dir.path().display();
    let text = format!(
        r#"worker_processes {threads};
daemon off;
pid {d}/backend-nginx.pid;
error_log {d}/backend-nginx-error.log;
events {{ worker_connections 8000; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen {BACKEND} reuseport;
        location / {{ root {root}; default_type "text/plain; charset=utf-8"; }}
    }}
}}
"#,
        root = root.display()
    );
    let config = dir.write("backend-nginx.conf", text)?;
    let process = topo
        .backend(1)
        .spawn(&["nginx", "-c", &config.to_string_lossy()])?;
    let url = format!("http://{BACKEND}{PATH}");
    wait_ready(topo.client(), &url).context("the nginx backend did not start")?;
    Ok(Backend::Nginx { _process: process })
}

/// `XLB_BENCH_PEERS` (comma-separated, default `xlb,xlb-l7,haproxy,nginx`).
fn peers() -> Vec<String> {
    std::env::var("XLB_BENCH_PEERS")
        .unwrap_or_else(|_| "xlb,xlb-l7,haproxy,nginx".into())
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn run() -> Result<()> {
    check_root()?;
    // A mistyped load fails here, before the lab is built.
    let loads = Loads::from_env()?;
    let valgrind = (instructions_enabled() && !training()).then_some("valgrind");
    for tool in ["wrk", "h2load", "haproxy", "nginx"]
        .into_iter()
        .chain(valgrind)
    {
        if which(tool).is_none() {
            bail!("{tool} not found: run `cargo xtask bench http`, which installs it");
        }
    }
    raise_nofile();
    let threads = thread::available_parallelism().map_or(2, |n| n.get());
    let topo = L4Topology::build(Lab::new("benchhttp")?, 1)?;
    let dir = TempDir::new("benchhttp")?;
    let backend = backend_kind()?;
    let _backend = start_backend(&topo, &dir, threads, &backend)?;
    let ca = TestCa::new("xlb bench CA")?;
    let (cert, key) = ca.issue(&["bench.xlb.test", VIP])?;
    dir.write("cert.pem", &cert)?;
    dir.write("key.pem", &key)?;
    dir.write("combined.pem", format!("{cert}{key}"))?;
    let client = topo.client();
    let s = secs();
    eprintln!(
        "bench http: {threads} threads per peer, {s} s per load, response {PATH} (1024 bytes) from the {backend} backend"
    );

    let direct_h1 = format!("http://{BACKEND}{PATH}");
    let urls = (
        format!("http://{VIP}:8080{PATH}"),
        format!("http://{VIP}:8081{PATH}"),
        format!("https://{VIP}:8443{PATH}"),
    );
    if training() {
        return train(&topo, &dir, &urls, threads);
    }
    let peers = peers();
    // Rounds take every peer in turn, so drift in the machine's other
    // load spreads over all of them; the table shows each figure's median.
    let rounds = rounds();
    let mut samples: Vec<(String, Vec<Row>)> = std::iter::once("direct")
        .chain(peers.iter().map(String::as_str))
        .map(|p| (p.to_string(), Vec::new()))
        .collect();
    for round in 1..=rounds {
        eprintln!("bench http: round {round}/{rounds}");
        let direct_urls = (direct_h1.as_str(), direct_h1.as_str(), None);
        let mut direct = measure(client, "direct", direct_urls, loads, threads, &[])?;
        direct.h1_cpu = Cpu::NONE;
        direct.h2_cpu = Cpu::NONE;
        direct.tls_cps = f64::NAN;
        if backend == "nginx" {
            // nginx serves cleartext HTTP/2 only on a port of its own:
            // no h2c ceiling to show.
            (direct.h2_rps, direct.h2_mean, direct.h2_max) = (f64::NAN, f64::NAN, f64::NAN);
        }
        samples[0].1.push(direct);
        for (i, peer) in peers.iter().enumerate() {
            let peer = peer.as_str();
            let running = start_peer(&topo, peer, &dir, threads)?;
            wait_ready(client, &urls.0)
                .with_context(|| format!("{peer} did not start: {}", running.stderr()))?;
            let row = measure(
                client,
                peer,
                (&urls.0, &urls.1, Some(&urls.2)),
                loads,
                threads,
                &running.pids(),
            )?;
            eprintln!("{peer}: {row:?}");
            samples[i + 1].1.push(row);
            drop(running);
            thread::sleep(Duration::from_millis(500));
        }
    }
    let mut rows: Vec<Row> = samples.iter().map(|(n, r)| median_row(n, r)).collect();
    for (row, peer) in rows.iter_mut().skip(1).zip(&peers).filter(|_| loads.rss) {
        // Memory on a fresh process: after the loads, pools and allocator
        // caches would hide the cost of new connections.
        let peer = peer.as_str();
        let running = start_peer(&topo, peer, &dir, threads)?;
        wait_ready(client, &urls.0)
            .with_context(|| format!("{peer} did not start: {}", running.stderr()))?;
        row.rss_per_conn = Some(idle_memory(client, &running.pids())?);
        drop(running);
        thread::sleep(Duration::from_millis(500));
    }
    print_table(&rows);
    if instructions_enabled() {
        // With xlb among the peers, also xlb with its access log on: what
        // a logged request costs (the table's peers all log nothing); and
        // the plain release build beside the profile-guided one.
        let with_xlb = peers.iter().any(|p| p.starts_with("xlb"));
        let logged = with_xlb.then(|| "xlb-log".to_string());
        let plain = (with_xlb && plain_xlb_path().is_some()).then(|| "xlb-plain".to_string());
        let counted = peers
            .iter()
            .chain(logged.as_ref())
            .chain(plain.as_ref())
            .map(|peer| Ok((peer.clone(), instructions(&topo, &dir, peer, &urls)?)))
            .collect::<Result<Vec<_>>>()?;
        print_instructions(&counted);
    }
    Ok(())
}

/// `XLB_BENCH_TRAIN=1`: the profile-guided build's training run (see
/// `xtask/src/pgo.rs`).
fn training() -> bool {
    std::env::var("XLB_BENCH_TRAIN").is_ok_and(|v| v.trim() == "1")
}

/// `XLB_BIN_PLAIN`: the release `xlb` without profile guidance, counted
/// as `xlb-plain` beside the `xlb` of `XLB_BIN`.
fn plain_xlb_path() -> Option<PathBuf> {
    std::env::var_os("XLB_BIN_PLAIN").map(PathBuf::from)
}

/// The training run: the `xlb` peer (`XLB_BIN`, an instrumented build)
/// serves one round of the loads the table measures, then stops on
/// SIGTERM, so that it writes its profile at exit.
fn train(
    topo: &L4Topology,
    dir: &TempDir,
    urls: &(String, String, String),
    threads: usize,
) -> Result<()> {
    let cmd = write_peer_config("xlb", dir, threads, false)?;
    let argv: Vec<&str> = cmd.argv.iter().map(String::as_str).collect();
    let mut proc = topo.lb().spawn(&argv)?;
    let client = topo.client();
    wait_ready_within(client, &urls.0, Duration::from_secs(60), 5)
        .with_context(|| format!("xlb did not start: {}", proc.stderr_lines().join("\n")))?;
    // Every load, whatever `XLB_BENCH_LOADS` says: the profile is of all
    // of them.
    measure(
        client,
        "xlb (training)",
        (&urls.0, &urls.1, Some(&urls.2)),
        Loads::ALL,
        threads,
        &[proc.pid()],
    )?;
    stop_on_sigterm(&mut proc)?;
    eprintln!("bench http: training done");
    Ok(())
}

/// Sends SIGTERM and waits (60 s at most) for the process to exit, as a
/// clean exit is when callgrind and LLVM's profiler write their files.
fn stop_on_sigterm(proc: &mut Process) -> Result<()> {
    // SAFETY: plain syscall on our own unreaped child.
    unsafe { libc::kill(proc.pid() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while proc.is_running() {
        if Instant::now() >= deadline {
            bail!(
                "still runs 60 s after SIGTERM: {}",
                proc.stderr_lines().join("\n")
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn which(tool: &str) -> Option<String> {
    std::env::var("PATH").ok()?.split(':').find_map(|d| {
        let p = Path::new(d).join(tool);
        p.is_file().then(|| p.display().to_string())
    })
}

fn raise_nofile() {
    // SAFETY: plain syscalls on our own limits; children inherit them.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

enum Running {
    Xlb(XlbDaemon),
    Proc(Process),
}

impl Running {
    fn stderr(&self) -> String {
        match self {
            Running::Xlb(d) => d.stderr(),
            Running::Proc(p) => p.stderr_lines().join("\n"),
        }
    }

    /// The peer's processes: the main one and its children (nginx workers).
    fn pids(&self) -> Vec<u32> {
        let main = match self {
            Running::Xlb(d) => d.pid(),
            Running::Proc(p) => p.pid(),
        };
        let mut pids = vec![main];
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ppid = stat
                    .rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(main) {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

fn start_peer(topo: &L4Topology, peer: &str, dir: &TempDir, threads: usize) -> Result<Running> {
    let lb = topo.lb();
    let cmd = write_peer_config(peer, dir, threads, false)?;
    // `xlb-plain` is another binary than the one `XlbDaemon` runs.
    if peer.starts_with("xlb") && peer != "xlb-plain" {
        Ok(Running::Xlb(lb.spawn_xlb(&cmd.config, XLB_READY_TIMEOUT)?))
    } else {
        let argv: Vec<&str> = cmd.argv.iter().map(String::as_str).collect();
        Ok(Running::Proc(lb.spawn(&argv)?))
    }
}

/// A peer's config file and the command that runs it in the foreground.
struct PeerCommand {
    config: PathBuf,
    argv: Vec<String>,
}

/// Writes `peer`'s config in `dir`: `threads` threads or worker processes
/// (xlb keeps its default, one per core, unless `one_process`). With
/// `one_process` every peer runs in the one process its command starts,
/// with one thread (xlb `l7_threads = 1`, HAProxy `nbthread 1`, nginx
/// `master_process off`, which serves from the master process itself):
/// what callgrind needs, as it traces only the process it starts.
fn write_peer_config(
    peer: &str,
    dir: &TempDir,
    threads: usize,
    one_process: bool,
) -> Result<PeerCommand> {
    let d = dir.path().display();
    let threads = if one_process { 1 } else { threads };
    match peer {
        "xlb" | "xlb-l7" | "xlb-log" | "xlb-plain" => {
            // `xlb-log`: `xlb-l7` with its access log on (to a file), to
            // count what a logged request costs.
            let log = if peer == "xlb-log" {
                format!("access_log = \"{d}/access.log\"\n")
            } else {
                NO_ACCESS_LOG.to_string()
            };
            // Only X-Forwarded-For, as HAProxy and nginx add below.
            let fe_keys = format!("{log}forwarded_headers = [\"x-forwarded-for\"]\n");
            let tls = format!("tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n{fe_keys}");
            let keys = if one_process { "l7_threads = 1\n" } else { "" };
            let head = if peer != "xlb" {
                // No XDP program: the L7 tier alone.
                format!("{}{keys}\n", dir.global_toml("benchhttp"))
            } else {
                head_toml_with(dir, "benchhttp", keys)
            };
            let text = format!(
                "{}{}{}{}{}",
                head,
                pool_toml("web", "", &[("web1", BACKEND)]),
                frontend_toml("h1", 8080, "web", &fe_keys),
                frontend_toml("h2c", 8081, "web", &format!("h2c = true\n{fe_keys}")),
                frontend_toml("tls", 8443, "web", &tls),
            );
            let config = dir.write_config(&text)?;
            let binary = match plain_xlb_path() {
                Some(plain) if peer == "xlb-plain" => plain,
                _ => xlb_path()?,
            };
            // As `XlbDaemon` runs it.
            let argv = [
                "env",
                "NO_COLOR=1",
                "RUST_LOG=info",
                &binary.to_string_lossy(),
                "run",
                "--config",
                &config.to_string_lossy(),
            ]
            .map(String::from)
            .to_vec();
            Ok(PeerCommand { config, argv })
        }
        "haproxy" => {
            let text = format!(
                r#"global
    nbthread {threads}
    maxconn 8000
    tune.ssl.default-dh-param 2048

defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend fe
    bind {VIP}:8080
    bind {VIP}:8081 proto h2
    bind {VIP}:8443 ssl crt {d}/combined.pem alpn h2,http/1.1
    default_backend be

backend be
    http-reuse always
    server web1 {BACKEND}
"#
            );
            let config = dir.write("haproxy.cfg", text)?;
            // -db: foreground, no master-worker.
            let argv = ["haproxy", "-db", "-f", &config.to_string_lossy()]
                .map(String::from)
                .to_vec();
            Ok(PeerCommand { config, argv })
        }
        "nginx" => {
            let master = if one_process {
                "master_process off;\n"
            } else {
                ""
            };
            let text = format!(
                r#"worker_processes {threads};
{master}worker_rlimit_nofile 20000;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 8000; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream be {{
        server {BACKEND};
        keepalive 256;
    }}
    server {{
        listen {VIP}:8080 reuseport;
        listen {VIP}:8081 http2;
        listen {VIP}:8443 ssl http2;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        http2_max_requests 1000000;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"#
            );
            let config = dir.write("nginx.conf", text)?;
            let argv = [
                "nginx",
                "-p",
                &d.to_string(),
                "-c",
                &config.to_string_lossy(),
            ]
            .map(String::from)
            .to_vec();
            Ok(PeerCommand { config, argv })
        }
        _ => bail!("unknown peer {peer}"),
    }
}

/// Waits (at most 15 s) until `url` answers 200 from the client namespace.
fn wait_ready(client: &Namespace, url: &str) -> Result<()> {
    wait_ready_within(client, url, Duration::from_secs(15), 1)
}

/// Waits at most `timeout` until `url` answers 200, each try allowed
/// `try_secs`.
fn wait_ready_within(
    client: &Namespace,
    url: &str,
    timeout: Duration,
    try_secs: u64,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let max_time = try_secs.to_string();
    loop {
        let out = client.output(
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                &max_time,
                url,
            ],
            Duration::from_secs(try_secs + 4),
        )?;
        if String::from_utf8_lossy(&out.stdout) == "200" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{url} does not answer 200");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `loads` against `urls` (HTTP/1.1, h2c, TLS if any).
fn measure(
    client: &Namespace,
    name: &str,
    urls: (&str, &str, Option<&str>),
    loads: Loads,
    threads: usize,
    pids: &[u32],
) -> Result<Row> {
    let (h1, h2, tls) = urls;
    let s = secs();
    let t = threads.to_string();
    let d = format!("{s}s");
    let mut row = Row {
        name: name.to_string(),
        h1_rps: f64::NAN,
        h1_p50: f64::NAN,
        h1_p99: f64::NAN,
        h1_cpu: Cpu::NONE,
        h2_rps: f64::NAN,
        h2_mean: f64::NAN,
        h2_max: f64::NAN,
        h2_cpu: Cpu::NONE,
        tls_cps: f64::NAN,
        rss_per_conn: None,
    };
    if loads.h1 {
        let cpu_before = cpu_ticks(pids);
        let started = Instant::now();
        let out = run_tool(
            client,
            &["wrk", "-t", &t, "-c", "64", "-d", &d, "--latency", h1],
            s,
        )?;
        let took = started.elapsed().as_secs_f64();
        (row.h1_rps, row.h1_p50, row.h1_p99) =
            parse_wrk(&out).with_context(|| format!("{name} h1: {out}"))?;
        // wrk's own start-up is in `took`, a bias equal for every peer.
        row.h1_cpu = Cpu::per_request(cpu_before, cpu_ticks(pids), row.h1_rps * took);
    }
    if loads.h2 {
        let cpu_before = cpu_ticks(pids);
        let started = Instant::now();
        let out = run_tool(
            client,
            &[
                "h2load",
                "-c",
                "16",
                "-m",
                "16",
                "-t",
                &t,
                "-D",
                &s.to_string(),
                "--warm-up-time",
                "1",
                h2,
            ],
            s + 2,
        )?;
        let took = started.elapsed().as_secs_f64();
        (row.h2_rps, row.h2_mean, row.h2_max) =
            parse_h2load(&out).with_context(|| format!("{name} h2: {out}"))?;
        // h2load's warm-up second serves requests too but is not in its rate.
        row.h2_cpu = Cpu::per_request(cpu_before, cpu_ticks(pids), row.h2_rps * took);
    }
    if let Some(tls) = tls.filter(|_| loads.tls) {
        let out = run_tool(
            client,
            &[
                "wrk",
                "-t",
                &t,
                "-c",
                "32",
                "-d",
                &d,
                "-H",
                "Connection: close",
                tls,
            ],
            s,
        )?;
        row.tls_cps = parse_wrk(&out)
            .with_context(|| format!("{name} tls: {out}"))?
            .0;
    }
    if tls.is_none() {
        eprintln!("{name}: {row:?}");
    }
    Ok(row)
}

fn run_tool(ns: &Namespace, cmd: &[&str], secs: u64) -> Result<String> {
    let out = ns.output(cmd, Duration::from_secs(secs + 30))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{} failed: {}\n{text}",
            cmd[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// wrk's `Requests/sec` and its 50% and 99% latencies in ms.
fn parse_wrk(out: &str) -> Result<(f64, f64, f64)> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .context("no Requests/sec")?
        .trim()
        .parse()?;
    let pct = |p: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .map(|v| duration_ms(v.trim()))
            .unwrap_or(f64::NAN)
    };
    let errors = out
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if let Some(e) = errors {
        eprintln!("  wrk: {}", e.trim());
    }
    Ok((rps, pct("50%"), pct("99%")))
}

/// `1.23ms`, `456.00us`, `1.02s` -> ms.
fn duration_ms(v: &str) -> f64 {
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, f64::NAN)
    };
    num.parse::<f64>().map_or(f64::NAN, |n| n * mult)
}

/// h2load's `finished in ..., N req/s` and its mean and max "time for
/// request" (ms); warns when a request failed.
fn parse_h2load(out: &str) -> Result<(f64, f64, f64)> {
    let line = out
        .lines()
        .find(|l| l.starts_with("finished in"))
        .context("no 'finished in' line")?;
    let rps = line
        .split(',')
        .find_map(|p| p.trim().strip_suffix(" req/s"))
        .context("no req/s")?
        .trim()
        .parse()?;
    for (prefix, ok) in [
        ("status codes:", " 0 3xx, 0 4xx, 0 5xx"),
        ("requests:", " 0 failed, 0 errored, 0 timeout"),
    ] {
        if let Some(l) = out
            .lines()
            .find(|l| l.starts_with(prefix) && !l.contains(ok))
        {
            eprintln!("  h2load: {l}");
        }
    }
    // time for request:   min   max   mean   sd   +/- sd
    let t: Vec<f64> = out
        .lines()
        .find_map(|l| l.strip_prefix("time for request:"))
        .map(|l| l.split_whitespace().take(3).map(duration_ms).collect())
        .unwrap_or_default();
    let (max, mean) = (
        t.get(1).copied().unwrap_or(f64::NAN),
        t.get(2).copied().unwrap_or(f64::NAN),
    );
    Ok((rps, mean, max))
}

/// CPU time in clock ticks (1/100 s).
#[derive(Debug, Default, Clone, Copy)]
struct Ticks {
    user: u64,
    system: u64,
}

/// utime and stime of `pids`.
fn cpu_ticks(pids: &[u32]) -> Ticks {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let rest = s.rsplit_once(") ")?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields after the command: state is 0, utime 11, stime 12.
            Some((
                f.get(11)?.parse::<u64>().ok()?,
                f.get(12)?.parse::<u64>().ok()?,
            ))
        })
        .fold(Ticks::default(), |t, (u, s)| Ticks {
            user: t.user + u,
            system: t.system + s,
        })
}

fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum()
}

/// RSS growth per idle keep-alive client connection (bytes).
fn idle_memory(client: &Namespace, pids: &[u32]) -> Result<f64> {
    thread::sleep(Duration::from_millis(500));
    let before = rss_kb(pids);
    let addr: SocketAddr = format!("{VIP}:8080").parse()?;
    let conns = client.with(|| -> Result<Vec<TcpStream>> {
        let mut conns = Vec::with_capacity(IDLE_CONNS);
        for _ in 0..IDLE_CONNS {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(format!("GET {PATH} HTTP/1.1\r\nHost: {VIP}\r\n\r\n").as_bytes())?;
            let mut r = BufReader::new(s.try_clone()?);
            let (status, _) = read_response(&mut r)?;
            if status != 200 {
                bail!("status {status}");
            }
            if !r.buffer().is_empty() {
                let _ = r.fill_buf();
            }
            conns.push(s);
        }
        Ok(conns)
    })??;
    thread::sleep(Duration::from_millis(1000));
    let after = rss_kb(pids);
    drop(conns);
    let per = (after.saturating_sub(before) as f64) * 1024.0 / IDLE_CONNS as f64;
    eprintln!("  RSS {before} KB -> {after} KB with {IDLE_CONNS} idle connections");
    Ok(per)
}

/// The request counts of the two callgrind runs of each peer and
/// protocol: the difference of their totals is what one request costs.
const CALLGRIND_REQUESTS: [u64; 2] = [1000, 6000];

/// How long a peer under callgrind may take to answer its first request.
const CALLGRIND_START: Duration = Duration::from_secs(90);

/// `XLB_BENCH_INSTRUCTIONS` (default on): `0` skips the callgrind runs.
fn instructions_enabled() -> bool {
    std::env::var("XLB_BENCH_INSTRUCTIONS").map_or(true, |v| v.trim() != "0")
}

/// User-space instructions per proxied request.
#[derive(Debug, Clone, Copy)]
struct Instructions {
    h1: f64,
    h2: f64,
}

/// `peer`'s instructions per request over HTTP/1.1 and h2c: two runs
/// under callgrind for each, [`CALLGRIND_REQUESTS`] requests, and the
/// difference of their totals divided by the difference of the counts
/// (start-up, the readiness probe and shutdown cancel out).
fn instructions(
    topo: &L4Topology,
    dir: &TempDir,
    peer: &str,
    urls: &(String, String, String),
) -> Result<Instructions> {
    let [few, many] = CALLGRIND_REQUESTS;
    let per_request = |h2: bool| -> Result<f64> {
        let mut totals = [0u64; 2];
        for (total, n) in totals.iter_mut().zip(CALLGRIND_REQUESTS) {
            let proto = if h2 { "h2c" } else { "HTTP/1.1" };
            eprintln!("bench http: instructions: {peer} {proto}, {n} requests under callgrind");
            let started = Instant::now();
            *total = callgrind_total(topo, dir, peer, h2, n, urls)
                .with_context(|| format!("{peer} {proto} under callgrind"))?;
            eprintln!(
                "  {total} instructions in all ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
        Ok((totals[1] as f64 - totals[0] as f64) / (many - few) as f64)
    };
    Ok(Instructions {
        h1: per_request(false)?,
        h2: per_request(true)?,
    })
}

/// Starts `peer` (one process, one thread) under
/// `valgrind --tool=callgrind` in the lb namespace, waits until it
/// answers, sends it `n` requests with h2load (HTTP/1.1 over 16
/// connections, or h2c over 4 connections of 16 streams), stops it with
/// SIGTERM and returns the instructions callgrind counted (its output's
/// `summary:` or `totals:` line, written at exit).
fn callgrind_total(
    topo: &L4Topology,
    dir: &TempDir,
    peer: &str,
    h2: bool,
    n: u64,
    urls: &(String, String, String),
) -> Result<u64> {
    let cmd = write_peer_config(peer, dir, 1, true)?;
    let file = dir.path().join(format!("callgrind-{peer}.out"));
    let _ = std::fs::remove_file(&file);
    let out_file = format!("--callgrind-out-file={}", file.display());
    // valgrind traces only the program it starts, so a leading
    // `env K=V ...` goes before it.
    let env = if cmd.argv.first().is_some_and(|a| a == "env") {
        1 + cmd.argv[1..].iter().take_while(|a| a.contains('=')).count()
    } else {
        0
    };
    let argv: Vec<&str> = cmd.argv[..env]
        .iter()
        .map(String::as_str)
        .chain(["valgrind", "--tool=callgrind", &out_file])
        .chain(cmd.argv[env..].iter().map(String::as_str))
        .collect();
    let mut proc = topo.lb().spawn(&argv)?;
    let client = topo.client();

    let deadline = Instant::now() + CALLGRIND_START;
    loop {
        if !proc.is_running() {
            bail!("exited: {}", proc.stderr_lines().join("\n"));
        }
        // A generous limit per try: a timed-out probe would leave work
        // in the peer that differs from run to run.
        match wait_ready_within(client, &urls.0, Duration::from_secs(5), 20) {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "not ready within {CALLGRIND_START:?}: {}",
                        proc.stderr_lines().join("\n")
                    )
                });
            }
        }
    }

    let n_arg = n.to_string();
    let load: &[&str] = if h2 {
        &["h2load", "-n", &n_arg, "-c", "4", "-m", "16", &urls.1]
    } else {
        &["h2load", "--h1", "-n", &n_arg, "-c", "16", &urls.0]
    };
    let out = run_tool(client, load, 120)?;
    let succeeded = out
        .lines()
        .find_map(|l| l.strip_prefix("requests:"))
        .and_then(|l| {
            l.split(',')
                .find_map(|p| p.trim().strip_suffix(" succeeded"))
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    if succeeded != Some(n) {
        bail!("h2load: {succeeded:?} of {n} requests succeeded:\n{out}");
    }

    stop_on_sigterm(&mut proc)?;
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "reading {} ({})",
            file.display(),
            proc.stderr_lines().join("\n")
        )
    })?;
    let total = ["summary:", "totals:"]
        .iter()
        .find_map(|key| text.lines().find_map(|l| l.strip_prefix(key)))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no summary or totals line in {}", file.display()))?;
    let _ = std::fs::remove_file(&file);
    Ok(total)
}

fn print_instructions(rows: &[(String, Instructions)]) {
    let [few, many] = CALLGRIND_REQUESTS;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\ninstructions per request (callgrind: the proxy's user space, one thread; \
         (Ir({many} requests) - Ir({few})) / {})",
        many - few
    );
    let _ = writeln!(t, "{:<9} {:>10} {:>10}", "peer", "h1", "h2");
    for (name, i) in rows {
        let _ = writeln!(t, "{name:<9} {:>10.0} {:>10.0}", i.h1, i.h2);
    }
    let find = |n: &str| rows.iter().find(|(name, _)| name == n).map(|(_, i)| i);
    for_each_ratio(find, |pair, x, o| {
        let _ = writeln!(
            t,
            "{pair:<14} instructions/req h1 x{:.2}, h2 x{:.2}",
            x.h1 / o.h1,
            x.h2 / o.h2,
        );
    });
    if let (Some(logged), Some(quiet)) = (find("xlb-log"), find("xlb-l7")) {
        let _ = writeln!(
            t,
            "access log on (xlb-log - xlb-l7): h1 {:+.0}, h2 {:+.0} instructions/req",
            logged.h1 - quiet.h1,
            logged.h2 - quiet.h2,
        );
    }
    println!("{t}");
}

/// Calls `line` with "me/other" and both figures for each xlb peer
/// against each other peer that `find` has.
fn for_each_ratio<'a, T: 'a>(
    find: impl Fn(&str) -> Option<&'a T>,
    mut line: impl FnMut(String, &T, &T),
) {
    for me in ["xlb", "xlb-l7"] {
        let Some(x) = find(me) else { continue };
        for other in ["haproxy", "nginx"] {
            if let Some(o) = find(other) {
                line(format!("{me}/{other}"), x, o);
            }
        }
    }
}

fn print_table(rows: &[Row]) {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n{:<9} {:>10} {:>8} {:>8} {:>12} | {:>10} {:>8} {:>8} {:>12} | {:>9} | {:>12}",
        "peer",
        "h1 req/s",
        "p50 ms",
        "p99 ms",
        "CPU us (usr)",
        "h2 req/s",
        "mean ms",
        "max ms",
        "CPU us (usr)",
        "tls con/s",
        "RSS/idle con"
    );
    for r in rows {
        let rss = r
            .rss_per_conn
            .map_or("-".to_string(), |b| format!("{:.1} KB", b / 1024.0));
        let tls = if r.tls_cps.is_nan() {
            "-".to_string()
        } else {
            format!("{:.0}", r.tls_cps)
        };
        let _ = writeln!(
            t,
            "{:<9} {:>10.0} {:>8.2} {:>8.2} {:>12} | {:>10.0} {:>8.2} {:>8.2} {:>12} | {:>9} | {:>12}",
            r.name,
            r.h1_rps,
            r.h1_p50,
            r.h1_p99,
            r.h1_cpu.cell(),
            r.h2_rps,
            r.h2_mean,
            r.h2_max,
            r.h2_cpu.cell(),
            tls,
            rss
        );
    }
    let find = |n: &str| rows.iter().find(|r| r.name == n);
    for_each_ratio(find, |pair, x, o| {
        let _ = writeln!(
            t,
            "{pair:<14} h1 req/s x{:.2}, p99 x{:.2}, CPU/req x{:.2}; h2 req/s x{:.2}, mean x{:.2}, CPU/req x{:.2}; tls x{:.2}; RSS/conn x{:.2}",
            x.h1_rps / o.h1_rps,
            x.h1_p99 / o.h1_p99,
            x.h1_cpu.total_us / o.h1_cpu.total_us,
            x.h2_rps / o.h2_rps,
            x.h2_mean / o.h2_mean,
            x.h2_cpu.total_us / o.h2_cpu.total_us,
            x.tls_cps / o.tls_cps,
            x.rss_per_conn.unwrap_or(f64::NAN) / o.rss_per_conn.unwrap_or(f64::NAN),
        );
    });
    println!("{t}");
}
