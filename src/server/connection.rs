//! One stream connection: read -> transform -> write, until the peer's EOF or
//! an error. Errors stay inside the task: a misbehaving client ends its own
//! connection and nothing else. Idle timeouts and shutdown cut-offs are not
//! checked here but by the [listener](super::listener) that owns the task,
//! which aborts it: the loop below does nothing per message but the I/O, the
//! transform and two counter updates.
//!
//! Memory: a connection owns no read buffer. It reads into the one
//! [`BUFFER_SIZE`] scratch buffer of its thread,
//! transforms there and writes straight back; only bytes the peer's socket
//! could not take right away are copied into a buffer of the connection's
//! own, which is freed as soon as it has drained. While such bytes are owed,
//! nothing more is read from that peer (backpressure), so a client that never
//! reads holds at most one read's output here (64 KiB, or up to 3x that with
//! `--transform unicode`), plus the kernel's socket buffers. Measured (docs/ARCHITECTURE.md): an open connection costs
//! under 1 KiB of server memory instead of the 64 KiB buffer it had before.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use crate::transform::StreamTransform;

/// Bytes read per `read` call: the size of each thread's scratch buffer, and
/// so the most one stalled connection holds in memory.
///
/// Measured (docs/ARCHITECTURE.md): 64 KiB streams about 1.9x faster than
/// 16 KiB with 16 connections and costs nothing in ping-pong.
pub const BUFFER_SIZE: usize = 64 * 1024;

thread_local! {
    /// The scratch buffer every connection on this thread reads into.
    ///
    /// Why per thread: a connection only uses it between a read and the
    /// write that follows, with no `.await` in between, so connections on
    /// one thread never use it at the same time; one buffer stays warm in
    /// cache where one per connection (500 x 64 KiB) did not.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; BUFFER_SIZE].into_boxed_slice());
}

/// Runs `f` with this thread's scratch buffer. Never across an `.await`:
/// only within one poll.
pub(super) fn with_scratch<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    SCRATCH.with_borrow_mut(|scratch| f(scratch))
}

/// Reads what is there from `stream` into the thread's scratch buffer,
/// counts it, transforms it in place and hands the output to `answer`, all
/// within one poll: `None` at EOF. (TLS connections read records instead,
/// in [`super::tls`].)
#[inline]
pub(super) fn poll_read_transformed<R: AsyncRead + Unpin, T>(
    stream: &mut R,
    cx: &mut Context<'_>,
    transform: &mut StreamTransform,
    traffic: &Traffic,
    answer: impl FnOnce(&mut R, &[u8]) -> io::Result<T>,
) -> Poll<io::Result<Option<T>>> {
    with_scratch(|scratch| {
        let mut buf = ReadBuf::new(scratch);
        ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        if n == 0 {
            return Poll::Ready(Ok(None));
        }
        traffic.add_in(n);
        let out = transform.process(&mut scratch[..n]);
        Poll::Ready(answer(stream, &out).map(Some))
    })
}

/// A stream socket the connection loop can drive: TCP or Unix.
///
/// Reads go through `AsyncRead::poll_read`, one poll at a time, so the
/// thread's scratch buffer is borrowed only within a poll. (Tokio's
/// `readable()` + `try_read` would do too, but `try_read` keeps the socket
/// marked readable after a short read, which cost a `recvfrom` answering
/// `EAGAIN` on 60% of round trips, seen with `strace -f -c`; `poll_read` knows
/// a short read drained the socket.) Writes are tried without registering
/// interest, and waited for only when bytes are owed.
pub(crate) trait ReadyStream: AsyncRead + tokio::io::AsyncWrite + Unpin + Sync {
    /// Waits until a write may make progress.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes without blocking; `WouldBlock` when the socket buffer is full.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Shuts down the sending direction: the peer reads EOF.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl ReadyStream for tokio::net::TcpStream {
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        tokio::net::TcpStream::writable(self)
    }
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        socket2::SockRef::from(self).shutdown(std::net::Shutdown::Write)
    }
}

impl ReadyStream for tokio::net::UnixStream {
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        tokio::net::UnixStream::writable(self)
    }
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::UnixStream::try_write(self, buf)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        socket2::SockRef::from(self).shutdown(std::net::Shutdown::Write)
    }
}

/// How a connection ended by itself (an abort ends it from outside).
#[derive(Debug)]
pub(crate) enum End {
    /// The peer half-closed and got everything it was owed.
    Finished,
    /// The peer reset the connection or another I/O error happened.
    Io(io::Error),
    /// No valid PROXY protocol header came first, or not in time.
    ProxyHeader(super::proxy::HeaderError),
    /// The client a PROXY header named was refused (access rules, or its
    /// source over `--max-per-source`).
    Refused(super::admission::Refused),
    /// The TLS handshake failed or ran out of time.
    Tls(String),
    /// A WebSocket peer broke the protocol (closed with 1002, 1007 or 1009).
    WebSocket(String),
    /// Closed by the server at the end of the shutdown grace (a WebSocket
    /// with 1001).
    Shutdown,
}

