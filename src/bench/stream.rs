//! Stream: each connection writes continuously while reading back, and every
//! byte read is checked at its offset in the stream. Throughput is verified
//! bytes. A request ("writes echoed") is a write of `--size` bytes whose reply
//! was verified: counted when its last byte comes back in the window (a write
//! the socket took only part of is finished by the next, and counts once);
//! and the one whose reply was coming back when the window ended counts as
//! one too, so a `--size` larger than what a window echoes reports each
//! connection's partly echoed write, not 0 (defect 3.10). That one is
//! tracked read by read ([`stats::Tally::echoing`]), so a window Ctrl-C cuts
//! short counts it the same way.
//!
//! With `ascii` and `none` a byte written is a byte owed. With `unicode` the
//! bytes owed after a write are the transform of the whole characters written
//! so far (the server holds a character the socket cut), which
//! [`Payload::text_owed`] looks up; the one branch per write and per read on
//! [`Payload::grows`] is all the length-preserving path pays for it.
//!
//! The in-flight cap: a connection may be owed at most
//! [`RunState::in_flight`] reply bytes, max([`conn::IN_FLIGHT`](super::conn::IN_FLIGHT) /
//! connections, [`conn::IN_FLIGHT_MIN`](super::conn::IN_FLIGHT_MIN)) (256 MiB for one connection, 64 KiB
//! each past 4,096 connections). It counts bytes owed (with `unicode`, reply
//! bytes, not request bytes), not requests: each write is cut to the room
//! left, and with no room the connection only reads until replies free some.
//! So at most cap / `--size` whole writes, plus the ones at either end cut
//! by the cap or the socket, are unanswered per connection.

use std::collections::VecDeque;
use std::rc::Rc;

use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until};

use super::conn::{Owed, READ_BUF, RunState, Seen, Took, drain};
use super::connect::ByteStream;
use super::payload::{Payload, Units};
use super::stats;

/// Writes timed per connection at once. Latency is sampled: with a deep socket
/// buffer thousands of writes can be in flight, and timing each would make a
/// connection's memory grow with the buffer; a fixed handful keeps it at a few
/// hundred bytes while still timing a write whenever one of these is free.
const MARKERS: usize = 8;

/// One stream connection's progress.
struct Flow<'a> {
    /// Where in the pattern this connection's stream starts.
    start: usize,
    /// Bytes written so far.
    written: u64,
    /// Reply bytes owed for what was written, and their check.
    owed: Owed<'a>,
    /// `unicode`: where the stream stands in the units it writes and gets
    /// back.
    units: Units,
    /// Reply stream offsets at which the replies to timed writes end, and
    /// when those were written.
    markers: VecDeque<(u64, Instant)>,
    /// When owed bytes last moved: a read, or a write while nothing was owed.
    progress: Instant,
    /// What the connection has seen of its server.
    seen: Seen,
    /// Counted in [`stats::Tally::echoing`]: at the latest verified read in
    /// the window the reply stream stood inside a write.
    echoing: bool,
}

/// Drives one stream connection (TCP or Unix) until the window ends, then
/// drains it.
pub async fn run<S: ByteStream>(mut stream: S, index: usize, state: Rc<RunState>) {
    let state = &*state;
    let payload = &state.payload;
    let start = payload.stream_start(index);
    let mut flow = Flow {
        start,
        written: 0,
        owed: Owed::new(payload.stream_expected(start), 0),
        units: payload.stream_units(start),
        markers: VecDeque::with_capacity(MARKERS),
        progress: Instant::now(),
        seen: Seen::default(),
        echoing: false,
    };
    let deadline = sleep_until(state.window.to);
    tokio::pin!(deadline);
    {
        // The halves borrow the stream until the window ends.
        let (mut rx, mut tx) = stream.split();
        loop {
            let write = payload.stream_write(flow.start, flow.written);
            // No more in flight than the connection's share (see
            // `conn::IN_FLIGHT`): the rest of the write waits for replies.
            let room = state.in_flight.saturating_sub(flow.owed.left);
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            // And not in slivers: a write waits until the room left holds all
            // of it or half the cap (see `worth_writing`).
            let write = if worth_writing(write.len(), room, state.in_flight) {
                &write[..write.len().min(room)]
            } else {
                &[]
            };
            let failure = tokio::select! {
                biased;
                () = &mut deadline => break,
                took = state.read_checked(&mut rx, READ_BUF, |chunk| flow.owed.take(chunk)) => {
                    match took {
                        Ok(Took::Bytes(n, wrong)) => {
                            flow.received(state, n, wrong.is_some());
                            continue;
                        }
                        Ok(Took::Closed) => flow.ended(None),
                        Ok(Took::Extra(n)) => format!("{n} more bytes than were sent"),
                        Err(err) => flow.ended(Some(&err)),
                    }
                }
                n = tx.write(write), if !write.is_empty() => match n {
                    Ok(n) => {
                        flow.wrote(payload, n);
                        continue;
                    }
                    Err(err) => format!("cannot send: {}", crate::error::plain(&err)),
                },
            };
            // A broken connection has no write coming back at the end.
            flow.set_echoing(&mut state.tally.borrow_mut(), false);
            return state.error(|| failure);
        }
    }
    flow.window_ended(state);
    let cut = payload.text_cut(flow.start, flow.written, &flow.units);
    Box::pin(drain(stream, state, flow.owed, cut)).await;
}

