//! Addresses: parsing `host:port` and Unix socket paths, showing them as the
//! contract prints them (`tcp 127.0.0.1:8080`, `tcp [::1]:9000`,
//! `unix /run/upecho.sock`), and the one place sockets are bound, connected
//! or taken over from a service manager ([`inherited`]). Everything upstream
//! (cli) hands us text; everything downstream (server, client) gets a ready
//! socket.
//!
//! Adding a kind of listener touches one place per layer: a variant of
//! [`Listen`] (what the user asked for), of [`Listener`] (the bound socket)
//! and of [`Endpoint`] (how it is shown), and its arm in the server's
//! `start_accepting`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::Error;

/// A `host:port` pair as the user wrote it, checked for syntax but not resolved.
///
/// The host is an IPv4 literal, an IPv6 literal (written in brackets), or a host
/// name such as `localhost`. Resolution happens when the address is used, so a
/// typo in the syntax is a usage error (exit 2) while an unknown name is a
/// runtime error (exit 1), like in `nc`.
///
/// ```
/// let addr: upecho::HostPort = "[::1]:8080".parse().unwrap();
/// assert_eq!(addr.port(), 8080);
/// assert_eq!(addr.to_string(), "[::1]:8080");
/// assert!("127.0.0.1".parse::<upecho::HostPort>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host without brackets.
    host: String,
    /// The port; 0 asks the kernel for a free one when listening.
    port: u16,
}

impl HostPort {
    /// The host as written, without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Resolves the host to socket addresses, in the resolver's order.
    /// `proto` (`tcp`, `udp`) names what the address is for in the error.
    ///
    /// # Errors
    ///
    /// [`Error::Resolve`] when the name is unknown or resolves to nothing,
    /// naming the host and the cause in plain words: `cannot resolve
    /// nosuch.invalid: no such host`.
    pub fn resolve(&self, proto: &str) -> Result<Vec<SocketAddr>, Error> {
        const NO_SUCH_HOST: &str = "no such host";

        /// The standard library reports a getaddrinfo failure as
        /// `failed to lookup address information: <gai_strerror text>`; users
        /// want the cause alone, in the words `nc` and browsers use.
        fn plain_resolver_error(err: io::Error) -> io::Error {
            if err.raw_os_error().is_some() {
                return err; // EAI_SYSTEM: an errno, which `error::plain` words
            }
            let text = err.to_string();
            let detail = text
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&text);
            match detail {
                "Name or service not known" | "No address associated with hostname" => {
                    io::Error::new(io::ErrorKind::NotFound, NO_SUCH_HOST)
                }
                // `error::plain` lower-cases the first letter of the rest.
                _ => io::Error::new(err.kind(), detail.to_owned()),
            }
        }

