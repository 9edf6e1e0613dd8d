//! An in-process HTTP test server for the L7 tests, listening inside a lab
//! namespace (the socket is created there; the server runs on a thread of
//! the test process with its own tokio runtime). HTTP/1.1 and HTTP/2
//! (prior knowledge) on the same port. Dropping it stops the server and
//! closes every connection, like killing a process.
//!
//! Routes (every response has `x-backend: NAME`):
//! - `/text/N`: `N` bytes of [`text_body`], `text/plain`, with a length.
//! - `/stream/N`: the same bytes in chunks, no length (streamed).
//! - `/image/N`: `N` bytes, `image/png`.
//! - `/encoded`: `text/plain` with `Content-Encoding: gzip` (4000 bytes
//!   of [`text_body`] gzipped).
//! - `/hang`: never answers.
//! - `/headers`: the request's version and headers, one `name: value`
//!   line each (names lower-case), `text/plain`.
//! - `/ws`: WebSocket echo (text and binary messages).
//! - `/echo`: the request body back (read whole), with a length.
//! - any path with an `echo-path` segment (`/echo-path/...`,
//!   `/v2/echo-path/...`): the request target as the server got it (path
//!   and query) and a newline, `text/plain`: shows rewrites on the way.
//! - anything else: `NAME\n`, `text/plain`.
//!
//! [`HttpBackend::start_tls`] serves the same over TLS (ALPN h2 and
//! http/1.1): every response then also has `x-tls: ALPN` (the negotiated
//! protocol, `none` without ALPN), and [`HttpBackend::tls_handshakes`]
//! counts the completed handshakes.

use std::{
    convert::Infallible,
    io::Write,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{body::Frame, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::sync::oneshot;

use crate::netns::Namespace;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// `n` bytes of compressible text (numbered lines).
pub fn text_body(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    let mut i = 0;
    while out.len() < n {
        let _ = writeln!(out, "line {i}: the quick brown fox jumps over the lazy dog");
        i += 1;
    }
    out.truncate(n);
    out
}

/// `n` pseudo-random (incompressible) bytes.
pub fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("in-memory gzip");
    e.finish().expect("in-memory gzip")
}

pub struct HttpBackend {
    name: String,
    addr: SocketAddr,
    handshakes: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    _server: ServerThread,
}

/// A tokio server on a thread of its own (two workers) over a listener
/// bound inside a lab namespace, for [`HttpBackend`] and
/// [`crate::grpc::GrpcBackend`]. Dropping it stops accepting, shuts the
/// runtime down (closing every connection) and joins the thread.
pub(crate) struct ServerThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `addr` inside `ns` and hands every accepted connection to
    /// `on_conn` (on the runtime: it spawns the connection's task), on a
    /// thread named `thread_name`.
    pub(crate) fn spawn(
        ns: &Namespace,
        addr: SocketAddr,
        thread_name: String,
        mut on_conn: impl FnMut(tokio::net::TcpStream) + Send + 'static,
    ) -> Result<ServerThread> {
        let listener = ns
            .with(|| std::net::TcpListener::bind(addr))?
            .with_context(|| format!("binding {addr} in {}", ns.name()))?;
        listener.set_nonblocking(true)?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new().name(thread_name).spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let stream = tokio::select! {
                        _ = &mut stopped => return,
                        a = listener.accept() => match a {
                            Ok((s, _)) => s,
                            Err(_) => continue,
                        },
                    };
                    on_conn(stream);
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        })?;
        Ok(ServerThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A lab server's TLS side: the certificate chain `cert` and its key
/// `key` (PEM files), ALPN h2 and http/1.1 as xlb's frontends offer.
pub(crate) fn tls_acceptor(cert: &Path, key: &Path) -> Result<xlb::l7::tls::Acceptor> {
    xlb::l7::tls::acceptor(&xlb::config::Tls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        sni: Vec::new(),
    })
}

impl HttpBackend {
    /// Binds `addr` inside `ns` and serves until dropped.
    pub fn start(ns: &Namespace, name: &str, addr: SocketAddr) -> Result<HttpBackend> {
        Self::start_with(ns, name, addr, None)
    }

    /// [`HttpBackend::start`] over TLS with the certificate chain `cert`
    /// and its key `key` (PEM files).
    pub fn start_tls(
        ns: &Namespace,
        name: &str,
        addr: SocketAddr,
        cert: &Path,
        key: &Path,
    ) -> Result<HttpBackend> {
        Self::start_with(ns, name, addr, Some(tls_acceptor(cert, key)?))
    }

