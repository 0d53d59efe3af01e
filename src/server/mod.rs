//! The server: takes already bound listeners and a [`ShutdownSignal`], accepts
//! under a connection limit, and drains on shutdown. Each accepted socket becomes
//! a [`connection`] task (read -> transform -> write).

mod connection;
mod listener;
mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

pub use connection::BUFFER_SIZE;
pub use shutdown::{ShutdownSignal, watch_os_signals};

use crate::endpoint::{self, Endpoint, HostPort};
use crate::{Error, Transform};

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

/// What to serve and how: the validated form of `upecho serve`'s flags.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// TCP addresses to listen on, in the order their readiness lines are printed.
    pub tcp: Vec<HostPort>,
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
}

impl Default for ServerConfig {
    /// The contract's defaults: `tcp 127.0.0.1:8080`, ascii, backlog 1024, 10000
    /// connections, idle timeout 300 s, shutdown grace 10 s.
    fn default() -> Self {
        ServerConfig {
            tcp: vec![HostPort::from(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                8080,
            )))],
            transform: Transform::Ascii,
            backlog: 1024,
            max_connections: 10_000,
            idle_timeout: Some(Duration::from_secs(300)),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// The defaults, but listening only on the given TCP address.
    ///
    /// ```
    /// let config = upecho::ServerConfig::tcp("127.0.0.1:0".parse().unwrap());
    /// assert_eq!(config.tcp.len(), 1);
    /// ```
    pub fn tcp(addr: HostPort) -> Self {
        ServerConfig {
            tcp: vec![addr],
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
/// running.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    /// Bound, listening, non-blocking sockets, in the configured order.
    listeners: Vec<std::net::TcpListener>,
    /// The addresses they are bound to (with real ports).
    endpoints: Vec<Endpoint>,
    /// Per-connection settings.
    settings: Arc<Settings>,
    /// See [`ServerConfig::max_connections`].
    max_connections: usize,
    /// See [`ServerConfig::shutdown_grace`].
    shutdown_grace: Duration,
}

impl Server {
    /// Binds every listener of `config`. Needs no async runtime.
    ///
    /// # Errors
    ///
    /// The first listener that cannot be set up, as [`Error::Listen`] or
    /// [`Error::Resolve`]; listeners bound before it are closed again.
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        let mut listeners = Vec::with_capacity(config.tcp.len());
        let mut endpoints = Vec::with_capacity(config.tcp.len());
        for addr in &config.tcp {
            let listener = endpoint::bind_tcp(addr, config.backlog)?;
            let local = listener.local_addr().map_err(|cause| Error::Listen {
                endpoint: format!("tcp {addr}"),
                cause,
            })?;
            listeners.push(listener);
            endpoints.push(Endpoint::Tcp(local));
        }
        Ok(Server {
            listeners,
            endpoints,
            settings: Arc::new(Settings {
                transform: config.transform,
                idle_timeout: config.idle_timeout,
            }),
            max_connections: config.max_connections.max(1),
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The bound endpoints, in the configured order, with real ports.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The bound TCP socket addresses, in the configured order.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.endpoints
            .iter()
            .map(|endpoint| match endpoint {
                Endpoint::Tcp(addr) => *addr,
            })
            .collect()
    }

    /// Serves until `signal` fires, then drains: listeners close at once, open
    /// connections get up to the shutdown grace to finish, and whatever is still
    /// open after that (or after [`ShutdownSignal::cut_short`]) is closed.
    ///
    /// Must run inside a Tokio runtime; connection tasks are spawned on it.
    ///
    /// # Errors
    ///
    /// [`Error::Listen`] if a listener cannot be registered with the runtime.
    pub async fn run(self, signal: ShutdownSignal) -> Result<(), Error> {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let connections = TaskTracker::new();
        let mut accept_loops = Vec::with_capacity(self.listeners.len());
        for (listener, endpoint) in self.listeners.into_iter().zip(self.endpoints) {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|cause| Error::Listen {
                    endpoint: endpoint.to_string(),
                    cause,
                })?;
            tracing::info!(listener = %endpoint, "accepting connections");
            accept_loops.push(tokio::spawn(listener::accept_loop(
                listener,
                endpoint,
                Arc::clone(&self.settings),
                Arc::clone(&slots),
                connections.clone(),
                signal.clone(),
            )));
        }
        for accept_loop in accept_loops {
            // An accept loop only ends on shutdown (or by panicking, which the
            // runtime has already reported): either way, keep draining.
            let _ = accept_loop.await;
        }
        connections.close();
        let open = connections.len();
        if open > 0 {
            tracing::info!(
                open,
                grace_s = self.shutdown_grace.as_secs_f64(),
                "waiting for open connections to finish"
            );
        }
        tokio::select! {
            () = connections.wait() => {}
            () = tokio::time::sleep(self.shutdown_grace) => {
                tracing::info!(open = connections.len(), "shutdown grace over, closing connections");
            }
            () = signal.cut_token().cancelled() => {
                tracing::info!(open = connections.len(), "shutdown cut short, closing connections");
            }
        }
        signal.cut_short();
        connections.wait().await;
        tracing::info!("server stopped");
        Ok(())
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
            task,
        }
    }
}

/// A server started with [`Server::spawn`].
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    endpoints: Vec<Endpoint>,
    /// How to stop it.
    signal: ShutdownSignal,
    /// The task running [`Server::run`].
    task: JoinHandle<Result<(), Error>>,
}

impl RunningServer {
    /// The bound endpoints, in the configured order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The first TCP address; handy when the server has one listener.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        match self.endpoints[0] {
            Endpoint::Tcp(addr) => addr,
        }
    }

    /// The server's shutdown signal, to drive shutdown by hand.
    pub fn signal(&self) -> &ShutdownSignal {
        &self.signal
    }

    /// Shuts down gracefully (see [`Server::run`]) and waits until it stopped.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves shutdown underway; the server still stops.
    pub async fn shutdown(self) {
        self.signal.begin();
        // The task returns Ok once drained; a join error means it panicked, which
        // the runtime has already reported.
        let _ = self.task.await;
    }
}
