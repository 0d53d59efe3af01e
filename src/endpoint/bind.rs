//! Binding listeners: the one place a TCP, UDP or Unix socket is created
//! for serving, with the options the server relies on (SO_REUSEADDR on TCP,
//! IPv6-only, non-blocking), a stale Unix socket file replaced but a live one
//! never taken over, and the descriptor limit raised for many connections.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::addr::{HostPort, UnixPath};
use super::{Endpoint, Listen, Listener};
use crate::Error;

/// Binds what `listen` asks for: [`bind_tcp`] (TCP and TLS), [`bind_udp`]
/// or [`bind_unix`].
///
/// # Errors
///
/// As those functions.
pub fn bind(listen: &Listen, backlog: u32, unix_mode: Option<u32>) -> Result<Listener, Error> {
    match listen {
        Listen::Tcp(addr) => bind_tcp(addr, backlog).map(Listener::Tcp),
        Listen::Tls(addr) => bind_tcp(addr, backlog).map(Listener::Tls),
        Listen::Ws(addr) => bind_tcp(addr, backlog).map(Listener::Ws),
        Listen::Wss(addr) => bind_tcp(addr, backlog).map(Listener::Wss),
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
/// and anything else at the path is left alone (`not a socket`). `mode` sets
/// the file's permissions (default: the umask's). A path starting with `@`
/// names an abstract socket: no file, no mode, no lock.
///
/// For a file, the whole check, remove, bind and listen happens under an
/// exclusive `flock` on `PATH.lock` beside it, so that of two servers
/// started at once on a stale path one listens and the other finds a live
/// socket: without it, one could remove the other's socket between its bind
/// and its listen (a bound socket not yet listening looks stale), and both
/// would listen. The lock file is kept: removing it would let a third server
/// lock a new file while the second still holds the old one.
///
/// # Errors
///
/// [`Error::Listen`] naming the path and the cause.
pub fn bind_unix(path: &UnixPath, backlog: u32, mode: Option<u32>) -> Result<UnixListener, Error> {
    let fail = |cause| Error::Listen {
        endpoint: format!("unix {path}"),
        cause,
    };
    if path.abstract_name().is_some() {
        return listen_unix(path, backlog, None).map_err(fail);
    }
    // Before the lock file is made: a name that cannot be bound needs none.
    path.sock_addr().map_err(fail)?;
    let _lock = lock_beside(path.as_path(), LOCK_PATIENCE).map_err(fail)?;
    remove_if_stale(path.as_path()).map_err(fail)?;
    listen_unix(path, backlog, mode).map_err(fail)
}

/// Creates, binds and listens on a Unix stream socket at `path`, with
/// `mode` set before anyone can connect.
fn listen_unix(path: &UnixPath, backlog: u32, mode: Option<u32>) -> io::Result<UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&path.sock_addr()?)?;
    // Before listen: nobody can connect while the umask's mode is on it.
    if let Some(mode) = mode {
        std::fs::set_permissions(path.as_path(), std::fs::Permissions::from_mode(mode))?;
    }
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// How long a server waits for `PATH.lock`. Another upecho holds it only
/// for a bind or a removal (microseconds); a process that holds it longer
/// must not stall a start or a shutdown for ever.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// Opens (creating it if need be) `PATH.lock` and takes an exclusive lock on
/// it, held until the file is dropped, waiting up to `patience` for it. A
/// symbolic link there is refused rather than followed, so nobody can make
/// us create a file elsewhere. A lock file we may not write (another user's)
/// is locked read-only: `flock` needs no write access. The server takes it
/// again before it removes its socket file at shutdown, so that it never
/// removes a successor's socket between that one's bind and listen.
///
/// # Errors
///
/// When the file cannot be opened, or is still locked after `patience`
/// (`PATH.lock is held by another process`).
pub fn lock_beside(path: &Path, patience: Duration) -> io::Result<File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let name = Path::new(&name);
    // Shown escaped, like every path we print; "lock file" first so that the
    // error's usual lower-casing never touches the path.
    let shown = || {
        format!(
            "lock file {}",
            crate::escape::control(&name.to_string_lossy())
        )
    };
    let open = |write: bool| {
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_NOFOLLOW);
        if write {
            options.write(true).create(true).truncate(false);
        }
        options.open(name)
    };
    let file = match open(true) {
        // Another user's lock file: read-only is enough for flock. If that
        // fails too, the first reason is the one to report (a directory we
        // may not write has no file to open read-only either).
        Err(first) if first.kind() == io::ErrorKind::PermissionDenied => {
            open(false).map_err(|_| first)
        }
        opened => opened,
    }
    .map_err(|err| {
        let why = crate::error::plain(&err);
        io::Error::new(err.kind(), format!("cannot open {}: {why}", shown()))
    })?;
    let deadline = Instant::now() + patience;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::Error(err)) => return Err(err),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => {
                let held = format!("{} is held by another process", shown());
                return Err(io::Error::new(io::ErrorKind::WouldBlock, held));
            }
        }
    }
}

/// Removes the socket file at `path` if and only if it is a socket nobody
/// accepts on. A live socket is reported as `address already in use`,
/// anything else there (a file, a directory, a symbolic link) as `not a
/// socket`. Call it under [`lock_beside`]: a socket bound but not yet
/// listening looks stale, and only the lock keeps a starting server in
/// that state from being seen.
///
/// A server removing its own file at shutdown uses it too: by then its
/// listeners are closed, so its socket refuses, while a successor that
/// replaced it (and may have been given the same inode) accepts and is
/// kept.
///
/// # Errors
///
/// As above, or when the probe socket cannot be made.
pub(crate) fn remove_if_stale(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(()); // nothing there
    };
    if !meta.file_type().is_socket() {
        // A file, a directory, a link: not ours to remove.
        return Err(io::Error::other("not a socket"));
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