        let fail = |cause| Error::Resolve {
            host: self.host.clone(),
            endpoint: format!("{proto} {self}"),
            cause,
        };
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|err| fail(plain_resolver_error(err)))?
            .collect();
        if addrs.is_empty() {
            return Err(fail(io::Error::new(io::ErrorKind::NotFound, NO_SUCH_HOST)));
        }
        Ok(addrs)
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> Self {
        HostPort {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl FromStr for HostPort {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let bad = |reason| Error::Address {
            input: input.to_string(),
            reason,
        };
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| bad("expected [ipv6]:port"))?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not a valid IPv6 address"))?;
            (host, port)
        } else {
            let (host, port) = input
                .rsplit_once(':')
                .ok_or_else(|| bad("expected host:port"))?;
            if host.contains(':') {
                return Err(bad(
                    "IPv6 addresses must be written in brackets, as [::1]:8080",
                ));
            }
            check_host(host).map_err(bad)?;
            (host, port)
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("port must be a number from 0 to 65535"))?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

/// Accepts an IPv4 literal or a syntactically valid host name.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("missing host");
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| "not a valid IPv4 address");
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() <= 253 && host.trim_end_matches('.').split('.').all(label_ok) {
        Ok(())
    } else {
        Err("not a valid host name")
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The name of a Unix stream socket: a file system path, or, written with a
/// leading `@`, a name in Linux's abstract namespace (no file).
///
/// ```
/// let file = upecho::endpoint::UnixPath::from("/run/upecho.sock");
/// assert!(file.abstract_name().is_none());
/// let named = upecho::endpoint::UnixPath::from("@upecho");
/// assert_eq!(named.abstract_name(), Some(&b"upecho"[..]));
/// assert_eq!(named.to_string(), "@upecho");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixPath(PathBuf);

impl UnixPath {
    /// The path as given (with the `@` of an abstract name).
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The abstract name without its `@`, or `None` for a file path.
    pub fn abstract_name(&self) -> Option<&[u8]> {
        self.0.as_os_str().as_bytes().strip_prefix(b"@")
    }

    /// The socket address: the path, or for an abstract name the name after
    /// a NUL byte, as Linux spells it.
    fn sock_addr(&self) -> io::Result<socket2::SockAddr> {
        match self.abstract_name() {
            Some(name) => {
                let mut bytes = vec![0u8];
                bytes.extend_from_slice(name);
                socket2::SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))
            }
            None => socket2::SockAddr::unix(&self.0),
        }
    }
}

impl<P: Into<PathBuf>> From<P> for UnixPath {
    fn from(path: P) -> Self {
        UnixPath(path.into())
    }
}

impl fmt::Display for UnixPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

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
}

/// A bound listening socket, ready to be served: made by [`bind`], or
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
            Listener::Tcp(socket) => socket.set_nonblocking(true),
            Listener::Udp(socket) => socket.set_nonblocking(true),
            Listener::Unix(socket) => socket.set_nonblocking(true),
        }
    }
}

/// Takes the sockets a service manager handed over (systemd socket
/// activation), in the order inherited: when `LISTEN_PID` is this process's
/// id, the `LISTEN_FDS` descriptors from 3 on, each a listening TCP socket, a
/// UDP socket or a listening Unix stream socket. Without the variables, or
/// with another process's `LISTEN_PID` (or none), nothing is inherited, as
/// `sd_listen_fds(3)` has it.
///
/// `LISTEN_PID` and `LISTEN_FDS` are removed from the environment either way,
/// so that a child process never takes the sockets for its own; without them
/// `LISTEN_FDNAMES` means nothing, and is left (removing it safely is not
/// possible from this crate). Call this early, before other threads start:
/// changing the environment races with threads that read it.
///
/// ```
/// // Not started by a service manager: nothing is inherited.
/// assert!(upecho::endpoint::inherited()?.is_empty());
/// # Ok::<(), upecho::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Io`] naming the first descriptor that is not one of those three
/// kinds: `cannot serve inherited socket 3: not a socket`.
pub fn inherited() -> Result<Vec<Listener>, Error> {
    let ours = std::env::var("LISTEN_PID").is_ok_and(|pid| pid == std::process::id().to_string());
    // Reads the variables and removes them from the environment.
    let mut fds = listenfd::ListenFd::from_env();
    if !ours {
        return Ok(Vec::new());
    }
    (0..fds.len())
        .map(|index| take_inherited(&mut fds, index))
        .collect()
}

