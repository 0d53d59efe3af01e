//! Load generation: the phases of a run (set-up, warm-up, measured window,
//! drain): it builds the run's [`RunState`], spawns a task per connection of
//! the mode's traffic pattern, keeps time and watches for Ctrl-C, then hands
//! the tally over as [`Measurements`].
//!
//! A connection costs its task and its socket, about 2 KiB
//! ([`CONNECTION_MEMORY`]); the generator's other memory is fixed.

use std::rc::Rc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::conn::{RunState, Window};
use super::connect::{self, ByteStream, DatagramSocket, Opened, Peer};
use super::payload::Payload;
use super::stats::{self, Measurements};
use super::{BenchConfig, Mode, datagram, pingpong, stream};
use crate::Error;

/// The generator's memory per connection, as measured (and as `--help`
/// quotes it): peak RSS 4.6 MB with 10 connections, 21.5 MB with 10,010, so
/// 1.7 KiB each. About 650 bytes of it are the connection's task (the
/// `connection_task_is_small` test keeps that under 1 KiB); the rest is
/// tokio's task header and socket registration, and the allocator's overhead.
pub const CONNECTION_MEMORY: usize = 2048;

/// How a run ended.
#[derive(Debug)]
pub enum Ended {
    /// The window ran to its end.
    Measured(Measurements),
    /// Ctrl-C came once the connections were open: what the window measured
    /// until then (nothing if it had not begun: Ctrl-C in the warm-up), or,
    /// in the drain after the window, all of it.
    Interrupted(Measurements),
    /// Ctrl-C came while the connections were being opened: nothing ran.
    InterruptedInSetUp,
}

/// Runs the whole benchmark with `payload` against `peer`: set-up, warm-up,
/// window, drain. Ctrl-C stops it where it is, with what was measured.
///
/// # Errors
///
/// [`Error::Connect`] when a connection cannot be opened; [`Error::Io`] when
/// Ctrl-C cannot be watched.
pub async fn drive(
    config: BenchConfig,
    peer: Peer,
    payload: Payload,
    progress: impl FnMut(f64),
) -> Result<Ended, Error> {
    // Installed before any connection opens, so a Ctrl-C at any point after a
    // server saw one comes back here as a value.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|cause| Error::Io {
        context: "cannot watch for Ctrl-C".into(),
        cause,
    })?;
    let start = Instant::now();
    let opened = tokio::select! {
        opened = connect::open(&peer, config.connections) => {
            opened.map_err(|failure| {
                failure.into_error(&config.target.named(config.tls.is_some()), config.connections)
            })?
        }
        _ = interrupt.recv() => return Ok(Ended::InterruptedInSetUp),
    };
    let setup = start.elapsed();
    let began = Instant::now();
    let window = Window {
        from: began + config.warmup,
        to: began + config.warmup + config.duration,
    };
    let state = Rc::new(RunState::new(payload, window, config.connections));
    let mut tasks = JoinSet::new();
    // The one dispatch on the kind of socket: each task below is a loop
    // compiled for its own kind.
    match opened {
        Opened::Tcp(streams) => spawn_streams(&mut tasks, streams, config.mode, &state),
        Opened::Unix(streams) => spawn_streams(&mut tasks, streams, config.mode, &state),
        Opened::Udp(sockets) => spawn_datagrams(&mut tasks, sockets, &state),
        Opened::Tls(streams) => spawn_streams(&mut tasks, streams, config.mode, &state),
    }
    let timed = keep_time(window, began, progress, &mut interrupt).await;
    let interrupted = timed.interrupted
        || tokio::select! {
            () = async { while tasks.join_next().await.is_some() {} } => false,
            _ = interrupt.recv() => true,
        };
    // Taken before any other task runs: nothing is counted after Ctrl-C. The
    // tasks still running are aborted when `tasks` is dropped.
    let measured = Measurements::new(
        state.tally.take(),
        config.connections,
        setup,
        timed
            .measured
            .min(config.duration)
            .max(Duration::from_nanos(1)),
        timed.cpu,
    );
    Ok(if interrupted {
        Ended::Interrupted(measured)
    } else {
        Ended::Measured(measured)
    })
}

