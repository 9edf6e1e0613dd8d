//! Write coalescing for multiplexed (HTTP/2) client connections.
//!
//! hyper's HTTP/2 connection writes and flushes as soon as one stream has
//! something to send, so with many streams in flight each response costs
//! its own `write` (and packet). [`Corked`] keeps what is written and
//! holds the flush until the thread's event loop has run out of work:
//! every stream whose server answer arrived in the same batch of events
//! adds its frames, and everything leaves in one write, as HAProxy's and
//! nginx's event loops do. The delay is the rest of the current batch,
//! not a timer.
//!
//! The L7 worker runtimes call [`flush_corked`] just before they park
//! (`on_thread_park`), which wakes the corked connections; on any other
//! runtime a flush waits one scheduler pass instead. A worker that never
//! runs out of work (a sustained overload) never parks: there its
//! [`watchdog`] releases what has been held for [`MAX_HOLD`], so no
//! connection's answers wait for the load to drop.

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    io,
    pin::Pin,
    task::{Context, Poll, Waker, ready},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes above which writes go through without waiting.
const MAX_CORKED: usize = 64 * 1024;
/// The longest a worker that does not park holds a flush.
pub const MAX_HOLD: Duration = Duration::from_millis(2);

thread_local! {
    /// How many times this thread's runtime has been about to park; `None`
    /// where no park hook calls [`flush_corked`].
    static PARKS: Cell<Option<u64>> = const { Cell::new(None) };
    /// The corked connections to wake before the runtime parks.
    static CORKED: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
    /// The [`watchdog`], while it waits for a connection to cork.
    static WATCHDOG: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Marks this thread as one whose runtime calls [`flush_corked`] before
/// it parks (an L7 worker).
pub fn flush_at_park() {
    PARKS.with(|p| p.set(Some(p.get().unwrap_or(0))));
}

/// Runs on a worker runtime for as long as it lives: when connections
/// have held their flush for [`MAX_HOLD`] without the runtime parking in
/// between, releases them as a park would.
pub async fn watchdog() {
    loop {
        poll_fn(|cx| {
            if CORKED.with(|c| c.borrow().is_empty()) {
                WATCHDOG.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        let held_at = PARKS.with(Cell::get);
        tokio::time::sleep(MAX_HOLD).await;
        if PARKS.with(Cell::get) == held_at {
            flush_corked();
        }
    }
}

/// The runtime is out of work: the corked connections may write now.
/// Called from the worker runtimes' `on_thread_park`.
pub fn flush_corked() {
    PARKS.with(|p| p.set(p.get().map(|n| n.wrapping_add(1))));
    let wakers = CORKED.with(|c| std::mem::take(&mut *c.borrow_mut()));
    for w in wakers {
        w.wake();
    }
}

/// Where a flush with buffered bytes stands.
#[derive(Clone, Copy, PartialEq)]
enum Hold {
    /// Not held yet.
    Open,
    /// Held until the runtime's park count passes this one.
    UntilPark(u64),
    /// No park hook here: held for one scheduler pass, which has passed
    /// when the flush is polled again.
    OnePass,
}

pub struct Corked<IO> {
    io: IO,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    sent: usize,
    hold: Hold,
}

impl<IO> Corked<IO> {
    pub fn new(io: IO) -> Self {
        Corked {
            io,
            buf: Vec::new(),
            sent: 0,
            hold: Hold::Open,
        }
    }

    /// Whether the flush must wait longer (and arranges the wake-up).
    fn held(&mut self, cx: &Context<'_>) -> bool {
        let parks = PARKS.with(Cell::get);
        match (self.hold, parks) {
            (Hold::Open, Some(n)) => {
                self.hold = Hold::UntilPark(n);
                let first = CORKED.with(|c| {
                    let mut c = c.borrow_mut();
                    c.push(cx.waker().clone());
                    c.len() == 1
                });
                if first && let Some(w) = WATCHDOG.with(|w| w.borrow_mut().take()) {
                    w.wake();
                }
                true
            }
            (Hold::Open, None) => {
                self.hold = Hold::OnePass;
                cx.waker().wake_by_ref();
                true
            }
            // Polled again in the same batch (a stream woke it): still held.
            (Hold::UntilPark(at), Some(n)) if at == n => true,
            _ => {
                self.hold = Hold::Open;
                false
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> Corked<IO> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        // A burst may have grown the buffer; do not keep it per idle
        // connection.
        if self.buf.capacity() > MAX_CORKED {
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Room for more: drains first when the buffer is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.len() >= MAX_CORKED {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Corked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Corked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx))?;
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx))?;
        let mut n = 0;
        for b in bufs {
            self.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.is_empty() {
            return Pin::new(&mut self.io).poll_flush(cx);
        }
        // A drain already under way (the socket was full) is not held again.
        if self.sent == 0 && self.held(cx) {
            return Poll::Pending;
        }
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn writes_arrive_whole_and_in_order_after_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut corked = Corked::new(a);
        corked.write_all(b"one ").await.unwrap();
        let parts = [io::IoSlice::new(b"two "), io::IoSlice::new(b"three")];
        let n = corked.write_vectored(&parts).await.unwrap();
        assert_eq!(n, 9);
        // Nothing leaves before the flush.
        let mut probe = [0u8; 1];
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), b.read(&mut probe));
        assert!(early.await.is_err(), "bytes left before the flush");
        corked.flush().await.unwrap();
        let mut got = vec![0u8; 13];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two three");
    }

    #[tokio::test]
    async fn a_full_buffer_goes_out_without_a_flush() {
        let (a, mut b) = tokio::io::duplex(4 * MAX_CORKED);
        let mut corked = Corked::new(a);
        let chunk = vec![7u8; MAX_CORKED];
        corked.write_all(&chunk).await.unwrap();
        corked.write_all(b"x").await.unwrap();
        let mut got = vec![0u8; MAX_CORKED];
        b.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&x| x == 7));
        corked.shutdown().await.unwrap();
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"x");
    }

    /// A runtime set up as an L7 worker's is (park hook), on this thread.
    fn worker_runtime() -> tokio::runtime::Runtime {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(flush_corked)
            .build()
            .unwrap();
        flush_at_park();
        runtime
    }

    #[test]
    fn on_a_worker_runtime_the_flush_waits_until_it_runs_out_of_work() {
        let runtime = worker_runtime();
        let order = runtime.block_on(async {
            let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (a, mut b) = tokio::io::duplex(1 << 16);
            let o = order.clone();
            let writer = tokio::spawn(async move {
                let mut corked = Corked::new(a);
                corked.write_all(b"response").await.unwrap();
                corked.flush().await.unwrap();
                o.lock().unwrap().push("flushed".to_string());
            });
            // Another task with work queued in the same turns.
            let o = order.clone();
            let busy = tokio::spawn(async move {
                for i in 0..5 {
                    o.lock().unwrap().push(format!("busy {i}"));
                    tokio::task::yield_now().await;
                }
            });
            writer.await.unwrap();
            busy.await.unwrap();
            let mut got = [0u8; 8];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"response");
            order.lock().unwrap().clone()
        });
        assert_eq!(
            order.last().map(String::as_str),
            Some("flushed"),
            "{order:?}"
        );
        assert_eq!(order.len(), 6, "{order:?}");
    }

    #[test]
    fn a_worker_that_never_runs_out_of_work_still_flushes() {
        let runtime = worker_runtime();
        let busy_for = std::time::Duration::from_millis(300);
        let (flushed_after, busy_ran) = runtime.block_on(async move {
            tokio::spawn(watchdog());
            let (a, mut b) = tokio::io::duplex(1 << 16);
            let start = std::time::Instant::now();
            // Always another task ready: the runtime never parks.
            let busy = tokio::spawn(async move {
                while start.elapsed() < busy_for {
                    tokio::task::yield_now().await;
                }
                start.elapsed()
            });
            let writer = tokio::spawn(async move {
                let mut corked = Corked::new(a);
                corked.write_all(b"response").await.unwrap();
                corked.flush().await.unwrap();
                start.elapsed()
            });
            let mut got = [0u8; 8];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"response");
            (writer.await.unwrap(), busy.await.unwrap())
        });
        assert!(busy_ran >= busy_for);
        assert!(
            flushed_after < busy_for / 3,
            "held {flushed_after:?} while the runtime stayed busy (limit {MAX_HOLD:?})"
        );
    }
}
