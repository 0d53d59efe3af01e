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
/// With `source` the local end is bound to it first (`connect --source`), and
/// only addresses of its family are tried.
///
/// # Errors
///
/// [`Error::Resolve`], or [`Error::Connect`] carrying the last attempt's cause
/// (`connection refused`, `connection timed out`, `cannot bind ADDR: ...`).
pub fn connect_tcp(
    addr: &HostPort,
    timeout: Option<Duration>,
    source: Option<SocketAddr>,
) -> Result<TcpStream, Error> {
    let mut last = io::Error::other(match source {
        Some(source) => format!("no address of the family of {source} to try"),
        None => "no addresses to try".to_string(),
    });
    let targets = addr.resolve("tcp")?;
    let same_family = |target: &SocketAddr| source.is_none_or(|s| s.is_ipv6() == target.is_ipv6());
    for target in targets.into_iter().filter(same_family) {
        let attempt = match source {
            Some(source) => connect_from(source, target, timeout),
            None => match timeout {
                Some(limit) => TcpStream::connect_timeout(&target, limit),
                None => TcpStream::connect(target),
            },
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

/// A TCP connection to `target` from the local address `source`.
fn connect_from(
    source: SocketAddr,
    target: SocketAddr,
    timeout: Option<Duration>,
) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket
        .bind(&source.into())
        .map_err(|err| cannot_bind(source, &err))?;
    match timeout {
        Some(limit) => socket.connect_timeout(&target.into(), limit)?,
        None => socket.connect(&target.into())?,
    }
    Ok(socket.into())
}

/// The error for a `--source` address that cannot be bound, naming it.
fn cannot_bind(source: SocketAddr, err: &io::Error) -> io::Error {
    let why = crate::error::plain(err);
    io::Error::new(err.kind(), format!("cannot bind {source}: {why}"))
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
/// `connection refused`, when nothing listens there. Bound to `source` if
/// given (`connect --source`), else to any address of the target's family.
///
/// # Errors
///
/// [`Error::Resolve`], or [`Error::Connect`] naming the address.
pub fn connect_udp(addr: &HostPort, source: Option<SocketAddr>) -> Result<UdpSocket, Error> {
    let targets = addr.resolve("udp")?;
    let fail = |cause| Error::Connect {
        endpoint: format!("udp {addr}"),
        cause,
    };
    let same_family = |target: &&SocketAddr| source.is_none_or(|s| s.is_ipv6() == target.is_ipv6());
    let Some(&target) = targets.iter().find(same_family) else {
        let source = source.map(|s| s.to_string()).unwrap_or_default();
        return Err(fail(io::Error::other(format!(
            "no address of the family of {source} to try"
        ))));
    };
    let local: SocketAddr = source.unwrap_or(if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    });
    let socket = UdpSocket::bind(local).map_err(|err| fail(cannot_bind(local, &err)))?;
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

impl Target {
    /// How the target is named when reached over TLS (`tls 127.0.0.1:8443`);
    /// as [`Display`](fmt::Display) without it.
    pub fn named(&self, tls: bool) -> String {
        match self {
            Target::Tcp(addr) if tls => format!("tls {addr}"),
            target => target.to_string(),
        }
    }
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
