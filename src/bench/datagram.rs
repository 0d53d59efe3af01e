//! Datagram pingpong (`bench --udp`): each "connection" is one connected UDP
//! socket that sends a message of `--size` bytes as one datagram and waits for
//! one datagram back, which must be the message's expected reply, whole.
//!
//! UDP may lose a datagram, so a reply that has not come within [`LOSS`] is
//! counted as lost (not an error) and the next message is sent. The reply to
//! a lost message may still come, late, while a later one is awaited: a
//! datagram equal to the expected reply of one of the last [`REMEMBERED`]
//! lost messages is ignored. `connection refused` (an ICMP port unreachable
//! came back: nothing listens) is taken the same way as silence: that
//! message's reply will not come, and after [`LOSS`] it counts as lost. So
//! a run against a port where nothing answers reports lost replies and every
//! socket starved, and fails as any run with no reply does, without spinning
//! through messages as fast as the ICMP errors come back. A socket whose
//! replies stopped (none for [`LOSS`] plus the stall threshold when the
//! window ends: at least two lost in a row) is stalled, as a TCP connection
//! would be; one lost reply is not.
//!
//! Per round trip: one `send(2)`, one `recv(2)`, one `memcmp`, one histogram
//! increment. The loss timeout costs no timer operation per message: one
//! timer per socket is checked lazily (see [`run`]).

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::time::{Instant, Sleep, sleep_until};

use super::conn::{RunState, Seen};
use super::connect::DatagramSocket;
use super::payload::{MESSAGES, Message, Payload};
use super::stats;

/// How long a reply may take before its message counts as lost: the
/// contract's 1 s.
pub const LOSS: Duration = Duration::from_secs(1);

pub use crate::endpoint::MAX_DATAGRAM;

/// Lost messages whose late replies are recognised and ignored. A few: a
/// reply later than several more seconds of losses is no longer "late".
pub const REMEMBERED: usize = 8;

// Message numbers are remembered as bytes.
const _: () = assert!(MESSAGES <= 256);

/// The most recently lost messages of one socket, oldest overwritten first.
#[derive(Clone, Copy, Debug, Default)]
struct Lost {
    /// Their message numbers; the first `len` count.
    messages: [u8; REMEMBERED],
    /// How many are remembered.
    len: u8,
    /// Where the next is written.
    next: u8,
}

impl Lost {
    /// Remembers that `message` was lost.
    fn remember(&mut self, message: usize) {
        self.messages[usize::from(self.next)] = message as u8;
        self.next = (self.next + 1) % REMEMBERED as u8;
        self.len = (self.len + 1).min(REMEMBERED as u8);
    }

    /// Returns true if and only if `datagram` is the reply to a remembered
    /// lost message.
    fn late_reply(&self, payload: &Payload, datagram: &[u8]) -> bool {
        self.messages[..usize::from(self.len)]
            .iter()
            .any(|&message| is_reply(payload.message(usize::from(message)), datagram))
    }
}

/// What a received datagram is, while `message` is awaited.
enum Datagram {
    /// Its reply.
    Reply,
    /// The late reply to a lost message.
    Late,
    /// Anything else: what was wrong with it.
    Wrong(String),
}

/// How the wait for a reply ended.
enum Waited {
    /// The reply came.
    Replied,
    /// A wrong datagram came instead.
    Wrong(String),
    /// Nothing came within [`LOSS`].
    Lost,
    /// The window ended first.
    WindowEnded,
}

/// Drives one UDP socket until the window ends, then waits (uncounted) for
/// the reply still in flight, to check it.
///
/// The loss timeout: one timer per socket, whose deadline is a time to check,
/// never later than the window's end or the awaited message's loss time.
/// When it fires early (the message it was set for was answered), it is
/// moved to the current message's loss time. So a socket whose replies come
/// in microseconds moves its timer about once a second, not once a message
/// (a timer wheel insert and remove per message was a fifth of the TCP
/// generator's instructions).
pub async fn run(socket: DatagramSocket, index: usize, state: Rc<RunState>) {
    let state = &*state;
    let payload = &state.payload;
    let end = state.window.to;
    let timer = sleep_until(end.min(Instant::now() + LOSS));
    tokio::pin!(timer);
    let mut track = Track::default();
    let mut number = Payload::first_message(index);
    loop {
        let message = payload.message(number);
        let sent_at = Instant::now();
        if sent_at >= end {
            return state.window_ended(None, None);
        }
        if let Err(err) = send(&socket, message.request).await {
            return state.error(|| format!("cannot send: {}", crate::error::plain(&err)));
        }
        let lost_at = sent_at + LOSS;
        let lost = &track.lost;
        let waited = loop {
            tokio::select! {
                biased;
                got = state.recv_datagram(&socket, |datagram| classify(payload, message, lost, datagram)) => {
                    match got {
                        Ok(Datagram::Reply) => break Waited::Replied,
                        Ok(Datagram::Late) => {}
                        Ok(Datagram::Wrong(failure)) => break Waited::Wrong(failure),
                        Err(err) if refused(&err) => {}
                        Err(err) => {
                            let failure = format!("cannot receive: {}", crate::error::plain(&err));
                            return state.error(|| failure);
                        }
                    }
                }
                () = &mut timer => {
                    if let Some(waited) = timer_fired(timer.as_mut(), end, lost_at) {
                        break waited;
                    }
                }
            }
        };
        match waited {
            Waited::Replied => track.replied(state, message, sent_at),
            Waited::Wrong(failure) => state.error(|| failure),
            Waited::Lost => track.lost(state, number),
            Waited::WindowEnded => {
                track.window_ended(state, sent_at);
                timer.as_mut().reset(lost_at);
                let lost = track.lost;
                return Box::pin(last_reply_in_flight(&socket, state, message, lost, timer)).await;
            }
        }
        number = Payload::next_message(number);
    }
}

