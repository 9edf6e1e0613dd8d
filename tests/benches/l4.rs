//! `cargo xtask bench l4`: the same client load through xlb (XDP NAT) and
//! through nftables DNAT, in two identical `L4Topology` labs (client, lb,
//! three backends on a bridge) built side by side, and the ratio.
//!
//! - xlb (lab `xlb-benchl4_xlb-*`): `examples/lab.toml` (TCP VIP
//!   198.18.0.100:80 to the three `lab-backend` web servers, Maglev, HTTP
//!   health checks, `mode = "auto"`) plus a UDP VIP 198.18.0.100:5140 to
//!   the three `udp-sink`s (port 5140, no health check); `xlb run` in lb.
//! - nftables (lab `xlb-benchl4_nft-*`): no xlb; in lb a `prerouting` nat
//!   chain DNATs the same two VIPs with `numgen inc mod 3` over the same
//!   backends (ip_forward is on in the topology); conntrack reverses the
//!   replies.
//!
//! Loads, from worker threads that enter the client namespace:
//! - TCP: each thread loops connect, `GET /` with `Connection: close`, read
//!   to EOF, close. Completed responses (status 200) per second.
//! - UDP: each thread sends small datagrams with `sendmmsg` over 16
//!   connected sockets (16 flows) to the UDP VIP. Sent per second, and
//!   delivered per second: the backends' `/proc/net/snmp` `Udp:
//!   InDatagrams + RcvbufErrors` deltas, i.e. datagrams that reached a
//!   backend's `udp-sink` socket (read by it, or dropped because its
//!   buffer was full: the LB delivered them either way). The senders offer
//!   more than the lab carries (they share the cores with the whole path),
//!   so "sent" is the offered load and "delivered" the throughput; the
//!   bench prints the non-zero interface drop counters to show where the
//!   rest was lost.
//!
//! Each load runs a warm-up, then a fixed measured window, on one peer at a
//! time. The peers take turns in rounds (xlb first in odd rounds, nftables
//! first in even ones), so a change in the machine's background load hits
//! both alike; a peer's rate is its total over its total time. Every socket
//! operation is bounded by a 2 s timeout, so the bench always ends.
//!
//! Environment: `XLB_BENCH_SECS` (window, default 5),
//! `XLB_BENCH_WARMUP_SECS` (default 1), `XLB_BENCH_ROUNDS` (default 2),
//! `XLB_BENCH_TCP_THREADS` (default 4 per core), `XLB_BENCH_UDP_THREADS`
//! (default 1 per core). Needs root, and the release `xlb` binary (`cargo
//! build --release -p xlb`; `cargo xtask bench l4` builds it) next to the
//! bench's `target/release/deps/`, or `$XLB_BIN`.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use xlb_lab::{
    L4Topology, Lab, Namespace, Process, TempDir, XlbDaemon, check_root,
    topology::{CLIENT_ADDR, LB_IFACE, VIP, backend_addr},
    xlb_daemon::XLB_READY_TIMEOUT,
    xlb_path,
};

const LAB_BACKEND: &str = env!("CARGO_BIN_EXE_lab-backend");
const UDP_SINK: &str = env!("CARGO_BIN_EXE_udp-sink");
const EXAMPLE: &str = include_str!("../../examples/lab.toml");
const BACKENDS: usize = 3;
const TCP_VIP_PORT: u16 = 80;
const WEB_PORT: u16 = 8080;
const UDP_PORT: u16 = 5140;
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// UDP payload bytes: 18 + 8 + 20 + 14 = a 60-byte frame, the Ethernet
/// minimum without FCS.
const UDP_PAYLOAD: usize = 18;
/// Datagrams per `sendmmsg`.
const UDP_BATCH: usize = 32;
/// Connected sockets (source ports, so flows) per UDP sender thread.
const UDP_FLOWS_PER_THREAD: usize = 16;
/// After the senders stop, time for the sinks to drain their queues.
const SETTLE: Duration = Duration::from_millis(300);
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 198.18.0.100\r\nConnection: close\r\n\r\n";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l4 bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Params {
    window: Duration,
    warmup: Duration,
    rounds: usize,
    tcp_threads: usize,
    udp_threads: usize,
}

