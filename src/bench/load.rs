//! Load generation: the phases of a run (set-up, warm-up, measured window,
//! drain), the state every connection shares, and the pieces the traffic
//! patterns use: reading into the shared buffer while checking, counting what
//! a connection is owed, and the final drain.
//!
//! Everything runs on one thread (a `LocalSet`), so connections share one
//! payload, one read buffer and one [`Tally`] through `Rc`/`RefCell` instead of
//! each owning copies. A connection costs its task and its socket, about 2 KiB
//! ([`CONNECTION_MEMORY`]); the generator's other memory is fixed.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, ready};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::connect::{self, ByteStream, DatagramSocket, Opened, Peer};
use super::payload::Payload;
use super::stats::{self, Tally};
use super::verify::{Expected, Mismatch};
use super::{BenchConfig, Mode, datagram, pingpong, stream};
use crate::Error;

/// The one read buffer of the run: 64 KiB (a large socket read) plus the spare
/// byte pingpong needs (see [`pingpong`]); over UDP, more than the largest
/// datagram, so a reply longer than expected is seen whole, not truncated.
pub const READ_BUF: usize = 64 * 1024 + 1;

/// The generator's memory per connection, as measured (and as `--help`
/// quotes it): peak RSS 4.6 MB with 10 connections, 21.5 MB with 10,010, so
/// 1.7 KiB each. About 650 bytes of it are the connection's task (the
/// `connection_task_is_small` test keeps that under 1 KiB); the rest is
/// tokio's task header and socket registration, and the allocator's overhead.
pub const CONNECTION_MEMORY: usize = 2048;

/// How long, after the window, a connection may take to return what it still
/// owes once we half-close; past it the connection is abandoned (not an error:
/// a server may legitimately still be busy with others).
const DRAIN: Duration = Duration::from_secs(2);

/// What a whole run measured.
#[derive(Debug)]
pub struct Measurements {
    /// Connections opened (all that were asked for).
    pub connections: usize,
    /// How long opening them took, before the warm-up.
    pub setup: Duration,
    /// Verified replies (pingpong) or `--size` units echoed (stream) that
    /// completed in the window.
    pub requests: u64,
    /// Verified reply bytes received in the window.
    pub bytes: u64,
    /// Wrong, missing or extra bytes, and broken connections.
    pub errors: u64,
    /// A description of the first error, for the report.
    pub first_error: Option<String>,
    /// UDP: messages whose reply did not come within
    /// [`datagram::LOSS`], counted when that time ran out in the window.
    pub lost: u64,
    /// Connections that got no verified reply in the window.
    pub starved: usize,
    /// Connections that had been answered but were owed bytes that had not
    /// moved for `stall_after` at the window's end.
    pub stalled: usize,
    /// The silence that made a connection stalled in this run.
    pub stall_after: Duration,
    /// Latency of every verified reply in the window, plus, for each request
    /// unanswered at its end, how long it had waited by then.
    pub latency: Histogram<u64>,
    /// The measured window's real length.
    pub window: Duration,
    /// CPU time this process used during the window.
    pub cpu: Option<Duration>,
}

/// The measured window: a reply counts if it completed in it.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// The end of the warm-up.
    pub from: Instant,
    /// The end of the measurement.
    pub to: Instant,
}

impl Window {
    /// Returns true if and only if `at` is inside the window.
    #[inline]
    pub fn contains(&self, at: Instant) -> bool {
        self.from <= at && at <= self.to
    }
}

/// What every connection task of a run shares.
pub struct Shared {
    /// Requests and expected replies.
    pub payload: Payload,
    /// When replies count.
    pub window: Window,
    /// Counters and histograms of the whole run.
    pub tally: RefCell<Tally>,
    /// The one read buffer: a read is checked where it lands, before any other
    /// connection runs, so no connection needs a buffer of its own.
    read_buf: RefCell<Box<[u8]>>,
}

