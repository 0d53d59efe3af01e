//! Taking over what a service manager hands us (systemd socket activation,
//! `LISTEN_FDS`/`LISTEN_PID`) as [`Listener`]s, before anything is bound,
//! and telling it when we are ready (`NOTIFY_SOCKET`, `READY=1`), after the
//! readiness lines.

use std::io;
use std::os::unix::fs::FileTypeExt;

use super::Listener;
use crate::Error;

/// Takes the sockets a service manager handed over (systemd socket
/// activation), in the order inherited: when `LISTEN_PID` is this process's
/// id, the `LISTEN_FDS` descriptors from 3 on, each a listening TCP socket, a
/// UDP socket or a listening Unix stream socket; a TCP socket that
/// `LISTEN_FDNAMES` names `tls` is served with TLS. Without the variables, or
/// with another process's `LISTEN_PID` (or none), nothing is inherited, as
/// `sd_listen_fds(3)` has it.
///
/// `LISTEN_PID` and `LISTEN_FDS` are removed from the environment (unless
/// `LISTEN_FDS` is invalid), so that a child process never takes the sockets
/// for its own; without them `LISTEN_FDNAMES` means nothing, and is left
/// (removing it safely is not possible from this crate). Call this early,
/// before other threads start: changing the environment races with threads
/// that read it.
///
/// ```
/// // Not started by a service manager: nothing is inherited.
/// assert!(upecho::endpoint::inherited()?.is_empty());
/// # Ok::<(), upecho::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Io`] when `LISTEN_PID` is ours and `LISTEN_FDS` is not a
/// positive number of descriptors (`invalid LISTEN_FDS '-1': expected a
/// positive number of descriptors`): a service manager that meant to hand
/// sockets over and got it wrong must not be answered by binding something
/// else. Also naming the first descriptor that is not one of those three
/// kinds: `cannot serve inherited socket 3: not a socket`.
pub fn inherited() -> Result<Vec<Listener>, Error> {
    let ours = std::env::var("LISTEN_PID").is_ok_and(|pid| pid == std::process::id().to_string());
    if ours {
        // Before `listenfd` reads it: it would ignore a bad value, and hold
        // a number for each of two thousand million descriptors.
        check_listen_fds(std::env::var_os("LISTEN_FDS"))?;
    }
    // Reads the variables and removes them from the environment.
    let mut fds = listenfd::ListenFd::from_env();
    if !ours {
        return Ok(Vec::new());
    }
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    (0..fds.len())
        .map(|index| {
            let socket = take_inherited(&mut fds, index)?;
            named(socket, names.next().unwrap_or(""), index)
        })
        .collect()
}

/// What an inherited socket is served as, by its name in `LISTEN_FDNAMES`
/// (systemd's `FileDescriptorName=`): a TCP socket named `tls` with TLS,
/// `ws` with HTTP and WebSocket, `wss` with both; any other name, as the
/// socket is.
fn named(socket: Listener, name: &str, index: usize) -> Result<Listener, Error> {
    let fd = 3 + i32::try_from(index).unwrap_or(0);
    let refuse = |why: &str| {
        let shown = crate::escape::control(name);
        Err(inherited_error(
            fd,
            io::Error::other(format!("named {shown}: {why}")),
        ))
    };
    match (name, socket) {
        ("tls", Listener::Tcp(socket)) => Ok(Listener::Tls(socket)),
        ("ws", Listener::Tcp(socket)) => Ok(Listener::Ws(socket)),
        ("wss", Listener::Tcp(socket)) => Ok(Listener::Wss(socket)),
        ("tls" | "ws" | "wss", _) => refuse("not a tcp socket"),
        (_, socket) => Ok(socket),
    }
}

/// Checks a `LISTEN_FDS` meant for us: absent (nothing inherited) or a
/// number of descriptors from 1 to what a process may have open, as
/// `sd_listen_fds(3)` checks it (0 is invalid there too).
fn check_listen_fds(value: Option<std::ffi::OsString>) -> Result<(), Error> {
    const POSITIVE: &str = "expected a positive number of descriptors";
    let Some(value) = value else {
        return Ok(());
    };
    let text = value.to_string_lossy();
    let invalid = |cause: String| Error::Io {
        context: format!("invalid LISTEN_FDS '{}'", crate::escape::control(&text)),
        cause: io::Error::new(io::ErrorKind::InvalidInput, cause),
    };
    let count = match value.to_str().map(str::parse::<u32>) {
        Some(Ok(0)) => return Err(invalid(format!("names no socket, {POSITIVE}"))),
        Some(Ok(count)) => u64::from(count),
        _ => return Err(invalid(POSITIVE.to_string())),
    };
    // The descriptors are 3, 4, ...: every one below the hard limit, and a
    // C int.
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(_, hard)| hard);
    let limit = hard.min(i32::MAX.unsigned_abs().into());
    if count.saturating_add(3) > limit {
        return Err(invalid(format!(
            "more descriptors than a process may have open ({limit})"
        )));
    }
    Ok(())
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
/// not serve; a socket only bound (or not even that) is a mistake of whoever
/// made it, and is called what it is.
fn accepting(socket: &impl std::os::fd::AsFd, fd: i32) -> Result<(), Error> {
    let socket = socket2::SockRef::from(socket);
    let cause = match socket.is_listener() {
        Ok(true) => return Ok(()),
        Err(cause) => cause,
        Ok(false) if socket.peer_addr().is_ok() => io::Error::other(
            "a connected socket, not a listening one (Accept=yes is not supported)",
        ),
        Ok(false) if bound(&socket) => io::Error::other("a bound socket that is not listening"),
        Ok(false) => io::Error::other("an unbound socket, not a listening one"),
    };
    Err(inherited_error(fd, cause))
}

/// Whether a stream socket has an address of its own: a port, a path or an
/// abstract name.
fn bound(socket: &socket2::SockRef<'_>) -> bool {
    socket
        .local_addr()
        .is_ok_and(|addr| match addr.as_socket() {
            Some(inet) => inet.port() != 0,
            None => !addr.is_unnamed(),
        })
}

/// `cannot serve inherited socket FD: CAUSE`.
fn inherited_error(fd: i32, cause: io::Error) -> Error {
    Error::Io {
        context: format!("cannot serve inherited socket {fd}"),
        cause,
    }
}

/// Tells the service manager (`Type=notify`, `NOTIFY_SOCKET`) that the
/// service is ready: call it after the readiness lines are out. Without
/// `NOTIFY_SOCKET`, does nothing. As `sd_notify(3)` has it, the variable names
/// a datagram socket's path, or with a leading `@` a name in the abstract
/// namespace (which the `sd-notify` crate cannot reach, hence our own send).
///
/// # Errors
///
/// When the notification cannot be sent; the caller only warns, since the
/// service itself works.
pub fn notify_ready() -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    const READY: &[u8] = b"READY=1\n";
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let addr = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(&socket)?,
    };
    let sent = UnixDatagram::unbound()?.send_to_addr(READY, &addr)?;
    if sent < READY.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "incomplete write"));
    }
    Ok(())
}
