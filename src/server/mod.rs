//! The server: takes already bound listeners and a [`ShutdownSignal`], accepts
//! under a connection limit, and drains on shutdown. Each accepted socket becomes
//! a [`connection`] task (read -> transform -> write), which first reads a
//! PROXY protocol header ([`proxy`]) when the configuration asks for one.

mod connection;
mod listener;
mod memory;
pub mod proxy;
mod shutdown;
mod udp;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use connection::BUFFER_SIZE;
pub use shutdown::{ShutdownSignal, watch_os_signals};

use crate::endpoint::{self, Endpoint, HostPort, Listen, Listener};
// The server's files name `super::metrics::...`; the module is top-level now.
use crate::metrics;
use crate::{Error, Transform};

/// What to serve and how: the validated form of `upecho serve`'s flags.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// What to listen on, in the order their readiness lines are printed.
    pub listen: Vec<Listen>,
    /// Permissions of the Unix socket files (`--unix-mode`); `None` leaves
    /// them to the umask.
    pub unix_mode: Option<u32>,
    /// The transform applied to every byte.
    pub transform: Transform,
    /// The kernel's queue of connections not yet accepted (`listen(2)`'s backlog).
    pub backlog: u32,
    /// At most this many connections are served at once; more wait in the backlog.
    pub max_connections: usize,
    /// Close a connection after this long with no byte moving; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// How long open connections may finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Every stream connection (TCP and Unix) must start with a PROXY
    /// protocol header, v1 or v2 (`--proxy-protocol`); the client it names
    /// becomes the connection's peer. See [`proxy`].
    pub proxy_protocol: bool,
    /// With [`ServerConfig::proxy_protocol`]: only TCP senders in these
    /// networks must send a header, others are served directly; empty = every
    /// sender. Unix-socket peers, which a list cannot name, are then outside
    /// it and served directly.
    pub proxy_from: Vec<ipnet::IpNet>,
    /// The whole header phase must end within this, or the connection is
    /// closed (5 s by default; zero means no limit).
    pub proxy_timeout: Duration,
    /// Where to serve Prometheus metrics over HTTP (`--metrics`); `None`:
    /// nowhere.
    pub metrics: Option<HostPort>,
}

impl Default for ServerConfig {
    /// The contract's defaults: `tcp 127.0.0.1:8080`, ascii, backlog 1024, 10000
    /// connections, idle timeout 300 s, shutdown grace 10 s, no PROXY
    /// protocol.
    fn default() -> Self {
        ServerConfig {
            listen: vec![Listen::Tcp(HostPort::from(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                8080,
            ))))],
            unix_mode: None,
            transform: Transform::Ascii,
            backlog: 1024,
            max_connections: 10_000,
            idle_timeout: Some(Duration::from_secs(300)),
            shutdown_grace: Duration::from_secs(10),
            proxy_protocol: false,
            proxy_from: Vec::new(),
            proxy_timeout: Duration::from_secs(5),
            metrics: None,
        }
    }
}

impl ServerConfig {
    /// The defaults, but listening only on the given TCP address.
    ///
    /// ```
    /// let config = upecho::ServerConfig::tcp("127.0.0.1:0".parse().unwrap());
    /// assert_eq!(config.listen.len(), 1);
    /// ```
    pub fn tcp(addr: HostPort) -> Self {
        ServerConfig {
            listen: vec![Listen::Tcp(addr)],
            ..ServerConfig::default()
        }
    }
}

/// Settings every connection task reads; shared, never changed after start.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The transform each connection instantiates.
    pub(crate) transform: Transform,
    /// See [`ServerConfig::idle_timeout`].
    pub(crate) idle_timeout: Option<Duration>,
    /// Who must send a PROXY protocol header; `None` without
    /// [`ServerConfig::proxy_protocol`].
    pub(crate) proxy: Option<proxy::ProxyPolicy>,
}

