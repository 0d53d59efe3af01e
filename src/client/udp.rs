//! `upecho connect --udp`: each line of input is one datagram, each reply
//! datagram is printed as one line. UDP has no connection to lose, so a
//! reply that does not come within the timeout is the error.

use std::io::{self, Write};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::{Finish, Interrupt, is_broken_pipe};
use crate::Error;

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
/// [`Error::Io`] when input cannot be read, a datagram cannot be sent, or no
/// reply comes in time (`no reply from udp ADDR: timed out after 5 s`, or
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
    let mut reply = vec![0u8; MAX_REPLY];
    loop {
        let datagram = match next().map_err(|cause| Error::Io {
            context: "cannot read stdin".into(),
            cause,
        })? {
            Next::Datagram(datagram) => datagram,
            Next::Skip => continue,
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
            .and_then(|()| output.write_all(b"\n"))
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

/// The datagrams of a piped `input`: each line without its `\n`. The lines
/// are read on a thread of their own and waited for in slices, so Ctrl-C
/// ends the wait even while the input says nothing; end of input after
/// Ctrl-C (the writer died of the same Ctrl-C) is an interruption too.
///
/// # Errors
///
/// The returned function fails as the input does (a directory as stdin).
pub fn piped_lines(
    input: impl io::BufRead + Send + 'static,
    interrupt: Interrupt,
) -> io::Result<impl FnMut() -> io::Result<Next>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
    std::thread::Builder::new()
        .name("upecho-stdin".into())
        .spawn(move || {
            for line in input.split(b'\n') {
                if tx.send(line).is_err() {
                    return;
                }
            }
        })?;
    Ok(move || {
        loop {
            match rx.recv_timeout(SLICE) {
                Ok(line) => return line.map(Next::Datagram),
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
