//! What every thread's copy of one UDP socket shares: the echo table, so the
//! echo rule counts a source's datagrams in a row whichever thread answers
//! them.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::echoes::Echoes;

/// Shared by every thread's copy of one UDP socket.
#[derive(Debug, Default)]
pub(crate) struct Common {
    /// Locked once per batch, never per datagram.
    echoes: Mutex<Echoes>,
}

impl Common {
    /// The echo table, for one batch.
    pub(super) fn echoes(&self) -> MutexGuard<'_, Echoes> {
        // A panic while it was held left at worst one count wrong.
        self.echoes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
