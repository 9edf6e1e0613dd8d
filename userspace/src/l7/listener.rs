//! Serving client connections: the PROXY header with `accept_proxy`,
//! optional TLS handshake (each bounded by the header timeout), the HTTP
//! version by ALPN (or by the prior-knowledge preface with `h2c`), and the
//! connection's watchdog (header and idle timeouts).

use std::{
    convert::Infallible, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration,
};

use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tracing::{debug, warn};

use super::{
    conn::{ConnState, Cut, Tracked},
    cork::Corked,
    proxy::{self, ConnCtx, Frontend, Shared},
    proxy_protocol::{self, ReadError, Received},
    tls::ALPN_H2,
};

/// Serves one accepted client connection (from `peer`) until it ends.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    fe: Arc<Frontend>,
    shared: Arc<Shared>,
) {
    let addresses = if fe.accept_proxy {
        // Boxed: the rare case keeps its buffers out of every
        // connection's future.
        Box::pin(proxied_addresses(&mut stream, peer, &fe)).await
    } else {
        Some((peer, local_address(&stream, &fe)))
    };
    let Some((client, local)) = addresses else {
        return;
    };
    // An IPv4 client of a dual-stack (`[::]`) bind, or named so by a
    // received header, is the same client as over IPv4: one form in the
    // log, the forwarding headers, `source` hashing and PROXY headers.
    let (client, local) = (
        proxy_protocol::unmapped(client),
        proxy_protocol::unmapped(local),
    );
    let Some(tls) = fe.tls.clone() else {
        // With `h2c`, HTTP/2 by prior knowledge: the client's first bytes
        // decide, so each connection gets the one protocol it speaks (and
        // HTTP/1.1 keeps its per-request header timeout).
        let h2 = fe.h2c && sends_h2_preface(&stream, fe.header_timeout).await;
        let serving = Serving::new(fe, shared, h2);
        if h2 {
            let mut stream = Corked::new(stream);
            stream.cork();
            serve_h2(stream, (client, local), serving).await;
        } else {
            serve_h1(stream, (client, local), serving).await;
        }
        return;
    };
    let accepting = tls.accept(Corked::new(stream));
    let mut tls_stream = match tokio::time::timeout(fe.header_timeout, accepting).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(frontend = %fe.name, %client, "TLS handshake: {e}");
            return;
        }
        Err(_) => {
            debug!(frontend = %fe.name, %client, "TLS handshake timed out");
            return;
        }
    };
    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
    let serving = Serving::new(fe, shared, h2);
    if h2 {
        // Under TLS: what the park hook sends are whole records.
        tls_stream.get_mut().0.cork();
        serve_h2(tls_stream, (client, local), serving).await;
    } else {
        serve_h1(tls_stream, (client, local), serving).await;
    }
}

/// The address the client connected to: the frontend's `bind`, or the
/// socket's own when that is a wildcard and a PROXY header may name it
/// (one more system call, only then).
fn local_address(stream: &TcpStream, fe: &Frontend) -> SocketAddr {
    if fe.local_from_socket {
        stream.local_addr().unwrap_or(fe.bind)
    } else {
        fe.bind
    }
}

/// The client and local addresses of an `accept_proxy` connection, from
/// its PROXY header (the socket's for `UNKNOWN` and `LOCAL`); None when
/// the header is missing, malformed, too long or late: the connection is
/// closed without an answer.
async fn proxied_addresses(
    stream: &mut TcpStream,
    peer: SocketAddr,
    fe: &Frontend,
) -> Option<(SocketAddr, SocketAddr)> {
    let e = match proxy_protocol::read(stream, fe.header_timeout).await {
        Ok(Received::Proxied { client, local }) => return Some((client, local)),
        Ok(Received::Unknown) => return Some((peer, local_address(stream, fe))),
        Err(e) => e,
    };
    debug!(frontend = %fe.name, client = %peer, "PROXY header: {e}; connection closed");
    // A connection closed before its first byte (a port check) is not
    // logged, as HAProxy's `option dontlognull` does.
    if !matches!(e, ReadError::Closed) && fe.log.enabled() {
        let status = if matches!(e, ReadError::Timeout(_)) {
            408
        } else {
            400
        };
        let why = format!("PROXY header: {e}, connection closed");
        fe.log.write(proxy::cut_line_with(fe, peer, status, &why));
    }
    None
}

fn ctx(
    fe: &Arc<Frontend>,
    shared: &Arc<Shared>,
    (client, local): (SocketAddr, SocketAddr),
    state: &Arc<ConnState>,
) -> Arc<ConnCtx> {
    Arc::new(ConnCtx::new(
        fe.clone(),
        shared.clone(),
        client,
        local,
        state.clone(),
    ))
}

