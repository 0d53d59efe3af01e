//! The loop of one UDP socket on one thread: wait until readable, receive a
//! batch, answer it, fold the counts into the metrics, until shutdown.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;

use nix::sys::socket::{setsockopt, sockopt};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::answer::{Context, answer};
use super::batch::with_batch;
use super::common::Common;
use super::counts::{Counts, fold};
use super::rules::local_addresses;
use crate::Endpoint;
use crate::server::state::Shared;

/// Serves `socket` until shutdown begins. `own` lists every UDP address of
/// the server, for the loop rule; `common` is shared by every thread's copy
/// of this socket. `open` is held while the socket is open.
pub(crate) async fn serve(
    socket: UdpSocket,
    endpoint: Endpoint,
    own: Arc<[SocketAddr]>,
    common: Arc<Common>,
    open: TaskTrackerToken,
    shared: Shared,
) {
    let drain = shared.signal.drain_token().clone();
    let kind = Kind::of(&socket, &endpoint);
    let context = Context {
        transform: shared.settings.transform,
        own: &own,
        local: &kind.local,
        endpoint: &endpoint,
        access: &shared.settings.access,
        udp_rate: shared.settings.udp_rate.as_ref(),
    };
    let mut counts = Counts::default();
    // What of `counts` the metrics already have.
    let mut folded = Counts::default();
    let counters = shared.metrics.datagram(&endpoint);
    loop {
        tokio::select! {
            biased;
            () = drain.cancelled() => break,
            ready = socket.readable() => if ready.is_err() { break },
        }
        let served = socket.try_io(Interest::READABLE, || {
            with_batch(|batch| {
                batch.receive(&socket, kind.ipv6, kind.wildcard)?;
                answer(&socket, batch, &common, &context, &mut counts);
                Ok(())
            })
        });
        // Once per batch, not per datagram.
        fold(&counters, &counts, &mut folded);
        match served {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => {
                // An error about one datagram (a queued ICMP error); the socket goes on.
                tracing::debug!(listener = %endpoint, error = %crate::error::plain(&err), "receive failed");
            }
        }
    }
    common.stopped(&counts, &endpoint);
    drop(open);
}

/// What kind of socket is served: how it receives and what it owns.
struct Kind {
    /// Bound to a wildcard address: it learns each datagram's destination.
    wildcard: bool,
    /// An IPv6 socket.
    ipv6: bool,
    /// For a wildcard socket, this host's addresses when serving began: the
    /// socket owns its port at each of them. Empty otherwise.
    local: Vec<IpAddr>,
}

impl Kind {
    /// Looks at `socket` and, if it is a wildcard one, asks it for each
    /// datagram's destination.
    fn of(socket: &UdpSocket, endpoint: &Endpoint) -> Kind {
        let bound = socket.local_addr().ok();
        let wildcard = bound.is_some_and(|addr| addr.ip().is_unspecified());
        if wildcard && let Err(err) = report_destinations(socket) {
            // Replies then go out from the kernel's choice of address.
            tracing::warn!(listener = %endpoint, error = %crate::error::plain(&io::Error::from(err)),
                "cannot learn datagrams' destinations");
        }
        Kind {
            wildcard,
            ipv6: bound.is_some_and(|addr| addr.is_ipv6()),
            local: if wildcard {
                local_addresses()
            } else {
                Vec::new()
            },
        }
    }
}

/// Asks a wildcard-bound socket to report each datagram's destination address.
fn report_destinations(socket: &UdpSocket) -> nix::Result<()> {
    if socket.local_addr().is_ok_and(|addr| addr.is_ipv6()) {
        setsockopt(&socket.as_fd(), sockopt::Ipv6RecvPacketInfo, &true)
    } else {
        setsockopt(&socket.as_fd(), sockopt::Ipv4PacketInfo, &true)
    }
}