/// The socket's timer fired while a reply was awaited: the window ended
/// (at `end`), or the message was lost (its reply was due by `lost_at`), or
/// neither yet (the timer was set for an earlier message) and it is moved to
/// the earlier of the two. Not on the per-message path: the timer fires about
/// once a second.
fn timer_fired(mut timer: Pin<&mut Sleep>, end: Instant, lost_at: Instant) -> Option<Waited> {
    let now = Instant::now();
    if now >= end {
        return Some(Waited::WindowEnded);
    }
    if now >= lost_at {
        // The next message is sent after `now`.
        timer.as_mut().reset(end.min(now + LOSS));
        return Some(Waited::Lost);
    }
    timer.as_mut().reset(end.min(lost_at));
    None
}

/// What one socket has seen of its server, across messages.
#[derive(Debug, Default)]
struct Track {
    /// Its most recently lost messages.
    lost: Lost,
    /// Whether it got a verified reply in the window.
    seen: Seen,
    /// When its latest verified reply came.
    last_reply: Option<Instant>,
}

impl Track {
    /// Counts the reply to `message`, sent at `sent_at`, which just came.
    #[inline(always)]
    fn replied(&mut self, state: &RunState, message: Message<'_>, sent_at: Instant) {
        let now = Instant::now();
        self.last_reply = Some(now);
        if state.window.contains(now) {
            let mut tally = state.tally.borrow_mut();
            tally.requests += 1;
            tally.bytes += message.reply_len as u64;
            stats::record(&mut tally.latency, now - sent_at);
            self.seen.replied_in_window(&mut tally);
        }
    }

    /// Counts message number `number` as lost, and remembers it.
    fn lost(&mut self, state: &RunState, number: usize) {
        self.lost.remember(number);
        if state.window.contains(Instant::now()) {
            state.tally.borrow_mut().lost += 1;
        }
    }

    /// Records the window's end with a message sent at `sent_at` in flight.
    ///
    /// A server that stopped answering a socket it had answered is stalled;
    /// but one lost reply is not a stall, so the silence counts from [`LOSS`]
    /// after the last reply: a socket is stalled only after at least two
    /// replies in a row were lost.
    fn window_ended(&self, state: &RunState, sent_at: Instant) {
        let silent = self.last_reply.map(|at| at + LOSS);
        state.window_ended(Some(sent_at), silent);
    }
}

/// After the window: waits until `timer` (the loss time of `message`) for
/// its reply, and counts an error if a wrong datagram comes instead. Nothing
/// else is counted: the reply is past the window.
async fn last_reply_in_flight(
    socket: &DatagramSocket,
    state: &RunState,
    message: Message<'_>,
    lost: Lost,
    mut timer: Pin<&mut Sleep>,
) {
    let payload = &state.payload;
    loop {
        tokio::select! {
            biased;
            got = state.recv_datagram(socket, |datagram| classify(payload, message, &lost, datagram)) => {
                match got {
                    Ok(Datagram::Reply) => return,
                    Ok(Datagram::Wrong(failure)) => return state.error(|| failure),
                    Ok(Datagram::Late) => {}
                    Err(err) if refused(&err) => {}
                    // Not blamed: the reply is past the window.
                    Err(_) => return,
                }
            }
            () = &mut timer => return,
        }
    }
}

/// Sends `request` as one datagram: at once if the socket buffer has room
/// (almost always: one `send(2)` and no future), else once it has.
pub(super) async fn send(socket: &DatagramSocket, request: &[u8]) -> io::Result<()> {
    let sent = match socket.get_ref().send(request) {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
            socket
                .async_io(Interest::WRITABLE, |socket| socket.send(request))
                .await
        }
        other => other,
    };
    match sent {
        Ok(_) => Ok(()),
        // An earlier datagram's ICMP port unreachable, reported now: this one
        // was not sent, and its reply counts as lost once its time is up.
        Err(err) if refused(&err) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Decides what `datagram` is while `message` is awaited; says the socket
/// holds nothing more of use once the reply came.
#[inline]
fn classify(
    payload: &Payload,
    message: Message<'_>,
    lost: &Lost,
    datagram: &[u8],
) -> (Datagram, bool) {
    if is_reply(message, datagram) {
        (Datagram::Reply, true)
    } else if lost.late_reply(payload, datagram) {
        (Datagram::Late, false)
    } else {
        (Datagram::Wrong(wrong_reply(message, datagram)), false)
    }
}

/// Returns true if and only if `datagram` is exactly `message`'s reply.
#[inline]
pub(super) fn is_reply(message: Message<'_>, datagram: &[u8]) -> bool {
    let mut expected = message.reply;
    datagram.len() == message.reply_len && expected.check(datagram).is_ok()
}

/// What is wrong with `datagram` as the reply to `message`.
#[cold]
pub(super) fn wrong_reply(message: Message<'_>, datagram: &[u8]) -> String {
    let len = message.reply_len;
    let mut expected = message.reply;
    let common = datagram.len().min(len);
    match expected.check(&datagram[..common]) {
        Err(wrong) => super::conn::wrong_reply(wrong.index as u64, wrong),
        Ok(()) => format!("wrong reply: {} bytes, expected {len}", datagram.len()),
    }
}

/// Returns true if and only if `err` is `connection refused`: on a connected
/// UDP socket, an ICMP port unreachable for an earlier datagram.
pub(super) fn refused(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::ConnectionRefused
}