/// A server whose listeners are bound and listening but not yet accepting.
///
/// Binding is separate from running so that the caller learns the real
/// addresses (port 0) and can report readiness before any connection is served,
/// and so that binding errors surface before a runtime is built.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let server = upecho::Server::bind(upecho::ServerConfig::tcp("127.0.0.1:0".parse()?))?;
/// let addr = server.local_addrs()[0];
/// let running = server.spawn();
///
/// let mut client = tokio::net::TcpStream::connect(addr).await?;
/// client.write_all(b"hello").await?;
/// client.shutdown().await?;
/// let mut reply = Vec::new();
/// client.read_to_end(&mut reply).await?;
/// assert_eq!(reply, b"HELLO");
///
/// running.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    /// Bound, listening, non-blocking sockets, in the configured order.
    listeners: Vec<Listener>,
    /// The addresses they are bound to (with real ports).
    endpoints: Vec<Endpoint>,
    /// Unix socket files this server created, removed when its listeners
    /// close.
    files: Vec<SocketFile>,
    /// Per-connection settings.
    settings: Arc<Settings>,
    /// See [`ServerConfig::max_connections`].
    max_connections: usize,
    /// See [`ServerConfig::shutdown_grace`].
    shutdown_grace: Duration,
    /// The bound `--metrics` socket and its address, if any.
    metrics: Option<(std::net::TcpListener, std::net::SocketAddr)>,
}

