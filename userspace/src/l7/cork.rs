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
//! [`Corked`] sits right on the client's socket (under TLS, if any) and
//! passes writes through until the connection turns out to be HTTP/2
//! ([`Corked::cork`]). The L7 worker runtimes call [`flush_corked`] just
//! before they park (`on_thread_park`); it sends the held bytes itself (a
//! non-blocking `send` on the socket), so the runtime goes on to wait for
//! events as it would have. Waking the connections' tasks instead would
//! make tokio poll for events without waiting and run a pass for the
//! flushes alone, and the batches would stay small. What the socket does
//! not take, the connection's task writes, woken for it. On a runtime
//! without the hook (only tests) a flush writes at once. A worker that
//! never runs out of work (a sustained overload) never parks: there its
//! [`watchdog`] releases what has been held for [`MAX_HOLD`], so no
//! connection's answers wait for the load to drop.

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    io,
    os::fd::{AsRawFd, RawFd},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, Weak},
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
    /// The corked connections' sockets and held bytes, to send before the
    /// runtime parks.
    static CORKED: RefCell<Vec<(RawFd, Weak<Mutex<Held>>)>> = const { RefCell::new(Vec::new()) };
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
    let corked = CORKED.with(|c| std::mem::take(&mut *c.borrow_mut()));
    for (fd, held) in corked {
        // Gone: the connection was dropped (and its socket closed).
        if let Some(held) = held.upgrade() {
            lock(&held).send_on(fd);
        }
    }
}

/// Queues `held` for the park hook to send on `fd`.
fn register(fd: RawFd, held: Weak<Mutex<Held>>) {
    let first = CORKED.with(|c| {
        let mut c = c.borrow_mut();
        c.push((fd, held));
        c.len() == 1
    });
    if first && let Some(w) = WATCHDOG.with(|w| w.borrow_mut().take()) {
        w.wake();
    }
}

