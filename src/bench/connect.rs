//! The set-up phase: opens every connection (or, over UDP, every connected
//! socket) before the warm-up starts, a few at a time, so that the measured
//! window sees all of them and none is still waiting for the kernel's SYN
//! retry timer. This is also the one place that knows the kinds of socket a
//! run can use: [`ByteStream`] lets the stream traffic patterns run over TCP
//! and Unix sockets alike, and [`open`] dispatches on the [`Peer`] once, so
//! nothing per message does.

use std::cell::Cell;
use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream, UnixStream, tcp, unix};
use tokio::task::JoinSet;

use super::tls::{Half, TlsConnection};
use super::websocket::{self, WsConnection, WsDial};
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

/// `EADDRNOTAVAIL` on Linux: at `connect`, no local port is left for the
/// address pair.
const EADDRNOTAVAIL: i32 = 99;

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

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> ByteStream for WsConnection<S> {
    type Reader<'a> = websocket::Half<'a, S>;
    type Writer<'a> = websocket::Half<'a, S>;

    /// Never at once: a message goes through tungstenite, whose frames the
    /// loop's own write sends.
    fn try_write(&self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn split(&mut self) -> (websocket::Half<'_, S>, websocket::Half<'_, S>) {
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

/// Where a run's connections go, resolved once before any is opened, and
/// how each is opened ([`Dial`]).
#[derive(Clone, Debug)]
pub enum Peer {
    /// A TCP server.
    Tcp(TcpDial),
    /// A Unix stream socket.
    Unix(UnixDial),
    /// A UDP server, and the local addresses to send from.
    Udp(SocketAddr, Sources),
    /// A TLS server, and how to talk to it.
    Tls(TlsDial),
    /// A WebSocket server over TCP (`ws://`).
    Ws(WsDial<TcpDial>),
    /// A WebSocket server over TLS (`wss://`).
    Wss(WsDial<TlsDial>),
}

impl Peer {
    /// Resolves `target` (the first address a host name resolves to, as the
    /// server binds); over TLS with `tls`; connecting from `sources` in turn.
    ///
    /// # Errors
    ///
    /// [`Error::Resolve`] when the host name does not resolve;
    /// [`Error::InvalidConfig`] for a source of the other IP version.
    pub fn resolve(
        target: &Target,
        tls: Option<&crate::tls::client::ClientTls>,
        sources: &[IpAddr],
        websocket: Option<(&crate::endpoint::WsUrl, bool)>,
    ) -> Result<Peer, Error> {
        let from = |addr: SocketAddr| Sources::new(sources, addr);
        if let (Target::Tcp(host), Some(tls)) = (target, tls) {
            let addr = host.resolve("tcp")?[0];
            let dial = TlsDial {
                tcp: TcpDial {
                    addr,
                    from: from(addr)?,
                },
                config: tls.build()?,
                name: tls.server_name(host.host())?,
            };
            return Ok(match websocket {
                Some((url, text)) => Peer::Wss(WsDial {
                    inner: dial,
                    url: url.to_string().into(),
                    text,
                }),
                None => Peer::Tls(dial),
            });
        }
        if let (Target::Tcp(host), Some((url, text))) = (target, websocket) {
            let addr = host.resolve("tcp")?[0];
            let inner = TcpDial {
                addr,
                from: from(addr)?,
            };
            let url = url.to_string().into();
            return Ok(Peer::Ws(WsDial { inner, url, text }));
        }
        Ok(match target {
            Target::Tcp(addr) => {
                let addr = addr.resolve("tcp")?[0];
                Peer::Tcp(TcpDial {
                    addr,
                    from: from(addr)?,
                })
            }
            Target::Udp(addr) => {
                let addr = addr.resolve("udp")?[0];
                Peer::Udp(addr, from(addr)?)
            }
            Target::Unix(path) => Peer::Unix(UnixDial(match path.abstract_name() {
                Some(name) => {
                    let mut bytes = vec![0u8];
                    bytes.extend_from_slice(name);
                    PathBuf::from(OsString::from_vec(bytes))
                }
                None => path.as_path().to_path_buf(),
            })),
        })
    }
}

/// The local addresses connections are made from (`--source`), in turn;
/// none for the kernel's choice.
///
/// Each generator thread has its own copy, and so its own turn: the
/// addresses are used evenly within a thread, and so overall.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    addrs: Arc<[IpAddr]>,
    next: Cell<usize>,
}

impl Sources {
    /// `addrs` for connections to `peer`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an address of the other IP version.
    fn new(addrs: &[IpAddr], peer: SocketAddr) -> Result<Sources, Error> {
        let version = |ip: IpAddr| if ip.is_ipv4() { 4 } else { 6 };
        if let Some(other) = addrs.iter().find(|ip| ip.is_ipv4() != peer.is_ipv4()) {
            return Err(Error::InvalidConfig(format!(
                "--source {other} is an IPv{} address, but the server {peer} is IPv{}",
                version(*other),
                version(peer.ip())
            )));
        }
        Ok(Sources {
            addrs: addrs.into(),
            next: Cell::new(0),
        })
    }

    /// The address the next connection is made from.
    fn next(&self) -> Option<IpAddr> {
        let turn = self.next.get();
        self.next.set(turn.wrapping_add(1));
        self.addrs.get(turn % self.addrs.len().max(1)).copied()
    }
}

/// Opens one connection of a kind: what the set-up phase and connect mode
/// (`churn`) share, so a connection is made the same way in both.
pub trait Dial {
    /// What it opens.
    type Stream: ByteStream + Send;

    /// Starts opening one connection (from the next source address); the
    /// future owns what it needs, so it can run as a task of its own.
    fn dial(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static;
}

/// A TCP server, and the local addresses to connect from.
#[derive(Clone, Debug)]
pub struct TcpDial {
    /// Its address.
    pub addr: SocketAddr,
    /// Where connections come from.
    pub from: Sources,
}

impl Dial for TcpDial {
    type Stream = TcpStream;

    fn dial(&self) -> impl Future<Output = io::Result<TcpStream>> + Send + 'static {
        tcp(self.addr, self.from.next())
    }
}

/// A Unix stream socket, as tokio takes it: a path, or an abstract name
/// after a NUL byte.
#[derive(Clone, Debug)]
pub struct UnixDial(pub PathBuf);

impl Dial for UnixDial {
    type Stream = UnixStream;

    fn dial(&self) -> impl Future<Output = io::Result<UnixStream>> + Send + 'static {
        UnixStream::connect(self.0.clone())
    }
}

/// A TLS server, and how to talk to it.
#[derive(Clone, Debug)]
pub struct TlsDial {
    /// The TCP connection under it.
    pub tcp: TcpDial,
    /// The client configuration (no resumption).
    pub config: Arc<rustls::ClientConfig>,
    /// The name asked for and verified.
    pub name: rustls_pki_types::ServerName<'static>,
}

impl Dial for TlsDial {
    type Stream = TlsConnection;

    fn dial(&self) -> impl Future<Output = io::Result<TlsConnection>> + Send + 'static {
        let connecting = self.tcp.dial();
        let (config, name) = (Arc::clone(&self.config), self.name.clone());
        async move { TlsConnection::handshake(connecting.await?, config, name).await }
    }
}

