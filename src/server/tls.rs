//! One TLS connection: the handshake (within `--tls-handshake-timeout`),
//! then the same read -> transform -> write loop as a plain connection, on
//! rustls' unbuffered API.
//!
//! Memory: rustls' buffered connection keeps a record buffer of its own for
//! every connection, 4 KiB at least even when idle. Its unbuffered one keeps
//! none: we hand it the records, in this thread's scratch buffer, and it
//! decrypts them and encrypts our answers into buffers we lend it. So, as
//! for a plain connection, a TLS connection between messages holds only its
//! rustls session (keys and state, about 3 KiB) and, rarely, the beginning
//! of a record that has not all arrived, or encrypted bytes its peer has not
//! taken yet (both freed once used). While bytes are owed nothing more is
//! read (backpressure).
//!
//! A client's `close_notify` is the TLS form of a half-close: what is still
//! owed goes out, then our `close_notify`, then the socket's write side is
//! shut. A TCP FIN without `close_notify` is an error (a truncation).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use tokio::io::ReadBuf;

use super::connection::{BUFFER_SIZE, End, Owed, ReadyStream, Traffic, send_or_owe, write_owed};
use crate::Endpoint;
use crate::metrics::StreamMetrics;
use crate::tls::server::ServerTls;
use crate::transform::StreamTransform;

/// The most bytes a connection carries from one read to the next: the
/// beginning of a record (at most 16 KiB and its overhead) and, during the
/// handshake, the records of a handshake message not yet whole (rustls
/// refuses messages over 64 KiB).
const MAX_CARRY: usize = 96 * 1024;

thread_local! {
    /// The buffers every TLS connection on this thread lends rustls, within
    /// one poll (as the plain path's scratch buffer).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// One thread's TLS buffers.
struct Scratch {
    /// Records as they arrive: a connection's carried bytes end at
    /// `MAX_CARRY`, where each read begins.
    incoming: Box<[u8]>,
    /// The application data of the records of one read, decrypted.
    plain: Vec<u8>,
    /// Records to send.
    outgoing: Outgoing,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            incoming: vec![0; MAX_CARRY + BUFFER_SIZE].into_boxed_slice(),
            plain: Vec::with_capacity(MAX_CARRY + BUFFER_SIZE),
            outgoing: Outgoing {
                buf: vec![0; BUFFER_SIZE + BUFFER_SIZE / 4],
                used: 0,
            },
        }
    }
}

/// A buffer rustls encodes and encrypts records into; it grows when rustls
/// says it needs more room (zeroed only then).
struct Outgoing {
    /// The buffer, all of it initialised.
    buf: Vec<u8>,
    /// How much of it holds records to send.
    used: usize,
}

impl Outgoing {
    /// Appends what `write` puts into the free part of the buffer; `room`
    /// says how much a failed `write` needed, if that is why it failed.
    fn append<E>(
        &mut self,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
        room: impl Fn(&E) -> Option<usize>,
    ) -> Result<(), E> {
        loop {
            match write(&mut self.buf[self.used..]) {
                Ok(n) => {
                    self.used += n;
                    return Ok(());
                }
                Err(err) => match room(&err) {
                    Some(needed) if self.used + needed > self.buf.len() => {
                        self.buf.resize((self.used + needed).next_power_of_two(), 0);
                    }
                    _ => return Err(err),
                },
            }
        }
    }

    /// The records to send; empties the buffer.
    fn take(&mut self) -> &[u8] {
        let used = std::mem::take(&mut self.used);
        &self.buf[..used]
    }
}

/// Does the handshake on `stream` (with `early`, bytes that came before, the
/// ClientHello's beginning behind a PROXY header, acted on first), then
/// serves the connection.
pub(super) async fn serve<S: ReadyStream>(
    stream: S,
    early: Vec<u8>,
    tls: &ServerTls,
    transform: StreamTransform,
    traffic: Arc<Traffic>,
    log: (&Endpoint, &str, &StreamMetrics),
) -> End {
    let (endpoint, peer, counters) = log;
    let session = match UnbufferedServerConnection::new(tls.current()) {
        Ok(session) => session,
        Err(err) => return End::Tls(err.to_string()),
    };
    let mut connection = TlsConnection {
        stream,
        session,
        carry: early,
        owed: Owed::default(),
        transform,
        traffic,
        peer_closed: false,
    };
    let handshake = connection.handshake();
    let done = match tls.handshake_timeout() {
        Some(limit) => tokio::time::timeout(limit, handshake)
            .await
            .unwrap_or_else(|_| Err(Failure::Tls("handshake timed out".into()))),
        None => handshake.await,
    };
    counters.handshake(done.is_ok());
    let progress = match done {
        Ok(progress) => progress,
        Err(failure) => return failure.into_end(),
    };
    connection.log_established(endpoint, peer);
    connection.run(progress).await
}

/// Why a connection ends early.
enum Failure {
    /// rustls refused what the peer sent, or the handshake did not finish.
    Tls(String),
    /// The socket failed, or the peer closed without `close_notify`.
    Io(io::Error),
}

