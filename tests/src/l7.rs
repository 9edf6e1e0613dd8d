//! Helpers for the L7 end-to-end tests: the pieces of a lab config, servers in the backend namespaces,
//! curl in a namespace with its status and headers (or several transfers
//! on one connection), the access log lines of a daemon, and a test CA
//! issuing server certificates (rcgen).

use std::{future::Future, net::SocketAddr, process::Output, time::Duration};

use anyhow::{Context, Result, bail};
use bytes::{Buf, Bytes, BytesMut};

use crate::{
    Lab, TempDir,
    http_backend::HttpBackend,
    netns::Namespace,
    topology::{L4Topology, backend_addr},
    xlb_daemon::XlbDaemon,
};

/// The VIP the L7 tests' frontends bind (on `lo` of the lb namespace).
pub const VIP: &str = "198.18.0.100";

/// A lab config written to `dir`: one pool `web` with server `web1`
/// (backend 1, no health check), then `frontends`.
pub fn web1_config(dir: &TempDir, tag: &str, frontends: &str) -> std::path::PathBuf {
    let text = format!(
        "{}{}{frontends}",
        head_toml(dir, tag),
        pool_toml("web", "", &web_servers([1], 8080)),
    );
    dir.write_config(&text).expect("writing the config")
}

/// The `[global]` and `[[xdp]]` sections of a lab config: the API socket
/// in `dir`, maps pinned under `/sys/fs/bpf/xlb-{tag}`
/// ([`TempDir::global_toml`]), then [`XDP_TOML`].
pub fn head_toml(dir: &TempDir, tag: &str) -> String {
    head_toml_with(dir, tag, "")
}

/// [`head_toml`] with the `keys` lines (such as `l7_threads = 1\n`) added
/// to its `[global]` table.
pub fn head_toml_with(dir: &TempDir, tag: &str, keys: &str) -> String {
    format!("{}{keys}\n{XDP_TOML}", dir.global_toml(tag))
}

/// The lab's `[[xdp]]` section: XDP on the lb's `eth0`.
pub const XDP_TOML: &str = "[[xdp]]\ninterface = \"eth0\"\n\n";

/// A `[[backend.server]]` entry (after its `[[backend]]`).
pub fn server_toml(name: &str, addr: &str) -> String {
    format!("  [[backend.server]]\n  name = \"{name}\"\n  address = \"{addr}\"\n\n")
}

/// A `[[backend]]` named `name` with the `keys` lines (such as
/// `balance = "roundrobin"\n`), then a [`server_toml`] entry for each
/// `(name, address)` of `servers`. Without a `health` key in `keys`, the
/// pool has no health check (`health = { check = "none" }`).
pub fn pool_toml(name: &str, keys: &str, servers: &[(impl AsRef<str>, impl AsRef<str>)]) -> String {
    let health = if keys.lines().any(|l| l.trim_start().starts_with("health ")) {
        ""
    } else {
        "health = { check = \"none\" }\n"
    };
    let mut s = format!("[[backend]]\nname = \"{name}\"\n{keys}{health}\n");
    for (server, addr) in servers {
        s.push_str(&server_toml(server.as_ref(), addr.as_ref()));
    }
    s
}

/// The [`pool_toml`] key of a roundrobin pool.
pub const ROUNDROBIN: &str = "balance = \"roundrobin\"\n";

/// The lab's web servers as [`pool_toml`] takes them: `webK` on backend
/// `K`'s address ([`backend_addr`]) and `port`, for each `K` in `ks`.
pub fn web_servers(ks: impl IntoIterator<Item = usize>, port: u16) -> Vec<(String, String)> {
    ks.into_iter()
        .map(|k| (format!("web{k}"), format!("{}:{port}", backend_addr(k))))
        .collect()
}

/// An `[[l4]]` TCP VIP on `VIP:port`, forwarded to `backend` by NAT.
pub fn l4_toml(name: &str, port: u16, backend: &str) -> String {
    format!(
        "[[l4]]\nname = \"{name}\"\nvip = \"{VIP}:{port}\"\nbackend = \"{backend}\"\nforward = \"nat\"\n\n"
    )
}

/// A `[[frontend]]` line that turns its access log off.
pub const NO_ACCESS_LOG: &str = "access_log = \"off\"\n";