/// Whether a write of `len` bytes is worth making with `room` bytes left
/// under the in-flight cap `cap`: when the room holds all of it, or at least
/// half the cap. Silly-window avoidance, as TCP does it for segments: cut to
/// whatever room a reply just freed, writes shrank to the size of reads (a
/// tenth of them under 1 KiB with 300 connections of 16 MiB writes), and a
/// receive queue of many small segments costs the kernel far more memory
/// than its window says, so it drops some (`TCPRcvQDrop`) and the
/// connection waits out retransmission timeouts, seconds at a time.
#[inline]
fn worth_writing(len: usize, room: usize, cap: u64) -> bool {
    let half = usize::try_from(cap / 2).unwrap_or(usize::MAX);
    room > 0 && room >= len.min(half)
}

impl Flow<'_> {
    /// Counts `n` bytes just read and checked: verified bytes and the `--size`
    /// units they complete, if in the window, and the latency of timed writes
    /// they finish echoing.
    ///
    /// Inlined by force, as is [`Flow::wrote`]: `run` has a copy per kind of
    /// socket, so each has two call sites, which LLVM stopped inlining.
    #[inline(always)]
    fn received(&mut self, state: &RunState, n: usize, wrong: bool) {
        let now = Instant::now();
        self.progress = now;
        self.seen.answered = true;
        let in_window = state.window.contains(now);
        let mut tally = state.tally.borrow_mut();
        while let Some(&(end, sent)) = self.markers.front() {
            if end > self.owed.got {
                break;
            }
            self.markers.pop_front();
            if in_window {
                stats::record(&mut tally.latency, now - sent);
            }
        }
        let payload = &state.payload;
        // Whatever the window: the unit cursor follows every byte.
        let units = if payload.grows() {
            payload.text_echoed(self.owed.got, &mut self.units)
        } else {
            let size = payload.size() as u64;
            self.owed.got / size - (self.owed.got - n as u64) / size
        };
        if wrong {
            let at = self.owed.got - n as u64;
            tally.error(|| format!("wrong bytes at stream offset {at}"));
        } else if in_window {
            tally.requests += units;
            tally.bytes += n as u64;
            self.seen.replied_in_window(&mut tally);
            // Kept up to date read by read, not decided when the window
            // ends: Ctrl-C takes the tally without the tasks running again.
            let inside = payload.echo_inside_unit(self.owed.got, &self.units);
            self.set_echoing(&mut tally, inside);
        }
    }

    /// Notes whether the reply stream stands inside a write, in
    /// [`stats::Tally::echoing`].
    #[inline]
    fn set_echoing(&mut self, tally: &mut stats::Tally, inside: bool) {
        if inside != self.echoing {
            self.echoing = inside;
            if inside {
                tally.echoing += 1;
            } else {
                tally.echoing -= 1;
            }
        }
    }

    /// Notes `n` bytes written: what they are owed back, and timed if a
    /// marker is free.
    #[inline(always)]
    fn wrote(&mut self, payload: &Payload, n: usize) {
        let was_owed = self.owed.left > 0;
        self.written += n as u64;
        let owed = if payload.grows() {
            payload.text_owed(self.start, self.written, &mut self.units)
        } else {
            n as u64
        };
        self.owed.left += owed;
        if !was_owed || self.markers.len() < MARKERS {
            let now = Instant::now();
            if !was_owed {
                self.progress = now;
            }
            // A write that only began a character owes nothing yet: timing
            // it would end at bytes already received.
            if self.markers.len() < MARKERS && owed > 0 {
                let reply_end = self.owed.got + self.owed.left;
                self.markers.push_back((reply_end, now));
            }
        }
    }

    /// Records the oldest timed write still unanswered and, if the server had
    /// answered before, how long the owed bytes have not moved. (The write
    /// whose reply was coming back is already counted, in
    /// [`stats::Tally::echoing`].)
    fn window_ended(&self, state: &RunState) {
        let waiting = self.markers.front().map(|&(_, sent)| sent);
        let owed = self.owed.left > 0;
        let silent = (owed && self.seen.answered).then_some(self.progress);
        state.window_ended(waiting, silent);
    }

    /// Why the stream ended early: the server closed, or the connection broke.
    fn ended(&self, cause: Option<&std::io::Error>) -> String {
        let (got, owed) = (self.owed.got, self.owed.got + self.owed.left);
        match cause {
            None => format!("stream ended after {got} of {owed} bytes (server closed)"),
            Some(err) => format!(
                "stream ended after {got} of {owed} bytes: {}",
                crate::error::plain(err)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::worth_writing;

    #[test]
    fn a_write_waits_for_room_for_all_of_it_or_half_the_cap() {
        let cap = 1 << 20;
        // A small write goes whole or not at all.
        assert!(worth_writing(64, 64, cap));
        assert!(!worth_writing(64, 63, cap));
        // A large one goes in pieces of at least half the cap.
        assert!(worth_writing(16 << 20, 512 << 10, cap));
        assert!(!worth_writing(16 << 20, (512 << 10) - 1, cap));
        // Never with no room.
        assert!(!worth_writing(0, 0, cap));
    }
}
