//! The tally of one UDP socket: datagrams received, replies sent, drops by
//! reason; kept per thread, folded into the metrics once per batch, and
//! summed over the threads for one line at stop.

use std::net::SocketAddr;

use crate::Endpoint;
use crate::metrics::DatagramMetrics;

/// Why a datagram got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dropped {
    /// The reply would exceed [`MAX_DATAGRAM`](crate::endpoint::MAX_DATAGRAM).
    TooLarge,
    /// Answering could feed a loop between two services.
    Loop,
    /// The socket did not take the reply.
    SendFailed,
    /// The access rules deny its source.
    Denied,
    /// Its source had no `--udp-rate` token left.
    RateLimited,
}

impl Dropped {
    /// Every reason, in the order of [`Counts::dropped`].
    const ALL: [Dropped; 5] = [
        Dropped::TooLarge,
        Dropped::Loop,
        Dropped::SendFailed,
        Dropped::Denied,
        Dropped::RateLimited,
    ];

    /// The name used in logs and metrics.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Dropped::TooLarge => "too_large",
            Dropped::Loop => "loop",
            Dropped::SendFailed => "send_failed",
            Dropped::Denied => "denied",
            Dropped::RateLimited => "rate_limited",
        }
    }
}

/// Datagrams answered and dropped on one socket (on one thread, or summed
/// over them).
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Datagrams received.
    pub(super) received: u64,
    /// Replies sent.
    pub(super) sent: u64,
    /// Dropped, by reason: too large, loop, send failed, denied, rate limited.
    pub(super) dropped: [u64; 5],
}

impl Counts {
    /// Counts a datagram dropped for `why`, and says so at debug level.
    pub(super) fn dropped(&mut self, why: Dropped, endpoint: &Endpoint, peer: SocketAddr) {
        self.dropped[why as usize] += 1;
        tracing::debug!(listener = %endpoint, %peer, reason = why.reason(), "datagram dropped");
    }
}

impl Counts {
    /// Adds `other`'s counts to these.
    pub(super) fn add(&mut self, other: &Counts) {
        self.received += other.received;
        self.sent += other.sent;
        for (total, n) in self.dropped.iter_mut().zip(other.dropped) {
            *total += n;
        }
    }
}

/// Adds to the metrics what `counts` gained since `folded`, then records
/// that they have it.
pub(super) fn fold(counters: &DatagramMetrics, counts: &Counts, folded: &mut Counts) {
    let dropped = Dropped::ALL.map(|why| {
        let at = why as usize;
        (why.reason(), counts.dropped[at] - folded.dropped[at])
    });
    counters.add(
        counts.received - folded.received,
        counts.sent - folded.sent,
        dropped,
    );
    folded.received = counts.received;
    folded.sent = counts.sent;
    folded.dropped = counts.dropped;
}

/// Logs what one socket did, on every thread, once, when it stops (if it
/// dropped anything).
pub(super) fn report(endpoint: &Endpoint, counts: &Counts) {
    let [too_large, looped, send_failed, denied, rate_limited] = counts.dropped;
    if counts.dropped.iter().sum::<u64>() > 0 {
        tracing::info!(listener = %endpoint, received = counts.received, sent = counts.sent,
            too_large, r#loop = looped, send_failed, denied, rate_limited, "datagrams dropped");
    }
}
