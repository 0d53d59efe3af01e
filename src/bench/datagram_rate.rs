//! Open loop over UDP (`--udp --rate R`): socket `i` of `N` sends its `k`-th
//! message as one datagram at `start + (k*N + i) / R` (the schedule of
//! [`open_loop`](super::open_loop)), whatever has come back, and matches each
//! datagram that arrives to the oldest message in flight whose reply it is
//! (UDP may reorder as well as lose).
//!
//! As in the closed loop ([`datagram`]): a message whose reply has not come
//! within [`LOSS`] is lost (counted, not an error); any other datagram is a
//! wrong reply, but for the late reply of a lost one, which is ignored.
//! Latency is measured from each message's scheduled time and from its real
//! send time.
//!
//! A reply must say which message it answers, and a datagram says it only
//! by its content: so a socket never has two copies of one payload message
//! in flight. Each send takes the next of the payload's [`MESSAGES`]
//! messages that is not out; with all of them out, the send waits and is
//! late, never skipped, and how late is recorded. 64 in flight per socket is
//! far more than loopback needs (one socket at 100,000/s with 100 us round
//! trips has 10), and a server that holds more than that is stalling, which
//! the corrected latency shows.
//!
//! A lost message's number is free again at once, and remembered as lost: a
//! reply of one that comes later, with no copy of it in flight, is ignored
//! as late, not an error, even after a stall that lost all 64. (With a new
//! copy in flight, the late reply is taken as the copy's: the counts stay
//! right, and that one latency is the copy's wait for an older reply.)
//!
//! With a tiny `--size` two of the 64 messages can have the same reply (one
//! byte has only so many values, and `a` and `A` upper-case alike): a reply
//! is then taken as the older one's, so one latency may be the wrong
//! message's, and one message counted lost may have been answered.

use std::collections::VecDeque;
use std::rc::Rc;

use tokio::time::{Instant, sleep_until};

use super::conn::{RunState, Seen};
use super::connect::DatagramSocket;
use super::datagram::{self, LOSS, is_reply, refused, send};
use super::open_loop::Schedule;
use super::pacer::Pacer;
use super::payload::{MESSAGES, Payload};
use super::stats;

/// A message sent whose reply has not come.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Its payload message.
    number: usize,
    due: Instant,
    sent_at: Instant,
}

/// One socket's open loop.
struct Socket<'a> {
    state: &'a RunState,
    queue: VecDeque<Pending>,
    /// Which payload messages were ever lost, a bit each: their late
    /// replies are ignored.
    lost: u64,
    seen: Seen,
    last_reply: Option<Instant>,
    /// The next message's number in the schedule (`k`), and its payload
    /// message.
    next: u64,
    message: usize,
    /// Which payload messages are in flight, a bit each.
    out: u64,
}

// A bit per payload message.
const _: () = assert!(MESSAGES <= 64);

/// Drives one UDP socket's open loop until the window ends, then waits
/// (uncounted) for the replies still in flight, to check them.
pub async fn run(
    socket: DatagramSocket,
    index: usize,
    state: Rc<RunState>,
    pacer: Rc<Pacer>,
    schedule: Schedule,
) {
    let state = &*state;
    let end = state.window.to;
    let mut this = Socket {
        state,
        queue: VecDeque::new(),
        lost: 0,
        seen: Seen::default(),
        last_reply: None,
        next: 0,
        message: Payload::first_message(index),
        out: 0,
    };
    // The loss timer, as the closed loop keeps it: a time to check, never
    // later than the window's end or the loss time of any message in
    // flight, moved only when it fires (about once a second), never per
    // message.
    let timer = sleep_until(end.min(Instant::now() + LOSS));
    tokio::pin!(timer);
    let mut due = schedule.due(index, 0);
    let mut until = pacer.until(due);
    loop {
        let may_send = this.out != u64::MAX >> (64 - MESSAGES) && due < end;
        tokio::select! {
            biased;
            got = state.recv_datagram(&socket, |datagram| (this.take(datagram), false)) => match got {
                Ok(Ok(())) => {}
                Ok(Err(failure)) => return state.error(|| failure),
                Err(err) if refused(&err) => {}
                Err(err) => {
                    let failure = format!("cannot receive: {}", crate::error::plain(&err));
                    return state.error(|| failure);
                }
            },
            () = &mut until, if may_send => {
                let request = this.sent(due);
                if let Err(err) = send(&socket, request).await {
                    return state.error(|| format!("cannot send: {}", crate::error::plain(&err)));
                }
                due = schedule.due(index, this.next);
                until = pacer.until(due);
            }
            () = &mut timer => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                // Messages sent from now on are lost no earlier than
                // `now + LOSS`.
                let check = this.expire(now).map_or(now, |oldest| oldest) + LOSS;
                timer.as_mut().reset(end.min(check));
            }
        }
    }
    this.window_ended();
    Box::pin(this.replies_in_flight(&socket)).await;
}