/// Takes inherited descriptor number `index` as whichever kind of listener
/// it is. (`listenfd` checks each kind without `unsafe` here, and leaves the
/// descriptor in place when it is not of the kind asked for.)
fn take_inherited(fds: &mut listenfd::ListenFd, index: usize) -> Result<Listener, Error> {
    use std::os::fd::AsRawFd;
    if let Ok(Some(socket)) = fds.take_tcp_listener(index) {
        let fd = socket.as_raw_fd();
        return accepting(&socket, fd).map(|()| Listener::Tcp(socket));
    }
    if let Ok(Some(socket)) = fds.take_udp_socket(index) {
        return Ok(Listener::Udp(socket));
    }
    if let Ok(Some(socket)) = fds.take_unix_listener(index) {
        let fd = socket.as_raw_fd();
        return accepting(&socket, fd).map(|()| Listener::Unix(socket));
    }
    // Still in place (no kind took it), so always there.
    let first = 3 + i32::try_from(index).unwrap_or(0);
    let fd = fds.take_raw_fd(index).ok().flatten().unwrap_or(first);
    // The descriptor's file, seen through /proc, tells what it is instead.
    let cause = match std::fs::metadata(format!("/proc/self/fd/{fd}")) {
        Ok(meta) if meta.file_type().is_socket() => {
            io::Error::other("not a tcp, udp or unix stream socket")
        }
        Ok(_) => io::Error::other("not a socket"),
        Err(_) => io::Error::from_raw_os_error(libc::EBADF),
    };
    Err(inherited_error(fd, cause))
}

/// Checks that an inherited stream socket listens: systemd's `Accept=yes`
/// hands over one connected socket per connection instead, which upecho does
/// not serve.
fn accepting(socket: &impl std::os::fd::AsFd, fd: i32) -> Result<(), Error> {
    match socket2::SockRef::from(socket).is_listener() {
        Ok(true) => Ok(()),
        Ok(false) => Err(inherited_error(
            fd,
            io::Error::other(
                "a connected socket, not a listening one (Accept=yes is not supported)",
            ),
        )),
        Err(cause) => Err(inherited_error(fd, cause)),
    }
}

/// `cannot serve inherited socket FD: CAUSE`.
fn inherited_error(fd: i32, cause: io::Error) -> Error {
    Error::Io {
        context: format!("cannot serve inherited socket {fd}"),
        cause,
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
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp {addr}"),
            Endpoint::Udp(addr) => write!(f, "udp {addr}"),
            Endpoint::Unix(path) => write!(f, "unix {path}"),
        }
    }
}

/// Binds what `listen` asks for: [`bind_tcp`] or [`bind_unix`].
///
/// # Errors
///
/// As those functions.
pub fn bind(listen: &Listen, backlog: u32, unix_mode: Option<u32>) -> Result<Listener, Error> {
    match listen {
        Listen::Tcp(addr) => bind_tcp(addr, backlog).map(Listener::Tcp),
        Listen::Udp(addr) => bind_udp(addr).map(Listener::Udp),
        Listen::Unix(path) => bind_unix(path, backlog, unix_mode).map(Listener::Unix),
    }
}

