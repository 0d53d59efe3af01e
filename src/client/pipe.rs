//! Pipe mode, like `nc`: input is copied to the server and the server's reply to
//! the output, both at once, so a reply larger than the socket buffers never
//! deadlocks the exchange.

use std::io::{self, Read, Write};
use std::thread;

use super::{Duplex, Finish, is_broken_pipe};
use crate::Error;

/// Bytes moved per read from the server.
const CHUNK: usize = 64 * 1024;

/// Copies `input` to `stream` on a background thread (half-closing the stream
/// at input EOF) while copying the stream's replies to `output` as they come.
///
/// Returns once the server has closed its side and every reply byte was
/// written and flushed, or quietly as soon as `output` is a broken pipe. The
/// sending thread is not joined: input may be a terminal that never ends, and
/// the process exits right after.
///
/// # Errors
///
/// [`Error::Io`] when the connection fails (reset by the server) or the output
/// cannot be written for any reason but a broken pipe. `peer` names the server.
///
/// ```
/// # use std::io::{Read, Write};
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
/// upecho::client::pipe::pipe(&b"hi\n"[..], &mut out, stream, "tcp test").unwrap();
/// assert_eq!(out, b"HI\n");
/// ```
pub fn pipe<S, I, O>(input: I, mut output: O, stream: S, peer: &str) -> Result<Finish, Error>
where
    S: Duplex,
    I: Read + Send + 'static,
    O: Write,
{
    let mut upstream = stream.try_clone().map_err(|cause| Error::Io {
        context: format!("cannot use connection to {peer}"),
        cause,
    })?;
    thread::spawn(move || {
        let mut input = input;
        // A failed send means the server went away; the receiving side below
        // sees that and reports it, so the error is not reported twice.
        let _ = io::copy(&mut input, &mut upstream);
        let _ = upstream.shutdown_write();
    });

    let mut downstream = stream;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match downstream.read(&mut buf) {
            Ok(0) => return Ok(Finish::Done),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(cause) => {
                return Err(Error::Io {
                    context: format!("connection to {peer} failed"),
                    cause,
                });
            }
        };
        match output.write_all(&buf[..n]).and_then(|()| output.flush()) {
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
