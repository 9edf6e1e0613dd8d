//! HTTP/3 on frontends with `http3 = true`: a QUIC endpoint (quinn) on
//! the frontend's `bind` address over UDP, TLS 1.3 with ALPN `h3` on the
//! frontend's own certificates (SNI as on TCP), HTTP/3 framing by `h3`.
//! Every request goes through [`proxy::forward`] like an HTTP/1.1 or
//! HTTP/2 one; bodies stream both ways, trailers pass.
//!
//! Where it runs: each endpoint's UDP socket is registered on L7 worker
//! 0, where quinn's endpoint driver receives its datagrams and the accept
//! loop runs. Each accepted QUIC connection goes to the least loaded
//! worker ([`workers::Spread::place`], open connections counted with the
//! TCP ones) and everything of it runs there: the handshake, quinn's
//! connection driver (packet crypto, timers), the h3 connection and its
//! request tasks, with that worker's server connection pool (and, for
//! `send_proxy` backends, the QUIC connection's private pools, shared by
//! all its requests though each gets its own [`ConnCtx`]). quinn spawns
//! a connection's driver when the connection is accepted, with
//! `TokioRuntime`, i.e. `tokio::spawn` on the runtime of the caller:
//! [`serve_connection`] accepts it on its worker for that reason. A
//! driver on another worker sends on the socket registered on worker 0
//! (tokio I/O resources may be polled from any runtime; worker 0's
//! reactor wakes the task on its own runtime). So QUIC's work (crypto
//! above all) spreads over the cores; what crosses threads is the
//! endpoint driver handing each connection its datagrams.
//!
//! Reload keeps an endpoint whose `bind` stays (its QUIC connections go
//! on; new connections get the new certificates and idle timeout, new
//! requests the new frontend settings); a dropped [`Endpoint`] closes.
//!
//! 0-RTT only with `http3_0rtt`: the connection is then taken with
//! `into_0rtt` and its requests are read before the handshake completes,
//! with the replay rules of [`early_data`]. Without it a connection is
//! served once its handshake is done, as before.
//!
//! Not served: `CONNECT` (405), WebSocket over HTTP/3, server push.

mod early_data;

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use bytes::{Buf, Bytes};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::debug;

use self::early_data::{Admission, Failure, Handshake};
use super::{
    body::{Body, BoxError},
    conn::ConnState,
    proxy::{self, ConnCtx, Frontend, Shared, Started},
    proxy_protocol::PrivatePools,
    rate_limit, tls,
    workers::{self, Placed},
};

/// Most request streams a client may have open at once on one connection
/// (as for HTTP/2).
const MAX_STREAMS: u32 = 256;

/// The QUIC settings of a frontend, for [`Endpoint`].
#[derive(Clone)]
pub struct Settings {
    quic: quinn::ServerConfig,
    /// `http3_0rtt`: requests may come in early data.
    early_data: bool,
}

/// The QUIC settings of a frontend: its certificates (TLS 1.3, ALPN h3),
/// its idle timeout and whether it takes 0-RTT (`early_data`).
pub fn server_config(
    certs: tls::Certificates,
    idle_timeout: Duration,
    early_data: bool,
) -> anyhow::Result<Settings> {
    let crypto = tls::quic_with(certs, early_data)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(idle_timeout)
        .map_err(|_| anyhow::anyhow!("idle_timeout_ms is too large for QUIC"))?;
    transport
        .max_idle_timeout(Some(idle))
        .max_concurrent_bidi_streams(MAX_STREAMS.into());
    config.transport_config(Arc::new(transport));
    Ok(Settings {
        quic: config,
        early_data,
    })
}

/// The `alt-svc` value advertising HTTP/3 on `port`.
pub fn alt_svc(port: u16) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("clear"))
}

/// One frontend's HTTP/3 endpoint. Dropping it closes the endpoint and
/// every QUIC connection on it.
pub struct Endpoint {
    endpoint: quinn::Endpoint,
    frontend: watch::Sender<Serving>,
    accepting: Option<tokio::task::AbortHandle>,
}

/// What new connections and requests of an endpoint get.
#[derive(Clone)]
struct Serving {
    fe: Arc<Frontend>,
    early_data: bool,
}

