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
//! - `http3_0rtt_dropped_request_is_logged`: the relay drops the server's
//!   datagrams, so a resumed client's handshake never completes; its
//!   0-RTT POST, held, is dropped without reaching the server, and gets
//!   an access log line: `408` when xlb gave up at `header_timeout_ms`,
//!   `400` when the client closed the connection first.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xlb_lab::h3_client::{self, SendRequest, h3_on};
use xlb_lab::l7::{
    AccessLine, ROUNDROBIN, SNI_TLS, VIP, access_lines, frontend_toml, head_toml, http_lab,
    pool_toml, sni_certs, web_servers,
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
/// While `mute` is set, datagrams from the server are dropped instead: a
/// client then never completes its handshake.
async fn relay(
    local: std::net::Ipv4Addr,
    target: SocketAddr,
    mute: Arc<AtomicBool>,
) -> Result<SocketAddr> {
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
                    let mute = mute.clone();
                    tokio::spawn(hold_back(back.clone(), front.clone(), client, mute));
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
/// [`DELAY`] (dropped while `mute` is set).
async fn hold_back(
    back: Arc<tokio::net::UdpSocket>,
    front: Arc<tokio::net::UdpSocket>,
    client: SocketAddr,
    mute: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = back.recv(&mut buf).await {
        if mute.load(Ordering::Relaxed) {
            continue;
        }
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
        let open = Arc::new(AtomicBool::new(false));
        let zrtt = relay(
            local,
            format!("{VIP}:{ZERO_RTT_PORT}").parse()?,
            open.clone(),
        )
        .await?;
        let plain = relay(local, format!("{VIP}:{PLAIN_PORT}").parse()?, open).await?;

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

const CUT_PORT: u16 = 8446;
/// The cut frontend's `header_timeout_ms`: how long xlb waits for a
/// handshake.
const CUT_TIMEOUT_MS: u64 = 1000;

/// The access log lines of frontend `cut` from `mark` on, once `n` have
/// been written (or 5 s passed).
fn cut_lines(daemon: &xlb_lab::XlbDaemon, mark: usize, n: usize) -> Vec<AccessLine> {
    let end = Instant::now() + T;
    loop {
        let lines: Vec<AccessLine> = access_lines(daemon, mark)
            .into_iter()
            .filter(|l| l.frontend == "cut")
            .collect();
        if lines.len() >= n || Instant::now() > end {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn http3_0rtt_dropped_request_is_logged() {
    let tag = "l7h3zc";
    let (topo, _web, dir) = http_lab(tag, 1).unwrap();
    let ca = sni_certs(&dir).unwrap();
    let text = format!(
        "{}{}{}",
        head_toml(&dir, tag),
        pool_toml("web", ROUNDROBIN, &web_servers([1], 8080)),
        frontend_toml(
            "cut",
            CUT_PORT,
            "web",
            &format!(
                "{SNI_TLS}http3 = true\nhttp3_0rtt = true\nheader_timeout_ms = {CUT_TIMEOUT_MS}\n"
            )
        ),
    );
    let cfg = dir.write_config(&text).unwrap();
    let daemon = topo.lb().start_xlb(&cfg);
    let ca_pem = ca.pem().to_string();
    let local = topo.client_addr();
    let mark = daemon.stderr_lines().len();
    xlb_lab::l7::block_on_in(topo.client(), || async {
        let mute = Arc::new(AtomicBool::new(false));
        let cut = relay(local, format!("{VIP}:{CUT_PORT}").parse()?, mute.clone()).await?;
        // Tickets first (the relay passing everything): two clients, one
        // resumption each.
        let (timed_out, closed) = (client(&ca_pem)?, client(&ca_pem)?);
        get_tickets(&timed_out, cut).await?;
        get_tickets(&closed, cut).await?;
        mute.store(true, Ordering::Relaxed);

        // The handshake never completes: xlb gives up on it (its close
        // does not reach the client, which waits past that, then quits).
        let (conn, _) = zero_rtt(&timed_out, cut)?;
        let mut send = h3_on(conn.clone()).await?;
        let req = http::Request::post("https://a.xlb.test/echo").body(())?;
        let wait = Duration::from_millis(2 * CUT_TIMEOUT_MS);
        let answer = h3_client::exchange(&mut send, req, b"never forwarded", wait).await;
        assert!(answer.is_err(), "answered without a handshake: {answer:?}");
        conn.close(0u32.into(), b"giving up");

        // The client gives up first, its request held.
        let (conn, accepted) = zero_rtt(&closed, cut)?;
        let mut send = h3_on(conn.clone()).await?;
        let held = tokio::spawn(async move {
            request(&mut send, "PUT", "/echo", b"never forwarded either").await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.close(0u32.into(), b"giving up");
        // Time for the client's driver to send the close (the runtime
        // ends with this block).
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(held.await?.is_err(), "answered without a handshake");
        assert!(!accepted.await);
        anyhow::Ok(())
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.stderr()));

    // Two full handshakes (tickets) made a GET each; then the two
    // dropped requests, never at the server, each logged.
    let lines = cut_lines(&daemon, mark, 4);
    let dropped: Vec<&AccessLine> = lines
        .iter()
        .filter(|l| l.request != "GET / HTTP/3.0")
        .collect();
    let seen: Vec<(&str, u16, &str, u64)> = dropped
        .iter()
        .map(|l| (l.request.as_str(), l.status, l.server.as_str(), l.bytes))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST /echo HTTP/3.0", 408, "-", 0),
            ("PUT /echo HTTP/3.0", 400, "-", 0),
        ],
        "{lines:#?}\n{}",
        daemon.stderr()
    );
    let errors: Vec<&str> = dropped.iter().filter_map(|l| l.error.as_deref()).collect();
    assert_eq!(errors.len(), 2, "{lines:#?}");
    assert!(
        errors[0].contains(&format!(
            "handshake not complete within {CUT_TIMEOUT_MS} ms"
        )),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("connection lost before the handshake completed"),
        "{errors:?}"
    );
    for l in &dropped {
        assert_eq!(l.backend, "web", "{l:?}");
        assert_eq!(
            (l.timing("connect"), l.timing("response")),
            (None, None),
            "{l:?}"
        );
    }
    // The first waited about the handshake limit.
    let total = dropped[0].timing("total").unwrap_or(0.0);
    assert!(total >= (CUT_TIMEOUT_MS - 50) as f64, "{:?}", dropped[0]);
}
