//! What every accept loop, UDP loop and connection of one server shares, on
//! every worker thread: [`Settings`] (fixed at start) and [`Shared`] (the
//! connection slots, the shutdown signal, the drain's trackers).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::memory::Reclaim;
use super::proxy::ProxyPolicy;
use super::shutdown::ShutdownSignal;
use super::socket_file::SocketFile;
use crate::Transform;
use crate::access::Live;
use crate::access::per_source::PerSource;
use crate::access::udp_rate::UdpRate;
use crate::metrics::Metrics;

/// Settings every connection task reads; shared, never changed after start
/// but for the access rules and the TLS configuration, which SIGHUP swaps
/// whole.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Who may be served (`--allow`, `--deny` and their files).
    pub(crate) access: Live,
    /// Connections open per source, under `--max-per-source`; `None`
    /// without a limit.
    pub(crate) per_source: Option<Arc<PerSource>>,
    /// The buckets of `--udp-rate`, locked once per batch; `None` without a
    /// limit.
    pub(crate) udp_rate: Option<Mutex<UdpRate>>,
    /// The transform each connection instantiates.
    pub(crate) transform: Transform,
    /// See [`ServerConfig::idle_timeout`](super::ServerConfig::idle_timeout).
    pub(crate) idle_timeout: Option<Duration>,
    /// Who must send a PROXY protocol header; `None` without
    /// [`ServerConfig::proxy_protocol`](super::ServerConfig::proxy_protocol).
    pub(crate) proxy: Option<ProxyPolicy>,
    /// The TLS configuration of `--tls` listeners, which SIGHUP rebuilds;
    /// `None` without one.
    pub(crate) tls: Option<crate::tls::server::ServerTls>,
    /// The limits of the WebSocket listeners.
    pub(crate) websocket: super::config::WsConfig,
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
    pub(super) open_listeners: TaskTracker,
    /// The listener tasks, each of which owns its connections: when all have
    /// ended, every connection is closed.
    pub(super) listeners: TaskTracker,
    /// See [`ServerConfig::max_connections`](super::ServerConfig::max_connections);
    /// with `slots`, tells how many connections are open.
    pub(super) max_connections: usize,
    /// Shutdown requests.
    pub(crate) signal: ShutdownSignal,
    /// The socket files to remove once the listeners have closed (or when
    /// the last holder of this state goes, if serving never started).
    pub(super) files: Arc<Mutex<Vec<SocketFile>>>,
    /// Every UDP address of the server: a datagram from one of them is never
    /// answered (two listeners of one server must not echo each other).
    pub(super) own_udp: Arc<[SocketAddr]>,
    /// Returns the memory of closed connections to the system.
    pub(crate) reclaim: Arc<Reclaim>,
    /// Cancelled by the [drain](super::drain) when open connections must
    /// close now: after the grace, or when the signal is cut short. The
    /// listeners watch this rather than the signal so the drain can log how
    /// many were open before they go.
    pub(super) cut_off: CancellationToken,
    /// How long connections may finish after shutdown begins.
    pub(super) grace: Duration,
    /// The counters the metrics endpoint shows; updated at accept, at close
    /// and once per UDP batch, never per message.
    pub(crate) metrics: Arc<Metrics>,
}

impl Shared {
    /// Connections open right now, on every thread.
    pub(super) fn open_connections(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }
}
