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
//!
//! The tests below use `ProxiedHttp` (the lab's HTTP server behind a
//! PROXY header it takes off byte for byte) and compare each server
//! connection's header with the bytes it must be, written out here:
//!
//! - `send_proxy_v1_names_client_and_vip`: `send_proxy = "v1"` writes
//!   `PROXY TCP4 <client> <VIP> <client port> <frontend port>\r\n`, then
//!   the request; a second request on the client connection reuses that
//!   server connection, a second client connection gets its own.
//! - `send_proxy_comes_before_upstream_tls`: with `tls = true` to the
//!   servers the header (v2, and v1 with `proto = "h2"`) comes first and
//!   the TLS ClientHello after it; the requests succeed over TLS.
//! - `send_proxy_on_websocket_upgrade`: the server connection of a
//!   WebSocket starts with the header, the upgrade request after it, and
//!   the echo works: an HTTP/1.1 `Upgrade` and an HTTP/2 extended CONNECT
//!   (RFC 8441, h2c), which xlb turns into an HTTP/1.1 upgrade.
//! - `send_proxy_on_connect_tunnel`: a `CONNECT` tunnel's server
//!   connection starts with the header, then the client's own bytes.
//! - `send_proxy_relays_accepted_header_and_wildcard_bind`: behind
//!   `accept_proxy`, the header xlb sends names the client and destination
//!   of the header it received; on a wildcard `bind` it names the address
//!   the client connected to, not `0.0.0.0`.
//!
//! IPv6:
//!
//! - `accept_proxy_takes_an_ipv6_client_from_the_header`: a v1 `TCP6` and
//!   a v2 `AF_INET6` header's source reaches the server in
//!   `X-Forwarded-For` and `Forwarded` and the access log, exactly.
//! - `send_proxy_names_ipv6_client_and_vip`: in the dual-stack lab, an
//!   IPv6 client of a frontend on the IPv6 VIP makes xlb write the exact
//!   v2 `AF_INET6` / v1 `TCP6` header (client, VIP) to IPv6 and to IPv4
//!   servers alike; on a `[::]` bind the VIP the client reached, and an
//!   IPv4 client on that dual-stack socket as `TCP4`.
//! - `send_proxy_relays_ipv6_and_mixed_headers`: a received `TCP6`
//!   header is relayed as an exact v2 `AF_INET6` one; one whose client is
//!   IPv4-mapped (`::ffff:...`) to an IPv6 destination as `AF_INET6`
//!   with that mapped client (the README's mixed families).

use std::{
    io::{BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    thread,
    time::Duration,
};

use ppp::v2;
use xlb_lab::{
    L4Topology, Lab, TempDir,
    l7::{
        CurlResult, TestCa, VIP, access_lines, block_on_in, connect_vip, curl, frontend_at_toml,
        frontend_toml, h2_websocket_echo, head_toml, http_lab, pool_toml, read_response,
        web1_config, websocket_echo,
    },
    proxy_server::{Opening, ProxiedHttp},
    topology::VIP6,
    xlb_daemon::XlbDaemon,
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
        let body = get_headers_after(&topo, &daemon, &header);
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

/// The v1 header xlb must write for a TCP client connection from
/// `client` to `local` (one family): `TCP4` or `TCP6`, the addresses in
/// their text form (RFC 5952 for IPv6).
fn v1_tcp(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let family = match (client, local) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => "TCP4",
        (SocketAddr::V6(_), SocketAddr::V6(_)) => "TCP6",
        _ => panic!("two families: {client} {local}"),
    };
    let (c, l) = (client, local);
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        c.ip(),
        l.ip(),
        c.port(),
        l.port()
    )
    .into_bytes()
}