fn env_num(name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64> {
    let Some(v) = std::env::var_os(name) else {
        return Ok(default);
    };
    let v = v.to_string_lossy();
    let n: u64 = v
        .trim()
        .parse()
        .with_context(|| format!("{name}={v:?} is not a number"))?;
    ensure!(
        range.contains(&n),
        "{name}={n} is outside {}..={}",
        range.start(),
        range.end()
    );
    Ok(n)
}

impl Params {
    fn from_env(cores: usize) -> Result<Params> {
        let cores = cores as u64;
        Ok(Params {
            window: Duration::from_secs(env_num("XLB_BENCH_SECS", 5, 1..=60)?),
            warmup: Duration::from_secs(env_num("XLB_BENCH_WARMUP_SECS", 1, 0..=30)?),
            rounds: env_num("XLB_BENCH_ROUNDS", 2, 1..=10)? as usize,
            tcp_threads: env_num("XLB_BENCH_TCP_THREADS", 4 * cores, 1..=256)? as usize,
            udp_threads: env_num("XLB_BENCH_UDP_THREADS", cores, 1..=64)? as usize,
        })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Xlb,
    Nft,
}

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Peer::Xlb => "xlb (XDP NAT)",
            Peer::Nft => "nftables DNAT",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Peer::Xlb => "xlb",
            Peer::Nft => "nft",
        }
    }

    /// The lab's test name: namespaces `xlb-<test>-<role>`.
    fn test(self) -> &'static str {
        match self {
            Peer::Xlb => "benchl4_xlb",
            Peer::Nft => "benchl4_nft",
        }
    }
}

struct TcpResult {
    conns: u64,
    errors: u64,
    secs: f64,
    first_error: Option<String>,
}

impl TcpResult {
    fn rate(&self) -> f64 {
        self.conns as f64 / self.secs
    }
}

struct UdpResult {
    sent: u64,
    /// Reached a backend's socket: read by the sink or dropped for a full
    /// receive buffer.
    delivered: u64,
    buffer_drops: u64,
    csum_errors: u64,
    per_backend: Vec<u64>,
    send_errors: u64,
    /// Non-zero packet drop counters along the path, `ns/iface rx|tx N`.
    path_drops: Vec<String>,
    secs: f64,
}

impl UdpResult {
    fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.secs
    }

    fn delivered_rate(&self) -> f64 {
        self.delivered as f64 / self.secs
    }
}

/// One peer's lab, backends and data path, ready for load.
struct Setup {
    peer: Peer,
    daemon: Option<XlbDaemon>,
    _processes: Vec<Process>,
    _dir: TempDir,
    // Dropped last: removes the namespaces and everything in them.
    topo: L4Topology,
}

/// A peer's results over all rounds.
#[derive(Default)]
struct Totals {
    tcp_conns: u64,
    tcp_errors: u64,
    tcp_secs: f64,
    tcp_rates: Vec<f64>,
    udp_sent: u64,
    udp_delivered: u64,
    udp_secs: f64,
    udp_rates: Vec<f64>,
}

impl Totals {
    fn tcp_rate(&self) -> f64 {
        self.tcp_conns as f64 / self.tcp_secs
    }

    fn sent_rate(&self) -> f64 {
        self.udp_sent as f64 / self.udp_secs
    }

    fn delivered_rate(&self) -> f64 {
        self.udp_delivered as f64 / self.udp_secs
    }
}

