//! Load generation: the phases of a run (set-up, warm-up, measured window,
//! drain). It starts the generator threads (`worker`: each opens its share
//! of the connections and runs a task per connection of the mode's traffic
//! pattern), announces the window once all are open, keeps time and watches
//! for Ctrl-C, then merges the threads' tallies into [`Measurements`].
//!
//! A connection costs its task and its socket, about 2 KiB
//! ([`CONNECTION_MEMORY`]); the generator's other memory is fixed.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::conn::Window;
use super::connect::Peer;
use super::intervals::{Intervals, Sampled};
use super::payload::Payload;
use super::stats::{self, Measurements, Tally};
use super::worker::{self, Worker};
use super::{BenchConfig, Progress};
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

impl Ended {
    /// Takes why the run had to stop before its end, if it did (connect
    /// mode out of local ports).
    pub fn fatal(&mut self) -> Option<std::io::Error> {
        match self {
            Ended::Measured(measured) | Ended::Interrupted(measured) => measured.fatal.take(),
            Ended::InterruptedInSetUp => None,
        }
    }
}

/// Runs the whole benchmark with `payload` against `peer`: set-up, warm-up,
/// window, drain, on `config.threads` generator threads ([`Worker`]s), this
/// thread keeping time. Ctrl-C stops it where it is, with what was measured.
///
/// # Errors
///
/// [`Error::Connect`] when a connection cannot be opened; [`Error::Io`] when
/// a runtime or a thread cannot be started, or Ctrl-C cannot be watched.
pub fn drive(
    config: &BenchConfig,
    peer: &Peer,
    payload: Payload,
    progress: impl FnMut(Progress<'_>),
) -> Result<Ended, Error> {
    let (runtime, interrupt) = coordinator()?;
    let config = Arc::new(config.clone());
    let payload = Arc::new(payload);
    let stop = CancellationToken::new();
    let (opened, ready) = mpsc::unbounded_channel();
    let (window, windows) = watch::channel(None);
    let (samples, sampled) = if config.intervals {
        let (to, from) = mpsc::unbounded_channel();
        (Some(to), Some(from))
    } else {
        (None, None)
    };
    std::thread::scope(|scope| {
        let mut tallies = Vec::new();
        for (number, share) in worker::shares(config.connections, config.threads)
            .into_iter()
            .enumerate()
        {
            let (tally, measured) = oneshot::channel();
            tallies.push(measured);
            let worker = Worker {
                config: Arc::clone(&config),
                peer: peer.clone(),
                payload: Arc::clone(&payload),
                share,
                stop: stop.clone(),
                opened: opened.clone(),
                window: windows.clone(),
                tally,
                samples: samples.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("bench-{number}"))
                .spawn_scoped(scope, move || worker.run());
            if let Err(cause) = spawned {
                stop.cancel();
                return Err(Error::Io {
                    context: "cannot start a generator thread".into(),
                    cause,
                });
            }
        }
        drop((opened, samples));
        let phases = Phases {
            config: &config,
            ready,
            window,
            tallies,
            stop: &stop,
            interrupt,
            sampled,
        };
        let ended = runtime.block_on(phases.run(progress));
        // Whatever happened, the workers end now (after a window that ran to
        // its end they already have), and the scope joins them.
        stop.cancel();
        ended
    })
}

/// The coordinator's runtime, and the Ctrl-C watch, installed before any
/// connection opens, so that a Ctrl-C at any point after a server saw one
/// comes back as a value.
fn coordinator() -> Result<(tokio::runtime::Runtime, Signal), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|cause| Error::Io {
            context: "cannot start the async runtime".into(),
            cause,
        })?;
    let interrupt = {
        let _entered = runtime.enter();
        signal(SignalKind::interrupt()).map_err(|cause| Error::Io {
            context: "cannot watch for Ctrl-C".into(),
            cause,
        })?
    };
    Ok((runtime, interrupt))
}

/// What the coordinator holds while the workers run.
struct Phases<'a> {
    config: &'a BenchConfig,
    /// One message per worker: its connections are open, or why not.
    ready: mpsc::UnboundedReceiver<Result<(), Error>>,
    /// Where the window is announced.
    window: watch::Sender<Option<Window>>,
    /// Where each worker's tally will come.
    tallies: Vec<oneshot::Receiver<Tally>>,
    /// Ends every worker.
    stop: &'a CancellationToken,
    /// Ctrl-C.
    interrupt: Signal,
    /// Where the workers' samples come each second, if asked for.
    sampled: Option<mpsc::UnboundedReceiver<Sampled>>,
}