/// The v2 header xlb must write for a TCP client connection from
/// `client` to `local`, byte by byte from the spec: the signature,
/// version 2 / PROXY, then AF_INET / STREAM (0x11) and 12 address bytes,
/// or AF_INET6 / STREAM (0x21) and 36.
fn v2_tcp(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match (client.ip(), local.ip()) {
        (IpAddr::V4(c), IpAddr::V4(l)) => {
            h.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
            h.extend_from_slice(&c.octets());
            h.extend_from_slice(&l.octets());
        }
        (IpAddr::V6(c), IpAddr::V6(l)) => {
            h.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
            h.extend_from_slice(&c.octets());
            h.extend_from_slice(&l.octets());
        }
        _ => panic!("two families: {client} {local}"),
    }
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&local.port().to_be_bytes());
    h
}

/// [`v1_tcp`] or [`v2_tcp`].
type HeaderFor = fn(SocketAddr, SocketAddr) -> Vec<u8>;

/// `VIP:port`.
fn vip(port: u16) -> SocketAddr {
    (VIP.parse::<Ipv4Addr>().unwrap(), port).into()
}

/// A lab with one backend and a [`TempDir`], named `tag`.
fn lab1(tag: &str) -> (L4Topology, TempDir) {
    let topo = L4Topology::build(Lab::new(tag).unwrap(), 1).unwrap();
    let dir = TempDir::new(tag).unwrap();
    (topo, dir)
}

/// [`lab1`] with a [`ProxiedHttp`] server on backend1:8090, the only
/// server of backend `web` (`send_proxy = version`), and xlb running with
/// `frontends`. Also returns the server's address.
fn send_proxy_lab(
    tag: &str,
    version: &str,
    frontends: &str,
) -> (L4Topology, TempDir, ProxiedHttp, XlbDaemon, SocketAddr) {
    let (topo, dir) = lab1(tag);
    let addr = SocketAddr::from((topo.backend_addrs()[0], 8090));
    let server = ProxiedHttp::start(topo.backend(1), "web1", addr).unwrap();
    let web = [("web1", addr.to_string())];
    let text = format!(
        "{}{}{frontends}",
        head_toml(&dir, tag),
        pool_toml("web", &format!("send_proxy = \"{version}\"\n"), &web),
    );
    let daemon = topo.lb().start_xlb(&dir.write_config(&text).unwrap());
    (topo, dir, server, daemon, addr)
}

/// Sends `header` and a `GET /headers` in one write (as a balancer in
/// front does) on a new connection to the VIP's port 8080, and returns
/// the answer's body, lowercased, once its status is seen to be 200.
fn get_headers_after(topo: &L4Topology, daemon: &XlbDaemon, header: &[u8]) -> String {
    let request = format!("GET /headers HTTP/1.1\r\nHost: {VIP}\r\n\r\n");
    let mut s = connect_vip(topo.client(), 8080, Duration::from_secs(5)).unwrap();
    s.write_all(&[header, request.as_bytes()].concat()).unwrap();
    let show = String::from_utf8_lossy(header);
    let (status, body) = read_response(&mut BufReader::new(s.try_clone().unwrap()))
        .unwrap_or_else(|e| panic!("{show:?}: {e:#}\n{}", daemon.stderr()));
    let body = String::from_utf8_lossy(&body).to_lowercase();
    assert_eq!(status, 200, "{show:?}: {body}\n{}", daemon.stderr());
    body
}

/// Asserts that the server connection `o` (one of `all`) began with
/// exactly `header`, which the server accepted, then bytes starting with
/// `next`.
fn assert_opening(all: &[Opening], o: &Opening, header: &[u8], next: &[u8]) {
    assert_eq!(
        String::from_utf8_lossy(&o.header),
        String::from_utf8_lossy(header),
        "{}",
        show(all)
    );
    assert_eq!(o.header, header, "{}", show(all));
    assert!(o.valid, "{}", show(all));
    assert!(o.next.starts_with(next), "{}", show(all));
}

/// Shows an opening readably in assertion messages.
fn show(o: &[Opening]) -> String {
    o.iter()
        .map(|o| {
            format!(
                "header {:?} valid {} next {:?}\n",
                String::from_utf8_lossy(&o.header),
                o.valid,
                String::from_utf8_lossy(&o.next)
            )
        })
        .collect()
}

