//! Running a bound [`Server`]: on the caller's Tokio runtime
//! ([`Server::run`]), or on one single-threaded runtime per core, each
//! serving its own copies of the listening sockets
//! ([`Server::run_per_core`]). Either way the same accept loops start
//! ([`accepting`]) and the same [drain](super::drain) ends
//! them.

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio_util::sync::CancellationToken;

use super::accepting::{self, Listening};
use super::bound::Server;
use super::drain::drain;
use super::shutdown::ShutdownSignal;
use super::state::Shared;
use crate::Error;
use crate::endpoint::Endpoint;

impl Server {
    /// Serves on the current Tokio runtime until `signal` fires, then drains:
    /// listeners close at once, open connections get up to the shutdown grace
    /// to finish, and whatever is still open after that (or after
    /// [`ShutdownSignal::cut_short`]) is closed.
    ///
    /// This is the in-process way (tests, embedding); the binary uses
    /// [`Server::run_per_core`], which shares the same accept and drain code.
    ///
    /// # Errors
    ///
    /// [`Error::Listen`] if a listener cannot be registered with the runtime;
    /// what was started is then stopped.
    pub async fn run(self, signal: ShutdownSignal) -> Result<(), Error> {
        let (listeners, shared, metrics) = self.into_parts(signal);
        serve_and_drain(listeners, metrics, &shared, 1, || Ok(())).await
    }

    /// Serves on `threads` OS threads, each with its own single-threaded Tokio
    /// runtime accepting from the same listening sockets, until `signal` fires;
    /// then drains as [`Server::run`] does. Blocks until the server stopped.
    ///
    /// Why this design: measured against Tokio's work-stealing multi-thread
    /// runtime (docs/ARCHITECTURE.md), a runtime per core has the better tail
    /// latency at 500 connections and no cross-thread wake-ups; each connection
    /// stays on the thread that accepted it. The listening sockets are shared
    /// (duplicated descriptors), not an SO_REUSEPORT group, so a second process
    /// on the same address still fails with "address already in use".
    ///
    /// `on_ready` runs on the first thread's runtime once every thread accepts:
    /// the place to install signal handlers and print readiness.
    ///
    /// # Errors
    ///
    /// When a runtime or thread cannot be started, a listener cannot be shared
    /// or registered, or `on_ready` fails; the server is then stopped.
    pub fn run_per_core(
        self,
        threads: usize,
        signal: ShutdownSignal,
        on_ready: impl FnOnce() -> Result<(), Error>,
    ) -> Result<(), Error> {
        let threads = threads.max(1);
        let (listeners, shared, metrics) = self.into_parts(signal);
        let finished = CancellationToken::new();
        let (workers, started) = start_workers(threads - 1, &listeners, &shared, &finished);
        let result = started.and_then(|()| {
            let runtime = single_thread_runtime()?;
            runtime.block_on(serve_and_drain(
                listeners, metrics, &shared, threads, on_ready,
            ))
        });
        if result.is_err() {
            shared.signal.cut_short();
        }
        finished.cancel();
        join(workers, result)
    }
}

/// Starts the serving loops on the current runtime, runs `on_ready` once they
/// accept, and drains when shutdown comes (at once if starting failed).
/// `threads`: how many threads serve these sockets, for the log.
async fn serve_and_drain(
    listeners: Vec<Listening>,
    metrics: Option<std::net::TcpListener>,
    shared: &Shared,
    threads: usize,
    on_ready: impl FnOnce() -> Result<(), Error>,
) -> Result<(), Error> {
    let endpoints: Vec<Endpoint> = listeners.iter().map(|l| l.endpoint.clone()).collect();
    let ready = accepting::start(shared, listeners)
        .and_then(|()| accepting::start_metrics(shared, metrics))
        .and_then(|()| {
            accepting::log_accepting(&endpoints, threads);
            on_ready()
        });
    if ready.is_err() {
        shared.signal.cut_short();
    }
    drain(shared).await;
    ready
}

/// Starts `count` worker threads, each serving its own copies of
/// `listeners` until `finished`, and waits until every one of them accepts.
/// Returns the threads started and the first failure, if any.
fn start_workers(
    count: usize,
    listeners: &[Listening],
    shared: &Shared,
    finished: &CancellationToken,
) -> (Vec<JoinHandle<()>>, Result<(), Error>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut workers = Vec::new();
    let mut started = Ok(());
    for n in 1..=count {
        let spawned = accepting::share(listeners).and_then(|copies| {
            let (shared, finished) = (shared.clone(), finished.clone());
            spawn_worker(n, copies, shared, finished, ready_tx.clone())
        });
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(err) => {
                started = Err(err);
                break;
            }
        }
    }
    drop(ready_tx);
    // Every worker reports once; wait for all before announcing readiness.
    for _ in 0..workers.len() {
        let report = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(runtime_error(std::io::Error::other("a server thread died"))));
        if started.is_ok() {
            started = report;
        }
    }
    (workers, started)
}

/// Spawns worker thread `n`: its own runtime serves `copies` until
/// `finished`, after reporting on `ready` whether they accept.
fn spawn_worker(
    n: usize,
    copies: Vec<Listening>,
    shared: Shared,
    finished: CancellationToken,
    ready: mpsc::Sender<Result<(), Error>>,
) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(format!("upecho-{n}"))
        .spawn(move || {
            let runtime = match single_thread_runtime() {
                Ok(runtime) => runtime,
                Err(err) => return drop(ready.send(Err(err))),
            };
            runtime.block_on(async {
                let accepting = accepting::start(&shared, copies);
                let ok = accepting.is_ok();
                let _ = ready.send(accepting);
                if ok {
                    // Serve until every connection everywhere is done.
                    finished.cancelled().await;
                }
            });
        })
        .map_err(runtime_error)
}

/// Waits for every worker thread to end; a panic in one is the server's
/// error unless it already had one.
fn join(workers: Vec<JoinHandle<()>>, result: Result<(), Error>) -> Result<(), Error> {
    let mut panicked = false;
    for worker in workers {
        panicked |= worker.join().is_err();
    }
    if panicked && result.is_ok() {
        return Err(runtime_error(std::io::Error::other(
            "a server thread panicked",
        )));
    }
    result
}

/// A Tokio runtime that runs everything on the calling thread.
fn single_thread_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(runtime_error)
}

/// A failure to start or keep a server thread.
pub(super) fn runtime_error(cause: std::io::Error) -> Error {
    Error::Io {
        context: "cannot start a server thread".into(),
        cause,
    }
}
