//! One UDP socket: recv_from -> transform -> send_to, a datagram at a time,
//! until shutdown. Not a connection: every datagram is answered with one
//! datagram to its source, or dropped and counted.
//!
//! Why datagrams are dropped rather than answered:
//! - a reply over 65,507 bytes (a unicode datagram that grew) cannot be sent
//!   whole, and a truncated reply would be a wrong one (`too_large`);
//! - a datagram from the echo, daytime, chargen or time port (7, 13, 19, 37),
//!   from a broadcast or multicast address, or from one of this server's own
//!   addresses would start or feed a loop between two such services: the
//!   echo/chargen storm (`loop`);
//! - a reply the socket cannot take at once is not waited for: one slow or
//!   unreachable peer must never hold up the others (`send_failed`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::Shared;
use crate::Endpoint;

/// The largest UDP payload over IPv4 (65,535 minus the IP and UDP headers);
/// replies over it are dropped, so they are never truncated on any path.
pub const MAX_DATAGRAM: usize = 65_507;

/// Receive buffer: larger than any UDP payload, so nothing is truncated on
/// the way in either.
const RECEIVE: usize = 64 * 1024;

/// Source ports of the classic services that answer anything: echo (7),
/// daytime (13), chargen (19), time (37).
const LOOP_PORTS: [u16; 4] = [7, 13, 19, 37];

/// Why a datagram got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// The reply would exceed [`MAX_DATAGRAM`].
    TooLarge,
    /// Answering could feed a loop between two services.
    Loop,
    /// The socket did not take the reply.
    SendFailed,
}

impl Dropped {
    /// The name used in logs (and the metrics of the operations issue).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Dropped::TooLarge => "too_large",
            Dropped::Loop => "loop",
            Dropped::SendFailed => "send_failed",
        }
    }
}

/// Returns true if and only if answering a datagram from `source` could
/// start or feed a loop: a classic always-answering service port, a
/// broadcast, multicast or unspecified address, or one of `own` (this
/// server's UDP addresses).
pub(crate) fn is_loop_risk(source: SocketAddr, own: &[SocketAddr]) -> bool {
    let ip = source.ip();
    let odd_address = match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_multicast() || v6.is_unspecified(),
    };
    LOOP_PORTS.contains(&source.port()) || odd_address || own.contains(&source)
}

/// Datagrams answered and dropped on one socket (on one thread).
#[derive(Debug, Default)]
struct Counts {
    /// Datagrams received.
    received: u64,
    /// Replies sent.
    sent: u64,
    /// Dropped, by reason: too large, loop, send failed.
    dropped: [u64; 3],
}

/// Serves `socket` until shutdown begins. `own` lists every UDP address of
/// the server, for the loop rule. `open` is held while the socket is open.
pub(crate) async fn serve(
    socket: UdpSocket,
    endpoint: Endpoint,
    own: Arc<[SocketAddr]>,
    open: TaskTrackerToken,
    shared: Shared,
) {
    let drain = shared.signal.drain_token().clone();
    let transform = shared.settings.transform;
    // One buffer per socket and thread, not per peer.
    let mut buf = vec![0u8; RECEIVE];
    let mut counts = Counts::default();
    loop {
        let (n, source) = tokio::select! {
            biased;
            () = drain.cancelled() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(err) => {
                    // An error about one datagram; the socket goes on.
                    tracing::debug!(listener = %endpoint, error = %crate::error::plain(&err), "receive failed");
                    continue;
                }
            },
        };
        counts.received += 1;
        let outcome = if is_loop_risk(source, &own) {
            Err(Dropped::Loop)
        } else {
            answer(&socket, &transform.apply(&mut buf[..n]), source)
        };
        match outcome {
            Ok(()) => counts.sent += 1,
            Err(why) => {
                counts.dropped[why as usize] += 1;
                tracing::debug!(listener = %endpoint, peer = %source, reason = why.reason(), "datagram dropped");
            }
        }
    }
    drop(open);
    report(&endpoint, &counts);
}

/// Sends `reply` to `peer` if it fits and the socket takes it now.
fn answer(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) -> Result<(), Dropped> {
    if reply.len() > MAX_DATAGRAM {
        return Err(Dropped::TooLarge);
    }
    match socket.try_send_to(reply, peer) {
        Ok(_) => Ok(()),
        // Full send buffer, unreachable network, ...: never wait for a peer.
        Err(_) => Err(Dropped::SendFailed),
    }
}

/// Logs what one socket did, once, when it stops (if it dropped anything).
fn report(endpoint: &Endpoint, counts: &Counts) {
    let [too_large, looped, send_failed] = counts.dropped;
    if too_large + looped + send_failed > 0 {
        tracing::info!(listener = %endpoint, received = counts.received, sent = counts.sent,
            too_large, r#loop = looped, send_failed, "datagrams dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn datagrams_from_always_answering_service_ports_are_loop_risks() {
        for port in [7, 13, 19, 37] {
            assert!(
                is_loop_risk(addr(&format!("192.0.2.1:{port}")), &[]),
                "{port}"
            );
            assert!(
                is_loop_risk(addr(&format!("[2001:db8::1]:{port}")), &[]),
                "{port}"
            );
        }
        for port in [8, 53, 1024, 40000] {
            assert!(
                !is_loop_risk(addr(&format!("192.0.2.1:{port}")), &[]),
                "{port}"
            );
        }
    }

    #[test]
    fn broadcast_multicast_and_unspecified_sources_are_loop_risks() {
        for source in [
            "255.255.255.255:5000",
            "224.0.0.1:5000",
            "239.1.2.3:5000",
            "0.0.0.0:5000",
            "[ff02::1]:5000",
            "[::]:5000",
        ] {
            assert!(is_loop_risk(addr(source), &[]), "{source}");
        }
        assert!(!is_loop_risk(addr("127.0.0.1:5000"), &[]));
        assert!(!is_loop_risk(addr("[::1]:5000"), &[]));
    }

    #[test]
    fn the_servers_own_addresses_are_loop_risks() {
        let own = [addr("127.0.0.1:9000"), addr("[::1]:9001")];
        assert!(is_loop_risk(addr("127.0.0.1:9000"), &own));
        assert!(is_loop_risk(addr("[::1]:9001"), &own));
        assert!(!is_loop_risk(addr("127.0.0.1:9001"), &own));
    }
}