/// curl ARGS in the client namespace, with `-w` writing the address of
/// the connection it made (`%{local_ip}:%{local_port}`): the result and
/// that address.
fn curl_from(topo: &L4Topology, args: &[&str]) -> (CurlResult, SocketAddr) {
    let mut all = vec!["-w", "%{local_ip}:%{local_port}"];
    all.extend_from_slice(args);
    let out = curl(topo.client(), &all, Duration::from_secs(5)).unwrap();
    let from = out
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: curl wrote {out:?}"));
    (out, from)
}

/// `send_proxy = "v1"`: each client connection's server connection
/// starts with the exact v1 line naming the client's address and port
/// and the VIP and frontend port, then the request.
#[test]
fn send_proxy_v1_names_client_and_vip() {
    let tag = "l7ppv1";
    let (topo, _dir, server, daemon, _) =
        send_proxy_lab(tag, "v1", &frontend_toml("fe", 8080, "web", ""));
    let request = format!("GET /headers HTTP/1.1\r\nHost: {VIP}\r\n\r\n");

    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut s = connect_vip(topo.client(), 8080, Duration::from_secs(5)).unwrap();
        let client = s.local_addr().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        // Two requests on the one client connection.
        for _ in 0..2 {
            s.write_all(request.as_bytes()).unwrap();
            let (status, body) = read_response(&mut r).unwrap();
            let body = String::from_utf8_lossy(&body).to_lowercase();
            assert_eq!(status, 200, "{body}\n{}", daemon.stderr());
            assert!(
                body.contains(&format!("x-forwarded-for: {}", client.ip())),
                "{body}"
            );
        }
        clients.push(client);
    }

    // One server connection per client connection, each with its own
    // client's header, the request right after it.
    let openings = server.openings();
    assert_eq!(openings.len(), 2, "{}", show(&openings));
    for (o, client) in openings.iter().zip(&clients) {
        let header = v1_tcp(*client, vip(8080));
        assert_opening(&openings, o, &header, b"GET /headers");
        assert_eq!(o.addresses(), Some((*client, vip(8080))));
    }
}

/// `send_proxy` with `tls = true` to the servers: the header goes on
/// the TCP connection before the TLS ClientHello (a handshake record,
/// `0x16 0x03`, is the first thing after it), and the TLS handshake and
/// request that follow succeed: v2 with HTTP/1.1, v1 with `proto = "h2"`.
#[test]
fn send_proxy_comes_before_upstream_tls() {
    let tag = "l7pptls";
    let (topo, dir) = lab1(tag);
    let ip = topo.backend_addrs()[0];
    let addr = SocketAddr::from((ip, 8443));
    let ca = TestCa::new("xlb upstream CA").unwrap();
    dir.write("ca.pem", ca.pem()).unwrap();
    ca.issue_to(&dir, "web1", &[&ip.to_string()]).unwrap();
    let server = ProxiedHttp::start_tls(
        topo.backend(1),
        "web1",
        addr,
        &dir.path().join("web1.pem"),
        &dir.path().join("web1.key"),
    )
    .unwrap();
    let tls = "tls = true\ntls_ca = \"ca.pem\"\n";
    let web1 = [("web1", addr.to_string())];
    let text = format!(
        "{}{}{}{}{}",
        head_toml(&dir, tag),
        pool_toml("v2tls", &format!("send_proxy = \"v2\"\n{tls}"), &web1),
        pool_toml(
            "v1h2",
            &format!("send_proxy = \"v1\"\nproto = \"h2\"\n{tls}"),
            &web1
        ),
        frontend_toml("v2tls", 8080, "v2tls", ""),
        frontend_toml("v1h2", 8081, "v1h2", ""),
    );
    let daemon = topo.lb().start_xlb(&dir.write_config(&text).unwrap());

    let cases: [(u16, &str, HeaderFor); 2] = [(8080, "http/1.1", v2_tcp), (8081, "h2", v1_tcp)];
    for (i, (port, alpn, expected)) in cases.into_iter().enumerate() {
        let (out, client) = curl_from(&topo, &[&format!("http://{VIP}:{port}/headers")]);
        assert_eq!(
            (out.exit, out.status),
            (0, 200),
            "{out:?}\n{}",
            daemon.stderr()
        );
        assert_eq!(out.header("x-tls"), Some(alpn), "{out:?}");
        let body = out.text().to_lowercase();
        assert!(
            body.contains(&format!("x-forwarded-for: {}", client.ip())),
            "{body}"
        );
        let openings = server.openings();
        assert_eq!(openings.len(), i + 1, "{}", show(&openings));
        let o = &openings[i];
        assert_eq!(o.header, expected(client, vip(port)), "{}", show(&openings));
        assert!(o.valid, "{}", show(&openings));
        assert_eq!(
            o.next.get(..2),
            Some(&[0x16, 0x03][..]),
            "not a TLS handshake record after the header: {}",
            show(&openings)
        );
    }
}