/// Runs the whole benchmark with `payload` against `peer`: set-up, warm-up,
/// window, drain. Returns `None` if Ctrl-C interrupted it.
///
/// # Errors
///
/// [`Error::Connect`] when a connection cannot be opened; [`Error::Io`] when
/// Ctrl-C cannot be watched.
pub async fn drive(
    config: BenchConfig,
    peer: Peer,
    payload: Payload,
    progress: impl FnMut(f64),
) -> Result<Option<Measurements>, Error> {
    // Installed before any connection opens, so a Ctrl-C at any point after a
    // server saw one comes back here as a value.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|cause| Error::Io {
        context: "cannot watch for Ctrl-C".into(),
        cause,
    })?;
    let start = Instant::now();
    let opened = tokio::select! {
        opened = connect::open(&peer, config.connections) => {
            opened.map_err(|failure| failure.into_error(&config.target, config.connections))?
        }
        _ = interrupt.recv() => return Ok(None),
    };
    let setup = start.elapsed();
    let began = Instant::now();
    let window = Window {
        from: began + config.warmup,
        to: began + config.warmup + config.duration,
    };
    let shared = Rc::new(Shared {
        payload,
        window,
        tally: RefCell::new(Tally::default()),
        read_buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
    });
    let mut tasks = JoinSet::new();
    // The one dispatch on the kind of socket: each task below is a loop
    // compiled for its own kind.
    match opened {
        Opened::Tcp(streams) => spawn_streams(&mut tasks, streams, config.mode, &shared),
        Opened::Unix(streams) => spawn_streams(&mut tasks, streams, config.mode, &shared),
        Opened::Udp(sockets) => spawn_datagrams(&mut tasks, sockets, &shared),
    }
    let Some((measured, cpu)) = keep_time(window, began, progress, &mut interrupt).await else {
        return Ok(None);
    };
    tokio::select! {
        () = async { while tasks.join_next().await.is_some() {} } => {}
        _ = interrupt.recv() => return Ok(None),
    }
    let tally = shared.tally.take();
    Ok(Some(Measurements::new(
        tally,
        config.connections,
        setup,
        measured.min(config.duration).max(Duration::from_nanos(1)),
        cpu,
    )))
}

/// Spawns a connection task per stream, of the mode's traffic pattern.
fn spawn_streams<S: ByteStream>(
    tasks: &mut JoinSet<()>,
    streams: Vec<S>,
    mode: Mode,
    shared: &Rc<Shared>,
) {
    for (index, stream) in streams.into_iter().enumerate() {
        let shared = Rc::clone(shared);
        // Spawned as they are, not inside a future that matches on the mode:
        // one state machine less to resume per round trip (15 instructions).
        match mode {
            Mode::PingPong => tasks.spawn_local(pingpong::run(stream, index, shared)),
            Mode::Stream => tasks.spawn_local(stream::run(stream, index, shared)),
        };
    }
}

/// Spawns a datagram pingpong task per UDP socket.
fn spawn_datagrams(tasks: &mut JoinSet<()>, sockets: Vec<DatagramSocket>, shared: &Rc<Shared>) {
    for (index, socket) in sockets.into_iter().enumerate() {
        tasks.spawn_local(datagram::run(socket, index, Rc::clone(shared)));
    }
}

/// Keeps time while the connections run: reports progress several times a
/// second and samples CPU at the window's edges. Returns the window's real
/// length and the CPU used in it, or `None` on Ctrl-C.
async fn keep_time(
    window: Window,
    began: Instant,
    mut progress: impl FnMut(f64),
    interrupt: &mut Signal,
) -> Option<(Duration, Option<Duration>)> {
    let total = (window.to - began).as_secs_f64().max(1e-9);
    let mut cpu_from = None;
    loop {
        let now = Instant::now();
        if now >= window.to {
            break;
        }
        if cpu_from.is_none() && now >= window.from {
            cpu_from = stats::process_cpu_time();
        }
        progress((now - began).as_secs_f64() / total);
        let next = if cpu_from.is_none() {
            window.from
        } else {
            window.to
        };
        tokio::select! {
            () = sleep_until(next.min(now + Duration::from_millis(100))) => {}
            _ = interrupt.recv() => return None,
        }
    }
    let cpu_to = stats::process_cpu_time();
    let measured = Instant::now().saturating_duration_since(window.from);
    progress(1.0);
    let cpu = cpu_from
        .zip(cpu_to)
        .map(|(from, to)| to.saturating_sub(from));
    Some((measured, cpu))
}

impl Measurements {
    /// Decides stalls (they depend on the whole run's p99) and folds the
    /// waits of unanswered requests into the latency.
    fn new(
        mut tally: Tally,
        connections: usize,
        setup: Duration,
        window: Duration,
        cpu: Option<Duration>,
    ) -> Measurements {
        let stall_after = tally.stall_threshold();
        let stalled = tally.stalled(stall_after);
        // Same bounds, so adding cannot fail.
        let _ = tally.latency.add(&tally.unanswered);
        Measurements {
            connections,
            setup,
            requests: tally.requests,
            bytes: tally.bytes,
            errors: tally.errors,
            first_error: tally.first_error,
            lost: tally.lost,
            starved: connections.saturating_sub(tally.replied),
            stalled,
            stall_after,
            latency: tally.latency,
            window,
            cpu,
        }
    }
}

