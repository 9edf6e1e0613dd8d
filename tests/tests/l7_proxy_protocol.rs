//! The PROXY protocol on the L7 tier, end to end in the lab:
//!
//! - `accept_proxy_takes_the_client_from_the_header`: with `accept_proxy`
//!   a v1 and a v2 header's source address reaches the server in
//!   `X-Forwarded-For` and the access log; a plain HTTP request without
//!   a header gets no answer and its connection is closed.
//! - `send_proxy_names_the_client_to_the_server`: a server that requires
//!   a PROXY header (`proxy_server`) gets v2 `LOCAL` from the health
//!   checks and the client's address on request connections.
//! - `send_proxy_http3_requests_share_one_server_connection`: the
//!   requests of one HTTP/3 connection reuse one server connection (its
//!   PROXY header naming that QUIC client); another QUIC connection gets
//!   its own.

use std::{
    io::{BufReader, Read, Write},
    thread,
    time::Duration,
};

use ppp::v2;
use xlb_lab::l7::{
    VIP, access_lines, connect_vip, frontend_toml, http_lab, read_response, web1_config,
};

const TAG: &str = "l7pp";

#[test]
fn accept_proxy_takes_the_client_from_the_header() {
    let (topo, _web, dir) = http_lab(TAG, 1).unwrap();
    let cfg = web1_config(
        &dir,
        TAG,
        &frontend_toml("fe", 8080, "web", "accept_proxy = true\n"),
    );
    let daemon = topo.lb().start_xlb(&cfg);
    let mark = daemon.stderr_lines().len();
    let request = format!("GET /headers HTTP/1.1\r\nHost: {VIP}\r\n\r\n");

    let v1 = format!("PROXY TCP4 198.18.77.7 {VIP} 40000 8080\r\n").into_bytes();
    let v2 = v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (
            "198.18.77.8:40001".parse::<std::net::SocketAddr>().unwrap(),
            format!("{VIP}:8080")
                .parse::<std::net::SocketAddr>()
                .unwrap(),
        ),
    )
    .build()
    .unwrap();
    for (header, client) in [(v1, "198.18.77.7"), (v2, "198.18.77.8")] {
        let mut s = connect_vip(topo.client(), 8080, Duration::from_secs(5)).unwrap();
        // Header and request in one write, as a balancer in front sends them.
        s.write_all(&[header.as_slice(), request.as_bytes()].concat())
            .unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let (status, body) = read_response(&mut r).unwrap();
        let body = String::from_utf8_lossy(&body).to_lowercase();
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!("x-forwarded-for: {client}")),
            "{client} not forwarded:\n{body}"
        );
    }

    // No header: closed without a response.
    let mut s = connect_vip(topo.client(), 8080, Duration::from_secs(5)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut rest = Vec::new();
    let n = s.read_to_end(&mut rest).unwrap_or(0);
    assert_eq!(n, 0, "answered without a PROXY header: {rest:?}");

    thread::sleep(Duration::from_millis(300));
    let lines = access_lines(&daemon, mark);
    let clients: Vec<&str> = lines.iter().map(|l| l.client.as_str()).collect();
    assert!(
        clients.iter().any(|c| c.starts_with("198.18.77.7:40000")),
        "{clients:?}"
    );
    assert!(
        clients.iter().any(|c| c.starts_with("198.18.77.8:40001")),
        "{clients:?}"
    );
    assert!(
        lines.iter().any(|l| l.status == 400
            && l.error
                .as_deref()
                .is_some_and(|e| e.contains("PROXY header"))),
        "{lines:#?}"
    );
}

