//! HTTP/3 0-RTT end to end (lab): quinn + h3 clients with rustls early
//! data and an in-memory session store, against one frontend with
//! `http3_0rtt = true` and one without.
//!
//! The clients reach xlb through a UDP relay in the client namespace
//! that holds the server's datagrams for a moment, a WAN round trip on
//! the lab's veth: a client's Finished then reaches xlb well after its
//! 0-RTT flight, so what xlb does with requests read before the
//! handshake completes is seen every time, not by luck of timing.
//!
//! - With `http3_0rtt`: a resumed connection's 0-RTT GET is answered
//!   while the handshake is still open and reaches the server with
//!   `Early-Data: 1`; 0-RTT POSTs (a body echoed, the headers the server
//!   saw) wait for the handshake and reach it without; requests on full
//!   handshakes are never marked.
//! - Without: its tickets offer no 0-RTT (the client cannot even try),
//!   and a client trying with another frontend's ticket is refused
//!   (`ZeroRttAccepted` false) and served after the handshake, unmarked.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xlb_lab::h3_client::{self, SendRequest, h3_on};
use xlb_lab::l7::{
    ROUNDROBIN, SNI_TLS, VIP, frontend_toml, head_toml, http_lab, pool_toml, sni_certs, web_servers,
};

const ZERO_RTT_PORT: u16 = 8443;
const PLAIN_PORT: u16 = 8445;
const T: Duration = Duration::from_secs(5);
/// How long the relay holds each datagram from the server.
const DELAY: Duration = Duration::from_millis(150);

fn config(dir: &xlb_lab::TempDir) -> String {
    format!(
        "{}{}{}{}",
        head_toml(dir, "l7h3zr"),
        pool_toml("web", ROUNDROBIN, &web_servers([1], 8080)),
        frontend_toml(
            "zrtt",
            ZERO_RTT_PORT,
            "web",
            &format!("{SNI_TLS}http3 = true\nhttp3_0rtt = true\n")
        ),
        frontend_toml(
            "plain",
            PLAIN_PORT,
            "web",
            &format!("{SNI_TLS}http3 = true\n")
        ),
    )
}

/// A UDP relay on `local` (an address of the client namespace) to
/// `target`, with a socket of its own towards `target` per client
/// address (as a NAT has): datagrams to the server go at once, those
/// from it after [`DELAY`]. Its address.
async fn relay(local: std::net::Ipv4Addr, target: SocketAddr) -> Result<SocketAddr> {
    let front = Arc::new(tokio::net::UdpSocket::bind((local, 0)).await?);
    let addr = front.local_addr()?;
    tokio::spawn(async move {
        let mut backs: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, client)) = front.recv_from(&mut buf).await {
            let back = match backs.get(&client) {
                Some(b) => b.clone(),
                None => {
                    let Ok(back) = back_socket(local, target).await else {
                        continue;
                    };
                    tokio::spawn(hold_back(back.clone(), front.clone(), client));
                    backs.insert(client, back.clone());
                    back
                }
            };
            let _ = back.send(&buf[..n]).await;
        }
    });
    Ok(addr)
}

async fn back_socket(
    local: std::net::Ipv4Addr,
    target: SocketAddr,
) -> Result<Arc<tokio::net::UdpSocket>> {
    let back = tokio::net::UdpSocket::bind((local, 0)).await?;
    back.connect(target).await?;
    Ok(Arc::new(back))
}

/// The server's datagrams on `back`, each sent on to `client` after
/// [`DELAY`].
async fn hold_back(
    back: Arc<tokio::net::UdpSocket>,
    front: Arc<tokio::net::UdpSocket>,
    client: SocketAddr,
) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = back.recv(&mut buf).await {
        let (data, front) = (buf[..n].to_vec(), front.clone());
        tokio::spawn(async move {
            tokio::time::sleep(DELAY).await;
            let _ = front.send_to(&data, client).await;
        });
    }
}

/// A QUIC client endpoint whose connections share one session store
/// (rustls' in-memory one), with early data on.
fn client(ca_pem: &str) -> Result<quinn::Endpoint> {
    h3_client::endpoint(ca_pem, "0.0.0.0:0".parse()?, true)
}

/// A full handshake to `addr`, then HTTP/3.
async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Result<SendRequest> {
    let conn = tokio::time::timeout(T, endpoint.connect(addr, "a.xlb.test")?)
        .await
        .context("QUIC handshake timed out")??;
    h3_on(conn).await
}

/// One request with `body`: the status and the response body as text.
async fn request(
    send: &mut SendRequest,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String)> {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("https://a.xlb.test{path}"))
        .body(())?;
    let (resp, out, _) = h3_client::exchange(send, req, body, T).await?;
    Ok((resp.status().as_u16(), String::from_utf8(out)?))
}

