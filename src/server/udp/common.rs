//! What every thread's copy of one UDP socket shares: the echo table, so the
//! echo rule counts a source's datagrams in a row whichever thread answers
//! them, and the totals, so the socket's drops are logged in one line at
//! stop rather than one per thread.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::counts::{Counts, report};
use super::echoes::Echoes;
use crate::Endpoint;

/// Shared by every thread's copy of one UDP socket.
#[derive(Debug, Default)]
pub(crate) struct Common {
    /// Locked once per batch, never per datagram.
    echoes: Mutex<Echoes>,
    /// The counts of the copies that stopped so far.
    totals: Mutex<Counts>,
}

impl Common {
    /// The echo table, for one batch.
    pub(super) fn echoes(&self) -> MutexGuard<'_, Echoes> {
        // A panic while it was held left at worst one count wrong.
        self.echoes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the counts of one thread's copy as it stops; the last copy to
    /// stop logs the totals.
    pub(super) fn stopped(self: Arc<Self>, counts: &Counts, endpoint: &Endpoint) {
        if let Some(totals) = self.add_stopped(counts) {
            report(endpoint, &totals);
        }
    }

    /// Adds one copy's counts; returns the totals if it was the last copy.
    fn add_stopped(self: Arc<Self>, counts: &Counts) -> Option<Counts> {
        self.totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(counts);
        let last = Arc::into_inner(self)?;
        Some(
            last.totals
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(received: u64, sent: u64, dropped: [u64; 5]) -> Counts {
        Counts {
            received,
            sent,
            dropped,
        }
    }

    #[test]
    fn the_last_copy_to_stop_gets_the_sum_of_every_copys_counts() {
        let common = Arc::new(Common::default());
        let (one, two) = (common.clone(), common.clone());
        assert!(
            common.add_stopped(&counts(5, 4, [1, 0, 0, 2, 0])).is_none(),
            "two copies left"
        );
        assert!(
            one.add_stopped(&counts(7, 7, [0, 0, 0, 1, 1])).is_none(),
            "one copy left"
        );
        let totals = two
            .add_stopped(&counts(1, 0, [0, 1, 0, 0, 0]))
            .expect("the last one");
        assert_eq!((totals.received, totals.sent), (13, 11));
        assert_eq!(totals.dropped, [1, 1, 0, 3, 1]);
    }
}
