//! One TCP connection: read -> transform -> write, until the peer's EOF or an
//! error. Errors stay inside the task: a misbehaving client ends its own
//! connection and nothing else. Idle timeouts and shutdown cut-offs are not
//! checked here but by the [listener](super::listener) that owns the task,
//! which aborts it: the loop below does nothing per message but the I/O, the
//! transform and two counter updates.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::transform::StreamTransform;

/// Bytes read per `read` call, and so the most one connection holds in memory.
///
/// A whole chunk is written back before the next read, so a client that never
/// reads stalls only its own task, at this many bytes plus the kernel's socket
/// buffers. Measured (docs/ARCHITECTURE.md): 64 KiB streams about 1.9x faster
/// than 16 KiB with 16 connections and costs nothing in ping-pong; the memory
/// is only touched as far as reads fill it.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// How a connection ended by itself (an abort ends it from outside).
#[derive(Debug)]
pub(crate) enum End {
    /// The peer half-closed and got everything it was owed.
    Finished,
    /// The peer reset the connection or another I/O error happened.
    Io(io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Finished => f.write_str("peer finished"),
            End::Io(err) => f.write_str(&crate::error::plain(err)),
        }
    }
}

/// Bytes moved on one connection: written only by the connection's task, read
/// by its listener to tell whether the connection is idle, and for the log.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// Bytes received from the peer.
    bytes_in: AtomicU64,
    /// Bytes sent to the peer.
    bytes_out: AtomicU64,
}

impl Traffic {
    /// Bytes received and sent so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// Adds `n` to a counter that only the connection's own task writes: a
    /// plain load and store, no locked read-modify-write.
    fn add(counter: &AtomicU64, n: usize) {
        counter.store(
            counter.load(Ordering::Relaxed) + n as u64,
            Ordering::Relaxed,
        );
    }
}

/// Connection-lifetime state.
pub(crate) struct Connection<S> {
    /// The accepted socket.
    stream: S,
    /// The per-connection transform state.
    transform: StreamTransform,
    /// Shared with the listener, which watches it for idleness.
    traffic: std::sync::Arc<Traffic>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(
        stream: S,
        transform: StreamTransform,
        traffic: std::sync::Arc<Traffic>,
    ) -> Self {
        Connection {
            stream,
            transform,
            traffic,
        }
    }

    /// Serves the connection until the peer's EOF (then everything owed is
    /// sent and our side shut down) or an I/O error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the connection; bytes read but not yet
    /// written back are lost, which is what an idle timeout or a shutdown
    /// cut-off means.
    pub(crate) async fn run(mut self) -> End {
        // Allocated once per connection; the loop below allocates nothing
        // (tests/alloc shows it).
        let mut buf = vec![0u8; BUFFER_SIZE].into_boxed_slice();
        loop {
            let n = match self.stream.read(&mut buf).await {
                Ok(n) => n,
                Err(err) => return End::Io(err),
            };
            if n == 0 {
                // Half-close: send what is still owed, then close our side.
                let tail = self.transform.finish();
                if let Err(err) = write_out(&mut self.stream, tail, &self.traffic).await {
                    return End::Io(err);
                }
                return match self.stream.shutdown().await {
                    Ok(()) => End::Finished,
                    Err(err) => End::Io(err),
                };
            }
            Traffic::add(&self.traffic.bytes_in, n);
            let out = self.transform.process(&mut buf[..n]);
            if let Err(err) = write_out(&mut self.stream, out, &self.traffic).await {
                return End::Io(err);
            }
        }
    }
}

/// Writes all of `out`, counting each partial write as it happens so that a
/// slow reader still counts as activity.
async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut out: &[u8],
    traffic: &Traffic,
) -> io::Result<()> {
    while !out.is_empty() {
        let n = stream.write(out).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Traffic::add(&traffic.bytes_out, n);
        out = &out[n..];
    }
    Ok(())
}