impl Phases<'_> {
    /// Waits for every worker's connections, announces the window, keeps
    /// time, and merges the tallies.
    async fn run(mut self, mut progress: impl FnMut(Progress<'_>)) -> Result<Ended, Error> {
        let start = Instant::now();
        if !self.all_ready().await? {
            return Ok(Ended::InterruptedInSetUp);
        }
        let setup = start.elapsed();
        let began = Instant::now();
        let window = Window {
            from: began + self.config.warmup,
            to: began + self.config.warmup + self.config.duration,
        };
        let _ = self.window.send(Some(window));
        let window_start = std::time::SystemTime::now() + self.config.warmup;
        let mut seconds = (self.sampled.take()).map(|sampled| {
            (
                sampled,
                Intervals::new(self.tallies.len(), self.config.rate.is_some()),
            )
        });
        let timed = keep_time(
            window,
            began,
            &mut progress,
            &mut self.interrupt,
            self.stop,
            seconds.as_mut(),
        )
        .await;
        let (merged, interrupted) = self.collect(timed.interrupted).await;
        let length = timed
            .measured
            .min(self.config.duration)
            .max(Duration::from_nanos(1));
        let mut measured =
            Measurements::new(merged, self.config.connections, setup, length, timed.cpu);
        if let Some((mut sampled, mut intervals)) = seconds {
            // What the workers sent before they ended and was not read yet.
            while let Ok(sample) = sampled.try_recv() {
                if let Some(interval) = intervals.add(sample) {
                    progress(Progress::Interval(interval));
                }
            }
            let complete = intervals.complete();
            let all = intervals.finish(&measured.sample(), length);
            if let Some(last) = all.get(complete).filter(|_| !interrupted) {
                progress(Progress::Interval(last));
            }
            measured.intervals = all;
        }
        measured.window_start = window_start;
        Ok(if interrupted {
            Ended::Interrupted(measured)
        } else {
            Ended::Measured(measured)
        })
    }

    /// Waits until every worker has opened its connections: true, or false
    /// if Ctrl-C came first.
    async fn all_ready(&mut self) -> Result<bool, Error> {
        for _ in 0..self.tallies.len() {
            tokio::select! {
                ready = self.ready.recv() => match ready {
                    Some(Ok(())) => {}
                    Some(Err(err)) => return Err(err),
                    None => return Err(Error::Io {
                        context: "a generator thread stopped".into(),
                        cause: std::io::Error::other("it ended before opening its connections"),
                    }),
                },
                _ = self.interrupt.recv() => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Merges the workers' tallies as they end, or, from a Ctrl-C on (or
    /// one in the window: `interrupted`), at once; returns them and whether
    /// Ctrl-C came.
    async fn collect(&mut self, mut interrupted: bool) -> (Tally, bool) {
        if interrupted {
            self.stop.cancel();
        }
        let mut merged = Tally::default();
        for mut tally in std::mem::take(&mut self.tallies) {
            let sent = if interrupted {
                None
            } else {
                tokio::select! {
                    biased;
                    sent = &mut tally => Some(sent),
                    _ = self.interrupt.recv() => None,
                }
            };
            let sent = match sent {
                Some(sent) => sent,
                None => {
                    interrupted = true;
                    self.stop.cancel();
                    tally.await
                }
            };
            // A worker that is gone (it cannot be: it sends before it ends)
            // adds nothing.
            if let Ok(tally) = sent {
                merged.merge(tally);
            }
        }
        (merged, interrupted)
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
    progress: &mut impl FnMut(Progress<'_>),
    interrupt: &mut Signal,
    stop: &CancellationToken,
    mut seconds: Option<&mut (mpsc::UnboundedReceiver<Sampled>, Intervals)>,
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
        progress(Progress::Elapsed((now - began).as_secs_f64() / total));
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
            // A worker had to end the run (out of local ports).
            () = stop.cancelled() => break,
            Some(sample) = next_sample(seconds.as_deref_mut()) => {
                if let Some((_, intervals)) = seconds.as_deref_mut()
                    && let Some(interval) = intervals.add(sample)
                {
                    progress(Progress::Interval(interval));
                }
            }
        }
    }
    let cpu_to = stats::process_cpu_time();
    let measured = Instant::now().saturating_duration_since(window.from);
    if !interrupted {
        progress(Progress::Elapsed(1.0));
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

/// The next second's sample from a worker; never, if none are asked for.
async fn next_sample(
    seconds: Option<&mut (mpsc::UnboundedReceiver<Sampled>, Intervals)>,
) -> Option<Sampled> {
    match seconds {
        Some((sampled, _)) => sampled.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use tokio::net::{TcpStream, UnixStream};

    use super::super::conn::RunState;
    use super::super::{connect, datagram, pingpong, stream};
    use super::*;

    #[test]
    fn connection_task_is_small() {
        let config = BenchConfig::default();
        let window = Window {
            from: Instant::now(),
            to: Instant::now(),
        };
        let state = Rc::new(RunState::new(Arc::new(Payload::new(&config)), window, 1));
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