/// Receive buffer asked for on UDP sockets: bursts of datagrams from many
/// clients wait here while the server is busy, instead of being dropped by
/// the kernel. (The kernel caps it at `net.core.rmem_max`.)
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// Binds a UDP socket: IPv6-only for IPv6 addresses, non-blocking, a large
/// receive buffer. No SO_REUSEADDR: on UDP it would let a second process bind
/// the same address, and a second upecho must fail with `address already in
/// use`.
///
/// # Errors
///
/// [`Error::Resolve`] or [`Error::Listen`], naming the address and the cause.
pub fn bind_udp(addr: &HostPort) -> Result<UdpSocket, Error> {
    let target = addr.resolve("udp")?[0];
    let fail = |cause| Error::Listen {
        endpoint: Endpoint::Udp(target).to_string(),
        cause,
    };
    let socket = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(fail)?;
    if target.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    // Best effort: a smaller buffer only means more loss under bursts.
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    socket.bind(&target.into()).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

/// Binds a Unix stream listener: a stale socket file (nobody accepts on it)
/// is replaced, a live one is never taken over (`address already in use`),
/// and anything else at the path is left alone (the bind fails). `mode` sets
/// the file's permissions (default: the umask's). A path starting with `@`
/// names an abstract socket: no file, no mode.
///
/// # Errors
///
/// [`Error::Listen`] naming the path and the cause.
pub fn bind_unix(path: &UnixPath, backlog: u32, mode: Option<u32>) -> Result<UnixListener, Error> {
    let fail = |cause| Error::Listen {
        endpoint: format!("unix {path}"),
        cause,
    };
    if path.abstract_name().is_none() {
        remove_if_stale(path.as_path()).map_err(fail)?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
    socket
        .bind(&path.sock_addr().map_err(fail)?)
        .map_err(fail)?;
    // Before listen: nobody can connect while the umask's mode is on it.
    if let (Some(mode), None) = (mode, path.abstract_name()) {
        std::fs::set_permissions(path.as_path(), std::fs::Permissions::from_mode(mode))
            .map_err(fail)?;
    }
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

/// Removes the socket file at `path` if and only if it is a socket nobody
/// accepts on. A live socket is reported as `address already in use`.
fn remove_if_stale(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(()); // nothing there
    };
    if !meta.file_type().is_socket() {
        return Ok(()); // not ours to remove; the bind will say why it fails
    }
    // Non-blocking: a live server whose backlog is full answers EAGAIN
    // instead of making us wait for it.
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    let in_use = || Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
    match probe.connect(&socket2::SockAddr::unix(path)?) {
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Ok(()) => in_use(),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => in_use(),
        Err(_) => Ok(()),
    }
}

/// Binds a TCP listener the way the server needs it: SO_REUSEADDR (so a restart
/// never fails on TIME_WAIT, while a second live listener still gets "address in
/// use"), IPv6-only for IPv6 addresses (so `[::]:P` and `0.0.0.0:P` can both be
/// served), the given backlog, non-blocking for the async runtime.
///
/// # Errors
///
/// [`Error::Resolve`] or [`Error::Listen`], naming the address and the cause.
pub fn bind_tcp(addr: &HostPort, backlog: u32) -> Result<TcpListener, Error> {
    // Like Python's socket.create_server, bind the first address the resolver gives.
    let target = addr.resolve("tcp")?[0];
    let fail = |cause| Error::Listen {
        endpoint: Endpoint::Tcp(target).to_string(),
        cause,
    };
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(fail)?;
    if target.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_reuse_address(true).map_err(fail)?;
    socket.bind(&target.into()).map_err(fail)?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

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
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr as UnixAddr;
    let fail = |cause| Error::Connect {
        endpoint: format!("unix {path}"),
        cause,
    };
    let addr = match path.abstract_name() {
        Some(name) => UnixAddr::from_abstract_name(name),
        None => UnixAddr::from_pathname(path.as_path()),
    }
    .map_err(fail)?;
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

/// Raises the soft limit on open descriptors to the hard limit and returns the
/// new soft limit.
///
/// Why: each connection costs one descriptor, and the usual soft limit (1024)
/// is far below the default `--max-connections` (10000).
///
/// # Errors
///
/// When the limit cannot be read or set.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The largest UDP payload over IPv4 (65,535 minus the IP and UDP headers):
/// the largest `bench --udp --size`, and the largest reply a server sends
/// whole; a longer one is dropped, never truncated on any path.
pub const MAX_DATAGRAM: usize = 65_507;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HostPort, Error> {
        s.parse()
    }

    #[test]
    fn accepts_ipv4_ipv6_and_names() {
        assert_eq!(parse("127.0.0.1:0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse("[::1]:8080").unwrap().host(), "::1");
        assert_eq!(parse("localhost:65535").unwrap().port(), 65535);
        assert_eq!(
            parse("my-host.example.:1").unwrap().host(),
            "my-host.example."
        );
    }

    #[test]
    fn rejects_malformed_addresses_with_a_reason() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:65536",
            "127.0.0.1:http",
            "999.1.1.1:80",
            "::1:80",
            "[::1]80",
            "[zz]:80",
            ":80",
            "bad_host:80",
            "-x:80",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid address '{bad}': "))
            );
        }
    }

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
}