macro_rules! service {
    ($cx:expr) => {{
        let cx = $cx;
        service_fn(move |req: hyper::Request<Incoming>| {
            // With HTTP/3 on the frontend, every response says so.
            let alt_svc = cx.fe.alt_svc.clone();
            let handling = proxy::handle(cx.clone(), req);
            async move {
                let mut resp = handling.await;
                if let Some(v) = alt_svc {
                    resp.headers_mut().insert(http::header::ALT_SVC, v);
                }
                Ok::<_, Infallible>(resp)
            }
        })
    }};
}

/// The request header count hyper allows when no limit is set.
const HYPER_MAX_HEADERS: usize = 100;

/// Whether a cleartext client opens with the HTTP/2 connection preface
/// (RFC 9113 §3.4), looked at without consuming it. False as soon as a
/// byte differs, or when `limit` passes first (then HTTP/1.1's header
/// timeout, counted from the accept, closes the connection).
async fn sends_h2_preface(stream: &TcpStream, limit: Duration) -> bool {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 24];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 || buf[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        // Part of the preface so far: peek returns at once while bytes are
        // waiting, so pause before looking again.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(5)))
            .await
            .is_err()
        {
            return false;
        }
    }
}

/// Serves HTTP/1.1 on `io` under the connection's watchdog, its traffic
/// noted on the connection's clock; `addresses` are the client's and the
/// one it connected to.
async fn serve_h1<IO>(io: IO, addresses: (SocketAddr, SocketAddr), serving: Serving)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Serving { fe, shared, state } = serving;
    let cx = ctx(&fe, &shared, addresses, &state);
    let io = TokioIo::new(Tracked::new(io, state.clone()));
    let mut builder = http1::Builder::new();
    builder.max_buf_size(fe.max_header_bytes);
    // hyper copies head and body into its buffer and `send`s it: on
    // loopback `writev` costs ~200 ns more per call than `send` (VFS path,
    // iovec import), and hyper's vectored queue takes more instructions
    // than the copy (HTTP/1.1: 640 fewer per request, callgrind).
    builder.writev(false);
    // hyper's own limit is 100; setting any limit, even 100, costs a
    // 100-slot fill on every request head it parses.
    if fe.max_headers != HYPER_MAX_HEADERS {
        builder.max_headers(fe.max_headers);
    }
    let conn = builder.serve_connection(io, service!(cx)).with_upgrades();
    watch(conn, &fe, addresses.0, &state, |c| c.graceful_shutdown()).await;
}

/// Serves HTTP/2 on `io` (a corked socket under it) as [`serve_h1`] does
/// HTTP/1.1.
async fn serve_h2<IO>(io: IO, addresses: (SocketAddr, SocketAddr), serving: Serving)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Serving { fe, shared, state } = serving;
    let cx = ctx(&fe, &shared, addresses, &state);
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(fe.max_header_bytes as u32)
        .max_concurrent_streams(256)
        // WebSocket over HTTP/2 (RFC 8441), see `websocket`.
        .enable_connect_protocol()
        .serve_connection(TokioIo::new(Tracked::new(io, state.clone())), service!(cx));
    watch(conn, &fe, addresses.0, &state, |c| c.graceful_shutdown()).await;
}

/// What serving a client connection takes besides its stream.
struct Serving {
    fe: Arc<Frontend>,
    shared: Arc<Shared>,
    state: Arc<ConnState>,
}

impl Serving {
    fn new(fe: Arc<Frontend>, shared: Arc<Shared>, h2: bool) -> Self {
        let state = ConnState::new(!h2);
        Serving { fe, shared, state }
    }
}

/// Drives `conn` until it ends or the watchdog cuts it: a header timeout
/// drops the connection at once, an idle one shuts it down gracefully
/// (bounded by one more header timeout).
async fn watch<C, E>(
    conn: C,
    fe: &Frontend,
    client: SocketAddr,
    state: &ConnState,
    graceful: impl FnOnce(Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let cut = loop {
        let wait = match state.check(fe.header_timeout, fe.idle_timeout) {
            Ok(wait) => wait,
            Err(cut) => break cut,
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(frontend = %fe.name, %client, "connection: {e}");
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    };
    match cut {
        Cut::HeaderTimeout => {
            fe.log.write(proxy::cut_line(
                fe,
                client,
                "request head not complete within header_timeout_ms, connection closed",
            ));
            warn!(
                frontend = %fe.name, %client,
                "client sent no complete request head within {} ms: connection closed",
                fe.header_timeout.as_millis()
            );
        }
        Cut::IdleTimeout => {
            debug!(frontend = %fe.name, %client, "idle keep-alive connection closed");
            graceful(conn.as_mut());
            let _ = tokio::time::timeout(fe.header_timeout, conn).await;
        }
    }
}
