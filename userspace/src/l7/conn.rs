//! One client connection's clock: the stream wrapper that notes traffic,
//! the request counter, and the watchdog that enforces the header timeout
//! (a request head must be complete within `header_timeout` of its first
//! byte, or of the accept for the first request: slowloris clients are
//! cut) and the idle timeout (no request in flight and no traffic).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared between the stream wrapper, the request handler and the watchdog.
#[derive(Debug)]
pub struct ConnState {
    base: Instant,
    /// Milliseconds since `base` of the last byte read or written.
    last: AtomicU64,
    /// 1 + milliseconds since `base` when the head of the next request
    /// started (its first byte, or the accept); 0 when no head is pending.
    head_started: AtomicU64,
    /// 1 + milliseconds since `base` when the connection was last ready
    /// for a request (accept, or the end of the previous one).
    ready_since: AtomicU64,
    in_flight: AtomicUsize,
    /// HTTP/1: a new head starts with the first byte after a request.
    h1: bool,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    HeaderTimeout,
    IdleTimeout,
}

impl ConnState {
    pub fn new(h1: bool) -> Arc<ConnState> {
        Arc::new(ConnState {
            base: Instant::now(),
            last: AtomicU64::new(0),
            head_started: AtomicU64::new(1),
            ready_since: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            h1,
        })
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    fn on_read(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if self.h1
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(now + 1, Ordering::Relaxed);
        }
    }

    fn on_write(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// A request head is complete: counts it until the guard drops.
    /// Returns the guard and the time since the connection was last
    /// ready for a request.
    pub fn request_started(self: &Arc<Self>) -> (RequestGuard, Duration) {
        self.request_started_at(Instant::now())
    }

    /// [`Self::request_started`] for a request received at `at` (a clock
    /// the caller has already read).
    pub fn request_started_at(self: &Arc<Self>, at: Instant) -> (RequestGuard, Duration) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        let now = at.saturating_duration_since(self.base).as_millis() as u64;
        let ready = self.ready_since.load(Ordering::Relaxed).saturating_sub(1);
        (
            RequestGuard {
                state: self.clone(),
            },
            Duration::from_millis(now.saturating_sub(ready)),
        )
    }

    /// How long until the connection must be cut, or why it must be now.
    pub fn check(&self, header_timeout: Duration, idle_timeout: Duration) -> Result<Duration, Cut> {
        let now = self.now();
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Ok(idle_timeout);
        }
        let head = self.head_started.load(Ordering::Relaxed);
        let (deadline, cut) = if head != 0 {
            (
                head - 1 + header_timeout.as_millis() as u64,
                Cut::HeaderTimeout,
            )
        } else {
            let last = self.last.load(Ordering::Relaxed);
            (last + idle_timeout.as_millis() as u64, Cut::IdleTimeout)
        };
        if now >= deadline {
            Err(cut)
        } else {
            Ok(Duration::from_millis(deadline - now))
        }
    }
}

/// One request in flight on the connection.
pub struct RequestGuard {
    state: Arc<ConnState>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let now = self.state.now();
        self.state.last.store(now, Ordering::Relaxed);
        self.state.ready_since.store(now + 1, Ordering::Relaxed);
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client stream that reports its traffic to a [`ConnState`].
pub struct Tracked<IO> {
    io: IO,
    state: Arc<ConnState>,
}

impl<IO> Tracked<IO> {
    pub fn new(io: IO, state: Arc<ConnState>) -> Self {
        Tracked { io, state }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_then_idle_deadlines() {
        let s = ConnState::new(true);
        let (h, i) = (Duration::from_millis(1000), Duration::from_millis(5000));
        // Fresh connection: the head timer runs from the accept.
        assert!(s.check(h, i).unwrap() <= h);
        let (guard, _) = s.request_started();
        assert_eq!(s.check(h, i).unwrap(), i, "in flight: no deadline");
        drop(guard);
        // Idle: the idle timer runs.
        let left = s.check(h, i).unwrap();
        assert!(left > h && left <= i, "{left:?}");
        // A byte of the next head starts the header timer.
        s.on_read();
        assert!(s.check(h, i).unwrap() <= h);
    }
}