impl<'a> Socket<'a> {
    /// Queues the message due at `due` (the next payload message not in
    /// flight: there is one), counts its send, and returns it.
    fn sent(&mut self, due: Instant) -> &'a [u8] {
        let now = Instant::now();
        let mut number = self.message;
        while self.out & (1 << number) != 0 {
            number = Payload::next_message(number);
        }
        self.out |= 1 << number;
        self.queue.push_back(Pending {
            number,
            due,
            sent_at: now,
        });
        self.next += 1;
        self.message = Payload::next_message(number);
        if self.state.window.contains(now) {
            let mut tally = self.state.tally.borrow_mut();
            tally.sent += 1;
            stats::record_lateness(&mut tally.behind, now.saturating_duration_since(due));
        }
        self.state.payload.message(number).request
    }

    /// Takes one datagram: the reply to a message in flight (the oldest it
    /// answers), the late reply of a lost one, or wrong.
    #[inline]
    fn take(&mut self, datagram: &[u8]) -> Result<(), String> {
        let payload = &self.state.payload;
        let answered = (self.queue.iter())
            .position(|pending| is_reply(payload.message(pending.number), datagram));
        if let Some(done) = answered.and_then(|at| self.queue.remove(at)) {
            self.out &= !(1 << done.number);
            self.replied(done, datagram.len());
            Ok(())
        } else if (0..MESSAGES).any(|number| {
            self.lost & (1 << number) != 0 && is_reply(payload.message(number), datagram)
        }) {
            Ok(())
        } else {
            // Told against the oldest message in flight, the likeliest.
            let awaited = self.queue.front().map_or(self.message, |p| p.number);
            Err(datagram::wrong_reply(payload.message(awaited), datagram))
        }
    }

    /// Counts a verified reply of `len` bytes, if it came in the window.
    fn replied(&mut self, done: Pending, len: usize) {
        let now = Instant::now();
        self.last_reply = Some(now);
        if self.state.window.contains(now) {
            let mut tally = self.state.tally.borrow_mut();
            tally.requests += 1;
            tally.bytes += len as u64;
            stats::record(&mut tally.latency, now.saturating_duration_since(done.due));
            stats::record(
                &mut tally.uncorrected,
                now.saturating_duration_since(done.sent_at),
            );
            self.seen.replied_in_window(&mut tally);
        }
    }

    /// Counts as lost the messages sent [`LOSS`] or more before `now`;
    /// returns when the oldest left in flight was sent.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        while let Some(oldest) = self.queue.front().copied() {
            if oldest.sent_at + LOSS > now {
                return Some(oldest.sent_at);
            }
            self.queue.pop_front();
            self.out &= !(1 << oldest.number);
            self.lost |= 1 << oldest.number;
            if self.state.window.contains(now) {
                self.state.tally.borrow_mut().lost += 1;
            }
        }
        None
    }

    /// At the window's end: since when the socket was silent (as the closed
    /// loop counts it, from [`LOSS`] after the last reply), for the stall
    /// detector. Unlike TCP's open loop, the waits of the messages still in
    /// flight are not latency: over UDP some of them are lost, not late
    /// (with 1 % lost at 1,000/s, ten of them would be a whole p99 of waits
    /// of up to a second), and which cannot be told until their [`LOSS`]
    /// time, past the window.
    fn window_ended(&self) {
        let silent = (!self.queue.is_empty())
            .then(|| self.last_reply.map(|at| at + LOSS))
            .flatten();
        self.state.window_ended(None, silent);
    }

    /// After the window: checks the replies still in flight as they come,
    /// until the last one's loss time. Nothing is counted but errors.
    async fn replies_in_flight(mut self, socket: &DatagramSocket) {
        let Some(newest) = self.queue.back().map(|p| p.sent_at) else {
            return;
        };
        let timer = sleep_until(newest + LOSS);
        tokio::pin!(timer);
        while !self.queue.is_empty() {
            tokio::select! {
                biased;
                got = self.state.recv_datagram(socket, |datagram| (self.take(datagram), false)) => match got {
                    Ok(Ok(())) => {}
                    Ok(Err(failure)) => return self.state.error(|| failure),
                    Err(err) if refused(&err) => {}
                    // Not blamed: the replies are past the window.
                    Err(_) => return,
                },
                () = &mut timer => return,
            }
        }
    }
}
