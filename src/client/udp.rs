//! `upecho connect --udp`: each line of input is one datagram, each reply
//! datagram is printed as one line. UDP has no connection to lose, so a
//! reply that does not come within the timeout is the error. A piped line is
//! read at most one datagram's worth at a time: a longer one is refused as
//! soon as it passes [`MAX_DATAGRAM`], however much more input follows.

use std::io::{self, BufRead, Read, Write};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::{Finish, Interrupt, is_broken_pipe};
use crate::Error;
use crate::endpoint::MAX_DATAGRAM;

/// How long one wait for a reply lasts before Ctrl-C is checked again.
const SLICE: Duration = Duration::from_millis(100);

/// The largest datagram a reply can be.
const MAX_REPLY: usize = 64 * 1024;

/// What the input has next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A datagram to send (a line without its `\n`).
    Datagram(Vec<u8>),
    /// Nothing to send this time (an empty line at the prompt).
    Skip,
    /// Line number N of the input is longer than [`MAX_DATAGRAM`] bytes: it
    /// cannot be sent, and the rest of it was not read.
    TooLong(u64),
    /// Input ended.
    End,
    /// The user pressed Ctrl-C at the prompt.
    Interrupted,
}

/// Sends each datagram `next` yields on `socket` (connected to `peer`) and
/// writes each reply to `output` followed by `\n`, waiting at most `timeout`
/// (`None`: no limit) for each.
///
/// # Errors
///
/// [`Error::Io`] when input cannot be read, a line is too long for a
/// datagram (`cannot send line 3 of stdin to udp ADDR: longer than 65507
/// bytes, the largest UDP datagram`), a datagram cannot be sent, or no reply
/// comes in time (`no reply from udp ADDR: timed out after 5 s`, or
/// `connection refused` when nothing listens there).
///
/// ```
/// use upecho::client::{Interrupt, udp::{Next, datagrams}};
/// let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
/// let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
/// client.connect(server.local_addr().unwrap()).unwrap();
/// std::thread::spawn(move || {
///     let mut buf = [0u8; 16];
///     let (n, from) = server.recv_from(&mut buf).unwrap();
///     server.send_to(&buf[..n].to_ascii_uppercase(), from).unwrap();
/// });
/// let mut lines = vec![Next::Datagram(b"hi".to_vec())].into_iter();
/// let mut out = Vec::new();
/// let timeout = Some(std::time::Duration::from_secs(30));
/// let mut next = || Ok(lines.next().unwrap_or(Next::End));
/// datagrams(&mut next, &client, &mut out, "udp test", timeout, &Interrupt::manual()).unwrap();
/// assert_eq!(out, b"HI\n");
/// ```
pub fn datagrams(
    next: &mut impl FnMut() -> io::Result<Next>,
    socket: &UdpSocket,
    output: &mut impl Write,
    peer: &str,
    timeout: Option<Duration>,
    interrupt: &Interrupt,
) -> Result<Finish, Error> {
    exchange_each(next, socket, output, b"\n", peer, timeout, interrupt)
}

/// [`datagrams`], each reply followed by `separator` (nothing for a hex
/// dump, where a `\n` would read as a byte of the reply).
pub(crate) fn exchange_each(
    next: &mut impl FnMut() -> io::Result<Next>,
    socket: &UdpSocket,
    output: &mut impl Write,
    separator: &[u8],
    peer: &str,
    timeout: Option<Duration>,
    interrupt: &Interrupt,
) -> Result<Finish, Error> {
    let mut reply = vec![0u8; MAX_REPLY];
    loop {
        let datagram = match next().map_err(|cause| Error::Io {
            context: "cannot read stdin".into(),
            cause,
        })? {
            Next::Datagram(datagram) => datagram,
            Next::Skip => continue,
            Next::TooLong(number) => return Err(too_long(number, peer)),
            Next::End => return Ok(Finish::Done),
            Next::Interrupted => return Ok(Finish::Interrupted),
        };
        socket.send(&datagram).map_err(|cause| Error::Io {
            context: format!("cannot send to {peer}"),
            cause,
        })?;
        let Some(n) = wait_for_reply(socket, &mut reply, peer, timeout, interrupt)? else {
            return Ok(Finish::Interrupted);
        };
        let shown = output
            .write_all(&reply[..n])
            .and_then(|()| output.write_all(separator))
            .and_then(|()| output.flush());
        match shown {
            Ok(()) => {}
            Err(err) if is_broken_pipe(&err) => return Ok(Finish::Done),
            Err(cause) => {
                return Err(Error::Io {
                    context: "cannot write to stdout".into(),
                    cause,
                });
            }
        }
    }
}

