//! [`Server`]: a server whose sockets are bound and listening but not yet
//! served; the step between a [`ServerConfig`] and the
//! [`workers`](super::workers) that run it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accepting::Listening;
use super::config::ServerConfig;
use super::proxy::ProxyPolicy;
use super::reload::Reloader;
use super::shutdown::ShutdownSignal;
use super::socket_file::SocketFile;
use super::state::{Settings, Shared};
use crate::Error;
use crate::access::Live;
use crate::access::per_source::PerSource;
use crate::access::udp_rate::UdpRate;
use crate::endpoint::{self, Endpoint, HostPort, Listen, Listener};
use crate::metrics::Metrics;
use crate::tls::server::ServerTls;

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
    metrics: Option<(std::net::TcpListener, SocketAddr)>,
    /// What the metrics show; made with the server so that SIGHUP can
    /// update the certificate's expiry.
    registry: Arc<Metrics>,
}

/// What a server becomes when it starts: its sockets, the state their loops
/// share, and the metrics socket.
pub(super) type Parts = (Vec<Listening>, Shared, Option<std::net::TcpListener>);

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
        let endpoints = listeners
            .iter()
            .map(ready_for_serving)
            .collect::<Result<Vec<_>, _>>()?;
        let rules = config.access.load()?;
        let tls = endpoints
            .iter()
            .any(Endpoint::is_tls)
            .then(|| ServerTls::load(&config.tls, certificate_hosts(config, &endpoints)))
            .transpose()?;
        if config.udp_rate == 0 {
            warn_open_reflectors(&endpoints);
        }
        let registry = Arc::new(Metrics::default());
        if let Some(tls) = &tls {
            registry.set_tls_expiry(tls.expiry());
        }
        Ok(Server {
            listeners,
            endpoints,
            files: Vec::new(),
            settings: Arc::new(Settings {
                access: Live::new(config.access.clone(), rules),
                per_source: (config.max_per_source > 0)
                    .then(|| PerSource::new(config.max_per_source)),
                udp_rate: (config.udp_rate > 0).then(|| Mutex::new(UdpRate::new(config.udp_rate))),
                transform: config.transform,
                idle_timeout: config.idle_timeout,
                proxy: config.proxy_protocol.then(|| ProxyPolicy {
                    from: config.proxy_from.clone(),
                    timeout: config.proxy_timeout,
                }),
                tls,
                websocket: config.websocket.clone(),
            }),
            max_connections: config.max_connections.max(1),
            shutdown_grace: config.shutdown_grace,
            metrics: None,
            registry,
        })
    }

    /// The bound endpoints, in the configured order, with real ports.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// What SIGHUP calls to re-read the access files while this server
    /// runs (see [`watch_os_signals`](super::watch_os_signals)).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            settings: Arc::clone(&self.settings),
            metrics: Arc::clone(&self.registry),
        }
    }

    /// The address of the metrics endpoint (`--metrics`), with its real port.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The bound TCP socket addresses, in the configured order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        tcp_addrs(&self.endpoints)
    }

    /// Splits the server into its listeners and the state their loops share.
    pub(super) fn into_parts(self, signal: ShutdownSignal) -> Parts {
        let own_udp = self
            .endpoints
            .iter()
            .filter_map(|endpoint| match endpoint {
                Endpoint::Udp(addr) => Some(*addr),
                _ => None,
            })
            .collect();
        let shared = Shared {
            metrics: self.registry,
            settings: self.settings,
            slots: Arc::new(Semaphore::new(self.max_connections)),
            open_listeners: TaskTracker::new(),
            listeners: TaskTracker::new(),
            max_connections: self.max_connections,
            signal,
            files: Arc::new(Mutex::new(self.files)),
            own_udp,
            reclaim: Arc::default(),
            cut_off: CancellationToken::new(),
            grace: self.shutdown_grace,
        };
        let listening = self
            .listeners
            .into_iter()
            .zip(self.endpoints)
            .map(|(socket, endpoint)| Listening::new(socket, endpoint))
            .collect();
        (listening, shared, self.metrics.map(|(socket, _)| socket))
    }
}

/// Warns, once per listener, of a UDP listener any host can reach that has
/// no `--udp-rate`: with spoofed sources, an echo service answers whoever
/// the spoofer names, as much as it is sent (a reflector).
fn warn_open_reflectors(endpoints: &[Endpoint]) {
    for endpoint in endpoints {
        if let Endpoint::Udp(addr) = endpoint
            && !addr.ip().to_canonical().is_loopback()
        {
            tracing::warn!(listener = %endpoint,
                "UDP on a non-loopback address without --udp-rate: an open UDP echo can be abused as a reflector");
        }
    }
}

/// The names a temporary certificate is valid for: `localhost`, the
/// loopback addresses, and each TLS listener's host as given and as bound
/// (but a wildcard address, which names no host).
fn certificate_hosts(config: &ServerConfig, endpoints: &[Endpoint]) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let given = config.listen.iter().filter_map(|listen| match listen {
        Listen::Tls(addr) | Listen::Wss(addr) => Some(addr.host().to_string()),
        _ => None,
    });
    let bound = endpoints.iter().filter_map(|endpoint| match endpoint {
        Endpoint::Tls(addr) | Endpoint::Wss(addr) if !addr.ip().is_unspecified() => {
            Some(addr.ip().to_string())
        }
        _ => None,
    });
    for host in given.chain(bound) {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let wildcard = host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if !wildcard && !host.is_empty() && !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

/// The address of a bound socket, once it is non-blocking as the serving
/// loops need it.
fn ready_for_serving(listener: &Listener) -> Result<Endpoint, Error> {
    let endpoint = listener.endpoint().map_err(|cause| Error::Listen {
        endpoint: "an inherited socket".into(),
        cause,
    })?;
    listener.set_nonblocking().map_err(|cause| Error::Listen {
        endpoint: endpoint.to_string(),
        cause,
    })?;
    Ok(endpoint)
}

/// Binds the metrics endpoint's socket; an error names it `metrics ADDR`.
fn bind_metrics(
    addr: &HostPort,
    backlog: u32,
) -> Result<(std::net::TcpListener, SocketAddr), Error> {
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
pub(super) fn tcp_addrs(endpoints: &[Endpoint]) -> Vec<SocketAddr> {
    endpoints
        .iter()
        .filter_map(|endpoint| match endpoint {
            Endpoint::Tcp(addr) => Some(*addr),
            _ => None,
        })
        .collect()
}
