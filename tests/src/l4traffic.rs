//! Real traffic for the L4 lab tests: a one-pool, one-VIP config
//! ([`L4Config`]), `xlb run` on it
//! ([`run_xlb`]), `lab-backend` servers, TCP connections from a fixed
//! source address and port (IPv4 or IPv6), one HTTP/1.1 exchange with
//! `lab-backend`, batches of such connections, a long-lived keep-alive
//! connection ([`LongLived`]), `xlb decap` on a DSR backend, and the
//! counters the tests read (`/proc/net/snmp`, `/proc/net/snmp6`,
//! `xlb stats`).
//!
//! Fixed source ports make a batch the same set of flows on every run, so
//! Maglev's verdicts (and the spread) are deterministic.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    TempDir,
    netns::Namespace,
    process::Process,
    topology::L4Topology,
    xlb_daemon::{XLB_READY_TIMEOUT, XlbDaemon, strip_ansi, xlb_path},
};

/// Connect, read and write timeout of [`connect_from`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A batch of connections ([`run_batch`]) stops at this many failures, so
/// a broken data path does not cost [`IO_TIMEOUT`] per remaining one.
pub const MAX_FAILURES: usize = 5;

/// The HTTP health check (`GET /healthz`) of a lab config's pool.
#[derive(Clone, Copy, Debug)]
pub struct HttpHealth {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u64,
    pub fall: u64,
}

impl HttpHealth {
    /// The value of a pool's `health` key for this check.
    pub fn toml(&self) -> String {
        format!(
            "{{ check = \"http\", path = \"/healthz\", interval_ms = {}, timeout_ms = {}, rise = {}, fall = {} }}",
            self.interval_ms, self.timeout_ms, self.rise, self.fall
        )
    }
}

/// The health check timings of the L4 lab tests.
pub const LAB_HEALTH: HttpHealth = HttpHealth {
    interval_ms: 300,
    timeout_ms: 200,
    rise: 2,
    fall: 2,
};

/// One `[[backend.server]]` of an [`L4Config`].
#[derive(Clone, Debug)]
pub struct ServerEntry {
    pub name: String,
    pub address: SocketAddr,
    /// Written only when set (the config's default otherwise).
    pub weight: Option<u32>,
}

/// The server entries `names[i]` at `addrs[i]`, no weights.
pub fn server_entries(names: &[String], addrs: &[SocketAddr]) -> Vec<ServerEntry> {
    assert_eq!(names.len(), addrs.len(), "one address per server name");
    names
        .iter()
        .zip(addrs)
        .map(|(name, &address)| ServerEntry {
            name: name.clone(),
            address,
            weight: None,
        })
        .collect()
}

/// The names `PREFIX1`, `PREFIX2`, ... `PREFIXn`.
pub fn server_names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|k| format!("{prefix}{k}")).collect()
}

/// `ip`:`port` for each of `ips`.
pub fn socket_addrs<I: Into<IpAddr>>(
    ips: impl IntoIterator<Item = I>,
    port: u16,
) -> Vec<SocketAddr> {
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip.into(), port))
        .collect()
}

/// The config of an L4 lab test: XDP (mode `auto`) on one interface, one
/// Maglev `[[backend]]` pool and one `[[l4]]` VIP over it.
#[derive(Clone, Debug)]
pub struct L4Config<'a> {
    /// `[[xdp]] interface`.
    pub iface: &'a str,
    /// The pool's name.
    pub pool: &'a str,
    /// `None`: `check = "none"`.
    pub health: Option<HttpHealth>,
    pub servers: Vec<ServerEntry>,
    /// The VIP's name.
    pub vip_name: &'a str,
    pub vip: SocketAddr,
    /// `"tcp"` or `"udp"`.
    pub protocol: &'a str,
    /// The VIP's last key and its value, e.g. `("forward", "nat")` or
    /// `("steering", "syslog")`.
    pub mode: (&'a str, &'a str),
}