impl Shared {
    /// Reads once from `reader` into the run's read buffer, at most `max` bytes,
    /// and hands what came (empty at EOF) to `take` while the buffer is held.
    ///
    /// Why `poll_read` and not `readable()` + `try_read`: tokio's `poll_read`
    /// forgets the socket's readiness after a read shorter than the buffer, so
    /// the next wait goes straight to epoll; `try_read` keeps it, and the next
    /// round trip would begin with a read(2) that only says "would block".
    pub fn read_checked<R, T>(
        &self,
        reader: &mut R,
        max: usize,
        mut take: impl FnMut(&[u8]) -> T,
    ) -> impl Future<Output = io::Result<T>>
    where
        R: AsyncRead + Unpin,
    {
        poll_fn(move |cx| {
            let mut buf = self.read_buf.borrow_mut();
            let len = max.clamp(1, buf.len());
            let mut filled = ReadBuf::new(&mut buf[..len]);
            ready!(Pin::new(&mut *reader).poll_read(cx, &mut filled))?;
            Poll::Ready(Ok(take(filled.filled())))
        })
    }

    /// Receives one datagram from `socket` into the run's read buffer (all of
    /// it: the buffer is larger than any datagram) and hands it to `take`
    /// while the buffer is held. `take` returns its verdict and whether the
    /// socket is known to hold nothing more of use (the reply waited for
    /// came): then its readiness is cleared, so the next wait goes straight
    /// to epoll instead of beginning with a `recv(2)` that only says "would
    /// block". A datagram still queued behind is stale, and is read when the
    /// next reply's arrival wakes the socket again.
    pub fn recv_datagram<T>(
        &self,
        socket: &DatagramSocket,
        mut take: impl FnMut(&[u8]) -> (T, bool),
    ) -> impl Future<Output = io::Result<T>> {
        poll_fn(move |cx| {
            loop {
                let mut guard = ready!(socket.poll_read_ready(cx))?;
                let mut buf = self.read_buf.borrow_mut();
                match guard.try_io(|socket| socket.get_ref().recv(&mut buf)) {
                    Ok(Ok(n)) => {
                        let (verdict, drained) = take(&buf[..n]);
                        if drained {
                            guard.clear_ready();
                        }
                        return Poll::Ready(Ok(verdict));
                    }
                    Ok(Err(err)) => return Poll::Ready(Err(err)),
                    // Readiness cleared by `try_io`: wait for the next.
                    Err(_would_block) => {}
                }
            }
        })
    }

    /// Records a connection's state at the window's end: how long its oldest
    /// unanswered request had waited (`waiting_since`), and how long the bytes
    /// it is owed had not moved (`silent_since`, only for a connection that had
    /// been answered before: one never answered is starved, not stalled).
    pub fn window_ended(&self, waiting_since: Option<Instant>, silent_since: Option<Instant>) {
        let to = self.window.to;
        let mut tally = self.tally.borrow_mut();
        if let Some(since) = waiting_since {
            stats::record(&mut tally.unanswered, to.saturating_duration_since(since));
        }
        if let Some(since) = silent_since {
            stats::record(&mut tally.silences, to.saturating_duration_since(since));
        }
    }

    /// Counts one error of a connection.
    pub fn error(&self, what: impl FnOnce() -> String) {
        self.tally.borrow_mut().error(what);
    }
}

/// What a connection has seen of its server, across requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// Some verified reply of this connection completed in the window (and was
    /// counted in [`Tally::replied`]).
    pub replied: bool,
    /// Some reply byte ever arrived.
    pub answered: bool,
}

impl Seen {
    /// Notes a verified reply in the window, counting the connection once.
    #[inline]
    pub fn replied_in_window(&mut self, tally: &mut Tally) {
        if !self.replied {
            self.replied = true;
            tally.replied += 1;
        }
    }
}

/// Reply bytes a connection is owed, and the check they must pass.
#[derive(Clone, Copy, Debug)]
pub struct Owed<'a> {
    /// The bytes they must be.
    expected: Expected<'a>,
    /// Bytes owed and not yet received.
    pub left: u64,
    /// Bytes received and checked so far.
    pub got: u64,
    /// The first wrong byte: its offset among the received bytes, and what it was.
    pub wrong: Option<(u64, Mismatch)>,
}

/// What one read brought.
#[derive(Clone, Copy, Debug)]
pub enum Took {
    /// `n` owed bytes, with the first wrong one among them, if any.
    Bytes(usize, Option<Mismatch>),
    /// End of stream.
    Closed,
    /// This many bytes beyond what was owed.
    Extra(u64),
}

