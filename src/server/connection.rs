//! One TCP connection: read -> transform -> write, until the peer's EOF, an
//! error, the idle timeout or a shutdown cut-off. Errors stay inside the task:
//! a misbehaving client ends its own connection and nothing else.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::transform::StreamTransform;

/// Bytes read per `read` call, and so the most one connection holds in memory.
///
/// A whole chunk is written back before the next read, so a client that never
/// reads stalls only its own task, at this many bytes plus the kernel's socket
/// buffers. Measured (docs/ARCHITECTURE.md): 64 KiB streams about 1.9x faster
/// than 16 KiB with 16 connections and costs nothing in ping-pong; the memory
/// is only touched as far as reads fill it.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// Why a connection ended; logged at debug level.
#[derive(Debug)]
pub(crate) enum End {
    /// The peer half-closed and got everything it was owed.
    Finished,
    /// No byte moved in either direction for the idle timeout.
    Idle,
    /// Shutdown grace ran out.
    CutOff,
    /// The peer reset the connection or another I/O error happened.
    Io(io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Finished => f.write_str("peer finished"),
            End::Idle => f.write_str("idle timeout"),
            End::CutOff => f.write_str("cut off at shutdown"),
            End::Io(err) => write!(f, "{}", crate::error::plain(err)),
        }
    }
}

/// Connection-lifetime state.
pub(crate) struct Connection<S> {
    /// The accepted socket.
    stream: S,
    /// Who the peer is, for logs.
    peer: SocketAddr,
    /// The per-connection transform state.
    transform: StreamTransform,
    /// Enforces the idle timeout and the shutdown cut-off around each I/O call.
    watchdog: Watchdog,
    /// Bytes received from the peer.
    bytes_in: u64,
    /// Bytes sent to the peer.
    bytes_out: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(
        stream: S,
        peer: SocketAddr,
        transform: StreamTransform,
        idle_timeout: Option<Duration>,
        cut: CancellationToken,
    ) -> Self {
        Connection {
            stream,
            peer,
            transform,
            watchdog: Watchdog::new(idle_timeout, cut),
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Serves the connection to its end and logs how it ended.
    pub(crate) async fn run(mut self) {
        tracing::debug!(peer = %self.peer, "connection opened");
        // Allocated once per connection; the loop below allocates nothing.
        let mut buf = vec![0u8; BUFFER_SIZE].into_boxed_slice();
        let end = self.serve(&mut buf).await;
        tracing::debug!(
            peer = %self.peer,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            end = %end,
            "connection closed"
        );
    }

    async fn serve(&mut self, buf: &mut [u8]) -> End {
        loop {
            let n = match self.watchdog.guard(self.stream.read(buf)).await {
                Ok(n) => n,
                Err(end) => return end,
            };
            if n == 0 {
                // Half-close: send what is still owed, then close our side.
                let tail = self.transform.finish();
                if let Err(end) = write_out(
                    &mut self.stream,
                    &mut self.watchdog,
                    tail,
                    &mut self.bytes_out,
                )
                .await
                {
                    return end;
                }
                return match self.watchdog.guard(self.stream.shutdown()).await {
                    Ok(()) => End::Finished,
                    Err(end) => end,
                };
            }
            self.bytes_in += n as u64;
            let out = self.transform.process(&mut buf[..n]);
            if let Err(end) = write_out(
                &mut self.stream,
                &mut self.watchdog,
                out,
                &mut self.bytes_out,
            )
            .await
            {
                return end;
            }
        }
    }
}

/// Writes all of `out`, one `write` call at a time so that each partial write
/// counts as activity for the idle timeout.
async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    watchdog: &mut Watchdog,
    mut out: &[u8],
    counter: &mut u64,
) -> Result<(), End> {
    while !out.is_empty() {
        let n = watchdog.guard(stream.write(out)).await?;
        if n == 0 {
            return Err(End::Io(io::ErrorKind::WriteZero.into()));
        }
        *counter += n as u64;
        out = &out[n..];
    }
    Ok(())
}

/// Bounds each I/O call by the idle timeout and the shutdown cut-off.
///
/// Why not `tokio::time::timeout` around each call: resetting a timer on every
/// read and write takes the timer driver's lock. Instead one timer per
/// connection fires at most once per idle period, and on firing checks when
/// bytes last moved: progress costs only an `Instant::now()`.
struct Watchdog {
    /// `None` when connections may stay idle forever.
    idle: Option<Duration>,
    /// When a byte last moved.
    last_activity: Instant,
    /// Fires no earlier than `last_activity + idle`.
    timer: Pin<Box<Sleep>>,
    /// Completes when the server cuts off open connections.
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Watchdog {
    fn new(idle: Option<Duration>, cut: CancellationToken) -> Self {
        let now = Instant::now();
        // With no idle timeout the timer is never polled; any deadline will do.
        let deadline = now + idle.unwrap_or(Duration::from_secs(86_400));
        Watchdog {
            idle,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            cut: Box::pin(cut.cancelled_owned()),
        }
    }

    /// Runs one I/O call unless the connection goes idle or is cut off first.
    async fn guard<T>(&mut self, io: impl Future<Output = io::Result<T>>) -> Result<T, End> {
        tokio::pin!(io);
        loop {
            tokio::select! {
                biased;
                result = &mut io => {
                    self.last_activity = Instant::now();
                    return result.map_err(End::Io);
                }
                () = &mut self.cut => return Err(End::CutOff),
                () = &mut self.timer, if self.idle.is_some() => {
                    let idle = self.idle.unwrap_or_default();
                    let deadline = self.last_activity + idle;
                    if Instant::now() >= deadline {
                        return Err(End::Idle);
                    }
                    self.timer.as_mut().reset(deadline);
                }
            }
        }
    }
}
