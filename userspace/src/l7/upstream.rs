//! Connections to servers: HTTP/1.1 connections kept in a pool per server
//! address and reused (keep-alive), or one multiplexed HTTP/2 connection
//! per server (`proto = "h2"`). Connecting is bounded by the backend's
//! connect timeout; a failed connect has sent nothing, so the caller may
//! try another server with the same request. With `tls = true` on the
//! backend every connection is TLS (verified as [`super::tls::Upstream`]
//! says; the TLS handshake is part of connecting). With `send_proxy` every
//! connection starts with a PROXY header (before TLS); such connections
//! live in their client connection's own pools (see
//! [`super::proxy_protocol::PrivatePools`]), never in the shared one.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::{TrySendError, http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;
use tracing::debug;

use super::{
    FastHash,
    body::{Body, BoxError},
    proxy_protocol::SendProxy,
    tls,
};
use crate::config::UpstreamProto;

/// An idle HTTP/1.1 connection older than this is not reused (servers
/// commonly close idle keep-alive connections after 60 s or less).
const IDLE_REUSE: Duration = Duration::from_secs(30);
/// Idle HTTP/1.1 connections kept per server.
const MAX_IDLE_PER_SERVER: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0}: timed out after {1} ms")]
    Timeout(SocketAddr, u128),
    #[error("connect to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("HTTP handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
    #[error("TLS handshake with {0}: {1}")]
    Tls(SocketAddr, std::io::Error),
    #[error("sending the PROXY header to {0}: {1}")]
    ProxyHeader(SocketAddr, std::io::Error),
}

/// A server connection: cleartext or TLS.
type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// Pooled connections are per server address and TLS settings
/// ([`tls::Upstream::id`], 0 for cleartext).
type PoolKey = (SocketAddr, u64);

/// A connection checked out for one request.
pub enum Conn {
    H1 {
        sender: http1::SendRequest<Body>,
        /// True when it came from the pool (may have been closed by the
        /// server meanwhile).
        reused: bool,
    },
    H2 {
        sender: http2::SendRequest<Body>,
        /// True when the server's shared connection was already open.
        reused: bool,
    },
}

impl Conn {
    pub fn reused(&self) -> bool {
        match self {
            Conn::H1 { reused, .. } | Conn::H2 { reused, .. } => *reused,
        }
    }
}

/// A pooled HTTP/1.1 connection and when it became idle.
type Idle = (http1::SendRequest<Body>, Instant);

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>, FastHash>>,
    h2: Mutex<HashMap<PoolKey, http2::SendRequest<Body>, FastHash>>,
}

impl Pool {
    /// A connection to `addr` (over TLS when `tls` is set): a pooled one
    /// if any, else a new one (starting with `proxy`'s header, if any).
    /// `now` is the caller's clock reading, to judge pooled connections'
    /// idle time by.
    pub async fn checkout(
        &self,
        now: Instant,
        addr: SocketAddr,
        proto: UpstreamProto,
        connect_timeout: Duration,
        tls: Option<&tls::Upstream>,
        proxy: Option<&SendProxy>,
    ) -> Result<Conn, ConnectError> {
        let key = (addr, tls.map_or(0, |t| t.id));
        let pooled = match proto {
            UpstreamProto::H1 => self.take_idle(key, now).map(|sender| Conn::H1 {
                sender,
                reused: true,
            }),
            UpstreamProto::H2 => self.h2_live(key).map(|sender| Conn::H2 {
                sender,
                reused: true,
            }),
        };
        if let Some(conn) = pooled {
            return Ok(conn);
        }
        // Connecting (TCP, TLS, HTTP handshake) makes a large future and
        // is the rare case: boxed, so every request's future stays small.
        Box::pin(self.open(key, proto, connect_timeout, tls, proxy)).await
    }

    /// A new connection to the key's server.
    async fn open(
        &self,
        key: PoolKey,
        proto: UpstreamProto,
        connect_timeout: Duration,
        tls: Option<&tls::Upstream>,
        proxy: Option<&SendProxy>,
    ) -> Result<Conn, ConnectError> {
        let addr = key.0;
        let stream = connect(addr, connect_timeout, tls, false, proxy).await?;
        match proto {
            UpstreamProto::H1 => {
                // One `send` of hyper's own buffer rather than a `writev`
                // of the parts: see the listener's HTTP/1.1 builder.
                let (sender, conn) = http1::Builder::new()
                    .writev(false)
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| ConnectError::Handshake(addr, e))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(server = %addr, "upstream connection: {e}");
                    }
                });
                Ok(Conn::H1 {
                    sender,
                    reused: false,
                })
            }
            UpstreamProto::H2 => {
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Duration::from_secs(20))
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| ConnectError::Handshake(addr, e))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(server = %addr, "upstream h2 connection: {e}");
                    }
                });
                self.h2
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, sender.clone());
                Ok(Conn::H2 {
                    sender,
                    reused: false,
                })
            }
        }
    }

    fn take_idle(&self, key: PoolKey, now: Instant) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&key)?;
        while let Some((sender, since)) = list.pop() {
            if now.saturating_duration_since(since) < IDLE_REUSE
                && sender.is_ready()
                && !sender.is_closed()
            {
                return Some(sender);
            }
        }
        None
    }

    fn h2_live(&self, key: PoolKey) -> Option<http2::SendRequest<Body>> {
        let mut h2 = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        match h2.get(&key) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                h2.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Returns an HTTP/1.1 connection once its response is fully read.
    fn put_idle(&self, key: PoolKey, sender: http1::SendRequest<Body>) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key).or_default();
        // Connections are taken from the end (the most recently used, the
        // least likely closed by the server); when the list is full the
        // oldest goes. Stale ones are skipped when taken.
        if list.len() >= MAX_IDLE_PER_SERVER {
            list.remove(0);
        }
        list.push((sender, now));
    }
}

