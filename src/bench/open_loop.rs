//! Open loop (`--rate R`) over a byte stream (TCP, Unix, TLS): connection
//! `i` of `N` sends its `k`-th message at `start + (k*N + i) / R`, whether or
//! not earlier replies are back, and reads the replies as they come. The
//! server is a stream transform, so replies come back in order: the reply
//! stream is the queue of messages sent, each checked byte by byte where it
//! lands, as pingpong checks its one.
//!
//! Latency is measured from each message's scheduled time (coordinated
//! omission corrected, as wrk2 does), and from its real send time beside it
//! (the uncorrected figure a closed-loop tool would report). A message that
//! comes due while the socket cannot take it (the previous one is still
//! being written, or too much is in flight) is sent late, never skipped, and
//! how late is recorded: a schedule the generator could not keep shows.
//!
//! Memory: at most [`MAX_QUEUED`] messages in flight for all connections
//! together (at least [`MIN_QUEUED`] each), about 100 bytes each, and the
//! stream mode's byte cap ([`RunState::in_flight`]).

use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until};

use super::conn::{Owed, READ_BUF, RunState, Seen, drain, wrong_reply};
use super::connect::ByteStream;
use super::pacer::Pacer;
use super::payload::Payload;
use super::stats;

/// Messages in flight, all connections together, past which a connection
/// waits for replies before it sends more (and its sends run late).
pub const MAX_QUEUED: usize = 1 << 18;

/// Messages one connection may have in flight, however many connections.
pub const MIN_QUEUED: usize = 16;

/// When each message of a run is due.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// When the first is due: the start of the warm-up.
    pub start: Instant,
    /// Messages per second, all connections together.
    pub rate: f64,
    /// Connections of the run, all threads together.
    pub connections: usize,
}

impl Schedule {
    /// When connection `index` sends its message number `k`.
    pub fn due(&self, index: usize, k: u64) -> Instant {
        let slot = k as f64 * self.connections as f64 + index as f64;
        self.start + Duration::from_secs_f64(slot / self.rate)
    }
}

/// A message sent and not yet answered.
struct Pending<'a> {
    /// When it was due.
    due: Instant,
    /// When it really left.
    sent_at: Instant,
    /// Its reply, as far as it came.
    owed: Owed<'a>,
    /// The whole reply's length.
    reply_len: usize,
}

/// The message being written, at the back of the queue.
struct Writing<'a> {
    request: &'a [u8],
    written: usize,
    /// Not tried yet: the loop's next turn writes what the socket takes at
    /// once, before it waits for anything.
    fresh: bool,
}

/// One open-loop connection's state.
struct Connection<'a> {
    state: &'a RunState,
    /// The next message number (`k`), and its payload message.
    next: u64,
    message: usize,
    queue: VecDeque<Pending<'a>>,
    /// Reply bytes owed by the whole queue.
    owed: u64,
    /// The most the queue may hold.
    cap: usize,
    writing: Option<Writing<'a>>,
    seen: Seen,
    last_byte: Option<Instant>,
}