/// The `early-data` lines of a `/headers` answer.
fn early_data_lines(headers: &str) -> Vec<&str> {
    headers
        .lines()
        .filter(|l| l.starts_with("early-data:"))
        .collect()
}

/// A full handshake and one request, then a moment for the session
/// tickets that follow the handshake to arrive.
async fn get_tickets(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Result<()> {
    let mut send = connect(endpoint, addr).await?;
    let (status, _) = request(&mut send, "GET", "/", b"").await?;
    assert_eq!(status, 200);
    tokio::time::sleep(DELAY * 3).await;
    Ok(())
}

/// A resumed connection to `addr` in 0-RTT: it must be offered.
fn zero_rtt(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
) -> Result<(quinn::Connection, quinn::ZeroRttAccepted)> {
    match endpoint.connect(addr, "a.xlb.test")?.into_0rtt() {
        Ok(c) => Ok(c),
        Err(_) => bail!("no 0-RTT: the client holds no ticket allowing early data"),
    }
}

#[test]
fn http3_0rtt() {
    let (topo, _web, dir) = http_lab("l7h3zr", 1).unwrap();
    let ca = sni_certs(&dir).unwrap();
    let cfg = dir.write_config(&config(&dir)).unwrap();
    let daemon = topo.lb().start_xlb(&cfg);
    let ca_pem = ca.pem().to_string();
    let local = topo.client_addr();
    xlb_lab::l7::block_on_in(topo.client(), || async {
        let zrtt = relay(local, format!("{VIP}:{ZERO_RTT_PORT}").parse()?).await?;
        let plain = relay(local, format!("{VIP}:{PLAIN_PORT}").parse()?).await?;

        // Full handshakes (clients without tickets): nothing is early,
        // nothing marked.
        for _ in 0..3 {
            let fresh = client(&ca_pem)?;
            let mut send = connect(&fresh, zrtt).await?;
            let (status, headers) = request(&mut send, "GET", "/headers", b"").await?;
            assert_eq!(status, 200);
            assert!(early_data_lines(&headers).is_empty(), "{headers}");
        }
        let first = client(&ca_pem)?;
        get_tickets(&first, zrtt).await?;

        // Resumed, GET in 0-RTT: forwarded before the handshake
        // completed, marked; the client's 0-RTT was accepted.
        let (conn, accepted) = zero_rtt(&first, zrtt)?;
        let mut send = h3_on(conn).await?;
        let (status, headers) = request(&mut send, "GET", "/headers", b"").await?;
        assert_eq!(status, 200);
        assert_eq!(early_data_lines(&headers), ["early-data: 1"], "{headers}");
        assert!(accepted.await, "0-RTT refused by the http3_0rtt frontend");

        // Resumed, POSTs in 0-RTT: held until the handshake completed,
        // then forwarded unmarked, bodies intact. Held, their answers
        // cannot come before two relay delays: the server's flight to
        // the client, then the answers.
        let start = Instant::now();
        let (conn, accepted) = zero_rtt(&first, zrtt)?;
        let mut send = h3_on(conn).await?;
        let posted = b"early but not replayable".as_slice();
        let mut send2 = send.clone();
        let (echo, headers) = tokio::join!(
            request(&mut send, "POST", "/echo", posted),
            request(&mut send2, "POST", "/headers", b"x"),
        );
        let took = start.elapsed();
        eprintln!("0-RTT POSTs answered after {took:?}");
        let (status, echoed) = echo?;
        assert_eq!((status, echoed.as_bytes()), (200, posted));
        let (status, headers) = headers?;
        assert_eq!(status, 200);
        assert!(early_data_lines(&headers).is_empty(), "{headers}");
        assert!(
            took >= 2 * DELAY - Duration::from_millis(10),
            "POSTs answered in {took:?}: not held until the handshake completed"
        );
        assert!(accepted.await, "0-RTT refused by the http3_0rtt frontend");

        // Without http3_0rtt: a resumed client is not offered 0-RTT.
        let second = client(&ca_pem)?;
        get_tickets(&second, plain).await?;
        if zero_rtt(&second, plain).is_ok() {
            bail!("a frontend without http3_0rtt offered 0-RTT in its tickets");
        }

        // A ticket that allows 0-RTT (from the other frontend) is
        // refused there, and the request after the handshake is plain.
        let third = client(&ca_pem)?;
        get_tickets(&third, zrtt).await?;
        let (conn, accepted) = zero_rtt(&third, plain)?;
        assert!(!accepted.await, "0-RTT accepted without http3_0rtt");
        let mut send = h3_on(conn).await?;
        let (status, headers) = request(&mut send, "GET", "/headers", b"").await?;
        assert_eq!(status, 200);
        assert!(early_data_lines(&headers).is_empty(), "{headers}");
        anyhow::Ok(())
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.stderr()));
}