fn run() -> Result<()> {
    check_root()?;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let params = Params::from_env(cores)?;
    let xlb = xlb_path()?;
    ensure!(
        xlb.is_file(),
        "{} not found; build it: cargo build --release -p xlb",
        xlb.display()
    );

    println!("l4 bench: xlb (XDP NAT) against nftables DNAT, same lab, same load");
    println!(
        "machine: {cores} cores ({}), kernel {}, load average {}; \
         client load, LB and backends share the cores",
        cpu_model(),
        kernel(),
        loadavg()
    );
    println!(
        "load: {} rounds of {} s windows after {} s warm-up; \
         TCP: {} threads, connect + GET + read + close; \
         UDP: {} threads x {UDP_FLOWS_PER_THREAD} flows, {UDP_PAYLOAD}-byte payload, \
         sendmmsg x{UDP_BATCH}",
        params.rounds,
        params.window.as_secs(),
        params.warmup.as_secs(),
        params.tcp_threads,
        params.udp_threads,
    );
    println!("xlb binary: {}", xlb.display());

    let start = Instant::now();
    let setups = [setup(Peer::Xlb)?, setup(Peer::Nft)?];
    println!("labs ready in {:.1} s", start.elapsed().as_secs_f64());
    let mut totals = [Totals::default(), Totals::default()];
    for round in 1..=params.rounds {
        let order = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        println!("\n== round {round}");
        for i in order {
            let s = &setups[i];
            let tcp = tcp_load(s.topo.client(), &params)
                .with_context(|| format!("TCP load through {}", s.peer.label()))?;
            print_tcp(s.peer, &tcp);
            let t = &mut totals[i];
            t.tcp_conns += tcp.conns;
            t.tcp_errors += tcp.errors;
            t.tcp_secs += tcp.secs;
            t.tcp_rates.push(tcp.rate());
        }
        for i in order {
            let s = &setups[i];
            let udp = udp_load(&s.topo, &params)
                .with_context(|| format!("UDP load through {}", s.peer.label()))?;
            print_udp(s.peer, &udp);
            let t = &mut totals[i];
            t.udp_sent += udp.sent;
            t.udp_delivered += udp.delivered;
            t.udp_secs += udp.secs;
            t.udp_rates.push(udp.delivered_rate());
        }
    }

    println!();
    for s in setups {
        finish(s);
    }
    let [x, n] = &totals;

    println!();
    println!(
        "{:<26} {:>15} {:>15} {:>10}",
        "",
        Peer::Xlb.label(),
        Peer::Nft.label(),
        "xlb / nft"
    );
    let row = |name: &str, a: f64, b: f64| {
        let ratio = if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".to_owned()
        };
        println!("{name:<26} {a:>15.0} {b:>15.0} {ratio:>10}");
    };
    row("TCP connections/s", x.tcp_rate(), n.tcp_rate());
    row("UDP packets/s sent", x.sent_rate(), n.sent_rate());
    row(
        "UDP packets/s delivered",
        x.delivered_rate(),
        n.delivered_rate(),
    );
    let spread = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "per round: TCP conn/s xlb [{}] nft [{}]; UDP delivered/s xlb [{}] nft [{}]",
        spread(&x.tcp_rates),
        spread(&n.tcp_rates),
        spread(&x.udp_rates),
        spread(&n.udp_rates)
    );
    println!(
        "machine: {cores} cores, load average now {}; the load generator, the LB and the \
         backends share the cores, which caps both peers",
        loadavg()
    );

    for (peer, t) in [(Peer::Xlb, x), (Peer::Nft, n)] {
        ensure!(
            t.tcp_conns > 0,
            "{}: no TCP connection completed",
            peer.label()
        );
        ensure!(
            t.udp_delivered > 0,
            "{}: no UDP datagram reached a backend",
            peer.label()
        );
        if t.tcp_errors > 0 {
            println!(
                "note: {}: {} TCP errors in the windows",
                peer.label(),
                t.tcp_errors
            );
        }
    }
    Ok(())
}

