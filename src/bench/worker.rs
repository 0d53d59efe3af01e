//! One generator thread's share of a run (`--threads`): its own
//! single-threaded runtime, its connections and its tally. `load` (the
//! coordinator) starts a worker per thread, says when the window is once all
//! of them have opened their connections, and merges what they measured.
//!
//! Why threads of their own rather than one multi-threaded runtime: the hot
//! loop of every traffic pattern relies on its thread's connections sharing
//! one read buffer and one tally without locks (`conn`); a worker keeps that
//! exactly, and the threads share only the payload (read-only) and a few
//! channels used at the phases' edges, never per message.

use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinSet, LocalSet};
use tokio_util::sync::CancellationToken;

use super::conn::{RunState, Window};
use super::connect::{self, ByteStream, DatagramSocket, Dial, Opened, Peer};
use super::intervals::{INTERVAL, Sampled};
use super::open_loop::{self, Schedule};
use super::pacer::Pacer;
use super::payload::Payload;
use super::stats::Tally;
use super::{BenchConfig, Mode, churn, datagram, datagram_rate, pingpong, stream};
use crate::Error;

/// What one generator thread is given.
pub struct Worker {
    /// The run.
    pub config: Arc<BenchConfig>,
    /// Where its connections go.
    pub peer: Peer,
    /// Requests and expected replies, shared by every thread.
    pub payload: Arc<Payload>,
    /// Its connections' numbers among all of the run's (which message each
    /// starts with, and its place in a `--rate` schedule).
    pub share: Range<usize>,
    /// Set by the coordinator to end the worker wherever it is: Ctrl-C, or
    /// another worker's failure to open its connections.
    pub stop: CancellationToken,
    /// Where it says its connections are open, or why they could not be.
    pub opened: mpsc::UnboundedSender<Result<(), Error>>,
    /// Where the window arrives, once every thread is ready.
    pub window: watch::Receiver<Option<Window>>,
    /// Where its tally goes at the end.
    pub tally: oneshot::Sender<Tally>,
    /// Where its tally's totals go each second (`-v`, `--histogram`).
    pub samples: Option<mpsc::UnboundedSender<Sampled>>,
}

impl Worker {
    /// Runs the worker on the calling thread until its connections are done
    /// (or it is stopped). A failure to start its runtime is sent as its
    /// answer to "opened".
    pub fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(cause) => {
                let _ = self.opened.send(Err(Error::Io {
                    context: "cannot start a generator thread's async runtime".into(),
                    cause,
                }));
                return;
            }
        };
        // The work is a task of the set, and the set is awaited as a whole:
        // `LocalSet::block_on(future)` would poll that future at every
        // wake-up of any connection (some 550 of 3,375 instructions per
        // round trip with one connection, callgrind), while a task is polled
        // only when its own waker fires.
        let tasks = LocalSet::new();
        let work = tasks.spawn_local(self.work());
        runtime.block_on(tasks);
        if let Err(lost) = runtime.block_on(work)
            && lost.is_panic()
        {
            std::panic::resume_unwind(lost.into_panic());
        }
    }

    /// Opens the connections, waits for the window, runs a task per
    /// connection, and sends the tally.
    async fn work(self) {
        let Worker {
            config,
            peer,
            payload,
            share,
            stop,
            opened,
            mut window,
            tally,
            samples,
        } = self;
        let Some(sockets) = open(&config, &peer, share.len(), &stop, &opened).await else {
            return;
        };
        let Some(window) = announced(&mut window, &stop).await else {
            return;
        };
        let state = Rc::new(RunState::new(payload, window, config.connections));
        let pacing = match config
            .rate
            .map(|rate| pacing(&config, window, rate))
            .transpose()
        {
            Ok(pacing) => pacing,
            Err(err) => {
                state.error(|| format!("cannot start the --rate clock: {err}"));
                let _ = tally.send(state.tally.take());
                return;
            }
        };
        let mut tasks = JoinSet::new();
        let spawn = Spawn {
            first: share.start,
            mode: config.mode,
            state: &state,
            pacing: pacing.as_ref(),
        };
        spawn.all(&mut tasks, sockets, &peer, share.len(), &stop);
        // The clock runs beside the connections, not among them: `tasks`
        // ends when they do.
        let clock = pacing.as_ref().map(|(pacer, _)| {
            let pacer = Rc::clone(pacer);
            AbortOnDrop(tokio::task::spawn_local(async move { pacer.run().await }))
        });
        let sampler = samples.map(|to| {
            let sample = sample_each_second(Rc::clone(&state), window, to);
            AbortOnDrop(tokio::task::spawn_local(sample))
        });
        tokio::select! {
            () = async { while tasks.join_next().await.is_some() {} } => {}
            () = stop.cancelled() => {}
        }
        // Taken before the tasks still running are aborted (when `tasks` is
        // dropped): nothing is counted after the stop. No sample after it.
        drop(sampler);
        let _ = tally.send(state.tally.take());
        drop(clock);
    }
}

