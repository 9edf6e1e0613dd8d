//! Connections to servers: HTTP/1.1 connections kept in a pool per server
//! address and reused (keep-alive), or one multiplexed HTTP/2 connection
//! per server (`proto = "h2"`). Connecting is bounded by the backend's
//! connect timeout; a failed connect has sent nothing, so the caller may
//! try another server with the same request.

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
use tracing::debug;

use super::body::{Body, BoxError};
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
    #[error("HTTP/2 handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

/// A connection checked out for one request.
pub enum Conn {
    H1 {
        sender: http1::SendRequest<Body>,
        /// True when it came from the pool (may have been closed by the
        /// server meanwhile).
        reused: bool,
    },
    H2(http2::SendRequest<Body>),
}

impl Conn {
    pub fn reused(&self) -> bool {
        match self {
            Conn::H1 { reused, .. } => *reused,
            Conn::H2(_) => true,
        }
    }
}

/// A pooled HTTP/1.1 connection and when it became idle.
type Idle = (http1::SendRequest<Body>, Instant);

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    h2: Mutex<HashMap<SocketAddr, http2::SendRequest<Body>>>,
}

impl Pool {
    /// A connection to `addr`: a pooled one if any, else a new one.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        proto: UpstreamProto,
        connect_timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        match proto {
            UpstreamProto::H1 => {
                if let Some(sender) = self.take_idle(addr) {
                    return Ok(Conn::H1 {
                        sender,
                        reused: true,
                    });
                }
                let stream = connect(addr, connect_timeout).await?;
                let (sender, conn) = http1::Builder::new()
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
                if let Some(s) = self.h2_live(addr) {
                    return Ok(Conn::H2(s));
                }
                let stream = connect(addr, connect_timeout).await?;
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
                    .insert(addr, sender.clone());
                Ok(Conn::H2(sender))
            }
        }
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some((sender, since)) = list.pop() {
            if since.elapsed() < IDLE_REUSE && sender.is_ready() && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn h2_live(&self, addr: SocketAddr) -> Option<http2::SendRequest<Body>> {
        let mut h2 = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        match h2.get(&addr) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                h2.remove(&addr);
                None
            }
            None => None,
        }
    }

    /// Returns an HTTP/1.1 connection once its response is fully read.
    fn put_idle(&self, addr: SocketAddr, sender: http1::SendRequest<Body>) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(addr).or_default();
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
    conn: Conn,
    req: Request<Body>,
) -> Result<Response<Body>, (hyper::Error, Option<Request<Body>>)> {
    match conn {
        Conn::H1 { mut sender, .. } => {
            let resp = sender.try_send_request(req).await.map_err(split)?;
            let (parts, body) = resp.into_parts();
            let body = ReturnToPool {
                inner: body,
                back: Some((sender, pool.clone(), addr)),
            };
            Ok(Response::from_parts(parts, Body::new(body)))
        }
        Conn::H2(mut sender) => sender
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
    back: Option<(http1::SendRequest<Body>, Arc<Pool>, SocketAddr)>,
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

async fn connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout(addr, limit.as_millis())),
        Ok(Err(e)) => return Err(ConnectError::Io(addr, e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A fresh HTTP/1.1 connection that allows a protocol switch (WebSocket):
/// never pooled.
pub async fn connect_upgradable(
    addr: SocketAddr,
    limit: Duration,
) -> Result<http1::SendRequest<Body>, ConnectError> {
    let stream = connect(addr, limit).await?;
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
