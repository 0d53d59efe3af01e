//! Endpoints: what the user asks to listen on ([`Listen`]), the bound
//! sockets ([`Listener`]) and how they are shown ([`Endpoint`],
//! `tcp 127.0.0.1:8080`, `unix /run/upecho.sock`). Everything upstream (cli)
//! hands us text; everything downstream (server, client) gets a ready socket
//! from one of the children:
//!
//! - `addr`: `host:port` and Unix socket names, parsed and shown;
//! - `bind`: listening sockets, stale Unix socket files (under `PATH.lock`),
//!   the descriptor limit;
//! - `connect`: client sockets to a [`Target`];
//! - `activation`: sockets a service manager hands over (`LISTEN_FDS`), and
//!   `READY=1` to `NOTIFY_SOCKET` (a path or an abstract name).
//!
//! Adding a kind of listener touches one place per layer: a variant of
//! [`Listen`] (what the user asked for), of [`Listener`] (the bound socket)
//! and of [`Endpoint`] (how it is shown), its arm in [`bind()`], and its arm in
//! the server's `accepting::start` (`src/server/accepting.rs`), the one place
//! each kind of socket gets its serving loop.

mod activation;
mod addr;
mod bind;
mod connect;
mod ws_url;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;

pub use activation::{inherited, notify_ready};
pub use addr::{HostPort, UnixPath};
pub(crate) use bind::remove_if_stale;
pub use bind::{LOCK_PATIENCE, bind, bind_tcp, bind_udp, bind_unix, lock_beside, raise_fd_limit};
pub use connect::{Target, connect_tcp, connect_udp, connect_unix};
pub use ws_url::WsUrl;

/// What one listener flag asks for, before anything is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Listen {
    /// `--tcp ADDR`.
    Tcp(HostPort),
    /// `--udp ADDR`.
    Udp(HostPort),
    /// `--unix PATH`.
    Unix(UnixPath),
    /// TLS over TCP (`--tls`).
    Tls(HostPort),
    /// HTTP/1.1 and WebSocket over TCP (`--ws`).
    Ws(HostPort),
    /// HTTP/1.1 and WebSocket over TLS (`--wss`).
    Wss(HostPort),
}

/// A bound listening socket, ready to be served: made by [`bind()`], or
/// taken over by [`inherited`] (socket activation) and handed to
/// `Server::bind_with_inherited` or `Server::from_listeners`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Listener {
    /// A listening TCP socket.
    Tcp(TcpListener),
    /// A bound UDP socket.
    Udp(UdpSocket),
    /// A listening Unix stream socket.
    Unix(UnixListener),
    /// A TCP socket served with TLS.
    Tls(TcpListener),
    /// A TCP socket served with HTTP and WebSocket.
    Ws(TcpListener),
    /// A TCP socket served with HTTP and WebSocket over TLS.
    Wss(TcpListener),
}

impl Listener {
    /// Where it listens, as the readiness line shows it.
    ///
    /// # Errors
    ///
    /// When the socket's address cannot be read.
    pub fn endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Tcp(socket) => socket.local_addr().map(Endpoint::Tcp),
            Listener::Tls(socket) => socket.local_addr().map(Endpoint::Tls),
            Listener::Ws(socket) => socket.local_addr().map(Endpoint::Ws),
            Listener::Wss(socket) => socket.local_addr().map(Endpoint::Wss),
            Listener::Udp(socket) => socket.local_addr().map(Endpoint::Udp),
            Listener::Unix(socket) => {
                let addr = socket.local_addr()?;
                let path = match (addr.as_pathname(), unix_abstract_name(&addr)) {
                    (Some(path), _) => UnixPath::from(path),
                    (None, Some(name)) => {
                        let mut text = b"@".to_vec();
                        text.extend_from_slice(name);
                        UnixPath::from(std::ffi::OsStr::from_bytes(&text))
                    }
                    (None, None) => UnixPath::from("(unnamed)"),
                };
                Ok(Endpoint::Unix(path))
            }
        }
    }

    /// Another descriptor for the same socket, for another thread.
    ///
    /// # Errors
    ///
    /// When the descriptor cannot be duplicated.
    pub fn try_clone(&self) -> io::Result<Listener> {
        Ok(match self {
            Listener::Tcp(socket) => Listener::Tcp(socket.try_clone()?),
            Listener::Tls(socket) => Listener::Tls(socket.try_clone()?),
            Listener::Ws(socket) => Listener::Ws(socket.try_clone()?),
            Listener::Wss(socket) => Listener::Wss(socket.try_clone()?),
            Listener::Udp(socket) => Listener::Udp(socket.try_clone()?),
            Listener::Unix(socket) => Listener::Unix(socket.try_clone()?),
        })
    }

    /// Makes the socket non-blocking, as the async runtime needs it.
    ///
    /// # Errors
    ///
    /// When the socket refuses.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(socket)
            | Listener::Tls(socket)
            | Listener::Ws(socket)
            | Listener::Wss(socket) => socket.set_nonblocking(true),
            Listener::Udp(socket) => socket.set_nonblocking(true),
            Listener::Unix(socket) => socket.set_nonblocking(true),
        }
    }
}