    /// TLS handshakes completed so far (0 for a cleartext server).
    pub fn tls_handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    fn start_with(
        ns: &Namespace,
        name: &str,
        addr: SocketAddr,
        tls: Option<xlb::l7::tls::Acceptor>,
    ) -> Result<HttpBackend> {
        let handshakes = Arc::new(AtomicU64::new(0));
        let counter = handshakes.clone();
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = connections.clone();
        let name_owned: Arc<str> = name.into();
        let server =
            ServerThread::spawn(ns, addr, format!("http-backend-{name}"), move |stream| {
                accepted.fetch_add(1, Ordering::Relaxed);
                let name = name_owned.clone();
                let Some(acceptor) = tls.clone() else {
                    tokio::spawn(serve_conn(stream, name, None));
                    return;
                };
                let handshakes = counter.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    handshakes.fetch_add(1, Ordering::Relaxed);
                    let alpn = stream.get_ref().1.alpn_protocol().map_or_else(
                        || "none".to_string(),
                        |p| String::from_utf8_lossy(p).into_owned(),
                    );
                    serve_conn(stream, name, Some(alpn)).await;
                });
            })?;
        Ok(HttpBackend {
            name: name.to_string(),
            addr,
            handshakes,
            connections,
            _server: server,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection; `tls` (the ALPN
/// protocol) goes into every response as `x-tls`.
pub(crate) async fn serve_conn<IO>(io: IO, name: Arc<str>, tls: Option<String>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let name = name.clone();
        let tls = tls.clone();
        async move {
            let mut r = route(&name, req).await;
            if let Some(p) = tls.and_then(|t| t.parse().ok()) {
                r.headers_mut().insert("x-tls", p);
            }
            Ok::<_, Infallible>(r)
        }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await;
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

fn respond(name: &str, ct: &str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, ct.parse().unwrap());
    r.headers_mut().insert("x-backend", name.parse().unwrap());
    r
}

fn with_len(mut r: Response<Body>, n: usize) -> Response<Body> {
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, n.to_string().parse().unwrap());
    r
}

async fn route(name: &str, mut req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let arg = |p: &str| -> usize {
        path.strip_prefix(p)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    if path.starts_with("/text/") {
        let b = text_body(arg("/text/"));
        let n = b.len();
        return with_len(respond(name, "text/plain; charset=utf-8", full(b)), n);
    }
    if path.starts_with("/stream/") {
        let b = text_body(arg("/stream/"));
        let chunks: Vec<Result<Frame<Bytes>, Infallible>> = b
            .chunks(1000)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let stream = futures_stream(chunks);
        return respond(name, "text/plain", StreamBody::new(stream).boxed_unsync());
    }
    if path.starts_with("/image/") {
        let b = noise(arg("/image/"));
        let n = b.len();
        return with_len(respond(name, "image/png", full(b)), n);
    }
    if path == "/encoded" {
        let b = gzip(&text_body(4000));
        let n = b.len();
        let mut r = with_len(respond(name, "text/plain", full(b)), n);
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        return r;
    }
    if path == "/hang" {
        std::future::pending::<()>().await;
    }
    if path == "/headers" {
        let mut text = format!("version: {:?}\n", req.version());
        for (k, v) in req.headers() {
            text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        return respond(name, "text/plain", full(text));
    }
    if path == "/ws" {
        return websocket(name, &mut req);
    }
    if path.split('/').any(|segment| segment == "echo-path") {
        let target = req.uri().path_and_query().map_or("", |p| p.as_str());
        return respond(name, "text/plain", full(format!("{target}\n")));
    }
    if path == "/echo" {
        let Ok(body) = req.into_body().collect().await else {
            let mut r = respond(name, "text/plain", full("request body failed\n"));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        };
        let b = body.to_bytes();
        let n = b.len();
        return with_len(respond(name, "application/octet-stream", full(b)), n);
    }
    respond(name, "text/plain", full(format!("{name}\n")))
}

/// A stream over ready items.
fn futures_stream<T: Send + 'static>(
    items: Vec<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::iter(items)
}

/// Accepts the WebSocket handshake and echoes every message.
fn websocket(name: &str, req: &mut Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role};
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut r = respond(name, "text/plain", full("not a websocket request\n"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        use futures_util::{SinkExt, StreamExt};
        let (mut tx, mut rx) = ws.split();
        while let Some(Ok(msg)) = rx.next().await {
            if msg.is_text() || msg.is_binary() {
                if tx.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    let mut r = respond(name, "text/plain", full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.remove(header::CONTENT_TYPE);
    h.insert(header::CONNECTION, "upgrade".parse().unwrap());
    h.insert(header::UPGRADE, "websocket".parse().unwrap());
    h.insert(
        "sec-websocket-accept",
        derive_accept_key(key.as_bytes()).parse().unwrap(),
    );
    r
}
