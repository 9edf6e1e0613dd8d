//! HTTP/3 end to end (lab): a QUIC + HTTP/3 client written here (quinn,
//! h3, h3-quinn; the lab's curl has no HTTP/3) in the client namespace,
//! xlb's `http3 = true` frontend on the VIP in the lb namespace, the
//! in-process HTTP/1.1 backends behind it.
//!
//! - `http3_frontend` (two L7 threads): QUIC connections spread over
//!   both threads (`show info`'s `L7_thread_conns`); the certificate
//!   chosen by SNI (the client verifies it against the test CA made here,
//!   for the name it asked for);
//!   roundrobin exactly in turn over one QUIC connection; a POST body
//!   echoed intact; `X-Forwarded-Proto: https`; `HTTP/3.0` in the access
//!   log; `alt-svc` on the TCP TLS listener's responses; then reloads: a
//!   kept bind keeps the open QUIC connection and its next request uses
//!   the new settings, removing `http3` closes it. Also gRPC over HTTP/3
//!   (response trailers after streamed messages) and junk datagrams at
//!   the QUIC port.
//! - `http3_bind_taken_fails_start`: a UDP port already taken stops the
//!   start with an error naming the frontend.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result, bail};
use xlb_lab::{
    L4Topology, Lab, TempDir,
    api::ctl_ok,
    grpc::GrpcBackend,
    h3_client::{self, SendRequest},
    http_backend::noise,
    l7::{
        ROUNDROBIN, SNI_TLS, VIP, access_lines, curl, frontend_toml, head_toml, head_toml_with,
        http_lab, pool_toml, sni_certs, start_servers, web_servers,
    },
};

const PORT: u16 = 8443;
const T: Duration = Duration::from_secs(5);

fn config(dir: &TempDir, backend: &str, http3: bool) -> String {
    let extra = format!("{SNI_TLS}http3 = {http3}\nidle_timeout_ms = 10000\n");
    // gRPC (HTTP/2 to the servers) behind HTTP/3: trailers pass.
    let grpc = pool_toml(
        "grpc",
        &format!("{ROUNDROBIN}proto = \"h2\"\n"),
        &web_servers([1], 9090),
    );
    format!(
        "{}{}{}{grpc}{}{}",
        head_toml_with(dir, "l7h3", "l7_threads = 2\n"),
        pool_toml("web", ROUNDROBIN, &web_servers(1..=3, 8080)),
        pool_toml("one", ROUNDROBIN, &web_servers([1], 8080)),
        frontend_toml("h3", PORT, backend, &extra),
        frontend_toml(
            "grpc",
            GRPC_PORT,
            "grpc",
            &format!("{SNI_TLS}http3 = true\n")
        ),
    )
}

const GRPC_PORT: u16 = 8444;

/// A gRPC call of `xlb.test.Echo/METHOD` with one message over HTTP/3 on
/// the gRPC frontend: the messages answered and the trailers.
async fn grpc_call(
    send: &mut SendRequest,
    method: &str,
    message: &[u8],
) -> Result<(Vec<Vec<u8>>, http::HeaderMap)> {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "https://a.xlb.test:{GRPC_PORT}/xlb.test.Echo/{method}"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    let (resp, body, trailers) = exchange(send, req, &framed).await?;
    if resp.status() != 200 {
        bail!("gRPC over HTTP/3: status {}", resp.status());
    }
    let mut messages = Vec::new();
    let mut rest = &body[..];
    while rest.len() >= 5 {
        let n = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let end = (5 + n).min(rest.len());
        messages.push(rest[5..end].to_vec());
        rest = &rest[end..];
    }
    Ok((messages, trailers.context("no trailers")?))
}

/// A QUIC connection to the VIP asking for `host` (SNI), the server's
/// certificate verified against `ca_pem` for that name; HTTP/3 on it.
async fn connect(ca_pem: &str, host: &str) -> Result<(quinn::Endpoint, SendRequest)> {
    connect_to(ca_pem, host, PORT).await
}

async fn connect_to(ca_pem: &str, host: &str, port: u16) -> Result<(quinn::Endpoint, SendRequest)> {
    let endpoint = h3_client::endpoint(ca_pem, "0.0.0.0:0".parse()?, false)?;
    let vip: SocketAddr = format!("{VIP}:{port}").parse()?;
    let conn = tokio::time::timeout(T, endpoint.connect(vip, host)?)
        .await
        .context("QUIC handshake timed out")??;
    Ok((endpoint, h3_client::h3_on(conn).await?))
}

/// One request (`body` sent in 16 KiB frames); the response and its body.
async fn request(
    send: &mut SendRequest,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(http::Response<()>, Vec<u8>)> {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("https://a.xlb.test:{PORT}{path}"))
        .body(())?;
    let (resp, body, _) = exchange(send, req, body).await?;
    Ok((resp, body))
}