impl End {
    /// The `reason` label of `upecho_connections_closed_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            End::Finished => "peer",
            End::Io(_) => "error",
            End::ProxyHeader(_) => "proxy_header",
            End::Refused(refused) => refused.reason(),
            End::Tls(_) => "tls",
            End::WebSocket(_) => "ws_protocol",
            End::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Finished => f.write_str("peer finished"),
            End::Io(err) => f.write_str(&crate::error::plain(err)),
            End::ProxyHeader(err) => write!(f, "proxy_header: {err}"),
            End::Refused(refused) => f.write_str(refused.reason()),
            End::Tls(why) => write!(f, "tls: {why}"),
            End::WebSocket(why) => write!(f, "ws_protocol: {why}"),
            End::Shutdown => f.write_str("closed at shutdown"),
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
    /// WebSocket messages received and sent (0 on other listeners).
    messages: [AtomicU64; 2],
    /// Bytes read and written on the socket that are not payload (a
    /// WebSocket's frames, pings and HTTP), for the idle sweep alone: a
    /// message still arriving, or a ping, is not idleness.
    wire: AtomicU64,
    /// The client a PROXY protocol header named: the peer the listener logs
    /// when the connection closes, instead of the socket's (the proxy's).
    client: std::sync::OnceLock<std::net::SocketAddr>,
}

impl Traffic {
    /// Counts `n` bytes moved on the socket (see [`Traffic::moved`]).
    pub(super) fn add_wire(&self, n: usize) {
        Traffic::add(&self.wire, n);
    }

    /// Bytes moved either way so far, payload or not: what the idle sweep
    /// watches.
    pub(crate) fn moved(&self) -> u64 {
        let (bytes_in, bytes_out) = self.counts();
        bytes_in + bytes_out + self.wire.load(Ordering::Relaxed)
    }