impl Server {
    /// Binds every listener of `config`. Needs no async runtime.
    ///
    /// # Errors
    ///
    /// The first listener that cannot be set up, as [`Error::Listen`] or
    /// [`Error::Resolve`] (listeners bound before it are closed again), or
    /// [`Error::NoListeners`] when the configuration names none.
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        Server::bind_with_inherited(Vec::new(), config)
    }

    /// Serves `inherited` sockets (socket activation, see
    /// [`endpoint::inherited`]) first, in their order, then binds every
    /// listener of `config` after them. As with [`Server::from_listeners`],
    /// inherited socket files are left in place at exit; those bound here
    /// are removed as with [`Server::bind`]. Needs no async runtime.
    ///
    /// ```
    /// use upecho::endpoint::{Listen, Listener};
    ///
    /// let inherited = vec![Listener::Tcp(std::net::TcpListener::bind("127.0.0.1:0")?)];
    /// let mut config = upecho::ServerConfig::default();
    /// config.listen = vec![Listen::Udp("127.0.0.1:0".parse()?)];
    /// let server = upecho::Server::bind_with_inherited(inherited, config)?;
    /// let lines: Vec<String> = server.endpoints().iter().map(|e| e.to_string()).collect();
    /// assert!(lines[0].starts_with("tcp 127.0.0.1:"), "{lines:?}");
    /// assert!(lines[1].starts_with("udp 127.0.0.1:"), "{lines:?}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Server::bind`]; [`Error::NoListeners`] only when neither
    /// `inherited` nor `config` has a listener.
    pub fn bind_with_inherited(
        inherited: Vec<Listener>,
        config: ServerConfig,
    ) -> Result<Server, Error> {
        let mut listeners = inherited;
        listeners.reserve(config.listen.len());
        let mut files = Vec::new();
        for listen in &config.listen {
            let listener = endpoint::bind(listen, config.backlog, config.unix_mode)?;
            if let Listen::Unix(path) = listen
                && path.abstract_name().is_none()
            {
                files.push(SocketFile::new(path.as_path()));
            }
            listeners.push(listener);
        }
        let mut server = Server::from_listeners(listeners, &config)?;
        server.files = files;
        if let Some(addr) = &config.metrics {
            server.metrics = Some(bind_metrics(addr, config.backlog)?);
        }
        Ok(server)
    }

    /// A server for sockets bound elsewhere (inherited through socket
    /// activation, or made by a test), served with `config`'s settings; its
    /// listener addresses are ignored. Socket files are left in place at exit:
    /// whoever bound them owns them.
    ///
    /// ```
    /// let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let listeners = vec![upecho::endpoint::Listener::Tcp(socket)];
    /// let config = upecho::ServerConfig::default();
    /// let server = upecho::Server::from_listeners(listeners, &config).unwrap();
    /// assert_eq!(server.endpoints().len(), 1);
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NoListeners`] for an empty list, [`Error::Listen`] when a
    /// socket's address cannot be read or it cannot be made non-blocking.
    pub fn from_listeners(
        listeners: Vec<Listener>,
        config: &ServerConfig,
    ) -> Result<Server, Error> {
        if listeners.is_empty() {
            return Err(Error::NoListeners);
        }
        let mut endpoints = Vec::with_capacity(listeners.len());
        for listener in &listeners {
            let fail = |cause| Error::Listen {
                endpoint: "an inherited socket".into(),
                cause,
            };
            let endpoint = listener.endpoint().map_err(fail)?;
            listener.set_nonblocking().map_err(|cause| Error::Listen {
                endpoint: endpoint.to_string(),
                cause,
            })?;
            endpoints.push(endpoint);
        }
        Ok(Server {
            listeners,
            endpoints,
            files: Vec::new(),
            settings: Arc::new(Settings {
                transform: config.transform,
                idle_timeout: config.idle_timeout,
                proxy: config.proxy_protocol.then(|| proxy::ProxyPolicy {
                    from: config.proxy_from.clone(),
                    timeout: config.proxy_timeout,
                }),
            }),
            max_connections: config.max_connections.max(1),
            shutdown_grace: config.shutdown_grace,
            metrics: None,
        })
    }

    /// The bound endpoints, in the configured order, with real ports.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The address of the metrics endpoint (`--metrics`), with its real port.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The bound TCP socket addresses, in the configured order.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        tcp_addrs(&self.endpoints)
    }

    /// Splits the server into its listeners and the state its tasks share.
    fn into_parts(
        self,
        signal: ShutdownSignal,
    ) -> (Vec<Listening>, Shared, Option<std::net::TcpListener>) {
        let shared = Shared {
            metrics: Arc::default(),
            settings: self.settings,
            slots: Arc::new(Semaphore::new(self.max_connections)),
            open_listeners: TaskTracker::new(),
            listeners: TaskTracker::new(),
            max_connections: self.max_connections,
            signal,
            files: Arc::new(std::sync::Mutex::new(self.files)),
            own_udp: self
                .endpoints
                .iter()
                .filter_map(|endpoint| match endpoint {
                    Endpoint::Udp(addr) => Some(*addr),
                    _ => None,
                })
                .collect(),
            reclaim: Arc::default(),
            cut_off: CancellationToken::new(),
            grace: self.shutdown_grace,
        };
        let listening = self
            .listeners
            .into_iter()
            .zip(self.endpoints)
            .map(|(socket, endpoint)| Listening {
                socket,
                endpoint,
                health: Arc::default(),
            })
            .collect();
        (listening, shared, self.metrics.map(|(socket, _)| socket))
    }

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
    /// [`Error::Listen`] if a listener cannot be registered with the runtime.
    pub async fn run(self, signal: ShutdownSignal) -> Result<(), Error> {
        let (listeners, shared, metrics) = self.into_parts(signal);
        let endpoints: Vec<Endpoint> = listeners.iter().map(|l| l.endpoint.clone()).collect();
        shared.start_accepting(listeners)?;
        shared.start_metrics(metrics)?;
        log_accepting(&endpoints, 1);
        shared.drain().await;
        Ok(())
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
        let (listeners, shared, metrics) = self.into_parts(signal);
        let finished = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut workers = Vec::new();
        let mut started = Ok(());
        for n in 1..threads.max(1) {
            let copies = match share_listeners(&listeners) {
                Ok(copies) => copies,
                Err(err) => {
                    started = Err(err);
                    break;
                }
            };
            let (shared, finished, ready_tx) = (shared.clone(), finished.clone(), ready_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("upecho-{n}"))
                .spawn(move || {
                    let runtime = match single_thread_runtime() {
                        Ok(runtime) => runtime,
                        Err(err) => return drop(ready_tx.send(Err(err))),
                    };
                    runtime.block_on(async {
                        let accepting = shared.start_accepting(copies);
                        let ok = accepting.is_ok();
                        let _ = ready_tx.send(accepting);
                        if ok {
                            // Serve until every connection everywhere is done.
                            finished.cancelled().await;
                        }
                    });
                });
            match spawned {
                Ok(worker) => workers.push(worker),
                Err(cause) => {
                    started = Err(runtime_error(cause));
                    break;
                }
            }
        }
        drop(ready_tx);
        // Every worker reports once; wait for all before announcing readiness.
        for _ in 0..workers.len() {
            let report = ready_rx.recv().unwrap_or_else(|_| {
                Err(runtime_error(std::io::Error::other("a server thread died")))
            });
            if started.is_ok() {
                started = report;
            }
        }
        let result = started.and_then(|()| {
            let runtime = single_thread_runtime()?;
            runtime.block_on(async {
                let endpoints: Vec<Endpoint> =
                    listeners.iter().map(|l| l.endpoint.clone()).collect();
                let ready = shared.start_accepting(listeners);
                let ready = ready.and_then(|()| shared.start_metrics(metrics));
                let ready = ready.and_then(|()| {
                    log_accepting(&endpoints, threads.max(1));
                    on_ready()
                });
                if ready.is_err() {
                    shared.signal.cut_short();
                }
                shared.drain().await;
                ready
            })
        });
        if result.is_err() {
            shared.signal.cut_short();
        }
        finished.cancel();
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

    /// Starts serving on the current Tokio runtime and returns a handle to stop
    /// it. The in-process way to run a server (tests, embedding).
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime.
    pub fn spawn(self) -> RunningServer {
        let endpoints = self.endpoints.clone();
        let signal = ShutdownSignal::new();
        let task = tokio::spawn(self.run(signal.clone()));
        RunningServer {
            endpoints,
            signal,
            task: Some(task),
        }
    }
}

/// Process-lifetime state shared by every accept loop and connection, on
/// every worker thread.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    /// What each connection needs to know.
    pub(crate) settings: Arc<Settings>,
    /// Free connection slots (`--max-connections`).
    pub(crate) slots: Arc<Semaphore>,
    /// Holds a token per open copy of a listening socket: when it is empty
    /// after shutdown began, new connections are refused.
    open_listeners: TaskTracker,
    /// The listener tasks, each of which owns its connections: when all have
    /// ended, every connection is closed.
    listeners: TaskTracker,
    /// See [`ServerConfig::max_connections`]; with `slots`, tells how many
    /// connections are open.
    max_connections: usize,
    /// Shutdown requests.
    pub(crate) signal: ShutdownSignal,
    /// The socket files to remove once the listeners have closed (or when
    /// the last holder of this state goes, if serving never started).
    files: Arc<std::sync::Mutex<Vec<SocketFile>>>,
    /// Every UDP address of the server: a datagram from one of them is never
    /// answered (two listeners of one server must not echo each other).
    own_udp: Arc<[std::net::SocketAddr]>,
    /// Returns the memory of closed connections to the system.
    pub(crate) reclaim: Arc<memory::Reclaim>,
    /// Cancelled by [`Shared::drain`] when open connections must close now:
    /// after the grace, or when the signal is cut short. The listeners watch
    /// this rather than the signal so the drain can log how many were open
    /// before they go.
    cut_off: CancellationToken,
    /// How long connections may finish after shutdown begins.
    grace: Duration,
    /// The counters the metrics endpoint shows; updated at accept, at close
    /// and once per UDP batch, never per message.
    pub(crate) metrics: Arc<metrics::Metrics>,
}

impl Shared {
    /// Registers `listeners` with the current runtime and spawns their accept
    /// loops on it.
    fn start_accepting(&self, listeners: Vec<Listening>) -> Result<(), Error> {
        for Listening {
            socket,
            endpoint,
            health,
        } in listeners
        {
            let fail = |cause| Error::Listen {
                endpoint: endpoint.to_string(),
                cause,
            };
            let open = self.open_listeners.token();
            let shared = self.clone();
            // The one place each kind of socket gets its serving loop.
            match socket {
                Listener::Tcp(socket) => {
                    let socket = watch_readable(socket).map_err(fail)?;
                    let serve = listener::serve(socket, endpoint, health, open, shared);
                    self.listeners.spawn(serve);
                }
                Listener::Unix(socket) => {
                    let socket = watch_readable(socket).map_err(fail)?;
                    let serve = listener::serve(socket, endpoint, health, open, shared);
                    self.listeners.spawn(serve);
                }
                Listener::Udp(socket) => {
                    let socket = tokio::net::UdpSocket::from_std(socket).map_err(fail)?;
                    let own = Arc::clone(&self.own_udp);
                    self.listeners
                        .spawn(udp::serve(socket, endpoint, own, open, shared));
                }
            }
        }
        Ok(())
    }

    /// Spawns the metrics endpoint, if there is one, on the current runtime:
    /// unlike the data listeners it answers through the drain (`/healthz`
    /// then 503) and stops when the last listener task has ended.
    fn start_metrics(&self, socket: Option<std::net::TcpListener>) -> Result<(), Error> {
        let Some(socket) = socket else { return Ok(()) };
        let name = match socket.local_addr() {
            Ok(addr) => format!("metrics {addr}"),
            Err(_) => "metrics".to_string(),
        };
        let fail = |cause| Error::Listen {
            endpoint: name.clone(),
            cause,
        };
        socket.set_nonblocking(true).map_err(fail)?;
        let socket = tokio::net::TcpListener::from_std(socket).map_err(fail)?;
        let draining = self.signal.drain_token().clone();
        let listeners = self.listeners.clone();
        let stop = async move { listeners.wait().await };
        tokio::spawn(crate::http::serve(
            socket,
            Arc::clone(&self.metrics),
            draining,
            stop,
        ));
        Ok(())
    }

    /// Waits for shutdown, then: all listeners closed, connections drained
    /// within the grace, the rest cut off.
    async fn drain(&self) {
        self.signal.drain_token().cancelled().await;
        self.open_listeners.close();
        self.open_listeners.wait().await;
        tracing::info!("listeners closed");
        // Now, not at exit: a successor may bind the path during our grace.
        if let Ok(mut files) = self.files.lock() {
            files.clear();
        }
        self.listeners.close();
        let open = self.open_connections();
        if open > 0 {
            tracing::info!(
                open,
                grace_s = self.grace.as_secs_f64(),
                "waiting for open connections to finish"
            );
        }
        tokio::select! {
            () = self.listeners.wait() => {}
            () = tokio::time::sleep(self.grace) => {
                tracing::info!(open = self.open_connections(), "shutdown grace over, closing connections");
            }
            () = self.signal.cut_token().cancelled() => {
                tracing::info!(open = self.open_connections(), "shutdown cut short, closing connections");
            }
        }
        self.cut_off.cancel();
        self.listeners.wait().await;
        tracing::info!("server stopped");
    }
}

impl Shared {
    /// Connections open right now, on every thread.
    fn open_connections(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }
}

/// Logs, once per listener, that it accepts and on how many threads.
fn log_accepting(endpoints: &[Endpoint], threads: usize) {
    for endpoint in endpoints {
        match endpoint {
            Endpoint::Udp(_) => {
                tracing::info!(listener = %endpoint, threads, "answering datagrams")
            }
            _ => tracing::info!(listener = %endpoint, threads, "accepting connections"),
        }
    }
}

/// One bound listening socket (or one thread's copy of it) on its way to an
/// accept loop.
#[derive(Debug)]
struct Listening {
    /// The socket.
    socket: Listener,
    /// Its address, for readiness lines and logs.
    endpoint: Endpoint,
    /// Shared by every copy, so resource starvation is logged once.
    health: Arc<listener::AcceptHealth>,
}

/// Duplicates the listening descriptors for another worker thread.
fn share_listeners(listeners: &[Listening]) -> Result<Vec<Listening>, Error> {
    listeners
        .iter()
        .map(|listening| {
            let socket = listening
                .socket
                .try_clone()
                .map_err(|cause| Error::Listen {
                    endpoint: listening.endpoint.to_string(),
                    cause,
                })?;
            Ok(Listening {
                socket,
                endpoint: listening.endpoint.clone(),
                health: Arc::clone(&listening.health),
            })
        })
        .collect()
}

/// Registers a listening socket with the runtime for readiness only, so the
/// accept loop can wait for a client before it takes a connection slot.
///
/// `AsyncFd::with_interest` is deprecated because an arbitrary `AsRawFd`
/// type may close or swap its descriptor while registered; a std listener
/// owns its descriptor until it is dropped, which the `AsyncFd` does first,
/// so the safe constructor is sound here and no `unsafe` is needed.
#[allow(deprecated)]
fn watch_readable<L: std::os::fd::AsRawFd>(socket: L) -> std::io::Result<AsyncFd<L>> {
    AsyncFd::with_interest(socket, Interest::READABLE)
}

/// Binds the metrics endpoint's socket; an error names it `metrics ADDR`.
fn bind_metrics(
    addr: &HostPort,
    backlog: u32,
) -> Result<(std::net::TcpListener, std::net::SocketAddr), Error> {
    let fail = |cause| Error::Listen {
        endpoint: format!("metrics {addr}"),
        cause,
    };
    let socket = match endpoint::bind_tcp(addr, backlog) {
        Ok(socket) => socket,
        Err(Error::Listen { cause, .. }) => return Err(fail(cause)),
        Err(err) => return Err(err),
    };
    let local = socket.local_addr().map_err(fail)?;
    Ok((socket, local))
}

/// The TCP addresses among `endpoints`, in order.
fn tcp_addrs(endpoints: &[Endpoint]) -> Vec<std::net::SocketAddr> {
    endpoints
        .iter()
        .filter_map(|endpoint| match endpoint {
            Endpoint::Tcp(addr) => Some(*addr),
            _ => None,
        })
        .collect()
}

/// A Unix socket file the server created: removed when its listeners close
/// (when this is dropped), so no stale file is left behind, but only if it is
/// still the file this server bound. A successor that replaced it while we
/// drained keeps its own.
#[derive(Debug)]
struct SocketFile {
    /// Where it is.
    path: std::path::PathBuf,
    /// Device and inode at bind time, to recognise it.
    id: Option<(u64, u64)>,
}

impl SocketFile {
    fn new(path: &std::path::Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            id: file_id(path),
        }
    }
}

/// The device and inode of the file at `path`, if there is one.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.id.is_some() && file_id(&self.path) == self.id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A Tokio runtime that runs everything on the calling thread.
fn single_thread_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(runtime_error)
}

fn runtime_error(cause: std::io::Error) -> Error {
    Error::Io {
        context: "cannot start a server thread".into(),
        cause,
    }
}

/// A server started with [`Server::spawn`]. Dropping it stops the server
/// at once (connections are cut off); [`RunningServer::shutdown`] stops it
/// gracefully.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    endpoints: Vec<Endpoint>,
    /// How to stop it.
    signal: ShutdownSignal,
    /// The task running [`Server::run`]; taken by `shutdown`.
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl RunningServer {
    /// The bound endpoints, in the configured order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The first TCP address; handy when the server has one listener.
    ///
    /// # Panics
    ///
    /// If the server has no TCP listener.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        tcp_addrs(&self.endpoints)
            .first()
            .copied()
            .expect("the server has a TCP listener")
    }

    /// The server's shutdown signal, to drive shutdown by hand.
    pub fn signal(&self) -> &ShutdownSignal {
        &self.signal
    }

    /// Shuts down gracefully (see [`Server::run`]); the returned future
    /// completes when the server has stopped.
    ///
    /// Shutdown begins when this is called, before the future is polled.
    ///
    /// # Errors
    ///
    /// The error the server stopped with. If the server's task panicked, the
    /// panic is resumed in the caller.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves shutdown underway; the server still stops.
    pub fn shutdown(mut self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        self.signal.begin();
        let task = self.task.take();
        async move {
            let Some(task) = task else { return Ok(()) };
            match task.await {
                Ok(result) => result,
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Err(err) => Err(runtime_error(std::io::Error::other(err.to_string()))),
            }
        }
    }
}

impl Drop for RunningServer {
    /// Stops the server without a grace period unless `shutdown` took over.
    fn drop(&mut self) {
        if self.task.is_some() {
            self.signal.cut_short();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `RunningServer` whose task does what `task` does.
    fn running(task: impl Future<Output = Result<(), Error>> + Send + 'static) -> RunningServer {
        RunningServer {
            endpoints: Vec::new(),
            signal: ShutdownSignal::new(),
            task: Some(tokio::spawn(task)),
        }
    }

    #[tokio::test]
    async fn the_servers_error_reaches_the_caller_of_shutdown() {
        let result = running(async { Err(Error::NoListeners) }).shutdown().await;
        assert!(matches!(result, Err(Error::NoListeners)), "{result:?}");
    }

    #[tokio::test]
    async fn the_servers_panic_reaches_the_caller_of_shutdown() {
        let server = running(async { panic!("the server broke") });
        let caller = tokio::spawn(server.shutdown());
        let panic = caller
            .await
            .expect_err("the panic is resumed in the caller");
        let message = panic.into_panic();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"the server broke"));
    }
}
