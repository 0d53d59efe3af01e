//! The client side of `upecho connect`: [`run`] (the `session` module)
//! connects as a [`ConnectConfig`] says and drives the connection either
//! from a terminal ([`repl`], with `hangup` noticing a server that closes
//! while the prompt waits, and `plain` reading lines where the line editor
//! could not be woken from its wait), from stdin/stdout ([`pipe`]), or datagram by
//! datagram ([`udp`], lines bounded by the largest datagram); over TLS
//! and WebSocket through the relay of `relay`. The loops are
//! generic over their reader and writer, so tests can drive them in memory. Ctrl-C reaches them as an [`Interrupt`] and
//! comes back as [`Finish::Interrupted`]: nothing in the library ends the
//! process.

mod config;
mod hangup;
mod hex;
mod interrupt;
pub mod pipe;
mod plain;
mod relay;
pub mod repl;
mod session;
mod tls;
pub mod udp;

pub use config::ConnectConfig;
pub use interrupt::{Interrupt, Registration};
pub use session::run;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

/// A connected byte stream the client can split into a sending and a receiving
/// side, and half-close.
pub trait Duplex: Read + Write + Send + Sized + 'static {
    /// Another handle to the same connection, for the sending thread.
    ///
    /// # Errors
    ///
    /// When the operating system cannot duplicate the descriptor.
    fn try_clone(&self) -> io::Result<Self>;

    /// Shuts down the sending direction, so the server sees EOF.
    ///
    /// # Errors
    ///
    /// When the connection is already gone.
    fn shutdown_write(&self) -> io::Result<()>;

    /// Shuts down both directions, so that a thread blocked reading or
    /// writing any handle of the connection returns at once.
    ///
    /// # Errors
    ///
    /// When the connection is already gone.
    fn shutdown_both(&self) -> io::Result<()>;
}

impl Duplex for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn shutdown_both(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Both)
    }
}

impl Duplex for std::os::unix::net::UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        std::os::unix::net::UnixStream::try_clone(self)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn shutdown_both(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Both)
    }
}

/// How a client session ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Input ended (EOF or Ctrl-D) and the exchange completed: exit status 0.
    Done,
    /// The user pressed Ctrl-C: exit status 130.
    Interrupted,
}

/// Returns true if and only if `err` means the reader of our output went away
/// (`upecho connect | head`), which ends the client quietly.
pub fn is_broken_pipe(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::BrokenPipe
}
