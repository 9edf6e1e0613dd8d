//! Two L7 features end to end in the lab:
//!
//! - `access_log_to_syslog_over_udp`: `access_log = "syslog:IP:PORT"`; a
//!   UDP sink in a backend namespace gets one RFC 5424 datagram per
//!   request (PRI 134, version 1, app `xlb`, the daemon's pid) whose
//!   message is the documented access log line.
//! - `websocket_over_http2`: RFC 8441 extended CONNECT, by a hand-made
//!   client on the `h2` crate, over h2c prior knowledge and over TLS
//!   (ALPN h2), to the lab backend's WebSocket echo through xlb; the
//!   server's SETTINGS enable the extended CONNECT; a plain CONNECT over
//!   HTTP/2 still gets 405 (even with `connect = true`) and malformed
//!   extended CONNECTs a 400.

use std::{net::UdpSocket, sync::Arc, time::Duration};

use anyhow::{Result, ensure};
use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use xlb_lab::l7::{
    AccessLine, TestCa, VIP, access_log_file, block_on_in, curl_ok, frontend_toml, h2_ws_frame,
    http_lab, web1_config, ws_client_frame,
};

#[test]
fn access_log_to_syslog_over_udp() {
    let (topo, _web, dir) = http_lab("l7syslog", 1).unwrap();
    // The syslog server: a UDP socket in backend 1's namespace.
    let sink = topo
        .backend(1)
        .with(|| UdpSocket::bind("198.18.1.11:5514"))
        .unwrap()
        .unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cfg = web1_config(
        &dir,
        "l7syslog",
        &frontend_toml(
            "fe",
            8080,
            "web",
            "access_log = \"syslog:198.18.1.11:5514\"\n",
        ),
    );
    let daemon = topo.lb().start_xlb(&cfg);
    assert_eq!(
        curl_ok(
            topo.client(),
            &[&format!("http://{VIP}:8080/syslog/check?x=1")]
        )
        .unwrap(),
        "web1\n"
    );

    let mut buf = [0u8; 9000];
    let (n, from) = sink.recv_from(&mut buf).expect("a syslog datagram");
    let datagram = std::str::from_utf8(&buf[..n]).unwrap();
    eprintln!("syslog datagram from {from}: {datagram}");
    // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
    let f: Vec<&str> = datagram.splitn(8, ' ').collect();
    assert_eq!(f.len(), 8, "{datagram}");
    assert_eq!(f[0], "<134>1", "local0.info, version 1");
    assert!(f[1].ends_with('Z') && f[1].contains('T'), "{}", f[1]);
    assert!(!f[2].is_empty());
    assert_eq!(f[3], "xlb");
    assert_eq!(f[4], daemon.pid().to_string());
    assert_eq!((f[5], f[6]), ("-", "-"));
    let line = AccessLine::parse(f[7]).expect("the access log line as the message");
    assert_eq!(line.request, "GET /syslog/check?x=1 HTTP/1.1");
    assert_eq!((line.status, line.server.as_str()), (200, "web1"));
    assert_eq!(line.frontend, "fe");
    assert!(line.client.starts_with("198.18.0.2:"), "{line:?}");
    // Not on stderr as well.
    assert!(
        daemon
            .stderr_lines()
            .iter()
            .all(|l| AccessLine::parse(l).is_none())
    );
}