/// `send_proxy = "v2"`: a server that requires a PROXY header sees v2
/// `LOCAL` headers from the `http` health checks (so it stays UP) and
/// the client namespace's address on the connection of a request.
#[test]
fn send_proxy_names_the_client_to_the_server() {
    let tag = "l7pps";
    let topo = xlb_lab::L4Topology::build(xlb_lab::Lab::new(tag).unwrap(), 1).unwrap();
    let addr = std::net::SocketAddr::from((topo.backend_addrs()[0], 8090));
    let server = xlb_lab::proxy_server::ProxyServer::start(topo.backend(1), addr).unwrap();
    let dir = xlb_lab::TempDir::new(tag).unwrap();
    let keys = "send_proxy = \"v2\"\n\
                health = { check = \"http\", path = \"/\", interval_ms = 100, timeout_ms = 500, rise = 1, fall = 1 }\n";
    let text = format!(
        "{}{}{}",
        xlb_lab::l7::head_toml(&dir, tag),
        xlb_lab::l7::pool_toml("web", keys, &[("web1", addr.to_string())]),
        frontend_toml("fe", 8080, "web", ""),
    );
    let cfg = dir.write_config(&text).unwrap();
    let daemon = topo.lb().start_xlb(&cfg);
    thread::sleep(Duration::from_millis(600));
    let seen = server.seen();
    assert!(
        seen.iter().filter(|s| *s == "LOCAL").count() >= 2,
        "{seen:?}"
    );
    assert!(!seen.iter().any(|s| s == "INVALID"), "{seen:?}");
    let body = xlb_lab::l7::curl_ok(topo.client(), &[&format!("http://{VIP}:8080/")]).unwrap();
    let client = topo.client_addr().to_string();
    assert!(
        body.starts_with(&format!("{client}:")),
        "server saw {body:?}, client {client}"
    );
    // Still UP after the checks: no server error, the request went through.
    assert!(
        !daemon.stderr().contains("server is DOWN"),
        "{}",
        daemon.stderr()
    );
}

/// `send_proxy` behind HTTP/3: the server connection that carries a
/// QUIC connection's PROXY header serves all of that connection's
/// requests (the connection's private pool lives as long as it, not one
/// request), and a second QUIC connection gets its own, naming its own
/// address.
#[test]
fn send_proxy_http3_requests_share_one_server_connection() {
    let tag = "l7pph3";
    let topo = xlb_lab::L4Topology::build(xlb_lab::Lab::new(tag).unwrap(), 1).unwrap();
    let addr = std::net::SocketAddr::from((topo.backend_addrs()[0], 8090));
    let server = xlb_lab::proxy_server::ProxyServer::start(topo.backend(1), addr).unwrap();
    let dir = xlb_lab::TempDir::new(tag).unwrap();
    let ca = xlb_lab::l7::sni_certs(&dir).unwrap();
    let text = format!(
        "{}{}{}",
        xlb_lab::l7::head_toml(&dir, tag),
        xlb_lab::l7::pool_toml(
            "web",
            "send_proxy = \"v2\"\n",
            &[("web1", addr.to_string())]
        ),
        frontend_toml(
            "fe",
            8443,
            "web",
            &format!("{}http3 = true\n", xlb_lab::l7::SNI_TLS)
        ),
    );
    let cfg = dir.write_config(&text).unwrap();
    let daemon = topo.lb().start_xlb(&cfg);
    let ca_pem = ca.pem().to_string();
    let client_ip = topo.client_addr().to_string();
    let t = Duration::from_secs(5);
    // Each QUIC connection: its client port, and what the server said
    // (the PROXY header's source) to each of its requests.
    let answers = xlb_lab::l7::block_on_in(topo.client(), || async {
        let mut answers = Vec::new();
        for _ in 0..2 {
            let endpoint = xlb_lab::h3_client::endpoint(&ca_pem, "0.0.0.0:0".parse()?, false)?;
            let port = endpoint.local_addr()?.port();
            let vip: std::net::SocketAddr = format!("{VIP}:8443").parse()?;
            let conn = tokio::time::timeout(t, endpoint.connect(vip, "a.xlb.test")?).await??;
            let mut send = xlb_lab::h3_client::h3_on(conn).await?;
            let mut bodies = Vec::new();
            for i in 0..4 {
                let req = http::Request::get(format!("https://a.xlb.test:8443/r{i}")).body(())?;
                let (resp, body, _) = xlb_lab::h3_client::exchange(&mut send, req, b"", t).await?;
                anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
                bodies.push(String::from_utf8(body)?);
            }
            answers.push((port, bodies));
        }
        anyhow::Ok(answers)
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.stderr()));

    for (port, bodies) in &answers {
        let source = format!("{client_ip}:{port}");
        assert_eq!(bodies, &vec![source; 4], "{answers:?}");
    }
    // One server connection per QUIC connection, each with its client's
    // header (no health checks here: every connection is a request's).
    let want: Vec<String> = answers
        .iter()
        .map(|(port, _)| format!("{client_ip}:{port}"))
        .collect();
    assert_eq!(server.seen(), want, "{}", daemon.stderr());
}
