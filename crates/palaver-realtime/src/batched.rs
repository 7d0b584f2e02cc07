//! A socket whose writes are gathered until the next flush, in a buffer
//! that exists only until then.
//!
//! tungstenite batches frames in a write buffer of its own, which it keeps
//! at the largest size it ever reached: after one burst (a replay on
//! subscribe, the recent messages of a legacy chat socket) a connection
//! would hold 16 to 32 KiB for the rest of its life. The hub turns that
//! buffer off ([`crate::HubConfig::socket_config`]: every frame goes to
//! the socket at once) and puts this under it instead: frames still reach
//! the network in few large writes, and the buffer is freed on each flush
//! (the writer flushes after every batch).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before they are written without waiting for a flush.
const LIMIT: usize = 16 * 1024;

/// Wraps the socket a WebSocket connection runs on; see the module doc.
#[derive(Debug)]
pub struct BatchedWrites<S> {
    inner: S,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    written: usize,
}

impl<S> BatchedWrites<S> {
    /// Wraps `inner`; nothing is allocated until something is written.
    pub fn new(inner: S) -> Self {
        Self { inner, buf: Vec::new(), written: 0 }
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> BatchedWrites<S> {
    /// Writes out what is gathered, then frees the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BatchedWrites<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() + data.len() > LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        if data.len() >= LIMIT {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    /// Records each write; refuses (Pending) while `blocked` is non-zero.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        blocked: usize,
        most: usize,
    }

    impl AsyncRead for Recorder {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.blocked > 0 {
                this.blocked -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = data.len().min(this.most.max(1));
            this.writes.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_writes_are_gathered_until_the_flush_and_the_buffer_is_freed() {
        let mut socket = BatchedWrites::new(Recorder { most: usize::MAX, ..Recorder::default() });
        for frame in [&b"one"[..], b"two", b"three"] {
            socket.write_all(frame).await.unwrap();
        }
        assert!(socket.inner.writes.is_empty(), "nothing written before the flush");
        socket.flush().await.unwrap();
        assert_eq!(socket.inner.writes, vec![b"onetwothree".to_vec()]);
        assert_eq!(socket.inner.flushes, 1);
        assert_eq!(socket.buf.capacity(), 0, "the buffer is freed once written");
    }

    #[tokio::test]
    async fn a_full_buffer_is_written_without_a_flush_and_large_writes_go_straight() {
        let mut socket = BatchedWrites::new(Recorder { most: usize::MAX, ..Recorder::default() });
        let frame = vec![7u8; LIMIT / 2 + 1];
        socket.write_all(&frame).await.unwrap();
        socket.write_all(&frame).await.unwrap();
        assert_eq!(socket.inner.writes, vec![frame.clone()], "the first frame went out to make room");
        let large = vec![9u8; LIMIT];
        socket.write_all(&large).await.unwrap();
        assert_eq!(socket.inner.writes, vec![frame.clone(), frame, large]);
    }

    #[tokio::test]
    async fn partial_and_refused_writes_lose_nothing() {
        let mut socket = BatchedWrites::new(Recorder { most: 5, blocked: 3, ..Recorder::default() });
        let data: Vec<u8> = (0..200u8).collect();
        for chunk in data.chunks(30) {
            socket.write_all(chunk).await.unwrap();
        }
        socket.flush().await.unwrap();
        assert_eq!(socket.inner.writes.concat(), data);
        assert_eq!(socket.buf.capacity(), 0);
    }
}