/// WebSocket through a `send_proxy` backend, over an HTTP/1.1 `Upgrade`
/// (`proxy::forward`) and an HTTP/2 extended CONNECT (`websocket`): each
/// (never pooled) server connection starts with its client's header, the
/// upgrade request right after it, and the echo works.
#[test]
fn send_proxy_on_websocket_upgrade() {
    let tag = "l7ppws";
    let frontends = format!(
        "{}{}",
        frontend_toml("fe", 8080, "web", ""),
        frontend_toml("h2c", 8081, "web", "h2c = true\n")
    );
    let (topo, _dir, server, daemon, _) = send_proxy_lab(tag, "v2", &frontends);

    // HTTP/1.1 Upgrade.
    let (client, echoed) = block_on_in(topo.client(), websocket_echo).unwrap();
    assert_eq!(echoed, ["hello", "through", "xlb"], "{}", daemon.stderr());
    let openings = server.openings();
    assert_eq!(openings.len(), 1, "{}", show(&openings));
    let header = v2_tcp(client, vip(8080));
    assert_opening(&openings, &openings[0], &header, b"GET /ws HTTP/1.1");

    // HTTP/2 extended CONNECT.
    let authority = format!("{VIP}:8081");
    let (client, _, echoed) =
        block_on_in(topo.client(), || h2_websocket_echo(8081, &authority, "/ws"))
            .unwrap()
            .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.stderr()));
    assert_eq!(echoed, "over h2");
    let openings = server.openings();
    assert_eq!(openings.len(), 2, "{}", show(&openings));
    let header = v2_tcp(client, vip(8081));
    assert_opening(&openings, &openings[1], &header, b"GET /ws HTTP/1.1");
}

/// `CONNECT` to a server of a `send_proxy` backend: the tunnel's server
/// connection starts with the client's header, then the bytes the client
/// sent through the tunnel (its own request, untouched).
#[test]
fn send_proxy_on_connect_tunnel() {
    let tag = "l7ppcon";
    let (topo, _dir, server, daemon, addr) = send_proxy_lab(
        tag,
        "v1",
        &frontend_toml("fe", 8080, "web", "connect = true\n"),
    );
    let proxy = format!("http://{VIP}:8080");
    let url = format!("http://{addr}/headers");
    let (out, client) = curl_from(
        &topo,
        &["--noproxy", "", "--proxytunnel", "-x", &proxy, &url],
    );
    assert_eq!(
        (out.exit, out.status),
        (0, 200),
        "{out:?}\n{}",
        daemon.stderr()
    );
    assert_eq!(out.header("x-backend"), Some("web1"), "{out:?}");
    // The request went through the tunnel as the client wrote it.
    assert!(!out.text().contains("x-forwarded-for"), "{}", out.text());
    let openings = server.openings();
    assert_eq!(openings.len(), 1, "{}", show(&openings));
    let header = v1_tcp(client, vip(8080));
    assert_opening(&openings, &openings[0], &header, b"GET /headers HTTP/1.1");
}