/// Sends `req` with `body`; the response, its body and its trailers.
async fn exchange(
    send: &mut SendRequest,
    req: http::Request<()>,
    body: &[u8],
) -> Result<(http::Response<()>, Vec<u8>, Option<http::HeaderMap>)> {
    h3_client::exchange(send, req, body, T).await
}

fn backend_of(resp: &http::Response<()>) -> String {
    resp.headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string()
}

/// `names` go round the three servers, each exactly in turn.
fn assert_in_turn(names: &[String]) {
    let mut first: Vec<&str> = names[..3].iter().map(String::as_str).collect();
    first.sort();
    assert_eq!(first, ["web1", "web2", "web3"], "{names:?}");
    for (i, n) in names.iter().enumerate().skip(3) {
        assert_eq!(n, &names[i - 3], "not in turn: {names:?}");
    }
}

#[test]
fn http3_frontend() {
    let (topo, _web, dir) = http_lab("l7h3", 3).unwrap();
    let _grpc = start_servers(&topo, [1], 9090, GrpcBackend::start).unwrap();
    let ca = sni_certs(&dir).unwrap();
    let cfg = dir.write_config(&config(&dir, "web", true)).unwrap();
    let mut daemon = topo.lb().start_xlb(&cfg);
    let ca_pem = ca.pem().to_string();

    // The TCP TLS listener advertises HTTP/3 on the same port.
    let ca_path = dir.path().join("ca.pem");
    let resolve = format!("a.xlb.test:{PORT}:{VIP}");
    let url = format!("https://a.xlb.test:{PORT}/");
    let tcp_args = [
        "--cacert",
        ca_path.to_str().unwrap(),
        "--resolve",
        &resolve,
        &url,
    ];
    let out = curl(topo.client(), &tcp_args, T).unwrap();
    assert_eq!((out.exit, out.status), (0, 200), "{}", out.stderr);
    assert_eq!(out.header("alt-svc"), Some("h3=\":8443\"; ma=86400"));

    // Four QUIC connections open at once go to the least loaded of the
    // two L7 threads each: both serve two (plus, at most, curl's TCP
    // connection if it has not closed yet).
    let sock = dir.socket();
    let info = xlb_lab::l7::block_on_in(topo.client(), || async {
        let mut open = Vec::new();
        for _ in 0..4 {
            let (ep, mut send) = connect(&ca_pem, "a.xlb.test").await?;
            let (resp, _) = request(&mut send, "GET", "/", b"").await?;
            assert_eq!(resp.status(), 200);
            open.push((ep, send));
        }
        let info = ctl_ok(&sock, "show info")?;
        drop(open);
        anyhow::Ok(info)
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.stderr()));
    let conns: Vec<usize> = info
        .lines()
        .find_map(|l| l.strip_prefix("L7_thread_conns: "))
        .unwrap_or_else(|| panic!("no L7_thread_conns: {info}"))
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    eprintln!("open connections per L7 thread: {conns:?}");
    assert_eq!(conns.len(), 2, "{info}");
    assert!(conns.iter().all(|&n| n >= 2), "not spread: {info}");

    let posted = noise(100_000);
    let log_from = daemon.stderr_lines().len();
    let (names, echoed, headers) = xlb_lab::l7::block_on_in(topo.client(), || async {
        // SNI: each name gets a certificate valid for it (the client
        // verifies), and a name neither carries gets the default one,
        // which then fails verification.
        for host in ["b.xlb.test", "x.b.xlb.test"] {
            let (_ep, mut send) = connect(&ca_pem, host).await.context(host)?;
            let (resp, _) = request(&mut send, "GET", "/", b"").await?;
            assert_eq!(resp.status(), 200, "{host}");
        }
        match connect(&ca_pem, "c.xlb.test").await {
            Ok(_) => bail!("c.xlb.test: expected a certificate error"),
            Err(e) => eprintln!("c.xlb.test refused as expected: {e:#}"),
        }

        let (_ep, mut send) = connect(&ca_pem, "a.xlb.test").await?;
        let mut names = Vec::new();
        for _ in 0..6 {
            let (resp, body) = request(&mut send, "GET", "/", b"").await?;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), http::Version::HTTP_3);
            assert_eq!(String::from_utf8_lossy(&body).trim(), backend_of(&resp));
            names.push(backend_of(&resp));
        }
        let (resp, echoed) = request(&mut send, "POST", "/echo", &posted).await?;
        assert_eq!(resp.status(), 200);
        let (_, headers) = request(&mut send, "GET", "/headers", b"").await?;

        // Junk datagrams at the QUIC port: dropped, nothing breaks.
        let junk = std::net::UdpSocket::bind("0.0.0.0:0")?;
        let mut long_header = vec![0xc0, 0, 0, 0, 1, 20];
        long_header.resize(1200, 0xee);
        let mut unknown_version = vec![0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8];
        unknown_version.resize(1200, 0x11);
        for d in [
            &[0u8][..],
            &[0xff; 1200],
            &long_header,
            &unknown_version,
            &[0x40; 40],
        ] {
            junk.send_to(d, format!("{VIP}:{PORT}"))?;
        }
        let (resp, _) = request(&mut send, "GET", "/", b"").await?;
        assert_eq!(resp.status(), 200, "after junk datagrams");

        // Response trailers (gRPC status) pass, after streamed messages.
        let (_ep, mut grpc) = connect_to(&ca_pem, "a.xlb.test", GRPC_PORT).await?;
        let (messages, trailers) = grpc_call(&mut grpc, "Unary", b"hello").await?;
        assert_eq!(messages, [b"web1:hello".to_vec()]);
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
        let (messages, trailers) = grpc_call(&mut grpc, "ServerStream", b"3").await?;
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"10"[..])
        );
        anyhow::Ok((
            names,
            echoed,
            String::from_utf8_lossy(&headers).into_owned(),
        ))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.stderr()));
    eprintln!("HTTP/3 GETs went to {names:?}");
    assert_in_turn(&names);
    assert_eq!(echoed.len(), posted.len());
    assert!(echoed == posted, "echoed body differs");
    assert!(headers.contains("x-forwarded-proto: https"), "{headers}");
    assert!(headers.contains("x-forwarded-for: 198.18.0.2"), "{headers}");

    let lines = access_lines(&daemon, log_from);
    let h3_lines: Vec<_> = lines
        .iter()
        .filter(|l| l.request.ends_with("HTTP/3.0"))
        .collect();
    // 2 SNI GETs, 6 GETs, the POST, /headers, the GET after junk; 2 gRPC.
    assert_eq!(h3_lines.len(), 13, "{lines:#?}");
    assert!(h3_lines.iter().all(|l| l.status == 200), "{h3_lines:#?}");
    let grpc = h3_lines.iter().filter(|l| l.frontend == "grpc").count();
    assert_eq!(grpc, 2, "{h3_lines:#?}");
    assert!(
        h3_lines
            .iter()
            .any(|l| l.request == "POST /echo HTTP/3.0" && l.bytes == posted.len() as u64),
        "{h3_lines:#?}"
    );

    // Reloads, with one QUIC connection open throughout.
    let cfg_path = cfg.clone();
    let dir_ref = &dir;
    let daemon_ref = &mut daemon;
    xlb_lab::l7::block_on_in(topo.client(), move || async move {
        let (_ep, mut send) = connect(&ca_pem, "a.xlb.test").await?;
        request(&mut send, "GET", "/", b"").await?;
        // Same bind, now to backend "one": the open connection goes on and
        // its next requests see the new frontend.
        std::fs::write(&cfg_path, config(dir_ref, "one", true))?;
        daemon_ref.reload(T)?;
        for _ in 0..3 {
            let (resp, _) = request(&mut send, "GET", "/", b"").await?;
            assert_eq!(backend_of(&resp), "web1");
        }
        // http3 off: the endpoint closes, and the open connection with it.
        std::fs::write(&cfg_path, config(dir_ref, "web", false))?;
        daemon_ref.reload(T)?;
        if request(&mut send, "GET", "/", b"").await.is_ok() {
            bail!("the QUIC connection outlived its endpoint");
        }
        let short = tokio::time::timeout(Duration::from_secs(2), connect(&ca_pem, "a.xlb.test"));
        if let Ok(Ok(_)) = short.await {
            bail!("HTTP/3 still served after http3 = false");
        }
        anyhow::Ok(())
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.stderr()));

    // Without http3 the TCP listener no longer advertises it.
    let out = curl(topo.client(), &tcp_args, T).unwrap();
    assert_eq!((out.exit, out.status), (0, 200), "{}", out.stderr);
    assert_eq!(out.header("alt-svc"), None);
}

/// A UDP port another process holds: xlb does not start, and says which
/// frontend could not bind what.
#[test]
fn http3_bind_taken_fails_start() {
    let topo = L4Topology::build(Lab::new("l7h3bind").unwrap(), 1).unwrap();
    let dir = TempDir::new("l7h3bind").unwrap();
    sni_certs(&dir).unwrap();
    let text = format!(
        "{}{}{}",
        head_toml(&dir, "l7h3bind"),
        pool_toml("web", ROUNDROBIN, &web_servers([1], 8080)),
        frontend_toml("h3", PORT, "web", &format!("{SNI_TLS}http3 = true\n")),
    );
    let cfg = dir.write_config(&text).unwrap();
    let _taken = topo
        .lb()
        .with(|| std::net::UdpSocket::bind(format!("{VIP}:{PORT}")))
        .unwrap()
        .unwrap();
    let daemon = topo.lb().spawn_xlb_nowait(&cfg).unwrap();
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "xlb should fail: {status:?}\n{}",
        daemon.stderr()
    );
    let err = daemon.stderr();
    assert!(
        err.contains("frontend h3: HTTP/3 (QUIC) on UDP 198.18.0.100:8443"),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
}
