//! Connect mode (`--mode connect`): connection churn. Each of the run's
//! connections, again and again: connect (with `--tls`, and the full
//! handshake), one verified exchange of a message, close; `--connections`
//! cycles at once. A cycle's latency runs from its start (with `--rate`,
//! from when it was due) to its verified reply, and the connect alone is
//! measured beside it; the close is not in either (the server's end of it
//! is awaited, so the next cycle does not race the last one's teardown,
//! but it is the kernel's work, not the server's answer).
//!
//! Why the close waits for the server's end: a client that closes at once
//! leaves an orphaned socket, and a TLS server's `close_notify` arriving
//! there is answered with a reset, which the server would count as a broken
//! connection. Waiting for its end of the stream costs one wake-up.
//!
//! Running out of local ports (`EADDRNOTAVAIL` at connect) ends the whole
//! run with one error: every later connect would fail the same way, and a
//! rate measured while most connects fail measures nothing.

use std::cell::Cell;
use std::io;
use std::rc::Rc;

use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::conn::{DRAIN, Owed, READ_BUF, RunState, Seen, Took, wrong_reply};
use super::connect::{ByteStream, Dial, out_of_ports};
use super::open_loop::Schedule;
use super::pacer::Pacer;
use super::payload::{Message, Payload};
use super::stats;

/// How a cycle went wrong.
enum Failure {
    /// No local port left: the run must stop.
    OutOfPorts(io::Error),
    /// This cycle failed (counted as an error; the next one is tried).
    Broken(String),
}

/// The times of a cycle in progress, kept outside its future so that the
/// window's end, which drops that future, can still say how long it had run.
struct Times {
    /// When it was due: its start, or with `--rate` its scheduled time.
    due: Instant,
    /// When it started.
    start: Instant,
    /// When the connect (and handshake) finished.
    connected: Cell<Option<Instant>>,
    /// The length of the reply it is owed.
    reply_len: usize,
}

/// Runs connection `index`'s cycles until the window ends; with `pacing`,
/// each starts at its scheduled time (late, never skipped, when the
/// previous one is still running). Out of local ports, it records why and
/// stops the whole run through `stop`.
pub async fn run<D: Dial>(
    dial: D,
    index: usize,
    state: Rc<RunState>,
    pacing: Option<(Rc<Pacer>, Schedule)>,
    stop: CancellationToken,
) {
    let state = &*state;
    let deadline = sleep_until(state.window.to);
    tokio::pin!(deadline);
    let mut seen = Seen::default();
    let mut message_number = Payload::first_message(index);
    for k in 0u64.. {
        let due = match &pacing {
            Some((pacer, schedule)) => {
                let due = schedule.due(index, k);
                if due >= state.window.to {
                    break;
                }
                pacer.until(due).await;
                Some(due)
            }
            None => None,
        };
        let start = Instant::now();
        if start >= state.window.to {
            break;
        }
        let message = state.payload.message(message_number);
        let times = Times {
            due: due.unwrap_or(start),
            start,
            connected: Cell::new(None),
            reply_len: message.reply_len,
        };
        if pacing.is_some() {
            record_start(state, &times);
        }
        let cycle = cycle(&dial, state, message, &times);
        let outcome = tokio::select! {
            biased;
            outcome = cycle => outcome,
            () = &mut deadline => {
                unfinished(state, &times, pacing.is_some());
                break;
            }
        };
        match outcome {
            Ok(done) => replied(state, &times, done, &mut seen),
            Err(Failure::Broken(failure)) => state.error(|| failure),
            Err(Failure::OutOfPorts(err)) => {
                state.tally.borrow_mut().fatal = Some(err);
                stop.cancel();
                return;
            }
        }
        message_number = Payload::next_message(message_number);
    }
}

/// One cycle: connect, exchange `message`, close. Returns when its verified
/// reply completed.
async fn cycle<D: Dial>(
    dial: &D,
    state: &RunState,
    message: Message<'_>,
    times: &Times,
) -> Result<Instant, Failure> {
    let mut stream = dial.dial().await.map_err(|err| match out_of_ports(&err) {
        Some(_) => Failure::OutOfPorts(err),
        None => Failure::Broken(format!("cannot connect: {}", crate::error::plain(&err))),
    })?;
    times.connected.set(Some(Instant::now()));
    exchange(&mut stream, state, message)
        .await
        .map_err(Failure::Broken)?;
    let done = Instant::now();
    close(stream, state, message)
        .await
        .map_err(Failure::Broken)?;
    Ok(done)
}

