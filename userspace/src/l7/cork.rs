//! Write coalescing for multiplexed (HTTP/2) client connections.
//!
//! hyper's HTTP/2 connection writes and flushes as soon as one stream has
//! something to send, so with many streams in flight each response costs
//! its own `writev` (and packet). [`Corked`] keeps what is written and
//! lets the first flush wait one turn of the event loop: the other
//! streams whose server answers arrived in the same turn add their frames,
//! and everything leaves in one write, as HAProxy's and nginx's event
//! loops do. The delay is one scheduler pass, not a timer.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes above which writes go through without waiting.
const MAX_CORKED: usize = 64 * 1024;

pub struct Corked<IO> {
    io: IO,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    sent: usize,
    /// The flush already let one turn of the event loop pass.
    waited: bool,
}

impl<IO> Corked<IO> {
    pub fn new(io: IO) -> Self {
        Corked {
            io,
            buf: Vec::new(),
            sent: 0,
            waited: false,
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
        if !self.waited {
            // Let the tasks already queued in this turn add their frames.
            self.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(self.poll_drain(cx))?;
        self.waited = false;
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
}