/// Drives one open-loop connection until the window ends, then drains it.
pub async fn run<S: ByteStream>(
    mut stream: S,
    index: usize,
    state: Rc<RunState>,
    pacer: Rc<Pacer>,
    schedule: Schedule,
) {
    let state = &*state;
    let deadline = sleep_until(state.window.to);
    tokio::pin!(deadline);
    let mut conn = Connection::new(state, index, schedule);
    let mut due = schedule.due(index, 0);
    let mut until = pacer.until(due);
    loop {
        if let Some(writing) = conn.writing.as_mut().filter(|writing| writing.fresh) {
            writing.fresh = false;
            match stream.try_write(writing.request) {
                Ok(n) => conn.wrote(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return state.error(|| cannot_send(&err)),
            }
        }
        let may_send = conn.may_send() && due < state.window.to;
        let room = conn.owed.min(READ_BUF as u64 - 1) as usize + 1;
        let (mut rx, mut tx) = stream.split();
        let unsent = conn.unsent();
        let failure = tokio::select! {
            biased;
            took = state.read_checked(&mut rx, room, |chunk| conn.take(chunk)) => match took {
                Ok(Ok(())) => continue,
                Ok(Err(failure)) => failure,
                Err(err) => conn.broken(&err),
            },
            n = tx.write(unsent), if !unsent.is_empty() => match n {
                Ok(n) => {
                    conn.wrote(n);
                    continue;
                }
                Err(err) => cannot_send(&err),
            },
            () = &mut until, if may_send => {
                conn.send(due);
                due = schedule.due(index, conn.next);
                until = pacer.until(due);
                continue;
            }
            () = &mut deadline => break,
        };
        return state.error(|| failure);
    }
    Box::pin(conn.window_ended(stream)).await;
}

impl<'a> Connection<'a> {
    fn new(state: &'a RunState, index: usize, schedule: Schedule) -> Self {
        Connection {
            state,
            next: 0,
            message: Payload::first_message(index),
            queue: VecDeque::new(),
            owed: 0,
            cap: (MAX_QUEUED / schedule.connections.max(1)).max(MIN_QUEUED),
            writing: None,
            seen: Seen::default(),
            last_byte: None,
        }
    }

    /// Whether the next message may go when due: nothing is being written,
    /// and neither the queue nor the bytes in flight are at their cap.
    fn may_send(&self) -> bool {
        self.writing.is_none() && self.queue.len() < self.cap && self.owed < self.state.in_flight
    }

    /// What remains to write of the message being written.
    fn unsent(&self) -> &'a [u8] {
        match &self.writing {
            Some(writing) if !writing.fresh => &writing.request[writing.written..],
            _ => &[],
        }
    }

    /// Starts the message due at `due`: queued (its reply may start before
    /// it is written whole) and written on the loop's next turn.
    fn send(&mut self, due: Instant) {
        let now = Instant::now();
        let message = self.state.payload.message(self.message);
        self.queue.push_back(Pending {
            due,
            sent_at: now,
            owed: Owed::new(message.reply, message.reply_len as u64),
            reply_len: message.reply_len,
        });
        self.owed += message.reply_len as u64;
        self.writing = Some(Writing {
            request: message.request,
            written: 0,
            fresh: true,
        });
        self.next += 1;
        self.message = Payload::next_message(self.message);
        if self.state.window.contains(now) {
            let mut tally = self.state.tally.borrow_mut();
            tally.sent += 1;
            stats::record_lateness(&mut tally.behind, now.saturating_duration_since(due));
        }
    }

    /// Notes `n` more bytes of the message being written.
    fn wrote(&mut self, n: usize) {
        if let Some(writing) = self.writing.as_mut() {
            writing.written += n;
            if writing.written == writing.request.len() {
                self.writing = None;
            }
        }
    }

    /// Checks a received chunk (empty at EOF) against the queue's replies,
    /// oldest first, counting each reply it completes.
    #[inline]
    fn take(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        if chunk.is_empty() {
            return Err(self.closed());
        }
        let now = Instant::now();
        self.last_byte = Some(now);
        self.seen.answered = true;
        while !chunk.is_empty() {
            let Some(head) = self.queue.front_mut() else {
                return Err(format!("{} more bytes than were sent", chunk.len()));
            };
            let n = chunk
                .len()
                .min(usize::try_from(head.owed.left).unwrap_or(usize::MAX));
            head.owed.take(&chunk[..n]);
            self.owed -= n as u64;
            chunk = &chunk[n..];
            if head.owed.left == 0
                && let Some(done) = self.queue.pop_front()
            {
                self.replied(&done, now);
            }
        }
        Ok(())
    }

    /// Counts a complete reply: an error if any byte was wrong, else, if it
    /// completed in the window, a verified reply with both latencies.
    fn replied(&mut self, done: &Pending<'_>, at: Instant) {
        let mut tally = self.state.tally.borrow_mut();
        if let Some((offset, wrong)) = done.owed.wrong {
            tally.error(|| wrong_reply(offset, wrong));
        } else if self.state.window.contains(at) {
            tally.requests += 1;
            tally.bytes += done.reply_len as u64;
            stats::record(&mut tally.latency, at.saturating_duration_since(done.due));
            stats::record(
                &mut tally.uncorrected,
                at.saturating_duration_since(done.sent_at),
            );
            self.seen.replied_in_window(&mut tally);
        }
    }

    fn closed(&self) -> String {
        format!(
            "server closed the connection with {} repl{} owed",
            self.queue.len(),
            if self.queue.len() == 1 { "y" } else { "ies" }
        )
    }

    fn broken(&self, err: &io::Error) -> String {
        format!(
            "connection broke with {} replies owed: {}",
            self.queue.len(),
            crate::error::plain(err)
        )
    }

    /// The window ended: records how long each unanswered message has
    /// waited (from its due and from its send time) and how long the
    /// connection has been silent, then reads what the queue is still owed,
    /// half-closes, and checks that nothing more comes.
    async fn window_ended<S: ByteStream>(mut self, mut stream: S) {
        let state = self.state;
        self.record_waits();
        let cut = match self.owed_by_the_last_write() {
            Ok(cut) => cut,
            Err(failure) => return state.error(|| failure),
        };
        // Every reply but the last, read as in the window; the last goes to
        // the common drain, which half-closes and expects the end.
        let earlier = tokio::time::timeout(super::conn::DRAIN, async {
            while self.queue.len() > 1 {
                let room = self.owed.min(READ_BUF as u64 - 1) as usize + 1;
                match state
                    .read_checked(&mut stream, room, |chunk| self.take(chunk))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(failure)) => return Err(failure),
                    Err(err) => return Err(self.broken(&err)),
                }
            }
            Ok(())
        })
        .await;
        match earlier {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => return state.error(|| failure),
            // The server is still busy; we cannot tell.
            Err(_) => return,
        }
        let last = match self.queue.pop_back() {
            Some(last) => last.owed,
            None => Owed::new(state.payload.message(self.message).reply, 0),
        };
        drain(stream, state, last, cut).await;
    }

    /// At the window's end: how long each unanswered message has waited
    /// (from its due and from its send time), and how long the connection
    /// has been silent.
    fn record_waits(&self) {
        let to = self.state.window.to;
        {
            let mut tally = self.state.tally.borrow_mut();
            for pending in &self.queue {
                stats::record(
                    &mut tally.unanswered,
                    to.saturating_duration_since(pending.due),
                );
                stats::record(
                    &mut tally.unanswered_uncorrected,
                    to.saturating_duration_since(pending.sent_at),
                );
            }
        }
        let silent = match (self.queue.front(), self.last_byte) {
            (Some(oldest), Some(last)) => Some(last.max(oldest.sent_at)),
            _ => None,
        };
        self.state.window_ended(None, silent);
    }

    /// The message being written is owed only the reply to what was written
    /// of it; returns, for `unicode`, the bytes of a character it cut, which
    /// come back unchanged at the end.
    fn owed_by_the_last_write(&mut self) -> Result<&'a [u8], String> {
        let (Some(writing), Some(last)) = (self.writing.take(), self.queue.back_mut()) else {
            return Ok(&[]);
        };
        let (due, cut) = self
            .state
            .payload
            .partial_reply(writing.request, writing.written);
        if last.owed.got > due {
            let extra = last.owed.got - due;
            return Err(format!(
                "{extra} reply bytes came before their request was sent"
            ));
        }
        self.owed -= last.owed.left;
        last.owed.left = due - last.owed.got;
        self.owed += last.owed.left;
        Ok(cut)
    }
}

fn cannot_send(err: &io::Error) -> String {
    format!("cannot send: {}", crate::error::plain(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_interleaves_the_connections_evenly() {
        let start = Instant::now();
        let schedule = Schedule {
            start,
            rate: 1000.0,
            connections: 4,
        };
        // 1,000 per second over 4 connections: connection 1 sends at 1 ms,
        // 5 ms, 9 ms; connection 0 at 0, 4 ms, 8 ms.
        assert_eq!(schedule.due(0, 0), start);
        assert_eq!(schedule.due(1, 0) - start, Duration::from_millis(1));
        assert_eq!(schedule.due(1, 2) - start, Duration::from_millis(9));
        assert_eq!(schedule.due(3, 1) - start, Duration::from_millis(7));
    }
}
