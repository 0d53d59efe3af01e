//! [`ReadAhead`]: reads the socket a whole scratch buffer at a time for a
//! reader that asks for little at a time (tungstenite, whose own buffer is
//! kept small so an idle connection costs little), and first yields the
//! bytes that came before it was handed on (those after a PROXY header).
//! [`ReadAhead::rewind`]: only the latter, over a stream already read ahead
//! (the bytes after a request head that was read to look at it).
//!
//! Why: tungstenite reads at most its read buffer's size per call, and
//! keeps that buffer, zero-filled, for the connection's life. A 4 KiB
//! buffer costs 4 KiB per open connection but 16 `read`s per 64 KiB message;
//! a 64 KiB one, the reverse (measured: 73 KiB per open connection). Here
//! each `read` takes up to the thread's 64 KiB scratch buffer, and what the
//! reader did not take yet is carried by the connection until it does, then
//! freed: an idle connection carries nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use std::sync::Arc;

use super::super::connection::{Traffic, with_scratch};

/// Bytes read but not yet handed on; unallocated when empty.
#[derive(Debug, Default)]
struct Carry {
    /// The bytes.
    bytes: Vec<u8>,
    /// How many of them were handed on.
    taken: usize,
}

impl Carry {
    /// Hands on what is carried, as much as `buf` takes, and frees the
    /// carry once it is all taken; false if nothing was carried.
    fn hand_on(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let rest = &self.bytes[self.taken..];
        if rest.is_empty() {
            return false;
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.taken += n;
        if self.taken == self.bytes.len() {
            *self = Carry::default();
        }
        true
    }
}

/// A stream whose reads begin with bytes already read from it, and then,
/// when it reads ahead, go through this thread's scratch buffer.
#[derive(Debug)]
pub(super) struct ReadAhead<S> {
    /// The stream.
    inner: S,
    /// Read, not yet handed on.
    carry: Carry,
    /// What happens after the carry.
    after: After,
}

/// What a [`ReadAhead`] does once its carry is handed on.
#[derive(Debug)]
enum After {
    /// Reads a scratch buffer at a time, and counts every byte read or
    /// written in the connection's counters: every byte on the wire is
    /// activity for the idle sweep, frames and pings included.
    ReadAhead(Arc<Traffic>),
    /// Passes reads and writes through (the stream below reads ahead and
    /// counts already).
    Rewind,
}

impl<S> ReadAhead<S> {
    /// `inner`, whose reads begin with `early`, read ahead and counted in
    /// `traffic`.
    pub(super) fn new(inner: S, early: Vec<u8>, traffic: Arc<Traffic>) -> ReadAhead<S> {
        ReadAhead::with(inner, early, After::ReadAhead(traffic))
    }

    /// `inner`, whose reads begin with `early`, then pass through.
    pub(super) fn rewind(inner: S, early: Vec<u8>) -> ReadAhead<S> {
        ReadAhead::with(inner, early, After::Rewind)
    }

    /// `inner`, whose reads begin with `early`, then do `after`.
    fn with(inner: S, early: Vec<u8>, after: After) -> ReadAhead<S> {
        ReadAhead {
            inner,
            carry: Carry {
                bytes: early,
                taken: 0,
            },
            after,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.carry.hand_on(buf) {
            return Poll::Ready(Ok(()));
        }
        let After::ReadAhead(traffic) = &this.after else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        with_scratch(|scratch| {
            if buf.remaining() >= scratch.len() {
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                traffic.add_wire(buf.filled().len() - before);
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let got = read.filled();
            traffic.add_wire(got.len());
            let n = got.len().min(buf.remaining());
            buf.put_slice(&got[..n]);
            this.carry.bytes.extend_from_slice(&got[n..]);
            Poll::Ready(Ok(()))
        })
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if let After::ReadAhead(traffic) = &this.after {
            traffic.add_wire(written);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_and_the_carry_is_freed() {
        let (mut ours, theirs) = tokio::io::duplex(256 * 1024);
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        ours.write_all(&sent).await.unwrap();
        drop(ours);
        let traffic = Arc::new(Traffic::default());
        let mut stream = ReadAhead::new(theirs, b"early".to_vec(), Arc::clone(&traffic));
        let mut got = Vec::new();
        let mut small = [0u8; 1000];
        loop {
            let n = stream.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(&got[..5], b"early");
        assert_eq!(got[5..], sent);
        assert_eq!(
            stream.carry.bytes.capacity(),
            0,
            "nothing carried at the end"
        );
        assert_eq!(traffic.moved(), 200_000, "every byte read is activity");
    }
}