/// Sends `message` and reads its whole reply at once (a large reply must not
/// wait for the request to be written whole), checking it where it lands.
async fn exchange<S: ByteStream>(
    stream: &mut S,
    state: &RunState,
    message: Message<'_>,
) -> Result<(), String> {
    let mut owed = Owed::new(message.reply, message.reply_len as u64);
    let mut written = 0;
    let (mut rx, mut tx) = stream.split();
    while owed.left > 0 {
        let unsent = &message.request[written..];
        let room = owed.left.min(READ_BUF as u64 - 1) as usize + 1;
        tokio::select! {
            biased;
            took = state.read_checked(&mut rx, room, |chunk| owed.take(chunk)) => match took {
                Ok(Took::Bytes(..)) => {}
                Ok(Took::Closed) => return Err(format!(
                    "reply ended after {} of {} bytes (server closed)",
                    owed.got, message.reply_len
                )),
                Ok(Took::Extra(n)) => return Err(format!("{n} more bytes than were sent")),
                Err(err) => return Err(format!(
                    "reply ended after {} of {} bytes: {}",
                    owed.got, message.reply_len, crate::error::plain(&err)
                )),
            },
            n = tx.write(unsent), if !unsent.is_empty() => match n {
                Ok(n) => written += n,
                Err(err) => return Err(format!("cannot send: {}", crate::error::plain(&err))),
            },
        }
    }
    match owed.wrong {
        Some((at, wrong)) => Err(wrong_reply(at, wrong)),
        None => Ok(()),
    }
}

/// Closes our end (over TLS with `close_notify`) and waits, at most
/// [`DRAIN`], for the server's: nothing more may come before it.
async fn close<S: ByteStream>(
    mut stream: S,
    state: &RunState,
    message: Message<'_>,
) -> Result<(), String> {
    let closed = tokio::time::timeout(DRAIN, async {
        // A closed connection may refuse the shutdown; its end is what counts.
        let _ = stream.shutdown().await;
        let mut nothing = Owed::new(message.reply, 0);
        match state
            .read_checked(&mut stream, 1, |chunk| nothing.take(chunk))
            .await
        {
            Ok(Took::Extra(n)) => Err(format!("{n} bytes more than were sent")),
            _ => Ok(()),
        }
    })
    .await;
    // A server still busy after the drain time is given up on, not blamed.
    closed.unwrap_or(Ok(()))
}

/// With `--rate`: a cycle that started in the window was sent; how late.
fn record_start(state: &RunState, times: &Times) {
    if state.window.contains(times.start) {
        let mut tally = state.tally.borrow_mut();
        tally.sent += 1;
        stats::record_lateness(
            &mut tally.behind,
            times.start.saturating_duration_since(times.due),
        );
    }
}

/// Counts a cycle whose verified reply came at `done`, if in the window.
fn replied(state: &RunState, times: &Times, done: Instant, seen: &mut Seen) {
    if !state.window.contains(done) {
        return;
    }
    let mut tally = state.tally.borrow_mut();
    tally.requests += 1;
    tally.bytes += times.reply_len as u64;
    stats::record(
        &mut tally.latency,
        done.saturating_duration_since(times.due),
    );
    stats::record(
        &mut tally.uncorrected,
        done.saturating_duration_since(times.start),
    );
    if let Some(connected) = times.connected.get() {
        stats::record(
            &mut tally.connect,
            connected.saturating_duration_since(times.start),
        );
    }
    seen.replied_in_window(&mut tally);
}

/// The window ended in the middle of a cycle: how long it had run counts
/// in the latency, as an unanswered request does in the other modes.
fn unfinished(state: &RunState, times: &Times, paced: bool) {
    let to = state.window.to;
    let mut tally = state.tally.borrow_mut();
    stats::record(
        &mut tally.unanswered,
        to.saturating_duration_since(times.due),
    );
    if paced {
        stats::record(
            &mut tally.unanswered_uncorrected,
            to.saturating_duration_since(times.start),
        );
    }
}
