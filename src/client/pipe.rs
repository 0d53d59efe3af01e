//! Pipe mode, like `nc`: input is copied to the server and the server's reply to
//! the output, both at once, so a reply larger than the socket buffers never
//! deadlocks the exchange.
//!
//! Two threads share the connection: a sending one (input -> server) and the
//! calling one (server -> output). Any failure on either side ends the session
//! with an error, never with a silent success: when the server resets the
//! connection, the kernel reports the reset to whichever of the two threads
//! touches the socket first, and the other one may see a plain EOF. So the
//! sending thread records its outcome in a shared slot ([`Outbound`]) and the
//! receiving side consults it before it calls an EOF a success.

use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use super::{Duplex, Finish, Interrupt, is_broken_pipe};
use crate::Error;

/// Bytes moved per read, in either direction.
const CHUNK: usize = 64 * 1024;

/// How long the receiving side, having seen EOF, waits for a send in progress
/// to finish before it trusts the EOF. A reset wakes a blocked send at once, so
/// a send still blocked after this is held by a live server that closed its
/// side and stopped reading; like `nc -N`, that ends the session normally.
const SEND_SETTLE: Duration = Duration::from_secs(1);

/// Copies `input` to `stream` on a background thread (half-closing the stream
/// at input EOF) while copying the stream's replies to `output` as they come.
///
/// Returns [`Finish::Done`] once the server has closed its side cleanly and
/// every reply byte was written and flushed, or quietly as soon as `output` is
/// a broken pipe. Returns [`Finish::Interrupted`] as soon as `interrupt`
/// fires (it shuts the connection down to wake both threads). The sending
/// thread is not joined: input may be a terminal that never ends, and the
/// process exits right after.
///
/// # Errors
///
/// [`Error::Io`] when the connection fails in either direction (reset by the
/// server: `connection to tcp ADDR failed: connection reset by peer`), when
/// the input cannot be read (`cannot read stdin: ...`), or when the output
/// cannot be written for any reason but a broken pipe. `peer` names the server.
///
/// ```
/// # use std::io::{Read, Write};
/// use upecho::client::{Finish, Interrupt, pipe::pipe};
/// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = listener.local_addr().unwrap();
/// std::thread::spawn(move || {
///     let (mut conn, _) = listener.accept().unwrap();
///     let mut got = Vec::new();
///     conn.read_to_end(&mut got).unwrap();
///     conn.write_all(&got.to_ascii_uppercase()).unwrap();
/// });
/// let stream = std::net::TcpStream::connect(addr).unwrap();
/// let mut out = Vec::new();
/// let finish = pipe(&b"hi\n"[..], &mut out, stream, "tcp test", &Interrupt::manual()).unwrap();
/// assert_eq!((finish, out), (Finish::Done, b"HI\n".to_vec()));
/// ```
pub fn pipe<S, I, O>(
    input: I,
    output: O,
    stream: S,
    peer: &str,
    interrupt: &Interrupt,
) -> Result<Finish, Error>
where
    S: Duplex,
    I: Read + Send + 'static,
    O: Write,
{
    let cannot_use = |cause| Error::Io {
        context: format!("cannot use connection to {peer}"),
        cause,
    };
    // Kept until the session ends, and no longer: it holds the connection.
    let _shut_down = interrupt
        .shut_down_on_interrupt(&stream)
        .map_err(cannot_use)?;
    let upstream = stream.try_clone().map_err(cannot_use)?;
    let outbound = Arc::new(Outbound::default());
    let sending = Arc::clone(&outbound);
    let sender_peer = peer.to_owned();
    thread::Builder::new()
        .name("upecho-send".into())
        .spawn(move || send(input, upstream, &sender_peer, &sending))
        .map_err(|cause| Error::Io {
            context: "cannot start the sending thread".into(),
            cause,
        })?;

    let received = receive(stream, output, peer);
    if interrupt.is_interrupted() {
        // Whatever failed after the interrupt failed because of it.
        return Ok(Finish::Interrupted);
    }
    match received {
        Ok(Received::Eof) => outbound.outcome_after_eof().map(|()| Finish::Done),
        Ok(Received::OutputClosed) => Ok(Finish::Done),
        Err(err) => Err(err),
    }
}

/// How the receiving side ended without an error of its own.
enum Received {
    /// The server's side of the connection ended (FIN, or our own shutdown).
    Eof,
    /// The reader of our output went away (`| head`): a quiet end.
    OutputClosed,
}