fn too_long(number: u64, peer: &str) -> Error {
    Error::Io {
        context: format!("cannot send line {number} of stdin to {peer}"),
        cause: io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("longer than {MAX_DATAGRAM} bytes, the largest UDP datagram"),
        ),
    }
}

/// The datagrams of a piped `input`: each line without its `\n`, or
/// [`Next::TooLong`] for the first line longer than [`MAX_DATAGRAM`]. The
/// lines are read on a thread of their own and waited for in slices, so
/// Ctrl-C ends the wait even while the input says nothing; end of input
/// after Ctrl-C (the writer died of the same Ctrl-C) is an interruption too.
///
/// # Errors
///
/// The returned function fails as the input does (a directory as stdin).
pub fn piped_lines(
    input: impl BufRead + Send + 'static,
    interrupt: Interrupt,
) -> io::Result<impl FnMut() -> io::Result<Next>> {
    // At most 16 lines of at most a datagram each wait in the channel.
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    std::thread::Builder::new()
        .name("upecho-stdin".into())
        .spawn(move || read_lines(input, &tx))?;
    Ok(move || {
        loop {
            match rx.recv_timeout(SLICE) {
                Ok(next) => return next,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Ok(if interrupt.is_interrupted() {
                        Next::Interrupted
                    } else {
                        Next::End
                    });
                }
            }
            if interrupt.is_interrupted() {
                return Ok(Next::Interrupted);
            }
        }
    })
}

/// Sends the lines of `input` to `tx` until input ends, fails, or a line is
/// too long (then the rest of that line is never read), or until nobody
/// listens any more.
fn read_lines(mut input: impl BufRead, tx: &std::sync::mpsc::SyncSender<io::Result<Next>>) {
    // One byte more than a datagram: either the `\n` of a line that fits,
    // or the proof that it does not.
    let limit = MAX_DATAGRAM as u64 + 1;
    for number in 1.. {
        let mut line = Vec::new();
        let next = match input.by_ref().take(limit).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                Ok(Next::Datagram(line))
            }
            Ok(_) if line.len() > MAX_DATAGRAM => Ok(Next::TooLong(number)),
            // The last line, without a `\n`.
            Ok(_) => Ok(Next::Datagram(line)),
            Err(err) => Err(err),
        };
        let more = matches!(next, Ok(Next::Datagram(_)));
        if tx.send(next).is_err() || !more {
            return;
        }
    }
}

/// Receives one reply within `timeout`, in slices so Ctrl-C is seen;
/// `None` when interrupted.
fn wait_for_reply(
    socket: &UdpSocket,
    reply: &mut [u8],
    peer: &str,
    timeout: Option<Duration>,
    interrupt: &Interrupt,
) -> Result<Option<usize>, Error> {
    let no_reply = |cause| Error::Io {
        context: format!("no reply from {peer}"),
        cause,
    };
    let deadline = timeout.map(|limit| Instant::now() + limit);
    loop {
        let slice = match deadline {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(SLICE),
            None => SLICE,
        };
        if slice.is_zero() {
            let limit = timeout.unwrap_or_default().as_secs_f64();
            let cause = io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {limit} s"),
            );
            return Err(no_reply(cause));
        }
        socket.set_read_timeout(Some(slice)).map_err(no_reply)?;
        match socket.recv(reply) {
            Ok(n) => return Ok(Some(n)),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if interrupt.is_interrupted() {
                    return Ok(None);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(no_reply(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: Vec<u8>) -> Vec<Next> {
        let mut next = piped_lines(io::Cursor::new(input), Interrupt::manual()).unwrap();
        let mut seen = Vec::new();
        loop {
            match next().unwrap() {
                Next::End => return seen,
                other => seen.push(other),
            }
        }
    }

    #[test]
    fn a_line_of_a_whole_datagram_is_sent_and_one_byte_more_is_refused() {
        let fits = vec![b'a'; MAX_DATAGRAM];
        let mut input = fits.clone();
        input.push(b'\n');
        input.extend_from_slice(&[b'b'; MAX_DATAGRAM + 1]);
        input.extend_from_slice(b"\nnever read\n");
        assert_eq!(
            lines_of(input),
            vec![Next::Datagram(fits), Next::TooLong(2)]
        );
    }

    #[test]
    fn the_last_line_needs_no_newline() {
        assert_eq!(
            lines_of(b"one\n\nlast".to_vec()),
            vec![
                Next::Datagram(b"one".to_vec()),
                Next::Datagram(Vec::new()),
                Next::Datagram(b"last".to_vec())
            ]
        );
    }
}