impl Endpoint {
    /// Binds UDP `addr` with `settings`, registered on `runtime` (worker
    /// 0); accepts nothing before [`Endpoint::start`].
    pub fn bind(
        addr: SocketAddr,
        settings: Settings,
        fe: Arc<Frontend>,
        runtime: &tokio::runtime::Handle,
    ) -> anyhow::Result<Endpoint> {
        let socket =
            std::net::UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}"))?;
        // quinn registers the socket with, and spawns its driver on, the
        // runtime of the current context.
        let _in_worker = runtime.enter();
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(settings.quic),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .with_context(|| format!("starting QUIC on UDP {addr}"))?;
        let (frontend, _) = watch::channel(Serving {
            fe,
            early_data: settings.early_data,
        });
        Ok(Endpoint {
            endpoint,
            frontend,
            accepting: None,
        })
    }

    /// New connections get `settings`, new requests `fe`.
    pub fn update(&self, settings: Settings, fe: Arc<Frontend>) {
        self.endpoint.set_server_config(Some(settings.quic));
        self.frontend.send_replace(Serving {
            fe,
            early_data: settings.early_data,
        });
    }

    /// Starts accepting connections on worker 0, each served on the
    /// worker `spread` places it on (once).
    pub fn start(&mut self, spread: &workers::Spread) {
        if self.accepting.is_some() {
            return;
        }
        let task = spread.first().spawn(accept_loop(
            self.endpoint.clone(),
            self.frontend.subscribe(),
            spread.clone(),
        ));
        self.accepting = Some(task.abort_handle());
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(task) = self.accepting.take() {
            task.abort();
        }
        // H3_NO_ERROR (0x100): the frontend is gone, not a protocol failure.
        self.endpoint.close(quinn::VarInt::from_u32(0x100), b"");
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    frontend: watch::Receiver<Serving>,
    spread: workers::Spread,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (placed, runtime, shared) = spread.place();
        runtime.spawn(serve_connection(
            incoming,
            frontend.clone(),
            shared.clone(),
            placed,
        ));
    }
}

/// One QUIC connection, on the worker it was `placed` on: the handshake
/// (bounded by the header timeout), then its request streams, each a
/// task, until the client goes away.
async fn serve_connection(
    incoming: quinn::Incoming,
    frontend: watch::Receiver<Serving>,
    shared: Arc<Shared>,
    placed: Placed,
) {
    // An IPv4 client of a dual-stack socket, as over TCP (see `listener`).
    let client = super::proxy_protocol::unmapped(incoming.remote_address());
    let Serving { fe, early_data } = frontend.borrow().clone();
    // Accepted here, not on worker 0: quinn spawns the connection's
    // driver now, on this task's runtime.
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            debug!(frontend = %fe.name, %client, "QUIC accept: {e}");
            return;
        }
    };
    let Some((conn, handshake)) = establish(connecting, early_data, &fe, client).await else {
        return;
    };
    let built = h3::server::builder()
        .max_field_section_size(fe.max_header_bytes as u64)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await;
    let mut h3_conn = match built {
        Ok(c) => c,
        Err(e) => {
            debug!(frontend = %fe.name, %client, "HTTP/3 connection setup: {e}");
            return;
        }
    };
    let state = ConnState::new(false);
    // The server connections of `send_proxy` backends carry this
    // client's address: every request of the connection may reuse them.
    let private_pools = PrivatePools::default();
    let requests = TaskTracker::new();
    loop {
        match h3_conn.accept().await {
            Ok(Some(resolver)) => {
                // The frontend as it is now: a reload applies to the
                // next request of an open connection.
                let fe = frontend.borrow().fe.clone();
                // UDP has no PROXY header: the addresses are the socket's.
                let local = fe.bind;
                let cx = Arc::new(ConnCtx::with_private_pools(
                    fe,
                    shared.clone(),
                    client,
                    local,
                    state.clone(),
                    private_pools.share(),
                ));
                requests.spawn(serve_request(cx, resolver, handshake.clone()));
            }
            Ok(None) => break,
            Err(e) => {
                if !e.is_h3_no_error() {
                    debug!(frontend = %fe.name, %client, "HTTP/3 connection: {e}");
                }
                break;
            }
        }
    }
    // Dropping the h3 connection closes it: let requests finish first.
    requests.close();
    requests.wait().await;
    drop(placed);
}

/// The connection, once requests may be read from it: with `early_data`
/// at once (0.5-RTT; the handshake goes on, followed by the
/// [`Handshake`]), else when its handshake is done. `None`: it failed.
async fn establish(
    connecting: quinn::Connecting,
    early_data: bool,
    fe: &Frontend,
    client: SocketAddr,
) -> Option<(quinn::Connection, Option<Handshake>)> {
    let connecting = if early_data {
        match connecting.into_0rtt() {
            Ok((conn, done)) => {
                let handshake = Handshake::track(conn.clone(), done, fe.header_timeout);
                return Some((conn, Some(handshake)));
            }
            // Never on a server (quinn); the full handshake then.
            Err(connecting) => connecting,
        }
    } else {
        connecting
    };
    match tokio::time::timeout(fe.header_timeout, connecting).await {
        Ok(Ok(c)) => Some((c, None)),
        Ok(Err(e)) => {
            debug!(frontend = %fe.name, %client, "QUIC handshake: {e}");
            None
        }
        Err(_) => {
            debug!(frontend = %fe.name, %client, "QUIC handshake timed out");
            None
        }
    }
}