/// Opens `count` connections and tells the coordinator; `None` if they could
/// not all be opened (the coordinator was told why) or the worker was
/// stopped meanwhile.
async fn open(
    config: &BenchConfig,
    peer: &Peer,
    count: usize,
    stop: &CancellationToken,
    opened: &mpsc::UnboundedSender<Result<(), Error>>,
) -> Option<Opened> {
    let sockets = tokio::select! {
        sockets = connect::open(peer, count) => sockets,
        () = stop.cancelled() => return None,
    };
    match sockets {
        Ok(sockets) => opened.send(Ok(())).is_ok().then_some(sockets),
        Err(failure) => {
            let named = config.named();
            let _ = opened.send(Err(failure.into_error(&named, config.connections)));
            None
        }
    }
}

/// Waits until the coordinator announces the window; `None` if it is gone or
/// the worker was stopped first.
async fn announced(
    window: &mut watch::Receiver<Option<Window>>,
    stop: &CancellationToken,
) -> Option<Window> {
    tokio::select! {
        window = window.wait_for(Option::is_some) => window.ok().map(|window| window.expect("waited for a window")),
        () = stop.cancelled() => None,
    }
}

/// `--rate`'s clock and schedule for a worker.
fn pacing(
    config: &BenchConfig,
    window: Window,
    rate: f64,
) -> std::io::Result<(Rc<Pacer>, Schedule)> {
    let schedule = Schedule {
        start: window.from - config.warmup,
        rate,
        connections: config.connections,
    };
    Ok((Rc::new(Pacer::new()?), schedule))
}

