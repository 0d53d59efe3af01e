//! `--max-per-source N`: at most N stream connections at once from one
//! source, over all listeners. A source is an IPv4 address or an IPv6 /64
//! (the usual unit one host controls: a host that may pick any address in
//! its /64 must not get N connections per address). One connection more is
//! closed at once (reason `per_source`).
//!
//! The table holds one entry per source with a connection open, so it is
//! bounded by `--max-connections`; an entry goes when its last connection
//! closes. Its keys come from the network, so it keeps std's keyed hash.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// What a source is counted as: an IPv4 address, or the first 64 bits of an
/// IPv6 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// An IPv4 address.
    V4(u32),
    /// An IPv6 /64.
    V6(u64),
}

impl Source {
    /// The source `ip` counts as (a `::ffff:a.b.c.d` address as IPv4).
    pub(crate) fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => Source::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The open connections of each source.
#[derive(Debug)]
pub(crate) struct PerSource {
    /// At most this many at once from one source.
    limit: u32,
    /// Sources with at least one connection open, and how many.
    open: Mutex<HashMap<Source, u32>>,
}

impl PerSource {
    /// A table for `limit` connections per source.
    pub(crate) fn new(limit: u32) -> Arc<PerSource> {
        Arc::new(PerSource {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more connection from `ip`, held until the returned slot is
    /// dropped; `None` if its source already has the limit open.
    pub(crate) fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let source = Source::of(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(source).or_insert(0);
        if *count >= self.limit {
            if *count == 0 {
                open.remove(&source);
            }
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            table: Arc::clone(self),
            source,
        })
    }

    /// Sources with a connection open (for tests).
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One open connection of a source, counted until dropped.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    table: Arc<PerSource>,
    source: Source,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_limit_and_a_slot_back_when_one_closes() {
        let table = PerSource::new(2);
        let one = table.enter(ip("127.0.0.2")).unwrap();
        let _two = table.enter(ip("127.0.0.2")).unwrap();
        assert!(table.enter(ip("127.0.0.2")).is_none());
        assert!(table.enter(ip("127.0.0.3")).is_some(), "another source");
        drop(one);
        assert!(table.enter(ip("127.0.0.2")).is_some());
    }

    #[test]
    fn an_ipv6_64_is_one_source_and_a_mapped_address_is_ipv4() {
        let table = PerSource::new(1);
        let _held = table.enter(ip("2001:db8:1:2::1")).unwrap();
        assert!(
            table.enter(ip("2001:db8:1:2:ffff::9")).is_none(),
            "same /64"
        );
        assert!(table.enter(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let _v4 = table.enter(ip("192.0.2.1")).unwrap();
        assert!(table.enter(ip("::ffff:192.0.2.1")).is_none());
        assert_ne!(Source::of(ip("::")), Source::of(ip("0.0.0.0")));
    }

    #[test]
    fn the_table_forgets_a_source_with_nothing_open() {
        let table = PerSource::new(1);
        let held: Vec<_> = (1..=100)
            .map(|n| table.enter(IpAddr::from([10, 0, 0, n])).unwrap())
            .collect();
        assert_eq!(table.sources(), 100);
        drop(held);
        assert_eq!(table.sources(), 0);
    }
}