type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
type SendStream = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type RecvStream = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// One request stream: its head (within the header timeout), the early
/// data rules on a 0-RTT connection (`handshake`), the proxy, the
/// response written back.
async fn serve_request(cx: Arc<ConnCtx>, resolver: Resolver, handshake: Option<Handshake>) {
    let fe = &cx.fe;
    let (mut req, stream) =
        match tokio::time::timeout(fe.header_timeout, resolver.resolve_request()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if !e.is_h3_no_error() {
                    debug!(frontend = %fe.name, client = %cx.client, "HTTP/3 request head: {e}");
                }
                return;
            }
            Err(_) => {
                debug!(frontend = %fe.name, client = %cx.client, "HTTP/3 request head timed out");
                return;
            }
        };
    let started = Started::now(&cx.state);
    if let Some(handshake) = &handshake {
        let admission = early_data::admit(&mut req, handshake).await;
        let what = match admission {
            Admission::Complete => None,
            Admission::Early => Some("forwarded with Early-Data: 1"),
            Admission::Held => Some("held until the handshake completed"),
            Admission::Dropped(_) => Some("dropped: the handshake failed"),
        };
        if let Some(what) = what {
            let (method, uri) = (req.method(), req.uri());
            debug!(frontend = %fe.name, client = %cx.client, %method, %uri, "HTTP/3 request in early data {what}");
        }
        if let Admission::Dropped(failure) = admission {
            // Logged as a client cut before its request could go: 408
            // at the (header) timeout, else 400.
            let status = match failure {
                Failure::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
                Failure::Lost(_) => StatusCode::BAD_REQUEST,
            };
            let why = format!("early data request held for the handshake, dropped: {failure}");
            let (entry, guard) = started.entry(&cx, &req);
            proxy::unanswered(entry, guard, status, why);
            return;
        }
    }
    let (mut send, recv) = stream.split();
    let resp = if let Some(wait) = rate_limit::exceeded(&cx) {
        rate_limit::too_many_requests(&cx, &req, started, wait)
    } else if req.method() == Method::CONNECT {
        let (entry, guard) = started.entry(&cx, &req);
        let why = "CONNECT is not served over HTTP/3".to_string();
        proxy::refuse(&cx, entry, guard, StatusCode::METHOD_NOT_ALLOWED, why)
    } else {
        let body = RequestBody::new(recv);
        proxy::forward(cx.clone(), req.map(|()| Body::new(body)), started, None).await
    };
    if let Err(e) = respond(&mut send, resp).await {
        debug!(frontend = %cx.fe.name, client = %cx.client, "HTTP/3 response: {e}");
        send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
    }
}

/// Writes the response head, its body as it comes, then its trailers (if
/// any) and the end of the stream.
async fn respond(send: &mut SendStream, resp: Response<Body>) -> Result<(), BoxError> {
    let (parts, mut body) = resp.into_parts();
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(data) => {
                if !data.is_empty() {
                    send.send_data(data).await?;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                    return Ok(());
                }
            }
        }
    }
    send.finish().await?;
    Ok(())
}

/// The client's request body, streamed from its HTTP/3 stream: data,
/// then trailers if the client sent any.
struct RequestBody {
    recv: RecvStream,
    /// A frame (or the error) read ahead by [`RequestBody::new`].
    ahead: Option<Result<Frame<Bytes>, BoxError>>,
    reading: Reading,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    Data,
    Trailers,
    Done,
}

impl RequestBody {
    /// Looks at what already arrived without waiting: a request whose
    /// stream ended with its head (a GET) is then known to have no body,
    /// which lets the proxy retry it on another server like on HTTP/1.1.
    fn new(recv: RecvStream) -> Self {
        let mut body = RequestBody {
            recv,
            ahead: None,
            reading: Reading::Data,
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(Some(frame)) = body.read(&mut cx) {
            body.ahead = Some(frame);
        }
        body
    }

    fn read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match self.reading {
                Reading::Data => match self.recv.poll_recv_data(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(Some(mut buf))) => {
                        let data = buf.copy_to_bytes(buf.remaining());
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Poll::Ready(Ok(None)) => self.reading = Reading::Trailers,
                    Poll::Ready(Err(e)) => {
                        self.reading = Reading::Done;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                Reading::Trailers => {
                    let r: Poll<Result<Option<HeaderMap>, _>> = self.recv.poll_recv_trailers(cx);
                    let r = match r {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(r) => r,
                    };
                    self.reading = Reading::Done;
                    return Poll::Ready(match r {
                        Ok(Some(t)) => Some(Ok(Frame::trailers(t))),
                        Ok(None) => None,
                        Err(e) => Some(Err(e.into())),
                    });
                }
                Reading::Done => return Poll::Ready(None),
            }
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.ahead.take() {
            return Poll::Ready(Some(frame));
        }
        self.read(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_none() && self.reading == Reading::Done
    }
}

/// `Body::new` needs `Send`; the streams are.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<RequestBody>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_svc_names_the_port() {
        assert_eq!(alt_svc(8443), "h3=\":8443\"; ma=86400");
    }
}