impl<'a> Owed<'a> {
    /// `left` bytes owed, expected to be those at `expected`.
    pub fn new(expected: Expected<'a>, left: u64) -> Self {
        Owed {
            expected,
            left,
            got: 0,
            wrong: None,
        }
    }

    /// Checks a received chunk (empty at EOF) against what is owed.
    #[inline(always)]
    pub fn take(&mut self, chunk: &[u8]) -> Took {
        if chunk.is_empty() {
            return Took::Closed;
        }
        let n = chunk.len();
        if n as u64 > self.left {
            return Took::Extra(n as u64 - self.left);
        }
        let wrong = self.expected.check(chunk).err();
        if let Some(mismatch) = wrong
            && self.wrong.is_none()
        {
            self.wrong = Some((self.got + mismatch.index as u64, mismatch));
        }
        self.left -= n as u64;
        self.got += n as u64;
        Took::Bytes(n, wrong)
    }
}

/// After the window: half-closes, then reads what the server still owes, which
/// must be exactly `owed`, then `cut` (the bytes of a character the last write
/// cut, which a `unicode` server returns unchanged at the end of the stream;
/// empty otherwise), then EOF. A server still busy after [`DRAIN`] is given up
/// on, not blamed.
pub async fn drain<S: ByteStream>(mut stream: S, shared: &Shared, owed: Owed<'_>, cut: &[u8]) {
    let _ = stream.shutdown().await;
    let mut owed = owed;
    let mut wrong = None;
    let mut cut = (!cut.is_empty()).then_some(cut);
    let drained = tokio::time::timeout(DRAIN, async {
        loop {
            if owed.left == 0
                && let Some(cut) = cut.take()
            {
                wrong = owed.wrong;
                owed = Owed::new(Expected::new(cut, 0), cut.len() as u64);
            }
            // Until the cut character, exactly what is owed before it; then
            // one spare byte, to see EOF or an extra byte.
            let spare = usize::from(cut.is_none());
            let room = owed.left.min(READ_BUF as u64 - 1) as usize + spare;
            match shared
                .read_checked(&mut stream, room, |chunk| owed.take(chunk))
                .await
            {
                Ok(Took::Bytes(..)) => {}
                Ok(Took::Closed) if owed.left == 0 => return Ok(()),
                Ok(Took::Closed) => return Err(format!("{} bytes missing at the end", owed.left)),
                Ok(Took::Extra(n)) => return Err(format!("{n} bytes more than were sent")),
                Err(_) if owed.left == 0 => return Ok(()),
                Err(err) => {
                    return Err(format!(
                        "{} bytes missing at the end: {}",
                        owed.left,
                        crate::error::plain(&err)
                    ));
                }
            }
        }
    })
    .await;
    let failure = match drained {
        Ok(Err(failure)) => Some(failure),
        Ok(Ok(())) => wrong
            .or(owed.wrong)
            .map(|_| "wrong bytes in the reply owed at the window's end".to_string()),
        Err(_) => None, // the server is still busy; we cannot tell
    };
    if let Some(failure) = failure {
        shared.error(|| failure);
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::{TcpStream, UnixStream};

    use super::*;

    #[test]
    fn connection_task_is_small() {
        let config = BenchConfig::default();
        let shared = Rc::new(Shared {
            payload: Payload::new(&config),
            window: Window {
                from: Instant::now(),
                to: Instant::now(),
            },
            tally: RefCell::new(Tally::default()),
            read_buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std_stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        std_stream.set_nonblocking(true).unwrap();
        let tcp = || TcpStream::from_std(std_stream.try_clone().unwrap()).unwrap();
        let (std_unix, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        std_unix.set_nonblocking(true).unwrap();
        let unix = || UnixStream::from_std(std_unix.try_clone().unwrap()).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let udp = connect::register(udp).unwrap();
        let sizes = [
            std::mem::size_of_val(&pingpong::run(tcp(), 0, Rc::clone(&shared))),
            std::mem::size_of_val(&stream::run(tcp(), 0, Rc::clone(&shared))),
            std::mem::size_of_val(&pingpong::run(unix(), 0, Rc::clone(&shared))),
            std::mem::size_of_val(&stream::run(unix(), 0, Rc::clone(&shared))),
            std::mem::size_of_val(&datagram::run(udp, 0, Rc::clone(&shared))),
        ];
        assert!(
            sizes.iter().all(|&size| size <= CONNECTION_MEMORY / 2),
            "{sizes:?}"
        );
    }
}