impl<'a> L4Config<'a> {
    /// A TCP NAT VIP `vip_name` at `vip` over pool `pool` of `servers`
    /// with [`LAB_HEALTH`], on the lb interface of `topo`.
    pub fn nat(
        topo: &L4Topology,
        pool: &'a str,
        vip_name: &'a str,
        vip: SocketAddr,
        servers: Vec<ServerEntry>,
    ) -> L4Config<'a> {
        L4Config {
            iface: topo.lb_iface(),
            pool,
            health: Some(LAB_HEALTH),
            servers,
            vip_name,
            vip,
            protocol: "tcp",
            mode: ("forward", "nat"),
        }
    }

    /// The file's text after the `[global]` table `global`
    /// ([`TempDir::global_toml`]).
    pub fn render(&self, global: &str) -> String {
        let health = match self.health {
            Some(h) => h.toml(),
            None => "{ check = \"none\" }".to_owned(),
        };
        let servers: String = self
            .servers
            .iter()
            .map(|s| {
                let weight = s
                    .weight
                    .map(|w| format!("  weight = {w}\n"))
                    .unwrap_or_default();
                format!(
                    "  [[backend.server]]\n  name = \"{}\"\n  address = \"{}\"\n{weight}\n",
                    s.name, s.address
                )
            })
            .collect();
        let L4Config {
            iface,
            pool,
            vip_name,
            vip,
            protocol,
            mode: (mode, mode_value),
            ..
        } = self;
        format!(
            r#"{global}
[[xdp]]
interface = "{iface}"
mode = "auto"

[[backend]]
name = "{pool}"
balance = "maglev"
health = {health}

{servers}[[l4]]
name = "{vip_name}"
vip = "{vip}"
protocol = "{protocol}"
backend = "{pool}"
{mode} = "{mode_value}"
"#
        )
    }
}

/// Writes the config `tag` in a new [`TempDir`] (`text` gets its
/// `[global]` table, [`TempDir::global_toml`]) and starts `xlb run` on it
/// in the lb namespace of `topo`, ready within [`XLB_READY_TIMEOUT`].
pub fn run_xlb(
    topo: &L4Topology,
    tag: &str,
    text: impl FnOnce(&str) -> String,
) -> Result<(TempDir, XlbDaemon)> {
    run_xlb_in(topo.lb(), tag, text)
}

/// [`run_xlb`] in any namespace `ns`: each `tag` gets its own directory,
/// API socket and BPF pin path, so several daemons can run side by side.
pub fn run_xlb_in(
    ns: &Namespace,
    tag: &str,
    text: impl FnOnce(&str) -> String,
) -> Result<(TempDir, XlbDaemon)> {
    let dir = TempDir::new(tag)?;
    let cfg = dir.write_config(&text(&dir.global_toml(tag)))?;
    let daemon = ns.spawn_xlb(&cfg, XLB_READY_TIMEOUT)?;
    Ok((dir, daemon))
}

/// SIGTERM to `xlb run`; an error (quoting its stderr) unless it exits 0
/// within 10 s.
pub fn stop_xlb(daemon: &mut XlbDaemon) -> Result<()> {
    let status = daemon.terminate(Duration::from_secs(10))?;
    if !status.success() {
        bail!(
            "xlb exited {status} after SIGTERM; stderr:\n{}",
            daemon.stderr()
        );
    }
    Ok(())
}

/// `lab-backend --name NAMES[K-1]` in backend K's namespace, listening on
/// `listen[K-1]`, for each K; the guards in order.
pub fn spawn_backends(
    topo: &L4Topology,
    names: &[String],
    listen: &[SocketAddr],
) -> Result<Vec<Process>> {
    assert_eq!(names.len(), listen.len(), "one address per server name");
    names
        .iter()
        .zip(listen)
        .enumerate()
        .map(|(i, (name, &addr))| topo.backend(i + 1).spawn_backend(name, addr))
        .collect()
}

fn check(rc: libc::c_int, what: &str) -> Result<()> {
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_owned());
    }
    Ok(())
}

/// `setsockopt(fd, SOL_SOCKET, opt, value)`.
fn set_socket_option<T>(fd: &OwnedFd, opt: libc::c_int, value: &T, what: &str) -> Result<()> {
    // SAFETY: the kernel reads size_of::<T>() bytes of `value`.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc, what)
}