    /// Bytes received and sent so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// WebSocket messages received and sent so far.
    pub(crate) fn messages(&self) -> (u64, u64) {
        let [received, sent] = &self.messages;
        (
            received.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed),
        )
    }

    /// Counts a WebSocket message received.
    pub(super) fn message_in(&self) {
        Traffic::add(&self.messages[0], 1);
    }

    /// Counts a WebSocket message sent.
    pub(super) fn message_out(&self) {
        Traffic::add(&self.messages[1], 1);
    }

    /// The client a PROXY protocol header named, if one did.
    pub(crate) fn client(&self) -> Option<std::net::SocketAddr> {
        self.client.get().copied()
    }

    /// Records the client a PROXY protocol header named.
    pub(crate) fn set_client(&self, client: std::net::SocketAddr) {
        let _ = self.client.set(client);
    }

    /// Counts `n` bytes received.
    pub(super) fn add_in(&self, n: usize) {
        Traffic::add(&self.bytes_in, n);
    }

    /// Counts `n` bytes sent.
    pub(super) fn add_out(&self, n: usize) {
        Traffic::add(&self.bytes_out, n);
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

/// Bytes transformed but not yet taken by the peer's socket.
///
/// Empty (no allocation) whenever the peer keeps up, which is always in
/// ping-pong; filled only when a write was partial, and freed once drained.
#[derive(Debug, Default)]
pub(super) struct Owed {
    /// The bytes; `Vec::new()` allocates nothing.
    bytes: Vec<u8>,
    /// How many of `bytes` were already written.
    sent: usize,
}

impl Owed {
    /// Returns true if and only if nothing is owed.
    pub(super) fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Keeps `rest` to be written later.
    pub(super) fn keep(&mut self, rest: &[u8]) {
        self.bytes.extend_from_slice(rest);
    }

    /// The bytes still to write.
    fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    /// Records that `n` more bytes were written; frees the buffer when all were.
    fn advance(&mut self, n: usize) {
        self.sent += n;
        if self.is_empty() {
            *self = Owed::default();
        }
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
    /// What the peer has not taken yet; nothing is read while it is non-empty.
    owed: Owed,
}

/// What one step of reading produced.
enum Step {
    /// Bytes were read and answered (perhaps partly owed).
    Served,
    /// The peer half-closed.
    Eof,
}

impl<S: ReadyStream> Connection<S> {
    pub(crate) fn new(
        stream: S,
        transform: StreamTransform,
        traffic: std::sync::Arc<Traffic>,
    ) -> Self {
        Connection {
            stream,
            transform,
            traffic,
            owed: Owed::default(),
        }
    }

    /// The socket, for a phase that reads before the loop (the PROXY header).
    pub(crate) fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The socket, the transform and the counters, for a connection served
    /// another way (TLS).
    pub(crate) fn into_parts(self) -> (S, StreamTransform, std::sync::Arc<Traffic>) {
        (self.stream, self.transform, self.traffic)
    }

    /// The counters shared with the listener.
    pub(crate) fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Answers bytes the peer sent before the loop started (those that came
    /// with a PROXY protocol header): transformed, they are owed, and
    /// [`Connection::run`] writes them before it reads anything more.
    pub(crate) fn answer_first(&mut self, mut payload: Vec<u8>) {
        if payload.is_empty() {
            return;
        }
        Traffic::add(&self.traffic.bytes_in, payload.len());
        let out = self.transform.process(&mut payload);
        if !out.is_empty() {
            self.owed.keep(&out);
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
        loop {
            if !self.owed.is_empty() {
                if let Err(err) = self.write_owed().await {
                    return End::Io(err);
                }
                continue;
            }
            match std::future::poll_fn(|cx| self.poll_read_and_answer(cx)).await {
                Ok(Step::Served) => {}
                Ok(Step::Eof) => return self.finish().await,
                Err(err) => return End::Io(err),
            }
        }
    }

    /// Reads what is there into the thread's scratch buffer, transforms it in
    /// place and writes it straight back; keeps what the socket did not take.
    /// All within one poll: that is what makes one buffer per thread enough.
    fn poll_read_and_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        let owed = &mut self.owed;
        let answered = poll_read_transformed(
            &mut self.stream,
            cx,
            &mut self.transform,
            &self.traffic,
            |stream, out| {
                // Nothing is owed here (nothing is read while it is), and an
                // empty output is a character the transform holds.
                send_or_owe(stream, owed, out)
            },
        );
        Poll::Ready(match ready!(answered) {
            Ok(Some(written)) => {
                Traffic::add(&self.traffic.bytes_out, written);
                Ok(Step::Served)
            }
            Ok(None) => Ok(Step::Eof),
            Err(err) => Err(err),
        })
    }

    /// Waits until the peer's socket has room and writes what is owed.
    async fn write_owed(&mut self) -> io::Result<()> {
        let written = write_owed(&self.stream, &mut self.owed).await?;
        Traffic::add(&self.traffic.bytes_out, written);
        Ok(())
    }

    /// Half-close: sends what is still owed (the transform's held bytes
    /// included), then closes our sending side.
    async fn finish(mut self) -> End {
        let tail = self.transform.finish();
        if !tail.is_empty() {
            self.owed.keep(tail);
        }
        while !self.owed.is_empty() {
            if let Err(err) = self.write_owed().await {
                return End::Io(err);
            }
        }
        match self.stream.shutdown_write() {
            Ok(()) => End::Finished,
            Err(err) => End::Io(err),
        }
    }
}

/// Waits until `stream` has room and writes some of what is `owed`: how many
/// bytes (0 when the readiness was spurious).
pub(super) async fn write_owed<S: ReadyStream>(stream: &S, owed: &mut Owed) -> io::Result<usize> {
    stream.writable().await?;
    match stream.try_write(owed.pending()) {
        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => {
            owed.advance(n);
            Ok(n)
        }
        Err(err) if would_block(&err) => Ok(0),
        Err(err) => Err(err),
    }
}

/// Writes `bytes` after what is `owed`: at once if nothing is owed and the
/// socket takes them, what it does not take is owed.
pub(super) fn send_or_owe<S: ReadyStream>(
    stream: &S,
    owed: &mut Owed,
    bytes: &[u8],
) -> io::Result<usize> {
    if bytes.is_empty() {
        return Ok(0);
    }
    if !owed.is_empty() {
        owed.keep(bytes);
        return Ok(0);
    }
    let written = match stream.try_write(bytes) {
        Ok(written) => written,
        Err(err) if would_block(&err) => 0,
        Err(err) => return Err(err),
    };
    if written < bytes.len() {
        owed.keep(&bytes[written..]);
    }
    Ok(written)
}

/// Returns true if and only if `err` says the non-blocking call found nothing
/// to do.
fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_bytes_are_kept_in_order_and_freed_once_drained() {
        let mut owed = Owed::default();
        assert!(owed.is_empty());
        owed.keep(b"HELLO");
        assert_eq!(owed.pending(), b"HELLO");
        owed.advance(2);
        assert_eq!(owed.pending(), b"LLO");
        owed.advance(3);
        assert!(owed.is_empty());
        assert_eq!(owed.bytes.capacity(), 0, "the buffer is given back");
    }
}
