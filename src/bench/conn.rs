//! What the connection tasks of a run share, and the pieces every traffic
//! pattern (`pingpong`, `stream`, `datagram`) uses: the run's state
//! ([`RunState`]: the payload, the window, the tally and the one read
//! buffer), reading into that buffer while checking, counting what a
//! connection is owed, and the final drain. `load` builds the state and
//! spawns the tasks; the tasks use this module, never `load`.
//!
//! Stream mode's in-flight cap lives here: each connection may be owed at
//! most [`RunState::in_flight`] = max([`IN_FLIGHT`] / connections,
//! [`IN_FLIGHT_MIN`]) reply bytes (not requests); `stream` cuts its writes to
//! that room. Pingpong and datagram have one message in flight by design.
//!
//! A generator thread's connections all run on it (a `LocalSet`), so they
//! share one read buffer and one [`Tally`] through `Rc`/`RefCell` instead of
//! each owning copies; the payload is shared by every thread (`Arc`), and the
//! tallies are merged at the end.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use super::connect::{ByteStream, DatagramSocket};
use super::payload::Payload;
use super::stats::{self, Tally};
use super::verify::{Expected, Mismatch};

/// The one read buffer of the run: 64 KiB (a large socket read) plus the spare
/// byte pingpong needs (see `pingpong`); over UDP, more than the largest
/// datagram, so a reply longer than expected is seen whole, not truncated.
pub const READ_BUF: usize = 64 * 1024 + 1;

/// Stream mode: the bytes in flight (written, not yet echoed) that all
/// connections together may have, 256 MiB. Without a bound each connection
/// wrote whatever its socket took: with `--size 16777216` about 4 MB at the
/// first write, so 500 to 2,000 connections put gigabytes in the kernel's
/// TCP buffers, past `net.ipv4.tcp_mem`, and the kernel pruned receive
/// queues and dropped segments: retransmission timeouts, replies taking
/// seconds, "all connections starved" against a healthy server (defect
/// 3.10; seen with 500 connections: `TCPMemoryPressures`, 2,813
/// `TCPRcvQDrop`, 2,896 timeouts in one 3 s run). Few connections are not
/// bound by it: 64 connections may each have 4 MiB in flight, as much as a
/// loopback socket buffer holds.
pub const IN_FLIGHT: u64 = 256 << 20;

/// Stream mode: the least a connection may have in flight, however many
/// there are: 64 KiB, one read of the server's.
pub const IN_FLIGHT_MIN: u64 = 64 << 10;

/// How long, after the window, a connection may take to return what it still
/// owes once we half-close; past it the connection is abandoned (not an error:
/// a server may legitimately still be busy with others).
pub const DRAIN: Duration = Duration::from_secs(2);

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

/// What every connection task of a run shares: the payload, the window, the
/// tally, and the one read buffer. One per run, behind an `Rc`.
pub struct RunState {
    /// Requests and expected replies, shared by every generator thread.
    pub payload: Arc<Payload>,
    /// When replies count.
    pub window: Window,
    /// Counters and histograms of the whole run.
    pub tally: RefCell<Tally>,
    /// Stream mode: the most reply bytes one connection may be owed before
    /// it writes more ([`IN_FLIGHT`] shared by the connections).
    pub in_flight: u64,
    /// The one read buffer: a read is checked where it lands, before any other
    /// connection runs, so no connection needs a buffer of its own.
    read_buf: RefCell<Box<[u8]>>,
}

impl RunState {
    /// The state of a run of `connections` measuring in `window`, with a
    /// fresh tally and the run's read buffer.
    /// (`connections` counts those of every generator thread: the in-flight
    /// cap is shared by all of them.)
    pub fn new(payload: Arc<Payload>, window: Window, connections: usize) -> RunState {
        let connections = connections.max(1) as u64;
        RunState {
            payload,
            window,
            tally: RefCell::new(Tally::default()),
            in_flight: (IN_FLIGHT / connections).max(IN_FLIGHT_MIN),
            read_buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
        }
    }

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

/// The error of a reply with a wrong byte: its offset `at` in the reply,
/// what it was and what it should have been.
pub fn wrong_reply(at: u64, wrong: Mismatch) -> String {
    format!(
        "wrong reply: byte {at} is {:#04x}, expected {:#04x}",
        wrong.got, wrong.expected
    )
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
pub async fn drain<S: ByteStream>(mut stream: S, state: &RunState, owed: Owed<'_>, cut: &[u8]) {
    let mut owed = owed;
    let mut wrong = None;
    let mut cut = (!cut.is_empty()).then_some(cut);
    let drained = tokio::time::timeout(DRAIN, async {
        // The half-close goes beside the reads, not before them: over TLS it
        // is a write (close_notify, after any records still queued), which a
        // server blocked on writing us replies would never let finish while
        // nobody reads.
        let (mut rx, mut tx) = stream.split();
        let mut shut = false;
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
            let took = tokio::select! {
                biased;
                _ = tx.shutdown(), if !shut => {
                    shut = true;
                    continue;
                }
                took = state.read_checked(&mut rx, room, |chunk| owed.take(chunk)) => took,
            };
            match took {
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
        state.error(|| failure);
    }
}