/// Sends `req` on `conn`. On error, the request comes back when it was
/// not sent at all (so it can go elsewhere unchanged). An HTTP/1.1
/// connection goes back to `pool` once the response body has been read.
pub async fn send(
    pool: &Arc<Pool>,
    addr: SocketAddr,
    tls: Option<&tls::Upstream>,
    conn: Conn,
    req: Request<Body>,
) -> Result<Response<Body>, (hyper::Error, Option<Request<Body>>)> {
    match conn {
        Conn::H1 { mut sender, .. } => {
            let resp = sender.try_send_request(req).await.map_err(split)?;
            let (parts, body) = resp.into_parts();
            let body = ReturnToPool {
                inner: body,
                back: Some((sender, pool.clone(), (addr, tls.map_or(0, |t| t.id)))),
            };
            Ok(Response::from_parts(parts, Body::new(body)))
        }
        Conn::H2 { mut sender, .. } => sender
            .try_send_request(req)
            .await
            .map(|r| r.map(super::body::boxed))
            .map_err(split),
    }
}

/// A server's HTTP/1.1 response body that returns its connection to the
/// pool when it has been read to the end (at once when the connection is
/// ready then, else from a task that waits for it). Dropped earlier (the
/// client went away), the connection is closed.
struct ReturnToPool {
    inner: Incoming,
    back: Option<(http1::SendRequest<Body>, Arc<Pool>, PoolKey)>,
}

impl ReturnToPool {
    fn give_back(&mut self) {
        let Some((mut sender, pool, addr)) = self.back.take() else {
            return;
        };
        if sender.is_ready() {
            pool.put_idle(addr, sender);
        } else if let (false, Ok(rt)) = (sender.is_closed(), tokio::runtime::Handle::try_current())
        {
            rt.spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put_idle(addr, sender);
                }
            });
        }
    }
}

impl Drop for ReturnToPool {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304, length 0) may never be polled.
        if http_body::Body::is_end_stream(&self.inner) {
            self.give_back();
        }
    }
}

impl http_body::Body for ReturnToPool {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match r {
            std::task::Poll::Ready(None) => {
                self.give_back();
                std::task::Poll::Ready(None)
            }
            std::task::Poll::Ready(Some(Err(e))) => {
                self.back = None;
                std::task::Poll::Ready(Some(Err(e.into())))
            }
            std::task::Poll::Ready(Some(Ok(f))) => std::task::Poll::Ready(Some(Ok(f))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn split(mut e: TrySendError<Request<Body>>) -> (hyper::Error, Option<Request<Body>>) {
    let req = e.take_message();
    (e.into_error(), req)
}

/// A TCP connection to `addr`, its PROXY header when `proxy` is set, then
/// the TLS handshake when `tls` is set (`upgrade`: ALPN HTTP/1.1), all
/// within `limit`.
async fn connect(
    addr: SocketAddr,
    limit: Duration,
    tls: Option<&tls::Upstream>,
    upgrade: bool,
    proxy: Option<&SendProxy>,
) -> Result<Stream, ConnectError> {
    let open = async {
        let stream = open_tcp(addr, proxy).await?;
        match tls {
            None => Ok(Either::Left(stream)),
            Some(t) => {
                let (connector, name) = t.for_server(addr, upgrade);
                connector
                    .connect(name, stream)
                    .await
                    .map(Either::Right)
                    .map_err(|e| ConnectError::Tls(addr, e))
            }
        }
    };
    within(addr, limit, open).await
}

/// A TCP connection to `addr`, Nagle off (requests and answers are
/// written whole), that starts with `proxy`'s header when it is set.
async fn open_tcp(addr: SocketAddr, proxy: Option<&SendProxy>) -> Result<TcpStream, ConnectError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ConnectError::Io(addr, e))?;
    let _ = stream.set_nodelay(true);
    if let Some(p) = proxy {
        p.write_to(&mut stream)
            .await
            .map_err(|e| ConnectError::ProxyHeader(addr, e))?;
    }
    Ok(stream)
}

/// `open` bounded by the connect timeout `limit`.
async fn within<T>(
    addr: SocketAddr,
    limit: Duration,
    open: impl Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    match tokio::time::timeout(limit, open).await {
        Err(_) => Err(ConnectError::Timeout(addr, limit.as_millis())),
        Ok(r) => r,
    }
}

/// A plain TCP connection to `addr` within `limit` (`CONNECT` tunnels),
/// starting with `proxy`'s header when it is set.
pub async fn connect_tcp(
    addr: SocketAddr,
    limit: Duration,
    proxy: Option<&SendProxy>,
) -> Result<TcpStream, ConnectError> {
    within(addr, limit, open_tcp(addr, proxy)).await
}

/// A fresh HTTP/1.1 connection that allows a protocol switch (WebSocket):
/// never pooled.
pub async fn connect_upgradable(
    addr: SocketAddr,
    limit: Duration,
    tls: Option<&tls::Upstream>,
    proxy: Option<&SendProxy>,
) -> Result<http1::SendRequest<Body>, ConnectError> {
    let stream = connect(addr, limit, tls, true, proxy).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Handshake(addr, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(server = %addr, "upstream upgradable connection: {e}");
        }
    });
    Ok(sender)
}
