//! One `upecho connect` from start to end: connect to the configured target,
//! then hand the connection to the front end stdin calls for (the prompt of
//! [`repl`] on a terminal, [`pipe`] otherwise, or
//! the datagram loop of [`udp`](super::udp)), and say how it finished.

use std::io::IsTerminal;
use std::io::Write;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::hex::HexDump;
use super::repl::{Input, Terminal, next_line};
use super::udp::{Next, exchange_each, piped_lines};
use super::{ConnectConfig, Duplex, Finish, Interrupt, pipe, repl};
use crate::Error;
use crate::endpoint::{self, Target};

/// Connects and runs the prompt (stdin is a terminal) or pipe mode, over TCP,
/// a Unix socket or UDP. Ctrl-C at any point, the connect included, comes
/// back as [`Finish::Interrupted`]; nothing here ends the process.
///
/// # Errors
///
/// [`Error::Connect`] when the server cannot be reached, [`Error::Io`] when
/// the session fails (the server closed the connection or reset it, no UDP
/// reply in time, stdin or stdout unusable).
///
/// ```no_run
/// // Not run by the doc tests: on a terminal it would wait at the prompt.
/// use upecho::client::{self, ConnectConfig, Finish};
/// use upecho::endpoint::Target;
/// let config = ConnectConfig {
///     target: Target::Tcp("127.0.0.1:8080".parse()?),
///     timeout: Some(std::time::Duration::from_secs(5)),
///     source: None,
///     verbose: false,
///     hex: false,
///     tls: None,
///     websocket: None,
/// };
/// let code = match client::run(config)? {
///     Finish::Done => 0,
///     Finish::Interrupted => 130,
/// };
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run(config: ConnectConfig) -> Result<Finish, Error> {
    let interrupt = Interrupt::on_sigint().unwrap_or_else(|err| {
        // Without the handler, Ctrl-C still stops the client (by the default
        // action of SIGINT), just not with status 130.
        tracing::warn!(error = %crate::error::plain(&err), "cannot handle Ctrl-C");
        Interrupt::manual()
    });
    let peer = config.named();
    // The connect blocks for up to --timeout, or for as long as the kernel
    // retries with --timeout 0 (a Unix connect, while the server's backlog is
    // full). It runs on a helper thread so that Ctrl-C ends the wait at once:
    // the standard library has no poll(2) for a non-blocking connect, and one
    // thread is cheaper than a new dependency.
    let started = Instant::now();
    let (timeout, source, verbose, hex) =
        (config.timeout, config.source, config.verbose, config.hex);
    match config.target {
        Target::Tcp(addr) if config.tls.is_some() || config.websocket.is_some() => {
            let (tls, websocket) = (config.tls, config.websocket);
            let endpoint = peer.clone();
            let connect =
                move || connect_relayed(&addr, tls.as_ref(), websocket, timeout, source, &endpoint);
            match interrupt.run(connect) {
                Some(connected) => {
                    let (stream, established, (local, remote)) = connected?;
                    if verbose {
                        say_connected(local, remote, started);
                        if let Some(established) = established {
                            let _ = writeln!(std::io::stderr(), "{established}");
                        }
                    }
                    session(stream, &peer, interrupt, hex)
                }
                None => Ok(Finish::Interrupted),
            }
        }
        Target::Tcp(addr) => {
            match interrupt.run(move || endpoint::connect_tcp(&addr, timeout, source)) {
                Some(stream) => {
                    let stream = stream?;
                    if verbose {
                        say_connected(stream.local_addr(), stream.peer_addr(), started);
                    }
                    session(stream, &peer, interrupt, hex)
                }
                None => Ok(Finish::Interrupted),
            }
        }
        Target::Unix(path) => match interrupt.run(move || endpoint::connect_unix(&path)) {
            Some(stream) => {
                let stream = stream?;
                if verbose {
                    let (local, peer) = (stream.local_addr(), stream.peer_addr());
                    say_connected(local.map(unix_name), peer.map(unix_name), started);
                }
                session(stream, &peer, interrupt, hex)
            }
            None => Ok(Finish::Interrupted),
        },
        Target::Udp(addr) => {
            let socket = endpoint::connect_udp(&addr, source)?;
            if verbose {
                say_connected(socket.local_addr(), socket.peer_addr(), started);
            }
            udp_session(&socket, &peer, timeout, &interrupt, hex)
        }
    }
}

/// The session's end of a relayed connection (see [`super::relay`]), what
/// its TLS handshake settled, and the connection's local and peer addresses.
type Relayed = (
    std::os::unix::net::UnixStream,
    Option<super::tls::Established>,
    (
        std::io::Result<std::net::SocketAddr>,
        std::io::Result<std::net::SocketAddr>,
    ),
);

