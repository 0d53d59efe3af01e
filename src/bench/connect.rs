//! The set-up phase: opens every connection (or, over UDP, every connected
//! socket) before the warm-up starts, a few at a time, so that the measured
//! window sees all of them and none is still waiting for the kernel's SYN
//! retry timer. This is also the one place that knows the kinds of socket a
//! run can use: [`ByteStream`] lets the stream traffic patterns run over TCP
//! and Unix sockets alike, and [`open`] dispatches on the [`Peer`] once, so
//! nothing per message does.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream, tcp, unix};
use tokio::task::JoinSet;

use super::tls::{Half, TlsConnection};
use crate::Error;
use crate::endpoint::Target;

/// Connections being opened at once. A burst of thousands of SYNs overflows
/// small backlogs (the tutorial's `listen(5)`, or a busy server's), and each
/// dropped SYN costs a 1 s retry; a handful in flight keeps the kernel's queues
/// short while still opening thousands per second on loopback.
pub const AT_ONCE: usize = 32;

/// How long one connection may take to open before the run gives up: longer
/// than two SYN retries (1 s, then 3 s), far shorter than the kernel's 2 min.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `EMFILE` on Linux: this process has as many descriptors open as its limit.
const EMFILE: i32 = 24;

/// A connected byte stream the stream traffic patterns (pingpong and stream)
/// can drive: a TCP or a Unix stream socket.
///
/// Why a trait with the two operations they use beyond `AsyncRead` and
/// `AsyncWrite`, rather than `Box<dyn ...>` or an enum: the connection tasks
/// are generic over it, so each kind gets its own copy of the hot loop, and
/// TCP's is exactly the code it was before Unix sockets existed (no dynamic
/// dispatch, no match per read or write).
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + 'static {
    /// The read half [`ByteStream::split`] lends.
    type Reader<'a>: AsyncRead + Unpin
    where
        Self: 'a;
    /// The write half [`ByteStream::split`] lends.
    type Writer<'a>: AsyncWrite + Unpin
    where
        Self: 'a;

    /// Writes what the socket buffer takes at once, without waiting; a full
    /// buffer is `WouldBlock`.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;

    /// Borrowed halves, so that one task can read and write at once without
    /// the `Arc` and lock of an owned split.
    fn split(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);
}

impl ByteStream for TcpStream {
    type Reader<'a> = tcp::ReadHalf<'a>;
    type Writer<'a> = tcp::WriteHalf<'a>;

    #[inline]
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    #[inline]
    fn split(&mut self) -> (tcp::ReadHalf<'_>, tcp::WriteHalf<'_>) {
        TcpStream::split(self)
    }
}

impl ByteStream for UnixStream {
    type Reader<'a> = unix::ReadHalf<'a>;
    type Writer<'a> = unix::WriteHalf<'a>;

    #[inline]
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        UnixStream::try_write(self, buf)
    }

    #[inline]
    fn split(&mut self) -> (unix::ReadHalf<'_>, unix::WriteHalf<'_>) {
        UnixStream::split(self)
    }
}

impl ByteStream for TlsConnection {
    type Reader<'a> = Half<'a>;
    type Writer<'a> = Half<'a>;