fn print_tcp(peer: Peer, tcp: &TcpResult) {
    println!(
        "  {} TCP: {} connections in {:.2} s = {:.0}/s, {} errors{}",
        peer.short(),
        tcp.conns,
        tcp.secs,
        tcp.rate(),
        tcp.errors,
        tcp.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
}

fn print_udp(peer: Peer, udp: &UdpResult) {
    println!(
        "  {} UDP: sent {} ({:.0}/s), delivered {} ({:.0}/s, {:.1}% of sent; per backend {:?}; \
         {} of them dropped at a full sink buffer), {} send errors, {} checksum errors",
        peer.short(),
        udp.sent,
        udp.sent_rate(),
        udp.delivered,
        udp.delivered_rate(),
        100.0 * udp.delivered as f64 / udp.sent.max(1) as f64,
        udp.per_backend,
        udp.buffer_drops,
        udp.send_errors,
        udp.csum_errors,
    );
    if !udp.path_drops.is_empty() {
        println!(
            "      drop counters (one drop may show on both veth ends and in softnet): {}",
            udp.path_drops.join(", ")
        );
    }
}

/// Builds `peer`'s lab, starts the backends, the sinks and the data path.
fn setup(peer: Peer) -> Result<Setup> {
    let topo = L4Topology::build(Lab::new(peer.test())?, BACKENDS)
        .with_context(|| format!("building the lab for {}", peer.label()))?;
    let mut processes = Vec::new();
    for k in 1..=BACKENDS {
        let ns = topo.backend(k);
        let ip = backend_addr(k);
        processes.push(ns.spawn_backend_with(
            Path::new(LAB_BACKEND),
            &format!("web{k}"),
            SocketAddr::from((ip, WEB_PORT)),
            None,
        )?);
        let listen = format!("{ip}:{UDP_PORT}");
        processes.push(ns.spawn_ready(
            &[UDP_SINK, "--listen", &listen],
            "listening on",
            READY_TIMEOUT,
        )?);
    }
    let dir = TempDir::new(peer.test())?;
    let mut daemon = None;
    match peer {
        Peer::Xlb => {
            let config = write_xlb_config(&dir, peer.test())?;
            daemon = Some(topo.lb().spawn_xlb(&config, XLB_READY_TIMEOUT)?);
            println!(
                "xlb: running in {}, XDP on {LB_IFACE} attached {}",
                topo.lb().name(),
                xdp_mode(topo.lb())?
            );
        }
        Peer::Nft => {
            let rules = dir.write("dnat.nft", nft_rules())?;
            topo.lb()
                .run(&["nft", "-f", &rules.to_string_lossy()])
                .context("loading the nftables DNAT rules")?;
            println!(
                "nftables: numgen inc mod {BACKENDS} DNAT in prerouting of {}, no XDP there",
                topo.lb().name()
            );
        }
    }
    Ok(Setup {
        peer,
        daemon,
        _processes: processes,
        _dir: dir,
        topo,
    })
}

/// Prints what the data path counted, stops xlb, removes the lab.
fn finish(setup: Setup) {
    match &setup.daemon {
        Some(d) => print_xlb_stats(d),
        None => {
            let count = setup
                .topo
                .lb()
                .with(|| std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count"))
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default();
            println!("nftables: lb conntrack entries {}", count.trim());
        }
    }
    if let Some(mut d) = setup.daemon {
        match d.terminate(STOP_TIMEOUT) {
            Ok(status) if status.success() => {}
            Ok(status) => println!("warning: xlb exited with {status}"),
            Err(e) => println!("warning: {e:#}"),
        }
    }
}

/// `examples/lab.toml` with this bench's socket and pin path, plus a UDP
/// VIP on the same address to the three sinks.
fn write_xlb_config(dir: &TempDir, test: &str) -> Result<PathBuf> {
    let sock = dir.socket();
    let mut text = String::new();
    let mut replaced = 0;
    for line in EXAMPLE.lines() {
        if line.starts_with("api_socket =") {
            writeln!(text, "api_socket = \"{}\"", sock.display())?;
            replaced += 1;
        } else if line.starts_with("bpf_pin_path =") {
            writeln!(text, "bpf_pin_path = \"/sys/fs/bpf/xlb-{test}\"")?;
            replaced += 1;
        } else {
            writeln!(text, "{line}")?;
        }
    }
    ensure!(
        replaced == 2,
        "examples/lab.toml: expected api_socket and bpf_pin_path lines in [global]"
    );
    text.push_str("\n[[backend]]\nname = \"sinks\"\nbalance = \"maglev\"\n");
    text.push_str("health = { check = \"none\" }\n");
    for k in 1..=BACKENDS {
        writeln!(
            text,
            "\n  [[backend.server]]\n  name = \"sink{k}\"\n  address = \"{}:{UDP_PORT}\"",
            backend_addr(k)
        )?;
    }
    writeln!(
        text,
        "\n[[l4]]\nname = \"sink-udp\"\nvip = \"{VIP}:{UDP_PORT}\"\nprotocol = \"udp\"\n\
         backend = \"sinks\"\nforward = \"nat\""
    )?;
    let config = xlb::config::parse(&text, "l4 bench config")
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the bench's xlb config")?;
    ensure!(
        config
            .l4
            .iter()
            .any(|l| l.vip == SocketAddr::from((VIP, TCP_VIP_PORT))),
        "examples/lab.toml no longer has the VIP {VIP}:{TCP_VIP_PORT}"
    );
    dir.write_config(&text)
}

fn nft_rules() -> String {
    let map = |port: u16| {
        (1..=BACKENDS)
            .map(|k| format!("{} : {} . {port}", k - 1, backend_addr(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "table ip xlb_bench {{\n\
         \tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tip daddr {VIP} tcp dport {TCP_VIP_PORT} dnat to numgen inc mod {BACKENDS} map {{ {} }}\n\
         \t\tip daddr {VIP} udp dport {UDP_PORT} dnat to numgen inc mod {BACKENDS} map {{ {} }}\n\
         \t}}\n\
         }}\n",
        map(WEB_PORT),
        map(UDP_PORT)
    )
}

/// `native` or `generic (skb)`, from `ip link show` in the lb namespace.
fn xdp_mode(lb: &Namespace) -> Result<&'static str> {
    let out = lb.ip(&["link", "show", "dev", LB_IFACE])?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(if text.contains("xdpgeneric") {
        "generic (skb)"
    } else if text.contains("xdpoffload") {
        "offload"
    } else if text.contains(" xdp") {
        "native"
    } else {
        "none?"
    })
}

/// The VIP counters and the non-zero data path counters.
fn print_xlb_stats(daemon: &XlbDaemon) {
    let text = match daemon.stats() {
        Ok(t) => t,
        Err(e) => {
            println!("xlb stats: {e:#}");
            return;
        }
    };
    for line in text.lines().filter(|l| l.starts_with("vip ")) {
        println!("xlb stats: {line}");
    }
    let stats: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("stat "))
        .filter(|l| !l.ends_with(" 0"))
        .map(|l| l.replacen(' ', "=", 1))
        .collect();
    println!("xlb stats: {}", stats.join(" "));
}

// ---- TCP ----

/// Connect, one `GET /` with `Connection: close`, read to EOF, close.
fn http_get() -> Result<()> {
    let vip = SocketAddr::from((VIP, TCP_VIP_PORT));
    let mut s = TcpStream::connect_timeout(&vip, IO_TIMEOUT).context("connect")?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.write_all(REQUEST).context("write")?;
    let mut buf = [0u8; 1024];
    let mut n = 0;
    loop {
        let r = s.read(&mut buf[n..]).context("read")?;
        if r == 0 {
            break;
        }
        n += r;
        ensure!(n < buf.len(), "response longer than {} bytes", buf.len());
    }
    if !buf[..n].starts_with(b"HTTP/1.1 200 ") {
        let head = String::from_utf8_lossy(&buf[..n.min(40)]);
        bail!("response {head:?}");
    }
    Ok(())
}

fn tcp_load(client: &Namespace, p: &Params) -> Result<TcpResult> {
    let stop = AtomicBool::new(false);
    let ok = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let first_error = OnceLock::new();
    let (ok0, err0, t0, ok1, err1, t1) = thread::scope(|s| -> Result<_> {
        let workers: Vec<_> = (0..p.tcp_threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let _inside = client.enter()?;
                    while !stop.load(Ordering::Relaxed) {
                        match http_get() {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                let _ = first_error.set(format!("{e:#}"));
                                errors.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                    Ok(())
                })
            })
            .collect();
        thread::sleep(p.warmup);
        let (ok0, err0, t0) = (
            ok.load(Ordering::SeqCst),
            errors.load(Ordering::SeqCst),
            Instant::now(),
        );
        thread::sleep(p.window);
        let (ok1, err1, t1) = (
            ok.load(Ordering::SeqCst),
            errors.load(Ordering::SeqCst),
            Instant::now(),
        );
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a TCP client thread panicked"))??;
        }
        Ok((ok0, err0, t0, ok1, err1, t1))
    })?;
    Ok(TcpResult {
        conns: ok1 - ok0,
        errors: err1 - err0,
        secs: (t1 - t0).as_secs_f64(),
        first_error: first_error.into_inner(),
    })
}

// ---- UDP ----

/// One counter per thread, on its own cache line.
#[repr(align(128))]
#[derive(Default)]
struct Counter(AtomicU64);

fn udp_sender(
    client: &Namespace,
    stop: &AtomicBool,
    sent: &Counter,
    errors: &Counter,
) -> Result<()> {
    let _inside = client.enter()?;
    let vip = SocketAddrV4::new(VIP, UDP_PORT);
    let socks = (0..UDP_FLOWS_PER_THREAD)
        .map(|_| -> Result<UdpSocket> {
            let s = UdpSocket::bind(SocketAddrV4::new(CLIENT_ADDR, 0))?;
            s.connect(vip)?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok(s)
        })
        .collect::<Result<Vec<_>>>()
        .context("UDP sender sockets")?;
    let mut payload = [0u8; UDP_PAYLOAD];
    payload.copy_from_slice(b"xlb l4 bench udp\r\n");
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: mmsghdr is plain data; zeroed means no name (the sockets are
    // connected) and no control data.
    let mut msgs: Vec<libc::mmsghdr> = (0..UDP_BATCH)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let fd = socks[i % socks.len()].as_raw_fd();
        i += 1;
        // SAFETY: every header points at `iov`, which points at `payload`;
        // both outlive the call, and the kernel only reads them (and writes
        // msg_len into `msgs`).
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), UDP_BATCH as libc::c_uint, 0) };
        if n > 0 {
            sent.0.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            errors.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The `Udp:` counters of `/proc/net/snmp` this bench reads.
#[derive(Clone, Copy, Default)]
struct UdpSnmp {
    in_datagrams: u64,
    rcvbuf_errors: u64,
    csum_errors: u64,
}

impl UdpSnmp {
    fn delivered(&self) -> u64 {
        self.in_datagrams + self.rcvbuf_errors
    }
}

fn udp_snmp(ns: &Namespace) -> Result<UdpSnmp> {
    // /proc/thread-self/net is the calling thread's network namespace.
    let text = ns
        .with(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))?
        .with_context(|| format!("reading /proc/net/snmp in {}", ns.name()))?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("no Udp lines in /proc/net/snmp of {}", ns.name());
    };
    let mut out = UdpSnmp::default();
    for (name, value) in names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
    {
        let v: u64 = value
            .parse()
            .with_context(|| format!("Udp {name} {value:?}"))?;
        match name {
            "InDatagrams" => out.in_datagrams = v,
            "RcvbufErrors" => out.rcvbuf_errors = v,
            "InCsumErrors" => out.csum_errors = v,
            _ => {}
        }
    }
    Ok(out)
}