#[test]
fn websocket_over_http2() {
    let (topo, _web, dir) = http_lab("l7wsh2", 1).unwrap();
    let ca = TestCa::new("ws h2 CA").unwrap();
    let (cert, key) = ca.issue(&["xlb.test"]).unwrap();
    dir.write("cert.pem", cert).unwrap();
    dir.write("key.pem", key).unwrap();
    let log = dir.path().join("access.log");
    let log_line = format!("access_log = \"{}\"\n", log.display());
    let frontends = format!(
        "{}{}",
        frontend_toml(
            "h2c",
            8080,
            "web",
            &format!("h2c = true\nconnect = true\n{log_line}")
        ),
        frontend_toml(
            "tls",
            8443,
            "web",
            &format!(
                "tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\nconnect = true\n{log_line}"
            ),
        ),
    );
    let cfg = web1_config(&dir, "l7wsh2", &frontends);
    let _daemon = topo.lb().start_xlb(&cfg);
    let ca_pem = ca.pem().to_string();

    let words = ["hello", "over", "h2"];
    let echoed = block_on_in(topo.client(), || async {
        let tcp = tokio::net::TcpStream::connect((VIP, 8080)).await?;
        let h2c = session(tcp, "http", &format!("{VIP}:8080"), &words).await?;
        let tcp = tokio::net::TcpStream::connect((VIP, 8443)).await?;
        let tls = tls_connect(tcp, &ca_pem).await?;
        let h2 = session(tls, "https", "xlb.test:8443", &words).await?;
        anyhow::Ok((h2c, h2))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(echoed.0, words, "h2c");
    assert_eq!(echoed.1, words, "TLS h2");

    let lines = access_log_file(&log);
    for fe in ["h2c", "tls"] {
        let mine: Vec<_> = lines.iter().filter(|l| l.frontend == fe).collect();
        let summary: Vec<_> = mine
            .iter()
            .map(|l| (l.request.as_str(), l.status))
            .collect();
        assert_eq!(
            summary,
            [
                ("CONNECT /ws HTTP/2.0", 200),
                ("CONNECT 198.18.1.11:8080 HTTP/2.0", 405),
                ("CONNECT /ws HTTP/2.0", 400),
                ("CONNECT /ws HTTP/2.0", 400),
            ],
            "{fe}"
        );
        assert_eq!(mine[0].server, "web1");
        // `connect = true` tunnels CONNECT over HTTP/1.1 only.
        let why = mine[1].error.as_deref().unwrap_or("");
        assert!(why.contains("only tunnelled over HTTP/1.1"), "{why}");
        assert!(mine[0].timing("connect").is_some() && mine[0].timing("response").is_some());
    }
}

/// One HTTP/2 connection: checks the server allows extended CONNECT,
/// echoes `words` over a WebSocket on one stream, then checks a plain
/// CONNECT gets 405 and two malformed extended CONNECTs 400.
async fn session<IO>(io: IO, scheme: &str, authority: &str, words: &[&str]) -> Result<Vec<String>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut send = xlb_lab::l7::h2_extended_connect(io).await?;

    let url = format!("{scheme}://{authority}/ws");
    let ws = |protocol: &str, version: Option<&str>| {
        let mut b = Request::builder()
            .method(Method::CONNECT)
            .uri(&url)
            .extension(h2::ext::Protocol::from(protocol));
        if let Some(v) = version {
            b = b.header("sec-websocket-version", v);
        }
        b.body(())
    };
    let (resp, mut tx) = send.send_request(ws("websocket", Some("13"))?, false)?;
    let resp = tokio::time::timeout(Duration::from_secs(5), resp).await??;
    ensure!(resp.status() == StatusCode::OK, "CONNECT: {resp:?}");
    let mut rx = resp.into_body();
    let mut pending = BytesMut::new();
    let mut out = Vec::new();
    for w in words {
        tx.send_data(ws_client_frame(0x1, w.as_bytes()), false)?;
        let (opcode, payload) = h2_ws_frame(&mut rx, &mut pending).await?;
        ensure!(opcode == 0x1, "opcode {opcode}");
        out.push(String::from_utf8(payload.to_vec())?);
    }
    tx.send_data(ws_client_frame(0x8, &1000u16.to_be_bytes()), true)?;

    // Plain CONNECT (no :protocol) over HTTP/2: still refused.
    let plain = Request::builder()
        .method(Method::CONNECT)
        .uri("198.18.1.11:8080")
        .body(())?;
    let status = answer(&mut send, plain).await?;
    ensure!(
        status == StatusCode::METHOD_NOT_ALLOWED,
        "plain CONNECT: {status}"
    );
    // Malformed: another protocol, no Sec-WebSocket-Version.
    for (req, what) in [
        (ws("chat", Some("13"))?, ":protocol chat"),
        (ws("websocket", None)?, "no version"),
    ] {
        let status = answer(&mut send, req).await?;
        ensure!(status == StatusCode::BAD_REQUEST, "{what}: {status}");
    }
    Ok(out)
}

/// Sends `req` (no body) and returns the response status.
async fn answer(send: &mut h2::client::SendRequest<Bytes>, req: Request<()>) -> Result<StatusCode> {
    let (resp, _tx) = send.send_request(req, true)?;
    let resp = tokio::time::timeout(Duration::from_secs(5), resp).await??;
    Ok(resp.status())
}

/// A TLS client (ALPN h2) trusting `ca_pem`, for the name `xlb.test`.
async fn tls_connect(
    tcp: tokio::net::TcpStream,
    ca_pem: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio_rustls::rustls::{
        self,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("xlb.test")?, tcp)
        .await?;
    ensure!(
        tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        "ALPN did not pick h2"
    );
    Ok(tls)
}