/// Copies the server's bytes to `output`, flushing each chunk, until EOF.
fn receive<S: Read, O: Write>(mut stream: S, mut output: O, peer: &str) -> Result<Received, Error> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(Received::Eof),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(cause) => return Err(connection_failed(peer, cause)),
        };
        match output.write_all(&buf[..n]).and_then(|()| output.flush()) {
            Ok(()) => {}
            Err(err) if is_broken_pipe(&err) => return Ok(Received::OutputClosed),
            Err(cause) => {
                return Err(Error::Io {
                    context: "cannot write to stdout".into(),
                    cause,
                });
            }
        }
    }
}

/// The sending thread: copies `input` to `upstream`, half-closes at input
/// EOF, and records how it went in `outbound`. On failure it shuts the
/// connection down both ways, so the receiving side (blocked on the socket)
/// returns and reports the failure.
fn send<I: Read, S: Duplex>(mut input: I, mut upstream: S, peer: &str, outbound: &Outbound) {
    let mut buf = vec![0u8; CHUNK];
    let failure = loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(cause) => {
                break Some(Error::Io {
                    context: "cannot read stdin".into(),
                    cause,
                });
            }
        };
        outbound.set(SendState::Sending);
        if let Err(cause) = upstream.write_all(&buf[..n]) {
            break Some(connection_failed(peer, cause));
        }
        outbound.set(SendState::ReadingInput);
    };
    match failure {
        None => {
            // A failed half-close means the connection is already gone; the
            // receiving side sees how (a reset, or the server's clean close).
            let _ = upstream.shutdown_write();
            outbound.set(SendState::Finished);
        }
        Some(err) => {
            outbound.set(SendState::Failed(err));
            let _ = upstream.shutdown_both();
        }
    }
}

fn connection_failed(peer: &str, cause: io::Error) -> Error {
    Error::Io {
        context: format!("connection to {peer} failed"),
        cause,
    }
}

/// What the sending thread is doing, shared with the receiving side.
enum SendState {
    /// Waiting for input; every byte read so far was accepted by the socket.
    ReadingInput,
    /// Inside a write to the socket, whose outcome is not known yet.
    Sending,
    /// Input ended, everything was sent and the write side half-closed.
    Finished,
    /// Reading the input or writing the socket failed; the first error.
    Failed(Error),
}

/// The sending thread's state and a way to wait for it to change.
struct Outbound {
    /// Set only by the sending thread.
    state: Mutex<SendState>,
    /// Signalled on every change of `state`.
    changed: Condvar,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            state: Mutex::new(SendState::ReadingInput),
            changed: Condvar::new(),
        }
    }
}

impl Outbound {
    fn set(&self, state: SendState) {
        *self.lock() = state;
        self.changed.notify_all();
    }

    /// Decides whether an EOF from the server ends the session well: not if
    /// the sending thread failed, or fails within [`SEND_SETTLE`] in the
    /// write it is blocked in (the reset may have reached that write first).
    ///
    /// # Errors
    ///
    /// The sending thread's error.
    fn outcome_after_eof(&self) -> Result<(), Error> {
        let state = self.lock();
        let (mut state, _) = self
            .changed
            .wait_timeout_while(state, SEND_SETTLE, |s| matches!(s, SendState::Sending))
            .unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *state, SendState::Finished) {
            SendState::Failed(err) => Err(err),
            _ => Ok(()),
        }
    }

    /// Each change is one assignment, so a poisoned lock still holds a
    /// consistent state.
    fn lock(&self) -> MutexGuard<'_, SendState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// An input that fails as a directory does.
    struct Unreadable;

    impl Read for Unreadable {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(21)) // EISDIR
        }
    }

    fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
    }

    #[test]
    fn an_unreadable_input_is_an_error_even_while_the_server_stays_silent() {
        let (client, _server) = connected_pair();
        let err = pipe(
            Unreadable,
            io::sink(),
            client,
            "tcp test",
            &Interrupt::manual(),
        )
        .expect_err("must fail");
        assert_eq!(err.to_string(), "cannot read stdin: is a directory");
    }

    #[test]
    fn an_interrupt_ends_a_session_blocked_on_a_silent_server() {
        let (client, _server) = connected_pair();
        let interrupt = Interrupt::manual();
        let firing = interrupt.clone();
        thread::spawn(move || firing.trigger());
        // The input never ends (an empty pipe nobody closes): only the
        // interrupt can end the session.
        let (_keep_open, input) = std::sync::mpsc::channel::<()>();
        let input = BlockingInput(input);
        let finish = pipe(input, io::sink(), client, "tcp test", &interrupt).unwrap();
        assert_eq!(finish, Finish::Interrupted);
    }

    /// An input whose read blocks until its sender is dropped.
    struct BlockingInput(std::sync::mpsc::Receiver<()>);

    impl Read for BlockingInput {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Ok(0)
        }
    }
}