/// A `[[frontend]]` on `VIP:port` to `backend`, then the `extra` lines.
pub fn frontend_toml(name: &str, port: u16, backend: &str, extra: &str) -> String {
    frontend_at_toml(name, &format!("{VIP}:{port}"), backend, extra)
}

/// A `[[frontend]]` bound to `bind` (`ADDR:PORT`) to `backend`, then the
/// `extra` lines.
pub fn frontend_at_toml(name: &str, bind: &str, backend: &str, extra: &str) -> String {
    format!(
        "[[frontend]]\nname = \"{name}\"\nbind = \"{bind}\"\ndefault_backend = \"{backend}\"\n{extra}\n"
    )
}

/// Starts a server named `webK` in backend namespace `K` on
/// `backendK-addr:port` for each `K` in `ks`, with `start` (such as
/// `HttpBackend::start`, `GrpcBackend::start` or
/// `Namespace::spawn_backend`); the guards in order.
pub fn start_servers<T>(
    topo: &L4Topology,
    ks: impl IntoIterator<Item = usize>,
    port: u16,
    start: impl Fn(&Namespace, &str, SocketAddr) -> Result<T>,
) -> Result<Vec<T>> {
    ks.into_iter()
        .map(|k| {
            let addr = SocketAddr::from((topo.backend_addrs()[k - 1], port));
            start(topo.backend(k), &format!("web{k}"), addr)
        })
        .collect()
}

/// The lab most L7 tests use, everything named `tag`: an [`L4Topology`]
/// with `n` backends, an [`HttpBackend`] `webK` on port 8080 in each, and
/// a [`TempDir`] for the config. Bind them in this order (they drop in
/// reverse: the directory, the servers, then the lab).
pub fn http_lab(tag: &str, n: usize) -> Result<(L4Topology, Vec<HttpBackend>, TempDir)> {
    let topo = L4Topology::build(Lab::new(tag)?, n)?;
    let web = start_servers(&topo, 1..=n, 8080, HttpBackend::start)?;
    let dir = TempDir::new(tag)?;
    Ok((topo, web, dir))
}

/// Calls `make` and runs the future it returns on a current-thread tokio
/// runtime, on a thread inside `ns` (its sockets live there); the
/// future's output.
pub fn block_on_in<F>(ns: &Namespace, make: impl FnOnce() -> F + Send) -> Result<F::Output>
where
    F: Future,
    F::Output: Send,
{
    ns.with(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // `make` runs inside the runtime (tokio timers need it).
        Ok(rt.block_on(async { make().await }))
    })?
}

