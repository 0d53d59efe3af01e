//! What to serve and how: [`ServerConfig`], the validated form of `upecho
//! serve`'s flags, which [`Server::bind`](super::Server::bind) turns into
//! bound sockets.

use std::time::Duration;

use crate::Transform;
use crate::access::AccessConfig;
use crate::endpoint::{HostPort, Listen};

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
    /// becomes the connection's peer. See [`proxy`](super::proxy).
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
    /// Who may be served (`--allow`, `--deny`, `--allow-file`,
    /// `--deny-file`); by default everyone.
    pub access: AccessConfig,
    /// At most this many stream connections at once from one source (an
    /// IPv4 address or an IPv6 /64) over all listeners (`--max-per-source`);
    /// 0 = no limit.
    pub max_per_source: u32,
    /// At most this many replies a second to one UDP source (an IPv4
    /// address or an IPv6 /64), with a burst of as many (`--udp-rate`);
    /// 0 = no limit.
    pub udp_rate: u32,
    /// The certificate, client CAs and handshake limit of the `--tls`
    /// listeners.
    pub tls: crate::tls::server::TlsConfig,
    /// The limits of the `--ws` and `--wss` listeners.
    pub websocket: WsConfig,
}

/// How the WebSocket listeners (`--ws`, `--wss`) serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsConfig {
    /// The largest message, however fragmented, in bytes
    /// (`--ws-max-message`); a larger one closes with 1009.
    pub max_message: usize,
    /// The `Origin` headers accepted (`--ws-origin`); empty: any.
    pub origins: Vec<String>,
}

impl Default for WsConfig {
    /// The contract's: 16 MiB messages, any origin.
    fn default() -> Self {
        WsConfig {
            max_message: 16 * 1024 * 1024,
            origins: Vec::new(),
        }
    }
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
            access: AccessConfig::default(),
            max_per_source: 0,
            udp_rate: 0,
            tls: crate::tls::server::TlsConfig::new(),
            websocket: WsConfig::default(),
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
