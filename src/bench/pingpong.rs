//! Pingpong: each connection sends one message, reads its whole reply while
//! checking it chunk by chunk, and only then sends the next. Per round trip the
//! generator does one write, usually one read, one `memcmp` and one histogram
//! increment.

use std::io;
use std::rc::Rc;

use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until};

use super::conn::{Owed, READ_BUF, RunState, Seen, Took, drain, wrong_reply};
use super::connect::ByteStream;
use super::payload::{Message, Payload};
use super::stats;

/// One message in flight.
struct Trip<'a> {
    /// The request.
    request: &'a [u8],
    /// Request bytes written so far.
    written: usize,
    /// The reply still owed.
    owed: Owed<'a>,
    /// Total length of the reply.
    reply_len: usize,
    /// When the request was sent.
    sent_at: Instant,
    /// When the latest part of a reply arrived, while it is incomplete: the
    /// stall detector must not call a slow trickle a silence.
    last_byte: Option<Instant>,
}

/// Drives one pingpong connection (TCP or Unix) until the window ends, then
/// drains it.
///
/// The round trip's loop is written out here rather than in an `async fn`
/// per message: a nested future made and resumed per round trip cost about 25
/// instructions of some 1,500 (callgrind).
pub async fn run<S: ByteStream>(mut stream: S, index: usize, state: Rc<RunState>) {
    let state = &*state;
    // One timer for the whole window: a new one per message would cost a timer
    // wheel insert and remove per round trip (measured: a fifth of the
    // generator's instructions).
    let deadline = sleep_until(state.window.to);
    tokio::pin!(deadline);
    let mut seen = Seen::default();
    let mut message = Payload::first_message(index);
    let in_flight = 'trips: loop {
        let mut trip = Trip::new(state.payload.message(message), Instant::now());
        if trip.sent_at >= state.window.to {
            break None;
        }
        if let Err(failure) = trip.send_first(&stream) {
            return state.error(|| failure);
        }
        // Write the rest and read at once: a large reply must not wait for the
        // request to be fully written, or both sides' buffers fill and deadlock.
        let (mut rx, mut tx) = stream.split();
        while trip.owed.left > 0 {
            let unsent = &trip.request[trip.written..];
            // One byte of room past the reply: a read that fills its buffer
            // leaves Tokio unsure whether more is queued, so the next round
            // trip's first read would be a syscall that only says "would block"
            // (one per round trip, seen with strace). The spare byte also
            // catches a server that answers too much.
            let room = trip.owed.left.min(READ_BUF as u64 - 1) as usize + 1;
            let failure = tokio::select! {
                biased;
                took = state.read_checked(&mut rx, room, |chunk| trip.owed.take(chunk)) => {
                    match trip.took(took) {
                        Ok(()) => continue,
                        Err(failure) => failure,
                    }
                }
                n = tx.write(unsent), if !unsent.is_empty() => match n {
                    Ok(n) => {
                        trip.written += n;
                        continue;
                    }
                    Err(err) => cannot_send(&err),
                },
                () = &mut deadline => break 'trips Some(trip),
            };
            return state.error(|| failure);
        }
        replied(state, &trip, &mut seen);
        message = Payload::next_message(message);
    };
    match in_flight {
        Some(trip) => Box::pin(window_ended(stream, state, trip, seen)).await,
        None => {
            // Nothing in flight: nothing owed.
            state.window_ended(None, None);
            let expected = state.payload.message(message).reply;
            Box::pin(drain(stream, state, Owed::new(expected, 0), &[])).await;
        }
    }
}

impl<'a> Trip<'a> {
    /// `message`, about to be sent at `sent_at`.
    #[inline]
    fn new(message: Message<'a>, sent_at: Instant) -> Self {
        Trip {
            request: message.request,
            written: 0,
            owed: Owed::new(message.reply, message.reply_len as u64),
            reply_len: message.reply_len,
            sent_at,
            last_byte: None,
        }
    }

    /// Sends what the socket buffer takes of the request at once. Most
    /// requests fit: one non-blocking write, with no future to poll.
    #[inline]
    fn send_first(&mut self, stream: &impl ByteStream) -> Result<(), String> {
        match stream.try_write(self.request) {
            Ok(n) => self.written = n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(cannot_send(&err)),
        }
        Ok(())
    }

    /// Takes the outcome of a read of the reply: fine, or why the connection
    /// broke. (Inlined by force, like [`replied`].)
    #[inline(always)]
    fn took(&mut self, took: io::Result<Took>) -> Result<(), String> {
        match took {
            Ok(Took::Bytes(..)) if self.owed.left > 0 => {
                self.last_byte = Some(Instant::now());
                Ok(())
            }
            Ok(Took::Bytes(..)) => Ok(()),
            Ok(Took::Closed) => Err(ended(self, None)),
            Ok(Took::Extra(n)) => Err(format!("{n} more bytes than were sent")),
            Err(err) => Err(ended(self, Some(&err))),
        }
    }
}

/// Counts a complete reply: an error if any byte was wrong, else a verified
/// round trip if it completed in the window.
///
/// Inlined by force: since `run` is generic over the socket, it has a call
/// site per kind of socket, and LLVM stopped inlining it (and [`Trip::took`]);
/// the calls cost about 45 of some 1,570 instructions per round trip
/// (callgrind, 50 connections x 64 B).
#[inline(always)]
fn replied(state: &RunState, trip: &Trip<'_>, seen: &mut Seen) {
    let done = Instant::now();
    seen.answered = true;
    let mut tally = state.tally.borrow_mut();
    if let Some((at, wrong)) = trip.owed.wrong {
        tally.error(|| wrong_reply(at, wrong));
    } else if state.window.contains(done) {
        tally.requests += 1;
        tally.bytes += trip.reply_len as u64;
        stats::record(&mut tally.latency, done - trip.sent_at);
        seen.replied_in_window(&mut tally);
    }
}

/// The window ended with `trip` in flight: records how long it has waited
/// (and, if the server had answered this connection before, how long nothing
/// has come), then drains what the written part of the request is owed.
async fn window_ended<S: ByteStream>(stream: S, state: &RunState, mut trip: Trip<'_>, seen: Seen) {
    let answered = seen.answered || trip.owed.got > 0;
    let last = trip
        .last_byte
        .map_or(trip.sent_at, |at| at.max(trip.sent_at));
    state.window_ended(Some(trip.sent_at), answered.then_some(last));
    let (due, cut) = state.payload.partial_reply(trip.request, trip.written);
    if trip.owed.got > due {
        let extra = trip.owed.got - due;
        return state.error(|| format!("{extra} reply bytes came before their request was sent"));
    }
    trip.owed.left = due - trip.owed.got;
    drain(stream, state, trip.owed, cut).await;
}

/// Why a reply ended early: the server closed, or the connection broke.
fn ended(trip: &Trip<'_>, cause: Option<&io::Error>) -> String {
    let (got, len) = (trip.owed.got, trip.reply_len);
    match cause {
        None => format!("reply ended after {got} of {len} bytes (server closed)"),
        Some(err) => format!(
            "reply ended after {got} of {len} bytes: {}",
            crate::error::plain(err)
        ),
    }
}

fn cannot_send(err: &io::Error) -> String {
    format!("cannot send: {}", crate::error::plain(err))
}