/// An HTTP/2 client connection over `io` (its driver spawned), once the
/// server's SETTINGS have enabled extended CONNECT (RFC 8441).
pub async fn h2_extended_connect<IO>(io: IO) -> Result<h2::client::SendRequest<bytes::Bytes>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::handshake(io).await.context("h2 handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let send = send.ready().await?;
    // SETTINGS_ENABLE_CONNECT_PROTOCOL comes with the server's SETTINGS.
    for _ in 0..100 {
        if send.is_extended_connect_protocol_enabled() {
            return Ok(send);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the server's SETTINGS do not enable extended CONNECT")
}

/// A WebSocket over HTTP/2 to the h2c frontend on `VIP:port` (RFC 8441
/// extended CONNECT, prior knowledge) for `authority` and `path` that
/// echoes one text message ("over h2"): the client's address, the
/// CONNECT response's headers and the reply.
pub async fn h2_websocket_echo(
    port: u16,
    authority: &str,
    path: &str,
) -> Result<(SocketAddr, http::HeaderMap, String)> {
    use anyhow::ensure;
    let tcp = tokio::net::TcpStream::connect((VIP, port)).await?;
    let client = tcp.local_addr()?;
    let mut send = h2_extended_connect(tcp).await?;
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{authority}{path}"))
        .extension(h2::ext::Protocol::from("websocket"))
        .header("sec-websocket-version", "13")
        .body(())?;
    let (resp, mut tx) = send.send_request(req, false)?;
    let resp = tokio::time::timeout(Duration::from_secs(5), resp).await??;
    ensure!(resp.status() == 200, "extended CONNECT: {resp:?}");
    tx.send_data(ws_client_frame(0x1, b"over h2"), false)?;
    let (head, mut rx) = resp.into_parts();
    let (opcode, payload) = h2_ws_frame(&mut rx, &mut bytes::BytesMut::new()).await?;
    ensure!(opcode == 0x1, "not a text frame: opcode {opcode}");
    let reply = String::from_utf8(payload.to_vec())?;
    Ok((client, head.headers, reply))
}

/// Echoes three text messages over `ws://VIP:8080/ws`; the client's
/// address and the replies. Panics on any failure.
pub async fn websocket_echo() -> (SocketAddr, Vec<String>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let stream = tokio::net::TcpStream::connect((VIP, 8080)).await.unwrap();
    let client = stream.local_addr().unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{VIP}:8080/ws"), stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    let mut out = Vec::new();
    for m in ["hello", "through", "xlb"] {
        ws.send(Message::text(m)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo within 5 s")
            .unwrap()
            .unwrap();
        out.push(reply.into_text().unwrap().to_string());
    }
    ws.close(None).await.unwrap();
    (client, out)
}

/// One curl transfer.
#[derive(Debug, Clone)]
pub struct CurlResult {
    pub status: u16,
    /// Lower-cased header names with their values, of the last response.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// curl's stdout (what `-w` writes; the body goes to [`CurlResult::body`]).
    pub stdout: String,
    /// curl's exit code (0 = transfer done).
    pub exit: i32,
    pub stderr: String,
}

impl CurlResult {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs `curl -sS -D <headers> -o <body> ARGS...` in `ns` (no proxy,
/// `timeout` limit) and returns status, headers and the raw body.
pub fn curl(ns: &Namespace, args: &[&str], timeout: Duration) -> Result<CurlResult> {
    let tmp = TempDir::new(&format!("curl-{}", unique()))?;
    let head = tmp.path().join("head");
    let body = tmp.path().join("body");
    let secs = format!("{:.1}", timeout.as_secs_f64());
    let (head_s, body_s) = (head.to_string_lossy(), body.to_string_lossy());
    let mut cmd = vec![
        "curl",
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        &secs,
        "-D",
        &head_s,
        "-o",
        &body_s,
    ];
    cmd.extend_from_slice(args);
    let out: Output = ns.output(&cmd, timeout + Duration::from_secs(5))?;
    let head_text = std::fs::read_to_string(&head).unwrap_or_default();
    // With redirects or 100-continue there are several heads: keep the last.
    let last = head_text
        .split("\r\n\r\n")
        .filter(|h| h.starts_with("HTTP/"))
        .last()
        .unwrap_or("");
    let mut lines = last.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(CurlResult {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        exit: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Like [`curl`] but fails unless the transfer completed with a 2xx status;
/// returns the body as text.
pub fn curl_ok(ns: &Namespace, args: &[&str]) -> Result<String> {
    let r = curl(ns, args, Duration::from_secs(5))?;
    if r.exit != 0 || !(200..300).contains(&r.status) {
        bail!(
            "curl {args:?}: exit {} status {}: {} {}",
            r.exit,
            r.status,
            r.stderr.trim(),
            r.text().trim()
        );
    }
    Ok(r.text())
}

/// Several transfers in one curl run (one client connection while curl can
/// keep it alive).
#[derive(Debug, Clone)]
pub struct CurlMany {
    /// curl's stdout: the bodies and the `-w` lines.
    pub out: String,
    /// The lines naming a server (`webK`), in order.
    pub names: Vec<String>,
    /// Client connections curl opened, summed over the `connects=N` lines.
    pub connects: usize,
}

/// Runs `curl -sS --noproxy * ARGS...` in `ns`; `args` hold the URLs and a
/// `-w` whose line starts with `connects=%{num_connects}` (anything after
/// it follows a space). A non-zero exit is an error.
pub fn curl_many(ns: &Namespace, args: &[&str]) -> Result<CurlMany> {
    let mut cmd = vec!["curl", "-sS", "--noproxy", "*"];
    cmd.extend_from_slice(args);
    let out = ns.run(&cmd)?;
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let names = out
        .lines()
        .filter(|l| l.starts_with("web"))
        .map(str::to_string)
        .collect();
    let mut connects = 0;
    for l in out.lines().filter_map(|l| l.strip_prefix("connects=")) {
        let n = l.split(' ').next().unwrap_or(l);
        connects += n
            .parse::<usize>()
            .with_context(|| format!("bad connects={l:?} in {out:?}"))?;
    }
    Ok(CurlMany {
        out,
        names,
        connects,
    })
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One parsed access log line (see the README's format).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLine {
    pub client: String,
    pub frontend: String,
    pub backend: String,
    pub server: String,
    pub request: String,
    pub status: u16,
    pub bytes: u64,
    /// `accept`, `connect`, `response`, `total`: `None` for `-`.
    pub timings: Vec<(String, Option<f64>)>,
    pub retries: u32,
    pub error: Option<String>,
}

impl AccessLine {
    pub fn timing(&self, name: &str) -> Option<f64> {
        self.timings
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| *v)
    }

    /// Parses a line; `None` when it is not an access log line.
    pub fn parse(line: &str) -> Option<AccessLine> {
        let (head, rest) = line.split_once(" \"")?;
        let mut h = head.split(' ');
        let _time = h.next().filter(|t| t.ends_with('Z') && t.contains('T'))?;
        let client = h.next()?.to_string();
        let frontend = h.next()?.to_string();
        let (backend, server) = h.next()?.split_once('/')?;
        if h.next().is_some() {
            return None;
        }
        let (request, rest) = rest.split_once("\" ")?;
        let (rest, error) = match rest.split_once(" error=\"") {
            Some((r, e)) => (r, Some(e.trim_end_matches('"').to_string())),
            None => (rest, None),
        };
        let mut f = rest.split(' ');
        let status = f.next()?.parse().ok()?;
        let bytes = f.next()?.parse().ok()?;
        let mut timings = Vec::new();
        let mut retries = None;
        for kv in f {
            let (k, v) = kv.split_once('=')?;
            if k == "retries" {
                retries = v.parse().ok();
            } else {
                timings.push((k.to_string(), v.parse().ok()));
            }
        }
        Some(AccessLine {
            client,
            frontend,
            backend: backend.to_string(),
            server: server.to_string(),
            request: request.to_string(),
            status,
            bytes,
            timings,
            retries: retries?,
            error,
        })
    }
}

/// The access log lines the daemon wrote to stderr from line `from` on.
pub fn access_lines(daemon: &XlbDaemon, from: usize) -> Vec<AccessLine> {
    daemon
        .stderr_lines()
        .iter()
        .skip(from)
        .filter_map(|l| AccessLine::parse(l))
        .collect()
}

/// The lines of an access log file, each of which must parse, once the
/// writer thread has had time to write the last requests' lines.
pub fn access_log_file(path: &std::path::Path) -> Vec<AccessLine> {
    std::thread::sleep(std::time::Duration::from_millis(300));
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    eprintln!("access log:\n{text}");
    text.lines()
        .map(|l| AccessLine::parse(l).unwrap_or_else(|| panic!("not an access log line: {l}")))
        .collect()
}

/// A test certificate authority and the server certificates it issues.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Result<TestCa> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key)?;
        let pem = cert.pem();
        let issuer = rcgen::Issuer::new(params, key);
        Ok(TestCa { issuer, pem })
    }

    /// The CA certificate (PEM), for `curl --cacert`.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` signed by this CA: (cert PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> Result<(String, String)> {
        let key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("test"),
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// [`TestCa::issue`] for `names`, written to `dir` as `STEM.pem` and
    /// `STEM.key`.
    pub fn issue_to(&self, dir: &TempDir, stem: &str, names: &[&str]) -> Result<()> {
        let (cert, key) = self.issue(names)?;
        dir.write(&format!("{stem}.pem"), cert)?;
        dir.write(&format!("{stem}.key"), key)?;
        Ok(())
    }
}

/// A frontend's `tls` key for the certificates of [`sni_certs`]:
/// a.xlb.test by default, b.xlb.test by SNI.
pub const SNI_TLS: &str =
    "tls = { cert = \"a.pem\", key = \"a.key\", sni = [{ cert = \"b.pem\", key = \"b.key\" }] }\n";

/// A test CA, written to `dir` as `ca.pem`, and the certificates
/// [`SNI_TLS`] names: `a.pem`/`a.key` for a.xlb.test, `b.pem`/`b.key` for
/// b.xlb.test and *.b.xlb.test.
pub fn sni_certs(dir: &TempDir) -> Result<TestCa> {
    let ca = TestCa::new("xlb test CA")?;
    dir.write("ca.pem", ca.pem())?;
    ca.issue_to(dir, "a", &["a.xlb.test"])?;
    ca.issue_to(dir, "b", &["b.xlb.test", "*.b.xlb.test"])?;
    Ok(ca)
}

/// A TCP connection from `ns` (the socket lives there) to `VIP:port`
/// (2 s to connect), reads timing out after `read_timeout`.
pub fn connect_vip(
    ns: &Namespace,
    port: u16,
    read_timeout: Duration,
) -> Result<std::net::TcpStream> {
    let addr = SocketAddr::from((VIP.parse::<std::net::Ipv4Addr>()?, port));
    let s = ns
        .with(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)))?
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(read_timeout))?;
    Ok(s)
}

/// A minimal HTTP/1.1 client on a std stream (for keep-alive loops and
/// hand-made requests): sends `GET path` with `Host: host` and reads one
/// response (Content-Length or chunked). Returns (status, body).
pub fn http1_get(
    stream: &mut std::net::TcpStream,
    reader: &mut std::io::BufReader<std::net::TcpStream>,
    host: &str,
    path: &str,
) -> Result<(u16, Vec<u8>)> {
    use std::io::Write;
    // One write: several small ones would meet Nagle and delayed ACKs.
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(req.as_bytes())?;
    read_response(reader)
}

/// Reads one HTTP/1.1 response from `r`.
pub fn read_response(r: &mut impl std::io::BufRead) -> Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("connection closed before a response");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut len = None;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            bail!("connection closed in the response head");
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                len = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok((status, body))
}

/// A final, masked client frame (RFC 6455 §5.2) with a short payload.
pub fn ws_client_frame(opcode: u8, payload: &[u8]) -> Bytes {
    assert!(payload.len() < 126);
    let mask = [0x5a, 0x17, 0xc3, 0x81];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    Bytes::from(f)
}

/// One complete unmasked server frame taken from the front of `buf`
/// (opcode, payload), or `None` when more bytes are needed.
fn ws_server_frame(buf: &mut BytesMut) -> Result<Option<(u8, Bytes)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 != 0 {
        bail!("the server masked its frame");
    }
    if buf[0] & 0x80 == 0 {
        bail!("a fragment: the echo servers send whole frames");
    }
    let (len, head) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        126 => return Ok(None),
        127 => bail!("unexpectedly long frame"),
        n => (n as usize, 2),
    };
    if buf.len() < head + len {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    buf.advance(head);
    Ok(Some((opcode, buf.split_to(len).freeze())))
}

/// The next whole WebSocket frame (opcode, payload) the server sends on
/// an HTTP/2 stream (RFC 8441), reading into `pending` as needed.
pub async fn h2_ws_frame(rx: &mut h2::RecvStream, pending: &mut BytesMut) -> Result<(u8, Bytes)> {
    loop {
        if let Some(f) = ws_server_frame(pending)? {
            return Ok(f);
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), rx.data())
            .await
            .context("echo within 5 s")?
            .context("stream ended before the echo")??;
        let _ = rx.flow_control().release_capacity(chunk.len());
        pending.extend_from_slice(&chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::AccessLine;

    #[test]
    fn access_lines_parse() {
        let l = AccessLine::parse(
            "2026-11-26T10:00:00.123Z 198.18.0.2:40312 web-l7 web/web1 \"GET /a b HTTP/1.1\" 200 1043 accept=0.1 connect=- response=1.2 total=1.5 retries=1 error=\"x y\"",
        )
        .unwrap();
        assert_eq!(l.server, "web1");
        assert_eq!(l.request, "GET /a b HTTP/1.1");
        assert_eq!((l.status, l.bytes, l.retries), (200, 1043, 1));
        assert_eq!(l.timing("connect"), None);
        assert_eq!(l.timing("response"), Some(1.2));
        assert_eq!(l.error.as_deref(), Some("x y"));
        assert!(AccessLine::parse("2026-11-26T10:00:00Z INFO xlb running").is_none());
    }
}