/// Connects to `addr` and does the TLS and WebSocket handshakes that `tls`
/// and `websocket` ask for; `endpoint` names the server in errors
/// (`tls 127.0.0.1:8443`, `ws 127.0.0.1:8081`).
fn connect_relayed(
    addr: &crate::HostPort,
    tls: Option<&crate::tls::client::ClientTls>,
    websocket: Option<crate::endpoint::WsUrl>,
    timeout: Option<Duration>,
    source: Option<std::net::SocketAddr>,
    endpoint: &str,
) -> Result<Relayed, Error> {
    let layers = super::relay::Layers::new(addr.host(), tls, websocket)?;
    let stream = endpoint::connect_tcp(addr, timeout, source).map_err(|err| match err {
        Error::Connect { cause, .. } => Error::Connect {
            endpoint: endpoint.to_string(),
            cause,
        },
        other => other,
    })?;
    let addrs = (stream.local_addr(), stream.peer_addr());
    let (pair, established) = super::relay::connect(stream, layers, timeout, endpoint)?;
    Ok((pair, established, addrs))
}

/// A Unix socket address for `-v`: its path, or `(unnamed)`.
fn unix_name(addr: std::os::unix::net::SocketAddr) -> String {
    addr.as_pathname().map_or_else(
        || "(unnamed)".to_string(),
        |path| crate::escape::control(&path.to_string_lossy()).into_owned(),
    )
}

/// `-v`: where the connection runs from and to (the tutorial's
/// `getsockname` and `getpeername`) and how long the connect took, on
/// stderr, where it cannot mix with the replies.
fn say_connected<A: std::fmt::Display>(
    local: std::io::Result<A>,
    peer: std::io::Result<A>,
    started: Instant,
) {
    let show = |addr: std::io::Result<A>| match addr {
        Ok(addr) => format!("{addr}"),
        Err(err) => format!("unknown ({})", crate::error::plain(&err)),
    };
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _ = writeln!(
        std::io::stderr(),
        "connected: local {} peer {} in {took_ms:.2} ms",
        show(local),
        show(peer)
    );
}

/// Datagrams from the prompt (stdin is a terminal: lines stripped, empty
/// ones skipped, as over TCP) or from piped stdin (each line as it is,
/// without its `\n`).
fn udp_session(
    socket: &UdpSocket,
    peer: &str,
    timeout: Option<Duration>,
    interrupt: &Interrupt,
    hex: bool,
) -> Result<Finish, Error> {
    let on_terminal = std::io::stdin().is_terminal();
    let separator: &[u8] = if hex { b"" } else { b"\n" };
    let mut next: Box<dyn FnMut() -> std::io::Result<Next>> = if on_terminal {
        let mut terminal = Terminal::new(interrupt.clone())?;
        // The prompt's lines as over a stream: stripped, empty ones skipped.
        Box::new(move || {
            Ok(match next_line(&mut terminal)? {
                Input::Line(line) => Next::Datagram(line.into_bytes()),
                // No connection, so no close to watch.
                Input::Eof | Input::Closed => Next::End,
                Input::Interrupted => Next::Interrupted,
            })
        })
    } else {
        let stdin = std::io::BufReader::new(std::io::stdin());
        Box::new(
            piped_lines(stdin, interrupt.clone()).map_err(|cause| Error::Io {
                context: "cannot start reading stdin".into(),
                cause,
            })?,
        )
    };
    to_stdout(hex, on_terminal, |mut stdout| {
        exchange_each(
            &mut next,
            socket,
            &mut stdout,
            separator,
            peer,
            timeout,
            interrupt,
        )
    })
}

/// Runs `run` with stdout, or with a hex dump into stdout (`--hex`; `eager`
/// at a prompt), which is finished whatever `run` returns.
fn to_stdout<T>(
    hex: bool,
    eager: bool,
    run: impl FnOnce(&mut dyn Write) -> Result<T, Error>,
) -> Result<T, Error> {
    if !hex {
        return run(&mut std::io::stdout());
    }
    let mut dump = HexDump::new(std::io::stdout(), eager);
    let result = run(&mut dump);
    let finished = match dump.finish() {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            context: "cannot write to stdout".into(),
            cause: err,
        }),
        _ => Ok(()),
    };
    result.and_then(|value| finished.map(|()| value))
}

/// Runs the prompt (stdin is a terminal) or pipe mode over a connected stream.
fn session<S>(stream: S, peer: &str, interrupt: Interrupt, hex: bool) -> Result<Finish, Error>
where
    S: Duplex + AsFd,
    for<'a> &'a S: std::io::Read + std::io::Write,
{
    if std::io::stdin().is_terminal() {
        let cannot_use = |cause| Error::Io {
            context: format!("cannot use connection to {peer}"),
            cause,
        };
        // Kept until the session ends, and no longer: it holds the connection.
        let _shut_down = interrupt
            .shut_down_on_interrupt(&stream)
            .map_err(cannot_use)?;
        let mut terminal = Terminal::new(interrupt)?;
        let watched = stream.as_fd().try_clone_to_owned().map_err(cannot_use)?;
        terminal.watch_close(watched).map_err(cannot_use)?;
        to_stdout(hex, true, |mut stdout| {
            repl::repl(&mut terminal, &stream, &mut stdout, peer)
        })
    } else {
        to_stdout(hex, false, |stdout| {
            pipe::pipe(std::io::stdin(), stdout, stream, peer, &interrupt)
        })
    }
}