/// Drop counters of every interface in the lab (`/proc/net/dev` per
/// namespace, `ns/iface rx|tx`), and the kernel's per-CPU input backlog
/// drops (`/proc/net/softnet_stat`: global, so other traffic on the
/// machine shows there too).
fn path_drops(topo: &L4Topology) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let namespaces = [topo.client(), topo.sw(), topo.lb()]
        .into_iter()
        .chain(topo.backends());
    for ns in namespaces {
        let text = ns
            .with(|| std::fs::read_to_string("/proc/thread-self/net/dev"))?
            .with_context(|| format!("reading /proc/net/dev in {}", ns.name()))?;
        let role = ns
            .name()
            .rsplit_once('-')
            .map(|(_, role)| role)
            .unwrap_or(ns.name());
        for line in text.lines().skip(2) {
            let Some((iface, counters)) = line.split_once(':') else {
                continue;
            };
            let c: Vec<u64> = counters
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            if c.len() >= 12 {
                out.push((format!("{role}/{} rx", iface.trim()), c[3]));
                out.push((format!("{role}/{} tx", iface.trim()), c[11]));
            }
        }
    }
    let softnet = std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default();
    let backlog: u64 = softnet
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| u64::from_str_radix(v, 16).ok())
        .sum();
    out.push(("softnet backlog (global)".to_owned(), backlog));
    Ok(out)
}

