//! `--udp-rate N`: at most N replies a second to one source (an IPv4
//! address or an IPv6 /64, not address and port: a reflector's victim is
//! a host, and a spoofer picks ports freely), over all UDP listeners: a
//! token bucket per source holding up to N tokens (the burst), refilled at N
//! a second; a reply takes one, and a datagram that finds none is dropped
//! (reason `rate_limited`).
//!
//! The table is bounded: two generations of [`GENERATION`] sources; a source
//! seen again moves into the current one, and when that is full the older
//! generation is forgotten, so the sources forgotten first are the least
//! recently seen. A forgotten source starts again with a full bucket: that
//! is the burst it could have had anyway after a second of quiet.

use std::net::IpAddr;
use std::time::Instant;

use super::per_source::Source;
use crate::generations::Generations;

/// Sources per generation of the table.
const GENERATION: usize = 32_768;

/// One source's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens left, up to the rate.
    tokens: f64,
    /// When they were counted.
    at: Instant,
}

/// The buckets of every source lately seen.
#[derive(Debug)]
pub(crate) struct UdpRate {
    /// Replies a second, and the burst.
    rate: f64,
    /// The buckets of the sources lately seen.
    sources: Generations<Source, Bucket>,
}

impl UdpRate {
    /// Buckets of `rate` replies a second.
    pub(crate) fn new(rate: u32) -> UdpRate {
        UdpRate {
            rate: f64::from(rate),
            sources: Generations::new(GENERATION),
        }
    }

    /// Takes a token for a reply to `ip` at `now`: false if it has none
    /// left, and the reply must be dropped.
    pub(crate) fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        let source = Source::of(ip);
        let full = Bucket {
            tokens: self.rate,
            at: now,
        };
        let rate = self.rate;
        self.sources.update(
            source,
            || full,
            |bucket| {
                let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
                bucket.at = now;
                let allowed = bucket.tokens >= 1.0;
                if allowed {
                    bucket.tokens -= 1.0;
                }
                allowed
            },
        )
    }

    /// Sources remembered (for tests).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_of_the_rate_then_the_rate_per_second() {
        let mut rate = UdpRate::new(10);
        let start = Instant::now();
        let taken = (0..25)
            .filter(|_| rate.take(ip("192.0.2.1"), start))
            .count();
        assert_eq!(taken, 10, "the burst");
        let later = start + Duration::from_millis(500);
        let taken = (0..25)
            .filter(|_| rate.take(ip("192.0.2.1"), later))
            .count();
        assert_eq!(taken, 5, "half a second refills half");
        assert!(
            rate.take(ip("192.0.2.2"), later),
            "another source has its own"
        );
    }

    #[test]
    fn an_ipv6_64_shares_one_bucket_and_ports_do_not_matter() {
        let mut rate = UdpRate::new(2);
        let now = Instant::now();
        assert!(rate.take(ip("2001:db8::1"), now));
        assert!(rate.take(ip("2001:db8::ffff"), now));
        assert!(!rate.take(ip("2001:db8::2"), now));
        assert!(rate.take(ip("2001:db8:0:1::1"), now), "another /64");
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut rate = UdpRate::new(1);
        let now = Instant::now();
        for n in 0..(3 * GENERATION as u32) {
            rate.take(IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(rate.remembered() <= 2 * GENERATION);
    }
}
