//! Real traffic for the L4 lab tests: a temporary config file, TCP
//! connections from a fixed source address and port (IPv4 or IPv6), one
//! HTTP/1.1 exchange with `lab-backend`, batches of such connections, and
//! the counters the tests read (`/proc/net/snmp`, `/proc/net/snmp6`,
//! `xlb stats`).
//!
//! Fixed source ports make a batch the same set of flows on every run, so
//! Maglev's verdicts (and the spread) are deterministic.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::netns::Namespace;

/// Connect, read and write timeout of [`connect_from`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A batch of connections ([`run_batch`]) stops at this many failures, so
/// a broken data path does not cost [`IO_TIMEOUT`] per remaining one.
pub const MAX_FAILURES: usize = 5;

/// A config directory under the temp dir (`xlb-TAG-PID/xlb.toml`), removed
/// on drop.
#[derive(Debug)]
pub struct TempConfig {
    dir: PathBuf,
    file: PathBuf,
}

impl TempConfig {
    /// Creates the directory; write the file with [`TempConfig::write`].
    pub fn new(tag: &str) -> Result<TempConfig> {
        let dir = std::env::temp_dir().join(format!("xlb-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("xlb.toml");
        Ok(TempConfig { dir, file })
    }

    /// A `[global]` table with this config's own API socket and BPF pin
    /// path (`/sys/fs/bpf/xlb-TAG`), so parallel tests never share them.
    pub fn global(&self, tag: &str) -> String {
        format!(
            "[global]\napi_socket = \"{}\"\nbpf_pin_path = \"/sys/fs/bpf/xlb-{tag}\"\n",
            self.dir.join("xlb.sock").display()
        )
    }

    /// Replaces the file's contents (write to a temporary name, then
    /// rename, so a reload never reads half a file).
    pub fn write(&self, text: &str) -> Result<()> {
        let tmp = self.dir.join("xlb.toml.new");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file)
            .with_context(|| format!("renaming to {}", self.file.display()))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The directory the config lives in (for other per-test files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check(rc: libc::c_int, what: &str) -> Result<()> {
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_owned());
    }
    Ok(())
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

/// `packets=N` of the `xlb stats` line starting with `prefix` (e.g.
/// `"vip web-l4 "` or `"server web/web1 "`).
pub fn packets(stats: &str, prefix: &str) -> Option<u64> {
    let line = stats.lines().find(|l| l.starts_with(prefix))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("packets="))
        .and_then(|v| v.parse().ok())
}