impl<D> Dial for WsDial<D>
where
    D: Dial,
    D::Stream: AsyncRead + AsyncWrite + Unpin + Send,
{
    type Stream = WsConnection<D::Stream>;

    fn dial(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static {
        let connecting = self.inner.dial();
        let (url, text) = (std::sync::Arc::clone(&self.url), self.text);
        async move { WsConnection::handshake(connecting.await?, &url, text).await }
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
    /// WebSocket connections over TCP, through the handshake.
    Ws(Vec<WsConnection<TcpStream>>),
    /// WebSocket connections over TLS, through both handshakes.
    Wss(Vec<WsConnection<TlsConnection>>),
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
        if let Some(out) = out_of_ports(&self.cause) {
            cause = out;
        } else if self.cause.raw_os_error() == Some(EMFILE) {
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
        Peer::Tcp(dial) => Opened::Tcp(open_all(count, || dial.dial()).await?),
        Peer::Unix(dial) => Opened::Unix(open_all(count, || dial.dial()).await?),
        Peer::Udp(addr, from) => {
            let addr = *addr;
            Opened::Udp(
                open_all(count, || {
                    let source = from.next();
                    async move { udp(addr, source) }
                })
                .await?,
            )
        }
        Peer::Tls(dial) => Opened::Tls(open_all(count, || dial.dial()).await?),
        Peer::Ws(dial) => Opened::Ws(open_all(count, || dial.dial()).await?),
        Peer::Wss(dial) => Opened::Wss(open_all(count, || dial.dial()).await?),
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

/// Opens one TCP connection, from `source` if given, with Nagle's
/// algorithm off (a pingpong message must not wait for the previous one's
/// ACK).
///
/// From a source address, the socket is bound with
/// `IP_BIND_ADDRESS_NO_PORT`: a plain bind to port 0 would pick the local
/// port at once, before the destination is known, so each port could serve
/// one connection per source address whatever the server; with the option
/// the kernel picks it at `connect`, by the whole address pair, as it does
/// for a connection from no chosen address, and several sources multiply
/// the ports available.
async fn tcp(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect(target).await?,
        Some(ip) => {
            let socket = if target.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            setsockopt(&socket, sockopt::IpBindAddressNoPort, &true).map_err(io::Error::from)?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|err| cannot_use_source(ip, &err))?;
            socket.connect(target).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A UDP socket on an ephemeral port (of `source`, if given), connected to
/// `target` (so it receives only the server's datagrams, and `connection
/// refused` when nothing listens), non-blocking and registered with the
/// runtime.
fn udp(target: SocketAddr, source: Option<IpAddr>) -> io::Result<DatagramSocket> {
    let any = if target.is_ipv6() {
        IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED)
    };
    let ip = source.unwrap_or(any);
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
        .map_err(|err| cannot_use_source(ip, &err))?;
    socket.connect(target)?;
    socket.set_nonblocking(true)?;
    register(socket)
}

/// A source address that cannot be bound (not one of this machine's): said
/// as such, and no longer taken for running out of ports.
fn cannot_use_source(ip: IpAddr, err: &io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("cannot bind to --source {ip}: {}", crate::error::plain(err)),
    )
}

/// Says so when `err` is the kernel's "no local port left"
/// (`EADDRNOTAVAIL` at connect), with the range it had and what widens it.
pub fn out_of_ports(err: &io::Error) -> Option<String> {
    (err.raw_os_error() == Some(EADDRNOTAVAIL)).then(|| {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .map(|range| range.split_whitespace().collect::<Vec<_>>().join("-"))
            .unwrap_or_else(|_| "unknown".into());
        format!(
            "out of local ports ({}): net.ipv4.ip_local_port_range is {range}; \
             add --source addresses or widen the range",
            crate::error::plain(err)
        )
    })
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