    /// Never at once: a TLS write goes through rustls, whose records the
    /// loop's own write sends.
    fn try_write(&self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn split(&mut self) -> (Half<'_>, Half<'_>) {
        self.halves()
    }
}

/// A connected UDP socket, registered with the runtime.
///
/// Why `AsyncFd` and not tokio's `UdpSocket`: the datagram pingpong knows when
/// the socket has nothing more for it (the reply it waited for came, so
/// whatever else is queued is stale), and `AsyncFd` lets it say so
/// ([`AsyncFdReadyGuard::clear_ready`]); tokio's socket would find out with one
/// more `recv(2)` per round trip that only says "would block".
///
/// [`AsyncFdReadyGuard::clear_ready`]: tokio::io::unix::AsyncFdReadyGuard::clear_ready
pub type DatagramSocket = AsyncFd<std::net::UdpSocket>;

/// Where a run's connections go, resolved once before any is opened.
#[derive(Clone, Debug)]
pub enum Peer {
    /// A TCP server.
    Tcp(SocketAddr),
    /// A Unix stream socket, as tokio takes it: a path, or an abstract name
    /// after a NUL byte.
    Unix(PathBuf),
    /// A UDP server.
    Udp(SocketAddr),
    /// A TLS server, and how to talk to it.
    Tls {
        /// Its address.
        addr: SocketAddr,
        /// The client configuration (no resumption).
        config: std::sync::Arc<rustls::ClientConfig>,
        /// The name asked for and verified.
        name: rustls_pki_types::ServerName<'static>,
    },
}

impl Peer {
    /// Resolves `target` (the first address a host name resolves to, as the
    /// server binds); over TLS with `tls`.
    ///
    /// # Errors
    ///
    /// [`Error::Resolve`] when the host name does not resolve.
    pub fn resolve(
        target: &Target,
        tls: Option<&crate::tls::client::ClientTls>,
    ) -> Result<Peer, Error> {
        if let (Target::Tcp(host), Some(tls)) = (target, tls) {
            return Ok(Peer::Tls {
                addr: host.resolve("tcp")?[0],
                config: tls.build()?,
                name: tls.server_name(host.host())?,
            });
        }
        Ok(match target {
            Target::Tcp(addr) => Peer::Tcp(addr.resolve("tcp")?[0]),
            Target::Udp(addr) => Peer::Udp(addr.resolve("udp")?[0]),
            Target::Unix(path) => Peer::Unix(match path.abstract_name() {
                Some(name) => {
                    let mut bytes = vec![0u8];
                    bytes.extend_from_slice(name);
                    PathBuf::from(OsString::from_vec(bytes))
                }
                None => path.as_path().to_path_buf(),
            }),
        })
    }
}

/// Every connection of a run, open, of the one kind the target asked for.
#[derive(Debug)]
pub enum Opened {
    /// TCP connections, Nagle's algorithm off.
    Tcp(Vec<TcpStream>),
    /// Unix stream connections.
    Unix(Vec<UnixStream>),
    /// Connected UDP sockets.
    Udp(Vec<DatagramSocket>),
    /// TLS connections, through the handshake.
    Tls(Vec<TlsConnection>),
}

/// Why the set-up phase stopped: the first connection that could not be
/// opened, and how many had been.
#[derive(Debug)]
pub struct SetupFailure {
    /// Connections opened before the failure.
    pub opened: usize,
    /// Why the next one could not be.
    pub cause: io::Error,
}

impl SetupFailure {
    /// The contract's error, naming the endpoint `target` (`tcp ADDR`, `tls ADDR`,
    /// `unix PATH`, `udp ADDR`) and, when the cause is the descriptor limit, saying so and
    /// how to raise it.
    pub fn into_error(self, target: &str, wanted: usize) -> Error {
        let mut cause = crate::error::plain(&self.cause);
        if self.cause.raw_os_error() == Some(EMFILE) {
            let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
            cause = format!(
                "{cause}: the descriptor limit ({limit}) is too low for {wanted} connections; \
                 raise it with 'ulimit -n'"
            );
        }
        if self.opened > 0 {
            cause = format!("{cause} (after opening {} of {wanted})", self.opened);
        }
        Error::Connect {
            endpoint: target.to_string(),
            cause: io::Error::new(self.cause.kind(), cause),
        }
    }
}

/// Opens `count` connections to `peer`, [`AT_ONCE`] at a time, and returns
/// them once all are open.
///
/// # Errors
///
/// At the first connection that cannot be opened (refused, timed out, out of
/// descriptors), with the count opened so far; the others are closed.
///
/// # Cancel safety
///
/// Dropping the future closes every connection opened so far.
pub async fn open(peer: &Peer, count: usize) -> Result<Opened, SetupFailure> {
    Ok(match peer {
        Peer::Tcp(addr) => {
            let addr = *addr;
            Opened::Tcp(open_all(count, move || tcp(addr)).await?)
        }
        Peer::Unix(path) => Opened::Unix(
            open_all(count, || {
                let path = path.clone();
                async move { UnixStream::connect(path).await }
            })
            .await?,
        ),
        Peer::Udp(addr) => {
            let addr = *addr;
            Opened::Udp(open_all(count, move || async move { udp(addr) }).await?)
        }
        Peer::Tls { addr, config, name } => Opened::Tls(
            open_all(count, || {
                let (addr, config, name) = (*addr, std::sync::Arc::clone(config), name.clone());
                async move {
                    let stream = tcp(addr).await?;
                    TlsConnection::handshake(stream, config, name).await
                }
            })
            .await?,
        ),
    })
}

/// Runs `open` `count` times, [`AT_ONCE`] at a time, each bounded by
/// [`CONNECT_TIMEOUT`], and returns what they opened once all succeeded.
///
/// # Errors
///
/// At the first that fails, with the count opened so far; the others are
/// closed.
///
/// # Cancel safety
///
/// Dropping the future closes every connection opened so far.
pub async fn open_all<S, F>(count: usize, open: impl Fn() -> F) -> Result<Vec<S>, SetupFailure>
where
    S: Send + 'static,
    F: Future<Output = io::Result<S>> + Send + 'static,
{
    let mut opened = Vec::with_capacity(count);
    let mut pending = JoinSet::new();
    let mut started = 0;
    while opened.len() < count {
        while started < count && pending.len() < AT_ONCE {
            pending.spawn(within_timeout(open()));
            started += 1;
        }
        let next = match pending.join_next().await {
            Some(Ok(next)) => next,
            // A connect task cannot panic; if the runtime still lost one,
            // say so rather than wait forever.
            Some(Err(lost)) => Err(io::Error::other(lost.to_string())),
            None => Err(io::Error::other("no connection attempt left")),
        };
        match next {
            Ok(socket) => opened.push(socket),
            Err(cause) => {
                return Err(SetupFailure {
                    opened: opened.len(),
                    cause,
                });
            }
        }
    }
    Ok(opened)
}

/// `connecting`, or a timeout error after [`CONNECT_TIMEOUT`].
async fn within_timeout<S>(connecting: impl Future<Output = io::Result<S>>) -> io::Result<S> {
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()),
            )
        })?
}

/// Opens one TCP connection with Nagle's algorithm off (a pingpong message
/// must not wait for the previous one's ACK).
async fn tcp(target: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A UDP socket on an ephemeral port, connected to `target` (so it receives
/// only the server's datagrams, and `connection refused` when nothing
/// listens), non-blocking and registered with the runtime.
fn udp(target: SocketAddr) -> io::Result<DatagramSocket> {
    let local: SocketAddr = if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(local)?;
    socket.connect(target)?;
    socket.set_nonblocking(true)?;
    register(socket)
}

/// Registers a non-blocking UDP socket with the runtime.
///
/// Why the deprecated `AsyncFd::new`: tokio deprecated it because an
/// arbitrary `AsRawFd` type may close or change its descriptor while it is
/// registered; its replacement, `AsyncFd::register`, is `unsafe` to call for
/// that reason. A `std::net::UdpSocket` owns its descriptor, and the
/// `AsyncFd` owns the socket and deregisters it before closing it, so the
/// safe constructor is sound here.
#[allow(deprecated)]
pub(super) fn register(socket: std::net::UdpSocket) -> io::Result<DatagramSocket> {
    AsyncFd::new(socket)
}