/// `accept_proxy` on the frontend and `send_proxy` on its backend: the
/// server's header names the client and destination the received header
/// gave (v1 in, v2 out), not the balancer in front. A frontend bound to
/// `0.0.0.0` names the address the client connected to (the VIP).
#[test]
fn send_proxy_relays_accepted_header_and_wildcard_bind() {
    let tag = "l7pprel";
    let (topo, dir) = lab1(tag);
    let addr = SocketAddr::from((topo.backend_addrs()[0], 8090));
    let server = ProxiedHttp::start(topo.backend(1), "web1", addr).unwrap();
    let web1 = [("web1", addr.to_string())];
    let text = format!(
        "{}{}{}{}{}",
        head_toml(&dir, tag),
        pool_toml("v2", "send_proxy = \"v2\"\n", &web1),
        pool_toml("v1", "send_proxy = \"v1\"\n", &web1),
        frontend_toml("relay", 8080, "v2", "accept_proxy = true\n"),
        frontend_at_toml("any", "0.0.0.0:8081", "v1", ""),
    );
    let daemon = topo.lb().start_xlb(&dir.write_config(&text).unwrap());
    let get = format!("GET /headers HTTP/1.1\r\nHost: {VIP}\r\n\r\n");

    // Relayed: the received header's addresses, another family of header.
    let (orig, dest): (SocketAddr, SocketAddr) = (
        "198.18.77.7:40000".parse().unwrap(),
        "198.18.99.1:443".parse().unwrap(),
    );
    let mut s = connect_vip(topo.client(), 8080, Duration::from_secs(5)).unwrap();
    let incoming = format!("PROXY TCP4 198.18.77.7 198.18.99.1 40000 443\r\n{get}");
    s.write_all(incoming.as_bytes()).unwrap();
    let (status, body) = read_response(&mut BufReader::new(s.try_clone().unwrap())).unwrap();
    let body = String::from_utf8_lossy(&body).to_lowercase();
    assert_eq!(status, 200, "{body}\n{}", daemon.stderr());
    assert!(body.contains("x-forwarded-for: 198.18.77.7"), "{body}");
    let openings = server.openings();
    assert_eq!(openings.len(), 1, "{}", show(&openings));
    assert_eq!(
        openings[0].header,
        v2_tcp(orig, dest),
        "{}",
        show(&openings)
    );

    // Wildcard bind: the VIP the client reached.
    let mut s = connect_vip(topo.client(), 8081, Duration::from_secs(5)).unwrap();
    let client = s.local_addr().unwrap();
    s.write_all(get.as_bytes()).unwrap();
    let (status, _) = read_response(&mut BufReader::new(s.try_clone().unwrap())).unwrap();
    assert_eq!(status, 200, "{}", daemon.stderr());
    let openings = server.openings();
    assert_eq!(openings.len(), 2, "{}", show(&openings));
    assert_eq!(
        String::from_utf8_lossy(&openings[1].header),
        String::from_utf8_lossy(&v1_tcp(client, vip(8081))),
        "{}",
        show(&openings)
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

/// `accept_proxy` with headers naming an IPv6 client (a balancer in
/// front that took an IPv6 connection, here over the lab's IPv4 TCP): a
/// v1 `TCP6` and a v2 `AF_INET6` header's source reaches the server in
/// `X-Forwarded-For` (exactly that address) and `Forwarded` (quoted, in
/// brackets), and the access log names it with its port.
#[test]
fn accept_proxy_takes_an_ipv6_client_from_the_header() {
    let tag = "l7pp6a";
    let (topo, _web, dir) = http_lab(tag, 1).unwrap();
    let cfg = web1_config(
        &dir,
        tag,
        &frontend_toml("fe", 8080, "web", "accept_proxy = true\n"),
    );
    let daemon = topo.lb().start_xlb(&cfg);
    let mark = daemon.stderr_lines().len();

    let v1 = b"PROXY TCP6 2001:db8:77::7 2001:db8::100 40000 8080\r\n".to_vec();
    let v2 = v2_tcp(
        "[2001:db8:77::8]:40001".parse().unwrap(),
        "[2001:db8::100]:8080".parse().unwrap(),
    );
    for (header, client) in [(v1, "2001:db8:77::7"), (v2, "2001:db8:77::8")] {
        let body = get_headers_after(&topo, &daemon, &header);
        let xff = format!("x-forwarded-for: {client}");
        assert!(
            body.lines().any(|l| l == xff),
            "no line {xff:?} (exactly):\n{body}"
        );
        let forwarded = format!("forwarded: for=\"[{client}]\";proto=http");
        assert!(
            body.lines().any(|l| l.starts_with(&forwarded)),
            "no line starting {forwarded:?}:\n{body}"
        );
    }

    thread::sleep(Duration::from_millis(300));
    let lines = access_lines(&daemon, mark);
    let clients: Vec<&str> = lines.iter().map(|l| l.client.as_str()).collect();
    assert_eq!(
        clients,
        ["[2001:db8:77::7]:40000", "[2001:db8:77::8]:40001"],
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| l.status == 200), "{lines:#?}");
}

/// `send_proxy` for IPv6 clients, in the dual-stack lab: a client
/// connecting over IPv6 to a frontend bound on the IPv6 VIP gets a
/// server connection starting with the exact v2 (`AF_INET6`) or v1
/// (`TCP6`) header naming its address and port and the VIP and frontend
/// port, then its request; the same when the server is reached over
/// IPv4 (the header carries the client side's addresses, whatever the
/// server connection's family, as HAProxy does). A frontend bound to
/// `[::]` names the IPv6 VIP an IPv6 client reached, and writes an IPv4
/// client (seen as `::ffff:198.18.0.2` on the dual-stack socket) as
/// `TCP4`, and as plain IPv4 in X-Forwarded-For.
#[test]
fn send_proxy_names_ipv6_client_and_vip() {
    let tag = "l7pp6s";
    let topo = L4Topology::build_dual(Lab::new(tag).unwrap(), 1).unwrap();
    let dir = TempDir::new(tag).unwrap();
    let addr6 = SocketAddr::from((topo.backend_addrs6()[0], 8090));
    let addr4 = SocketAddr::from((topo.backend_addrs()[0], 8091));
    let server6 = ProxiedHttp::start(topo.backend(1), "web6", addr6).unwrap();
    let server4 = ProxiedHttp::start(topo.backend(1), "web4", addr4).unwrap();
    let vip6 = |port: u16| SocketAddr::from((VIP6, port));
    let on6 = [("web6", addr6.to_string())];
    let on4 = [("web4", addr4.to_string())];
    let text = format!(
        "{}{}{}{}{}{}{}{}{}{}",
        head_toml(&dir, tag),
        pool_toml("v2s6", "send_proxy = \"v2\"\n", &on6),
        pool_toml("v1s6", "send_proxy = \"v1\"\n", &on6),
        pool_toml("v2s4", "send_proxy = \"v2\"\n", &on4),
        pool_toml("v1s4", "send_proxy = \"v1\"\n", &on4),
        frontend_at_toml("v2s6", &vip6(8080).to_string(), "v2s6", ""),
        frontend_at_toml("v1s6", &vip6(8081).to_string(), "v1s6", ""),
        frontend_at_toml("v2s4", &vip6(8082).to_string(), "v2s4", ""),
        frontend_at_toml("v1s4", &vip6(8083).to_string(), "v1s4", ""),
        frontend_at_toml("any", "[::]:8084", "v2s6", ""),
    );
    let daemon = topo.lb().start_xlb(&dir.write_config(&text).unwrap());

    // (VIP reached, server, header expected from client and VIP).
    let cases: [(SocketAddr, &ProxiedHttp, HeaderFor); 6] = [
        (vip6(8080), &server6, v2_tcp),
        (vip6(8081), &server6, v1_tcp),
        (vip6(8082), &server4, v2_tcp),
        (vip6(8083), &server4, v1_tcp),
        (vip6(8084), &server6, v2_tcp),
        (vip(8084), &server6, v2_tcp),
    ];
    let get = |host: SocketAddr| format!("GET /headers HTTP/1.1\r\nHost: {host}\r\n\r\n");
    for (to, server, expected) in cases {
        let before = server.openings().len();
        let mut s = topo
            .client()
            .with(|| std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)))
            .unwrap()
            .unwrap_or_else(|e| panic!("connecting to {to}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let client = s.local_addr().unwrap();
        s.write_all(get(to).as_bytes()).unwrap();
        let (status, body) = read_response(&mut BufReader::new(s.try_clone().unwrap()))
            .unwrap_or_else(|e| panic!("{to}: {e:#}\n{}", daemon.stderr()));
        let body = String::from_utf8_lossy(&body).to_lowercase();
        assert_eq!(status, 200, "{to}: {body}\n{}", daemon.stderr());
        // An IPv4 client of the dual-stack `[::]` socket is IPv4 in
        // X-Forwarded-For as in the PROXY header below, not `::ffff:`.
        let xff = format!("x-forwarded-for: {}", client.ip());
        assert!(body.lines().any(|l| l == xff), "{to}: no {xff:?}:\n{body}");

        let openings = server.openings();
        assert_eq!(openings.len(), before + 1, "{to}: {}", show(&openings));
        let o = &openings[before];
        let header = expected(client, to);
        assert_opening(&openings, o, &header, b"GET /headers HTTP/1.1");
        assert_eq!(o.addresses(), Some((client, to)), "{to}");
    }
}

/// `accept_proxy` and `send_proxy` (v2) with IPv6 headers relayed over
/// the lab's IPv4 connections: a received `TCP6` header's client and
/// destination go on in an exact v2 `AF_INET6` header. A received header
/// whose addresses are of two families once xlb takes a `::ffff:`
/// (IPv4-mapped) client as IPv4, to an IPv6 destination, is relayed as
/// the README says (and HAProxy does): both as IPv6, the client in its
/// `::ffff:` form, so the server still learns the client; the request is
/// served, with the client as plain IPv4 in X-Forwarded-For.
#[test]
fn send_proxy_relays_ipv6_and_mixed_headers() {
    let tag = "l7pp6r";
    let (topo, _dir, server, daemon, _) = send_proxy_lab(
        tag,
        "v2",
        &frontend_toml("relay", 8080, "web", "accept_proxy = true\n"),
    );
    let (orig, dest): (SocketAddr, SocketAddr) = (
        "[2001:db8:77::7]:40000".parse().unwrap(),
        "[2001:db8:99::1]:443".parse().unwrap(),
    );
    let mapped: SocketAddr = "[::ffff:198.18.77.7]:40000".parse().unwrap();
    let cases = [
        (
            "PROXY TCP6 2001:db8:77::7 2001:db8:99::1 40000 443\r\n",
            v2_tcp(orig, dest),
            "2001:db8:77::7",
        ),
        (
            "PROXY TCP6 ::ffff:198.18.77.7 2001:db8:99::1 40000 443\r\n",
            v2_tcp(mapped, dest),
            "198.18.77.7",
        ),
    ];
    for (i, (incoming, expected, xff)) in cases.into_iter().enumerate() {
        let body = get_headers_after(&topo, &daemon, incoming.as_bytes());
        let xff = format!("x-forwarded-for: {xff}");
        assert!(
            body.lines().any(|l| l == xff),
            "{incoming:?}: no {xff:?}:\n{body}"
        );
        let openings = server.openings();
        assert_eq!(openings.len(), i + 1, "{}", show(&openings));
        assert_opening(&openings, &openings[i], &expected, b"GET /headers");
    }
}