fn lock(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bytes a connection holds. Shared with the park hook when it sends
/// them itself; only ever touched from the connection's own thread.
struct Held {
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    sent: usize,
    /// Handed to the park hook, which sends it on the socket.
    queued: bool,
    /// The park hook could not send everything (or failed): the
    /// connection's task writes the rest, woken by this waker.
    stalled: bool,
    failed: Option<io::Error>,
    waker: Option<Waker>,
}

impl Held {
    /// From the park hook: sends what is held on `fd` without blocking;
    /// what the socket does not take is left to the connection's task.
    fn send_on(&mut self, fd: RawFd) {
        self.queued = false;
        while self.sent < self.buf.len() {
            let rest = &self.buf[self.sent..];
            // SAFETY: `fd` is the connection's socket, open while its
            // `Corked` (the only strong owner of `self`) lives; `rest` is
            // valid for reads of its length.
            let n = unsafe {
                libc::send(
                    fd,
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n > 0 {
                self.sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {}
                _ => self.failed = Some(e),
            }
            self.stalled = true;
            if let Some(w) = self.waker.take() {
                w.wake();
            }
            return;
        }
        self.buf.clear();
        self.sent = 0;
        self.shrink();
    }

    /// A burst may have grown the buffer; do not keep it per idle
    /// connection.
    fn shrink(&mut self) {
        if self.buf.capacity() > MAX_CORKED {
            self.buf = Vec::new();
        }
    }

    /// Hands the flush to this thread's park hook (once); false where
    /// there is none, and the flush writes now.
    fn queue(&mut self, cx: &Context<'_>, me: &Arc<Mutex<Held>>, fd: RawFd) -> bool {
        if !self.queued && PARKS.with(Cell::get).is_some() {
            self.queued = true;
            self.waker = Some(cx.waker().clone());
            register(fd, Arc::downgrade(me));
        }
        self.queued
    }
}

pub struct Corked<IO> {
    io: IO,
    /// What is held, once [`Corked::cork`] was called; until then writes
    /// go straight through.
    held: Option<Arc<Mutex<Held>>>,
    /// `io`'s socket, which the park hook sends the held bytes on.
    fd: RawFd,
}

impl<IO: AsRawFd> Corked<IO> {
    /// The client's socket `io` (a TLS stream goes on top), its writes
    /// going straight through until [`Corked::cork`].
    pub fn new(io: IO) -> Self {
        let fd = io.as_raw_fd();
        Corked { io, held: None, fd }
    }
}

impl<IO> Corked<IO> {
    /// From now on, holds flushes until the thread runs out of work.
    pub fn cork(&mut self) {
        self.held.get_or_insert_with(|| {
            Arc::new(Mutex::new(Held {
                buf: Vec::new(),
                sent: 0,
                queued: false,
                stalled: false,
                failed: None,
                waker: None,
            }))
        });
    }
}

impl<IO: AsyncWrite + Unpin> Corked<IO> {
    /// Writes out everything buffered, through `io`.
    fn poll_drain(io: &mut IO, held: &mut Held, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = held.failed.take() {
            return Poll::Ready(Err(e));
        }
        while held.sent < held.buf.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &held.buf[held.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            held.sent += n;
        }
        held.buf.clear();
        held.sent = 0;
        held.stalled = false;
        held.shrink();
        Poll::Ready(Ok(()))
    }

    /// Room for more: drains first when the buffer is full, or when the
    /// park hook left bytes it could not send.
    fn poll_room(io: &mut IO, held: &mut Held, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if held.stalled || held.buf.len() >= MAX_CORKED {
            ready!(Self::poll_drain(io, held, cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Corked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // What the park hook could not send goes out from here too: an
        // HTTP/2 connection that thinks it flushed waits on reads.
        if let Some(held) = &this.held {
            let held = &mut *lock(held);
            if held.stalled
                && let Poll::Ready(Err(e)) = Self::poll_drain(&mut this.io, held, cx)
            {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Corked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(held) = &this.held else {
            return Pin::new(&mut this.io).poll_write(cx, data);
        };
        let held = &mut *lock(held);
        ready!(Self::poll_room(&mut this.io, held, cx))?;
        held.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(held) = &this.held else {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        };
        let held = &mut *lock(held);
        ready!(Self::poll_room(&mut this.io, held, cx))?;
        let mut n = 0;
        for b in bufs {
            held.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.held.is_some() || self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(shared) = &this.held {
            let held = &mut *lock(shared);
            if !held.buf.is_empty() || held.failed.is_some() {
                // A drain already under way (the socket was full) is not
                // held again.
                if held.sent == 0 && !held.stalled && held.queue(cx, shared, this.fd) {
                    // Sent by the park hook: as far as the writer is
                    // concerned, it is flushed.
                    return Poll::Ready(Ok(()));
                }
                ready!(Self::poll_drain(&mut this.io, held, cx))?;
            }
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(held) = &this.held {
            let held = &mut *lock(held);
            held.queued = false;
            ready!(Self::poll_drain(&mut this.io, held, cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    /// A connected loopback pair; the first is the corked side.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    fn corked(stream: TcpStream) -> Corked<TcpStream> {
        let mut corked = Corked::new(stream);
        corked.cork();
        corked
    }

    /// Bytes waiting in `stream`'s receive queue.
    fn queued(stream: &TcpStream) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int to the pointer given.
        let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0);
        n as usize
    }

    #[tokio::test]
    async fn writes_arrive_whole_and_in_order_after_flush() {
        let (a, mut b) = tcp_pair().await;
        let mut corked = corked(a);
        corked.write_all(b"one ").await.unwrap();
        let parts = [io::IoSlice::new(b"two "), io::IoSlice::new(b"three")];
        let n = corked.write_vectored(&parts).await.unwrap();
        assert_eq!(n, 9);
        // Nothing leaves before the flush.
        let mut probe = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(20), b.read(&mut probe));
        assert!(early.await.is_err(), "bytes left before the flush");
        corked.flush().await.unwrap();
        let mut got = vec![0u8; 13];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two three");
    }

    #[tokio::test]
    async fn until_corked_writes_go_straight_through() {
        let (a, mut b) = tcp_pair().await;
        let mut plain = Corked::new(a);
        plain.write_all(b"HTTP/1.1").await.unwrap();
        let mut got = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), b.read_exact(&mut got));
        read.await.expect("held without a cork").unwrap();
        assert_eq!(&got, b"HTTP/1.1");
    }

    #[tokio::test]
    async fn a_full_buffer_goes_out_without_a_flush() {
        let (a, mut b) = tcp_pair().await;
        let writer = tokio::spawn(async move {
            let mut corked = corked(a);
            corked.write_all(&vec![7u8; MAX_CORKED]).await.unwrap();
            corked.write_all(b"x").await.unwrap();
            corked
        });
        let mut got = vec![0u8; MAX_CORKED];
        b.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&x| x == 7));
        let mut corked = writer.await.unwrap();
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
    fn on_a_worker_runtime_the_bytes_leave_when_it_runs_out_of_work() {
        let runtime = worker_runtime();
        let order = runtime.block_on(async {
            let order = Arc::new(Mutex::new(Vec::new()));
            let (a, mut b) = tcp_pair().await;
            let o = order.clone();
            let reader = tokio::spawn(async move {
                let mut got = [0u8; 8];
                b.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"response");
                o.lock().unwrap().push("arrived".to_string());
            });
            let o = order.clone();
            let writer = tokio::spawn(async move {
                let mut corked = corked(a);
                corked.write_all(b"response").await.unwrap();
                // Done at once, as far as the writer is concerned.
                corked.flush().await.unwrap();
                o.lock().unwrap().push("flushed".to_string());
                corked
            });
            // Another task with work queued in the same turns.
            let o = order.clone();
            let busy = tokio::spawn(async move {
                for i in 0..5 {
                    o.lock().unwrap().push(format!("busy {i}"));
                    tokio::task::yield_now().await;
                }
            });
            let _corked = writer.await.unwrap();
            busy.await.unwrap();
            reader.await.unwrap();
            order.lock().unwrap().clone()
        });
        assert_eq!(order.len(), 7, "{order:?}");
        assert_eq!(order[0], "flushed", "the flush waited: {order:?}");
        assert_eq!(
            order[6], "arrived",
            "sent before the work ran out: {order:?}"
        );
    }

    #[test]
    fn on_a_worker_runtime_the_flush_does_not_wait_and_nothing_leaves_before_the_park() {
        let runtime = worker_runtime();
        runtime.block_on(async {
            let (a, mut b) = tcp_pair().await;
            let mut corked = corked(a);
            corked.write_all(b"one ").await.unwrap();
            corked.write_all(b"two").await.unwrap();
            corked.flush().await.unwrap();
            assert_eq!(queued(&b), 0);
            let mut got = [0u8; 7];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"one two");
        });
    }

    #[test]
    fn what_a_full_socket_does_not_take_the_connection_writes_itself() {
        let runtime = worker_runtime();
        runtime.block_on(async {
            let (a, mut b) = tcp_pair().await;
            // Fill the socket first, so the park hook's send finds no room.
            let mut filler = 0;
            loop {
                match a.try_write(&[0u8; 16 * 1024]) {
                    Ok(n) => filler += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            let payload: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
            let expected = payload.clone();
            let peer = tokio::spawn(async move {
                // The runtime parks here, and the hook finds the socket full.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut skip = vec![0u8; filler];
                b.read_exact(&mut skip).await.unwrap();
                let mut got = vec![0u8; expected.len()];
                b.read_exact(&mut got).await.unwrap();
                assert!(got == expected, "bytes lost or out of order");
                b.write_all(b"ok").await.unwrap();
            });
            let mut corked = corked(a);
            corked.write_all(&payload).await.unwrap();
            corked.flush().await.unwrap();
            // An HTTP/2 connection that believes it flushed waits on the
            // next read: that is where the rest must leave.
            let mut reply = [0u8; 2];
            let read = tokio::time::timeout(Duration::from_secs(5), corked.read_exact(&mut reply));
            read.await.expect("the held bytes were never sent").unwrap();
            assert_eq!(&reply, b"ok");
            peer.await.unwrap();
        });
    }

    #[test]
    fn a_worker_that_never_runs_out_of_work_still_sends() {
        let runtime = worker_runtime();
        let busy_for = Duration::from_millis(300);
        let (arrived_after, busy_ran) = runtime.block_on(async move {
            tokio::spawn(watchdog());
            let (a, mut b) = tcp_pair().await;
            let start = std::time::Instant::now();
            // Always another task ready: the runtime never parks.
            let busy = tokio::spawn(async move {
                while start.elapsed() < busy_for {
                    tokio::task::yield_now().await;
                }
                start.elapsed()
            });
            let writer = tokio::spawn(async move {
                let mut corked = corked(a);
                corked.write_all(b"response").await.unwrap();
                corked.flush().await.unwrap();
                corked
            });
            let mut got = [0u8; 8];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"response");
            let arrived_after = start.elapsed();
            let _corked = writer.await.unwrap();
            (arrived_after, busy.await.unwrap())
        });
        assert!(busy_ran >= busy_for);
        assert!(
            arrived_after < busy_for / 3,
            "held {arrived_after:?} while the runtime stayed busy (limit {MAX_HOLD:?})"
        );
    }
}