/// A `sockaddr_storage` holding `addr`, and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, all zeroes is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// A TCP connection from `local` (a fixed address and port) to `remote`,
/// in the calling thread's network namespace. Connect, read and write time
/// out after [`IO_TIMEOUT`]. `SO_REUSEADDR` lets a port be used again while
/// its previous connection is in TIME_WAIT.
pub fn connect_from(local: SocketAddr, remote: SocketAddr) -> Result<TcpStream> {
    if local.is_ipv4() != remote.is_ipv4() {
        bail!("{local} and {remote} are of different address families");
    }
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket syscalls on a descriptor we own.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("socket");
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        set_socket_option(&fd, libc::SO_REUSEADDR, &one, "SO_REUSEADDR")?;
        // On Linux a blocking connect() gives up after SO_SNDTIMEO.
        let tv = libc::timeval {
            tv_sec: IO_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        set_socket_option(&fd, libc::SO_SNDTIMEO, &tv, "SO_SNDTIMEO")?;
        let (l, llen) = sockaddr(local);
        check(
            libc::bind(
                fd.as_raw_fd(),
                (&l as *const libc::sockaddr_storage).cast(),
                llen,
            ),
            &format!("bind {local}"),
        )?;
        let (r, rlen) = sockaddr(remote);
        if libc::connect(
            fd.as_raw_fd(),
            (&r as *const libc::sockaddr_storage).cast(),
            rlen,
        ) != 0
        {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINPROGRESS) {
                bail!("connect {local} -> {remote}: timed out after {IO_TIMEOUT:?}");
            }
            return Err(e).with_context(|| format!("connect {local} -> {remote}"));
        }
        let stream = TcpStream::from(fd);
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(stream)
    }
}