impl Failure {
    fn into_end(self) -> End {
        match self {
            Failure::Tls(why) => End::Tls(why),
            Failure::Io(err) => End::Io(err),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        Failure::Io(err)
    }
}

impl From<rustls::Error> for Failure {
    fn from(err: rustls::Error) -> Failure {
        Failure::Tls(err.to_string())
    }
}

/// Where a connection stands after acting on what it received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// It wants more from the peer.
    Reading,
    /// The peer sent `close_notify` and ours is queued behind every reply:
    /// what is owed goes out, then the write side is shut.
    Closing,
}

/// A TLS connection and what it carries between reads.
struct TlsConnection<S> {
    /// The accepted socket.
    stream: S,
    /// The rustls session: keys and protocol state, no buffers.
    session: UnbufferedServerConnection,
    /// Received bytes not acted on yet: the beginning of a record (or of a
    /// handshake message); empty, and unallocated, between whole records.
    carry: Vec<u8>,
    /// Records the peer's socket has not taken; nothing is read meanwhile.
    owed: Owed,
    /// The per-connection transform state.
    transform: StreamTransform,
    /// Shared with the listener, which watches it for idleness.
    traffic: Arc<Traffic>,
    /// The peer's `close_notify` came.
    peer_closed: bool,
}

impl<S: ReadyStream> TlsConnection<S> {
    /// Reads and answers until the handshake is done.
    async fn handshake(&mut self) -> Result<Progress, Failure> {
        let mut progress = self.act_on_carry()?;
        while self.session.is_handshaking() && progress == Progress::Reading {
            progress = self.advance().await?;
        }
        Ok(progress)
    }

    /// Serves until the peer's `close_notify` (then everything owed is
    /// sent, then ours) or an error.
    async fn run(mut self, mut progress: Progress) -> End {
        while progress == Progress::Reading {
            progress = match self.advance().await {
                Ok(progress) => progress,
                Err(failure) => return failure.into_end(),
            };
        }
        while !self.owed.is_empty() {
            if let Err(err) = write_owed(&self.stream, &mut self.owed).await {
                return End::Io(err);
            }
        }
        match self.stream.shutdown_write() {
            Ok(()) => End::Finished,
            Err(err) => End::Io(err),
        }
    }

    /// One step: writes some of what is owed, or reads and answers.
    async fn advance(&mut self) -> Result<Progress, Failure> {
        if self.owed.is_empty() {
            poll_fn(|cx| self.poll_read_and_answer(cx)).await
        } else {
            write_owed(&self.stream, &mut self.owed).await?;
            Ok(Progress::Reading)
        }
    }