/// The abstract name of a Unix socket address, if it has one.
fn unix_abstract_name(addr: &std::os::unix::net::SocketAddr) -> Option<&[u8]> {
    use std::os::linux::net::SocketAddrExt;
    addr.as_abstract_name()
}

/// A bound or connected endpoint as the contract prints it:
/// `tcp 127.0.0.1:8080`, `unix /run/upecho.sock`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A UDP socket address.
    Udp(SocketAddr),
    /// A Unix stream socket.
    Unix(UnixPath),
    /// TLS over TCP (`--tls`), with its real port.
    Tls(SocketAddr),
    /// HTTP and WebSocket over TCP (`--ws`).
    Ws(SocketAddr),
    /// HTTP and WebSocket over TLS (`--wss`).
    Wss(SocketAddr),
}

impl Endpoint {
    /// Returns true if and only if its connections begin with a TLS
    /// handshake (`tls` and `wss`).
    pub fn is_tls(&self) -> bool {
        matches!(self, Endpoint::Tls(_) | Endpoint::Wss(_))
    }

    /// Returns true if and only if it serves HTTP and WebSocket (`ws` and
    /// `wss`).
    pub fn is_websocket(&self) -> bool {
        matches!(self, Endpoint::Ws(_) | Endpoint::Wss(_))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp {addr}"),
            Endpoint::Udp(addr) => write!(f, "udp {addr}"),
            Endpoint::Unix(path) => write!(f, "unix {path}"),
            Endpoint::Tls(addr) => write!(f, "tls {addr}"),
            Endpoint::Ws(addr) => write!(f, "ws {addr}"),
            Endpoint::Wss(addr) => write!(f, "wss {addr}"),
        }
    }
}

/// The largest UDP payload over IPv4 (65,535 minus the IP and UDP headers):
/// the largest `bench --udp --size`, and the largest reply a server sends
/// whole; a longer one is dropped, never truncated on any path.
pub const MAX_DATAGRAM: usize = 65_507;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_endpoints_show_their_path() {
        let file = Endpoint::Unix(UnixPath::from("/run/upecho.sock"));
        let named = Endpoint::Unix(UnixPath::from("@upecho"));
        assert_eq!(file.to_string(), "unix /run/upecho.sock");
        assert_eq!(named.to_string(), "unix @upecho");
    }

    #[test]
    fn endpoint_display_matches_the_readiness_line() {
        let v4 = Endpoint::Tcp("127.0.0.1:43121".parse().unwrap());
        let v6 = Endpoint::Tcp("[::1]:9000".parse().unwrap());
        assert_eq!(v4.to_string(), "tcp 127.0.0.1:43121");
        assert_eq!(v6.to_string(), "tcp [::1]:9000");
    }

    #[test]
    fn unix_endpoints_and_targets_never_show_a_raw_control_character() {
        let path = UnixPath::from("/tmp/x\n\x1b[31m");
        assert_eq!(
            Endpoint::Unix(path.clone()).to_string(),
            "unix /tmp/x\\n\\x1b[31m"
        );
        assert_eq!(Target::Unix(path).to_string(), "unix /tmp/x\\n\\x1b[31m");
    }
}