/// Spawns a connection task per stream, of the mode's traffic pattern.
fn spawn_streams<S: ByteStream>(
    tasks: &mut JoinSet<()>,
    streams: Vec<S>,
    mode: Mode,
    state: &Rc<RunState>,
) {
    for (index, stream) in streams.into_iter().enumerate() {
        let state = Rc::clone(state);
        // Spawned as they are, not inside a future that matches on the mode:
        // one state machine less to resume per round trip (15 instructions).
        match mode {
            Mode::PingPong => tasks.spawn_local(pingpong::run(stream, index, state)),
            Mode::Stream => tasks.spawn_local(stream::run(stream, index, state)),
        };
    }
}

/// Spawns a datagram pingpong task per UDP socket.
fn spawn_datagrams(tasks: &mut JoinSet<()>, sockets: Vec<DatagramSocket>, state: &Rc<RunState>) {
    for (index, socket) in sockets.into_iter().enumerate() {
        tasks.spawn_local(datagram::run(socket, index, Rc::clone(state)));
    }
}

/// What the timekeeping saw.
struct Timed {
    /// How much of the window ran: all of it, or up to Ctrl-C (zero if
    /// Ctrl-C came in the warm-up).
    measured: Duration,
    /// The CPU this process used in that time, if it could be read.
    cpu: Option<Duration>,
    /// Ctrl-C ended it.
    interrupted: bool,
}

/// Keeps time while the connections run: reports progress several times a
/// second and samples CPU at the window's edges, until the window ends or
/// Ctrl-C comes.
async fn keep_time(
    window: Window,
    began: Instant,
    mut progress: impl FnMut(f64),
    interrupt: &mut Signal,
) -> Timed {
    let total = (window.to - began).as_secs_f64().max(1e-9);
    let mut cpu_from = None;
    let mut interrupted = false;
    loop {
        let now = Instant::now();
        if now >= window.to {
            break;
        }
        if cpu_from.is_none() && now >= window.from {
            cpu_from = stats::process_cpu_time();
        }
        progress((now - began).as_secs_f64() / total);
        let next = if cpu_from.is_none() {
            window.from
        } else {
            window.to
        };
        tokio::select! {
            () = sleep_until(next.min(now + Duration::from_millis(100))) => {}
            _ = interrupt.recv() => {
                interrupted = true;
                break;
            }
        }
    }
    let cpu_to = stats::process_cpu_time();
    let measured = Instant::now().saturating_duration_since(window.from);
    if !interrupted {
        progress(1.0);
    }
    let cpu = cpu_from
        .zip(cpu_to)
        .map(|(from, to)| to.saturating_sub(from));
    Timed {
        measured,
        cpu,
        interrupted,
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::{TcpStream, UnixStream};

    use super::*;

    #[test]
    fn connection_task_is_small() {
        let config = BenchConfig::default();
        let window = Window {
            from: Instant::now(),
            to: Instant::now(),
        };
        let state = Rc::new(RunState::new(Payload::new(&config), window, 1));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std_stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        std_stream.set_nonblocking(true).unwrap();
        let tcp = || TcpStream::from_std(std_stream.try_clone().unwrap()).unwrap();
        let (std_unix, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        std_unix.set_nonblocking(true).unwrap();
        let unix = || UnixStream::from_std(std_unix.try_clone().unwrap()).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let udp = connect::register(udp).unwrap();
        let sizes = [
            std::mem::size_of_val(&pingpong::run(tcp(), 0, Rc::clone(&state))),
            std::mem::size_of_val(&stream::run(tcp(), 0, Rc::clone(&state))),
            std::mem::size_of_val(&pingpong::run(unix(), 0, Rc::clone(&state))),
            std::mem::size_of_val(&stream::run(unix(), 0, Rc::clone(&state))),
            std::mem::size_of_val(&datagram::run(udp, 0, Rc::clone(&state))),
        ];
        assert!(
            sizes.iter().all(|&size| size <= CONNECTION_MEMORY / 2),
            "{sizes:?}"
        );
    }
}