    /// The debug line of an established connection.
    fn log_established(&self, endpoint: &Endpoint, peer: &str) {
        let session = &self.session;
        let version = session.protocol_version().map(crate::tls::version_name);
        let suite = session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()));
        let client_cert = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| crate::tls::certs::describe(leaf))
            .map(|described| described.subject);
        tracing::debug!(listener = %endpoint, %peer, version = version.unwrap_or("-"),
            suite = suite.as_deref().unwrap_or("-"), client_cert = client_cert.as_deref().unwrap_or("-"),
            "tls established");
    }

    /// Acts on bytes that came before the handshake (with a PROXY header):
    /// a client whose whole ClientHello came with the header waits for our
    /// answer, with nothing more to send.
    fn act_on_carry(&mut self) -> Result<Progress, Failure> {
        if self.carry.is_empty() {
            return Ok(Progress::Reading);
        }
        let mut early = std::mem::take(&mut self.carry);
        SCRATCH.with_borrow_mut(|scratch| {
            let (used, progress) =
                self.act_on(&mut early, &mut scratch.plain, &mut scratch.outgoing)?;
            self.keep_carry(&early[used..])?;
            Ok(progress)
        })
    }

    /// Reads what is there after the carried bytes, in this thread's
    /// scratch buffer, and acts on the records, all within one poll.
    fn poll_read_and_answer(&mut self, cx: &mut Context<'_>) -> Poll<Result<Progress, Failure>> {
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                incoming,
                plain,
                outgoing,
            } = scratch;
            let mut buf = ReadBuf::new(&mut incoming[MAX_CARRY..]);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(Err(self.closed_early()));
            }
            let start = MAX_CARRY - self.carry.len();
            incoming[start..MAX_CARRY].copy_from_slice(&self.carry);
            let received = &mut incoming[start..MAX_CARRY + n];
            let (used, progress) = self.act_on(received, plain, outgoing)?;
            self.keep_carry(&received[used..])?;
            Poll::Ready(Ok(progress))
        })
    }

    /// Why a TCP FIN without `close_notify` ends the connection.
    fn closed_early(&self) -> Failure {
        if self.session.is_handshaking() {
            Failure::Tls("peer closed the connection during the handshake".into())
        } else {
            Failure::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed without close_notify",
            ))
        }
    }

    /// Keeps `rest`, an incomplete record, for the next read; frees the
    /// carry buffer when there is none.
    fn keep_carry(&mut self, rest: &[u8]) -> Result<(), Failure> {
        if rest.len() > MAX_CARRY {
            return Err(Failure::Tls("handshake message too large".into()));
        }
        if rest.is_empty() {
            self.carry = Vec::new();
        } else {
            self.carry.clear();
            self.carry.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Acts on the records in `incoming`: answers the handshake, decrypts
    /// application data, transforms it and encrypts the answer, and sends
    /// (or owes) what rustls produced. Returns how many bytes of `incoming`
    /// were used up (the rest is an incomplete record).
    fn act_on(
        &mut self,
        incoming: &mut [u8],
        plain: &mut Vec<u8>,
        outgoing: &mut Outgoing,
    ) -> Result<(usize, Progress), Failure> {
        plain.clear();
        let mut used = 0;
        loop {
            let status = self.session.process_tls_records(&mut incoming[used..]);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(err) => {
                    self.send_alert(&mut incoming[used + discard..], outgoing);
                    return Err(err.into());
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    outgoing.append(|buf| encode.encode(buf), encode_room)?;
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    send_or_owe(&self.stream, &mut self.owed, outgoing.take())?;
                    transmit.done();
                }
                ConnectionState::PeerClosed => self.peer_closed = true,
                ConnectionState::WriteTraffic(mut write) => {
                    if !plain.is_empty() {
                        self.traffic.add_in(plain.len());
                        let out = self.transform.process(plain);
                        encrypt(&mut write, &out, outgoing)?;
                        self.traffic.add_out(out.len());
                    }
                    let progress = if self.peer_closed {
                        let tail = self.transform.finish();
                        encrypt(&mut write, tail, outgoing)?;
                        self.traffic.add_out(tail.len());
                        outgoing.append(|buf| write.queue_close_notify(buf), encrypt_room)?;
                        Progress::Closing
                    } else {
                        Progress::Reading
                    };
                    send_or_owe(&self.stream, &mut self.owed, outgoing.take())?;
                    return Ok((used + discard, progress));
                }
                ConnectionState::BlockedHandshake => {
                    return Ok((used + discard, Progress::Reading));
                }
                ConnectionState::Closed => return Ok((used + discard, Progress::Closing)),
                // Early data is off (the server config allows none).
                _ => return Err(Failure::Tls("unexpected early data".into())),
            }
            used += discard;
        }
    }

    /// After rustls refused what the peer sent: sends the alert it queued
    /// (`bad_record_mac`, `certificate_required`, ...), as far as the socket
    /// takes it now. `incoming` is what rustls had not used up.
    ///
    /// Only while rustls has records queued: it hands those out before it
    /// looks at `incoming` again, and after an error it must not look again.
    fn send_alert(&mut self, incoming: &mut [u8], outgoing: &mut Outgoing) {
        while self.session.wants_write() {
            let status = self.session.process_tls_records(incoming);
            let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state else {
                break;
            };
            if outgoing
                .append(|buf| encode.encode(buf), encode_room)
                .is_err()
            {
                break;
            }
        }
        let _ = send_or_owe(&self.stream, &mut self.owed, outgoing.take());
    }
}

/// Encrypts `data` (as many records as it needs) after what `outgoing`
/// holds.
fn encrypt(
    write: &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
    data: &[u8],
    outgoing: &mut Outgoing,
) -> Result<(), Failure> {
    if data.is_empty() {
        return Ok(());
    }
    outgoing
        .append(|buf| write.encrypt(data, buf), encrypt_room)
        .map_err(|err| Failure::Tls(err.to_string()))
}

/// The room an encode that failed for want of it needed.
fn encode_room(err: &EncodeError) -> Option<usize> {
    match err {
        EncodeError::InsufficientSize(short) => Some(short.required_size),
        _ => None,
    }
}

/// The room an encryption that failed for want of it needed.
fn encrypt_room(err: &EncryptError) -> Option<usize> {
    match err {
        EncryptError::InsufficientSize(short) => Some(short.required_size),
        _ => None,
    }
}

impl From<EncodeError> for Failure {
    fn from(err: EncodeError) -> Failure {
        Failure::Tls(err.to_string())
    }
}

impl From<EncryptError> for Failure {
    fn from(err: EncryptError) -> Failure {
        Failure::Tls(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outgoing_buffer_grows_to_what_rustls_says_it_needs() {
        let mut outgoing = Outgoing {
            buf: vec![0; 4],
            used: 0,
        };
        let write = |buf: &mut [u8]| {
            if buf.len() < 10 {
                Err(10)
            } else {
                buf[..10].copy_from_slice(b"0123456789");
                Ok(10)
            }
        };
        outgoing.append(write, |&needed| Some(needed)).unwrap();
        outgoing.append(write, |&needed| Some(needed)).unwrap();
        assert_eq!(outgoing.take(), b"01234567890123456789");
        assert_eq!(outgoing.used, 0);
    }
}