/// Sends the tally's totals at each whole second of the window before its
/// end (`-v`, `--histogram`), until the coordinator stops listening.
async fn sample_each_second(
    state: Rc<RunState>,
    window: Window,
    to: mpsc::UnboundedSender<Sampled>,
) {
    for second in 1u32.. {
        let at = window.from + INTERVAL * second;
        if at >= window.to {
            return;
        }
        tokio::time::sleep_until(at).await;
        let sample = state.tally.borrow().sample();
        if to.send((second, sample)).is_err() {
            return;
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the connection tasks of a worker are spawned with.
struct Spawn<'a> {
    /// The run's number of the worker's first connection.
    first: usize,
    mode: Mode,
    state: &'a Rc<RunState>,
    /// `--rate`: the clock and the schedule.
    pacing: Option<&'a (Rc<Pacer>, Schedule)>,
}

impl Spawn<'_> {
    /// Spawns the connections' tasks. The one dispatch on the kind of
    /// socket: each task is a loop compiled for its own kind.
    fn all(
        &self,
        tasks: &mut JoinSet<()>,
        sockets: Opened,
        peer: &Peer,
        count: usize,
        stop: &CancellationToken,
    ) {
        match sockets {
            // Connect mode opened them only to know the server is there:
            // each cycle opens its own.
            _ if self.mode == Mode::Connect => {
                drop(sockets);
                self.churn(tasks, peer, count, stop);
            }
            Opened::Tcp(streams) => self.streams(tasks, streams),
            Opened::Unix(streams) => self.streams(tasks, streams),
            Opened::Udp(sockets) => self.datagrams(tasks, sockets),
            Opened::Tls(streams) => self.streams(tasks, streams),
            Opened::Ws(streams) => self.streams(tasks, streams),
            Opened::Wss(streams) => self.streams(tasks, streams),
        }
    }

    /// Spawns a task per UDP socket: the closed loop, or with `--rate` the
    /// open one.
    fn datagrams(&self, tasks: &mut JoinSet<()>, sockets: Vec<DatagramSocket>) {
        for (index, socket) in (self.first..).zip(sockets) {
            let state = Rc::clone(self.state);
            match self.pacing {
                Some((pacer, schedule)) => tasks.spawn_local(datagram_rate::run(
                    socket,
                    index,
                    state,
                    Rc::clone(pacer),
                    *schedule,
                )),
                None => tasks.spawn_local(datagram::run(socket, index, state)),
            };
        }
    }

    /// Spawns a connection task per stream, of the mode's traffic pattern
    /// (open loop with `--rate`).
    fn streams<S: ByteStream>(&self, tasks: &mut JoinSet<()>, streams: Vec<S>) {
        for (index, stream) in (self.first..).zip(streams) {
            let state = Rc::clone(self.state);
            // Spawned as they are, not inside a future that matches on the
            // mode: one state machine less to resume per round trip (15
            // instructions).
            match (self.mode, self.pacing) {
                (Mode::PingPong, Some((pacer, schedule))) => tasks.spawn_local(open_loop::run(
                    stream,
                    index,
                    state,
                    Rc::clone(pacer),
                    *schedule,
                )),
                (Mode::PingPong, None) => tasks.spawn_local(pingpong::run(stream, index, state)),
                (Mode::Stream, _) => tasks.spawn_local(stream::run(stream, index, state)),
                (Mode::Connect, _) => unreachable!("connect mode opens its own connections"),
            };
        }
    }

    /// Connect mode: spawns `count` tasks of connection cycles to `peer`.
    fn churn(&self, tasks: &mut JoinSet<()>, peer: &Peer, count: usize, stop: &CancellationToken) {
        match peer {
            Peer::Tcp(dial) => self.cycles(tasks, dial, count, stop),
            Peer::Unix(dial) => self.cycles(tasks, dial, count, stop),
            Peer::Tls(dial) => self.cycles(tasks, dial, count, stop),
            Peer::Ws(dial) => self.cycles(tasks, dial, count, stop),
            Peer::Wss(dial) => self.cycles(tasks, dial, count, stop),
            // Refused by the configuration's rules, so never run.
            Peer::Udp(..) => self
                .state
                .error(|| "--mode connect cannot be used with --udp".into()),
        }
    }

    fn cycles<D: Dial + Clone + 'static>(
        &self,
        tasks: &mut JoinSet<()>,
        dial: &D,
        count: usize,
        stop: &CancellationToken,
    ) {
        for index in self.first..self.first + count {
            let pacing = self
                .pacing
                .map(|(pacer, schedule)| (Rc::clone(pacer), *schedule));
            tasks.spawn_local(churn::run(
                dial.clone(),
                index,
                Rc::clone(self.state),
                pacing,
                stop.clone(),
            ));
        }
    }
}

/// Splits `connections` into `threads` contiguous shares as even as can be
/// (the first ones one larger when it does not divide).
pub fn shares(connections: usize, threads: usize) -> Vec<Range<usize>> {
    let threads = threads.clamp(1, connections.max(1));
    let (each, extra) = (connections / threads, connections % threads);
    let mut start = 0;
    (0..threads)
        .map(|thread| {
            let len = each + usize::from(thread < extra);
            let share = start..start + len;
            start += len;
            share
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_connection_once_and_evenly() {
        assert_eq!(shares(5, 2), vec![0..3, 3..5]);
        assert_eq!(shares(2, 8), vec![0..1, 1..2]);
        assert_eq!(shares(1, 1), vec![0..1]);
        let split = shares(1000, 3);
        assert_eq!(split.iter().map(Range::len).sum::<usize>(), 1000);
        assert!(split.windows(2).all(|pair| pair[0].end == pair[1].start));
    }
}