fn all_snmp(topo: &L4Topology) -> Result<Vec<UdpSnmp>> {
    topo.backends().iter().map(udp_snmp).collect()
}

fn udp_load(topo: &L4Topology, p: &Params) -> Result<UdpResult> {
    let client = topo.client();
    let stop = AtomicBool::new(false);
    let sent: Vec<Counter> = (0..p.udp_threads).map(|_| Counter::default()).collect();
    let errors: Vec<Counter> = (0..p.udp_threads).map(|_| Counter::default()).collect();
    let total = |c: &[Counter]| c.iter().map(|c| c.0.load(Ordering::SeqCst)).sum::<u64>();
    let (sent0, err0, before, drops_before, t0, t1) = thread::scope(|s| -> Result<_> {
        let workers: Vec<_> = sent
            .iter()
            .zip(&errors)
            .map(|(sent, errors)| s.spawn(|| udp_sender(client, &stop, sent, errors)))
            .collect();
        let result = (|| -> Result<_> {
            thread::sleep(p.warmup);
            let t0 = Instant::now();
            let (sent0, err0) = (total(&sent), total(&errors));
            let before = all_snmp(topo)?;
            let drops_before = path_drops(topo)?;
            thread::sleep(p.window.saturating_sub(t0.elapsed()));
            Ok((sent0, err0, before, drops_before, t0))
        })();
        let t1 = Instant::now();
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a UDP sender thread panicked"))??;
        }
        let (sent0, err0, before, drops_before, t0) = result?;
        Ok((sent0, err0, before, drops_before, t0, t1))
    })?;
    let (sent1, err1) = (total(&sent), total(&errors));
    thread::sleep(SETTLE);
    let after = all_snmp(topo)?;
    let drops_after = path_drops(topo)?;
    let per_backend: Vec<u64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.delivered() - b.delivered())
        .collect();
    let sum = |f: fn(&UdpSnmp) -> u64| -> u64 {
        before.iter().zip(&after).map(|(b, a)| f(a) - f(b)).sum()
    };
    Ok(UdpResult {
        sent: sent1 - sent0,
        delivered: per_backend.iter().sum(),
        buffer_drops: sum(|c| c.rcvbuf_errors),
        csum_errors: sum(|c| c.csum_errors),
        per_backend,
        send_errors: err1 - err0,
        path_drops: drops_after
            .iter()
            .filter_map(|(name, n)| {
                let before = drops_before
                    .iter()
                    .find(|(b, _)| b == name)
                    .map_or(0, |(_, n)| *n);
                (*n > before).then(|| format!("{name} {}", n - before))
            })
            .collect(),
        secs: (t1 - t0).as_secs_f64(),
    })
}

// ---- machine facts ----

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}
