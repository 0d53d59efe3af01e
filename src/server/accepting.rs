//! From bound sockets to serving loops on one runtime: each stream socket
//! gets an accept loop ([`listener`]), each UDP socket a
//! datagram loop ([`udp`]), the metrics socket its endpoint.
//! Called once per worker thread with that thread's copies of the sockets.

use std::sync::Arc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::listener::{self, AcceptHealth};
use super::state::Shared;
use super::udp;
use crate::Error;
use crate::endpoint::{Endpoint, Listener};

/// One bound listening socket (or one thread's copy of it) on its way to an
/// accept loop.
#[derive(Debug)]
pub(super) struct Listening {
    /// The socket.
    pub(super) socket: Listener,
    /// Its address, for readiness lines and logs.
    pub(super) endpoint: Endpoint,
    /// Shared by every copy of a stream socket, so resource starvation is
    /// logged once.
    pub(super) health: Arc<AcceptHealth>,
    /// Shared by every copy of a UDP socket: its peers' echo counts.
    pub(super) udp: Arc<udp::Common>,
}

impl Listening {
    /// A socket no thread serves yet.
    pub(super) fn new(socket: Listener, endpoint: Endpoint) -> Listening {
        Listening {
            socket,
            endpoint,
            health: Arc::default(),
            udp: Arc::default(),
        }
    }
}

/// Duplicates the listening descriptors for another worker thread.
pub(super) fn share(listeners: &[Listening]) -> Result<Vec<Listening>, Error> {
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
                udp: Arc::clone(&listening.udp),
            })
        })
        .collect()
}

/// Registers `listeners` with the current runtime and spawns their serving
/// loops on it.
pub(super) fn start(shared: &Shared, listeners: Vec<Listening>) -> Result<(), Error> {
    for Listening {
        socket,
        endpoint,
        health,
        udp: common,
    } in listeners
    {
        let fail = |cause| Error::Listen {
            endpoint: endpoint.to_string(),
            cause,
        };
        let open = shared.open_listeners.token();
        let task = shared.clone();
        // The one place each kind of socket gets its serving loop.
        match socket {
            Listener::Tcp(socket)
            | Listener::Tls(socket)
            | Listener::Ws(socket)
            | Listener::Wss(socket) => {
                let socket = watch_readable(socket).map_err(fail)?;
                let serve = listener::serve(socket, endpoint, health, open, task);
                shared.listeners.spawn(serve);
            }
            Listener::Unix(socket) => {
                let socket = watch_readable(socket).map_err(fail)?;
                let serve = listener::serve(socket, endpoint, health, open, task);
                shared.listeners.spawn(serve);
            }
            Listener::Udp(socket) => {
                let socket = tokio::net::UdpSocket::from_std(socket).map_err(fail)?;
                let own = Arc::clone(&shared.own_udp);
                let serve = udp::serve(socket, endpoint, own, common, open, task);
                shared.listeners.spawn(serve);
            }
        }
    }
    Ok(())
}

/// Spawns the metrics endpoint, if there is one, on the current runtime:
/// it answers through the drain, unlike the data listeners.
pub(super) fn start_metrics(
    shared: &Shared,
    socket: Option<std::net::TcpListener>,
) -> Result<(), Error> {
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
    // Unlike the data listeners it answers through the drain (`/healthz`
    // then 503), and stops when the last listener task has ended.
    let draining = shared.signal.drain_token().clone();
    let listeners = shared.listeners.clone();
    let stop = async move { listeners.wait().await };
    tokio::spawn(crate::http::serve(
        socket,
        Arc::clone(&shared.metrics),
        draining,
        stop,
    ));
    Ok(())
}

/// Logs, once per listener, that it accepts and on how many threads.
pub(super) fn log_accepting(endpoints: &[Endpoint], threads: usize) {
    for endpoint in endpoints {
        match endpoint {
            Endpoint::Udp(_) => {
                tracing::info!(listener = %endpoint, threads, "answering datagrams")
            }
            _ => tracing::info!(listener = %endpoint, threads, "accepting connections"),
        }
    }
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
