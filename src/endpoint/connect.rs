//! Connecting clients: a TCP, UDP or Unix stream socket to the [`Target`] the
//! user named (`connect`, `bench`), with the options a client wants (no
//! Nagle, a connected UDP socket that hears only its server).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::addr::{HostPort, UnixPath};
use crate::Error;

/// Connects to a TCP server, trying each resolved address in turn (as `nc` does)
/// with `timeout` bounding each attempt; `None` leaves the connect unbounded
/// (the kernel gives up after its SYN retries, about two minutes by default).
///
/// # Errors
///
/// [`Error::Resolve`], or [`Error::Connect`] carrying the last attempt's cause
/// (`connection refused`, `connection timed out`, ...).
pub fn connect_tcp(addr: &HostPort, timeout: Option<Duration>) -> Result<TcpStream, Error> {
    let mut last = io::Error::other("no addresses to try");
    for target in addr.resolve("tcp")? {
        let attempt = match timeout {
            Some(limit) => TcpStream::connect_timeout(&target, limit),
            None => TcpStream::connect(target),
        };
        match attempt {
            Ok(stream) => {
                // Replies are small and interactive: do not let Nagle hold them.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => last = err,
        }
    }
    Err(Error::Connect {
        endpoint: format!("tcp {addr}"),
        cause: last,
    })
}

/// Connects to a Unix stream socket (a path, or `@name` for an abstract one).
///
/// # Errors
///
/// [`Error::Connect`] naming the path: `no such file or directory`,
/// `connection refused` (a stale socket file), ...
pub fn connect_unix(path: &UnixPath) -> Result<UnixStream, Error> {
    let fail = |cause| Error::Connect {
        endpoint: format!("unix {path}"),
        cause,
    };
    let addr = path.std_addr().map_err(fail)?;
    UnixStream::connect_addr(&addr).map_err(fail)
}

/// A UDP socket connected to `addr` (the first address it resolves to):
/// it receives only that server's datagrams, and learns at once, as
/// `connection refused`, when nothing listens there.
///
/// # Errors
///
/// [`Error::Resolve`], or [`Error::Connect`] naming the address.
pub fn connect_udp(addr: &HostPort) -> Result<UdpSocket, Error> {
    let target = addr.resolve("udp")?[0];
    let fail = |cause| Error::Connect {
        endpoint: format!("udp {addr}"),
        cause,
    };
    let local: SocketAddr = if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(fail)?;
    socket.connect(target).map_err(fail)?;
    Ok(socket)
}

/// Where a client connects: the validated target of `connect` (and later
/// `bench`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A TCP server, `host:port`.
    Tcp(HostPort),
    /// A UDP server, `host:port`.
    Udp(HostPort),
    /// A Unix stream socket.
    Unix(UnixPath),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "tcp {addr}"),
            Target::Udp(addr) => write!(f, "udp {addr}"),
            Target::Unix(path) => write!(f, "unix {path}"),
        }
    }
}