/// Sends one `GET /` (one write, one segment) and reads one response;
/// returns the body if the status is 200. `close` asks the server to
/// close the connection after it.
pub fn request(
    stream: &mut TcpStream,
    reader: &mut impl BufRead,
    host: &str,
    close: bool,
) -> Result<String> {
    let conn = if close { "close" } else { "keep-alive" };
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: {conn}\r\n\r\n");
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

/// The server name in a `lab-backend` body (`NAME\n`), checked against
/// `names`.
pub fn server_name(body: &str, names: &[String]) -> Result<String> {
    match body.strip_suffix('\n') {
        Some(name) if names.iter().any(|n| n == name) => Ok(name.to_owned()),
        _ => bail!("unexpected body {body:?} (expected one of {names:?})"),
    }
}

/// The `Host` header value for `addr` (`[v6]:port` keeps its brackets).
pub fn host_header(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// One HTTP/1.1 `GET /` with `Connection: close` from `local` to `remote`
/// (in the calling thread's namespace); returns the answering server's
/// name, one of `names`.
pub fn http_get(local: SocketAddr, remote: SocketAddr, names: &[String]) -> Result<String> {
    let mut stream = connect_from(local, remote)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let body = request(&mut stream, &mut reader, &host_header(remote), true)
        .with_context(|| format!("request from {local}"))?;
    server_name(&body, names)
}

/// [`http_get`] from `src`:`port` for each port, one after the other on a
/// thread in `client`; returns the answering server per port, or an error
/// listing every failure (the batch stops at [`MAX_FAILURES`]).
pub fn run_batch(
    client: &Namespace,
    src: IpAddr,
    ports: std::ops::Range<u16>,
    remote: SocketAddr,
    names: &[String],
) -> Result<Vec<String>> {
    let results = client.with(|| {
        let mut results = Vec::new();
        let mut failed = 0;
        for p in ports {
            let r = http_get(SocketAddr::new(src, p), remote, names);
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
    Ok(results.into_iter().filter_map(|(_, r)| r.ok()).collect())
}

/// How many times each of `names` occurs in `answers` (every name listed,
/// also with 0).
pub fn count_by_name(answers: &[String], names: &[String]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = names.iter().map(|n| (n.clone(), 0)).collect();
    for a in answers {
        *counts.entry(a.clone()).or_default() += 1;
    }
    counts
}

/// Asserts that all `flows` connections were answered (`answers`) and that
/// each of `names` answered a number of them within `share`; `what` names
/// the flows in the messages (e.g. `"IPv6 flows"`). Returns the counts.
pub fn assert_spread(
    answers: &[String],
    names: &[String],
    flows: u16,
    share: &std::ops::RangeInclusive<usize>,
    what: &str,
) -> BTreeMap<String, usize> {
    let counts = count_by_name(answers, names);
    eprintln!("spread over {flows} {what}: {counts:?}");
    assert_eq!(answers.len(), usize::from(flows), "every request answered");
    for (name, &n) in &counts {
        assert!(
            share.contains(&n),
            "{name} got {n} of {flows} {what}, outside {share:?}: {counts:?}"
        );
    }
    counts
}

/// A keep-alive connection driven by a background thread in the client
/// namespace: one request every 100 ms until [`LongLived::finish`] or the
/// first failure.
pub struct LongLived {
    stop: Arc<AtomicBool>,
    /// Good answers so far.
    answers: Arc<AtomicUsize>,
    thread: thread::JoinHandle<LongLivedReport>,
}

/// What a [`LongLived`] connection saw.
#[derive(Debug, Default)]
pub struct LongLivedReport {
    /// Good answers.
    pub ok: usize,
    /// The failure that ended it, if any.
    pub failures: Vec<String>,
    /// Every server that answered, in order of first appearance.
    pub servers: Vec<String>,
    /// The server of the last answer.
    pub last: Option<String>,
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

impl LongLived {
    /// Opens the connection from `local` to `remote` in `client`, makes the
    /// first request and returns the server (one of `names`) that answered
    /// it; requests then continue in the background.
    pub fn start(
        client: &Namespace,
        local: SocketAddr,
        remote: SocketAddr,
        names: &[String],
    ) -> Result<(LongLived, String)> {
        let client = client.clone();
        let names = names.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop2, answers2) = (stop.clone(), answers.clone());
        let thread = thread::spawn(move || {
            let mut report = LongLivedReport::default();
            let host = host_header(remote);
            let first = (|| -> Result<_> {
                let inside = client.enter()?;
                let mut stream = connect_from(local, remote)?;
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
            report.record(name.clone());
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
                        report.record(name);
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

    /// Good answers so far.
    pub fn answers(&self) -> usize {
        self.answers.load(Ordering::Relaxed)
    }

    /// Waits (bounded by `timeout`) until `n` answers in all, unless the
    /// thread has stopped on a failure.
    pub fn wait_answers(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.answers() < n && !self.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the thread and returns its report.
    pub fn finish(self) -> LongLivedReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("long-lived thread panicked")
    }
}

/// A counter of the namespace's `/proc/net/snmp`, e.g. `("Ip",
/// "ForwDatagrams")`, `("Tcp", "OutSegs")` or `("Udp", "InDatagrams")`.
pub fn snmp(ns: &Namespace, group: &str, name: &str) -> Result<u64> {
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
        .with_context(|| format!("no {group} {name} in /proc/net/snmp"))?;
    Ok(values
        .split_whitespace()
        .nth(i)
        .context("short value line")?
        .parse()?)
}

/// [`snmp`] of each of `namespaces`, in order.
pub fn snmp_each(namespaces: &[Namespace], group: &str, name: &str) -> Result<Vec<u64>> {
    namespaces.iter().map(|ns| snmp(ns, group, name)).collect()
}

/// `after[i] - before[i]` for each `i`.
pub fn deltas(after: &[u64], before: &[u64]) -> Vec<u64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

/// A counter of the namespace's `/proc/net/snmp6`, e.g.
/// `"Ip6OutForwDatagrams"`.
pub fn snmp6(ns: &Namespace, name: &str) -> Result<u64> {
    let out = ns.run(&["cat", "/proc/net/snmp6"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next()).flatten()
        })
        .with_context(|| format!("no {name} in /proc/net/snmp6"))?
        .parse()
        .with_context(|| format!("{name} in /proc/net/snmp6"))
}

/// `N` of the `stat NAME N` line of `xlb stats` output.
pub fn stat(stats: &str, name: &str) -> Option<u64> {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("stat {name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// The counters of `xlb stats` an L4 VIP test checks.
#[derive(Clone, Copy, Debug)]
pub struct VipCounters {
    /// `packets=` of the VIP.
    pub packets: u64,
    pub flow_miss: u64,
    pub nat_reverse: u64,
}

/// [`VipCounters`] of VIP `vip_name` in `xlb stats` output; an error
/// naming the first one missing.
pub fn vip_counters(stats: &str, vip_name: &str) -> Result<VipCounters> {
    Ok(VipCounters {
        packets: packets(stats, &format!("vip {vip_name} ")).context("vip line in xlb stats")?,
        flow_miss: stat(stats, "flow_miss").context("flow_miss in xlb stats")?,
        nat_reverse: stat(stats, "nat_reverse").context("nat_reverse in xlb stats")?,
    })
}

/// `packets=N` of the `xlb stats` line starting with `prefix` (e.g.
/// `"vip web-l4 "` or `"server web/web1 "`).
pub fn packets(stats: &str, prefix: &str) -> Option<u64> {
    let line = stats.lines().find(|l| l.starts_with(prefix))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("packets="))
        .and_then(|v| v.parse().ok())
}

/// Gives `ns` the VIP on `lo` without announcing it: ARP answers only for
/// addresses on the asking interface (`arp_ignore = 1`), and the best local
/// source for ARP requests (`arp_announce = 2`), as a DSR backend must.
pub fn hold_vip(ns: &Namespace, vip: Ipv4Addr) -> Result<()> {
    ns.add_addr("lo", &format!("{vip}/32"))?;
    ns.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
    ns.sysctl("net.ipv4.conf.all.arp_announce", "2")?;
    Ok(())
}

/// Makes `ns` the receiving end of DSR for `vip`: the VIP held on `lo`
/// ([`hold_vip`]), no reverse path filter on `iface` (the inner packets'
/// client source may be routed elsewhere) and `xlb decap` on `iface`
/// (running once this returns). The route back to the client is the
/// caller's.
pub fn dsr_receiver(
    ns: &Namespace,
    iface: &str,
    vip: Ipv4Addr,
    timeout: Duration,
) -> Result<Process> {
    hold_vip(ns, vip)?;
    for dev in ["all", "default", iface, "lo"] {
        ns.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
    }
    spawn_decap(ns, iface, vip, timeout)
}

/// `p`'s stderr so far, ANSI colours removed, as one text.
pub fn stderr_text(p: &Process) -> String {
    p.stderr_lines()
        .iter()
        .map(|l| strip_ansi(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits (at most `timeout`) for a stderr line of `xlb decap` containing
/// `needle`; an error, quoting its stderr, if it exits first.
pub fn wait_stderr(p: &mut Process, needle: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if p.stderr_lines()
            .iter()
            .any(|l| strip_ansi(l).contains(needle))
        {
            return Ok(());
        }
        if !p.is_running() {
            bail!(
                "xlb decap exited before logging {needle:?}; stderr:\n{}",
                stderr_text(p)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "no {needle:?} within {timeout:?}; stderr:\n{}",
                stderr_text(p)
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// `xlb decap --interface IFACE --vip VIP` ([`xlb_path`]), as arguments.
pub fn decap_cmd(iface: &str, vip: Ipv4Addr) -> Result<Vec<String>> {
    let bin = xlb_path()?.to_string_lossy().into_owned();
    Ok([
        &bin,
        "decap",
        "--interface",
        iface,
        "--vip",
        &vip.to_string(),
    ]
    .map(str::to_owned)
    .to_vec())
}

/// Starts [`decap_cmd`] in `ns` (uncoloured, level `info`) and waits at
/// most `timeout` for its ready line.
pub fn spawn_decap(
    ns: &Namespace,
    iface: &str,
    vip: Ipv4Addr,
    timeout: Duration,
) -> Result<Process> {
    let mut cmd = vec![
        "env".to_owned(),
        "NO_COLOR=1".into(),
        "RUST_LOG=info".into(),
    ];
    cmd.extend(decap_cmd(iface, vip)?);
    let mut decap = ns.spawn(&cmd.iter().map(String::as_str).collect::<Vec<_>>())?;
    wait_stderr(&mut decap, xlb::decap::READY, timeout)?;
    Ok(decap)
}

/// SIGTERM to `xlb decap`; waits at most `timeout` for its stop line and
/// returns the `decap_ipip` counter logged there.
pub fn stop_decap(decap: &mut Process, timeout: Duration) -> Result<u64> {
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(decap.pid() as i32, libc::SIGTERM) };
    wait_stderr(decap, "xlb decap stopping", timeout)?;
    let log = stderr_text(decap);
    log.split_whitespace()
        .find_map(|w| w.strip_prefix("decap_ipip="))
        .and_then(|n| n.trim_end_matches(',').parse::<u64>().ok())
        .with_context(|| format!("no decap_ipip counter in:\n{log}"))
}
