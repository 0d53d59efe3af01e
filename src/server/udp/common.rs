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
        self.totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(counts);
        if let Some(last) = Arc::into_inner(self) {
            let totals = last
                .totals
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner);
            report(endpoint, &totals);
        }
    }
}
