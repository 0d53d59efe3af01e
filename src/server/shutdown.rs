//! The two-step shutdown every part of the server listens to: first stop
//! accepting and let connections drain, then (after the grace period, or on a
//! second signal) cut off whatever is still open. What drives it from the
//! operating system's signals is in [`os_signals`](super::os_signals).

use tokio_util::sync::CancellationToken;

/// A handle to ask a running server to stop. Cheap to clone; every clone
/// controls the same server.
///
/// ```
/// let signal = upecho::ShutdownSignal::new();
/// assert!(!signal.is_draining());
/// signal.begin();
/// assert!(signal.is_draining());
/// ```
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    /// Cancelled when listeners must close and connections start draining.
    drain: CancellationToken,
    /// Cancelled when open connections must be closed now. Cancelling it also
    /// cancels `drain`: cutting off implies no more accepting.
    cut: CancellationToken,
}

/// The same as [`ShutdownSignal::new`]: a derived `Default` would build two
/// unrelated tokens, and cutting off would then not stop the drain.
impl Default for ShutdownSignal {
    fn default() -> Self {
        ShutdownSignal::new()
    }
}

impl ShutdownSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        let cut = CancellationToken::new();
        // `drain` is a child of `cut`, so `cut_short` alone stops everything.
        let drain = cut.child_token();
        ShutdownSignal { drain, cut }
    }

    /// Stops accepting: listeners close (new connections are refused) and open
    /// connections may finish within the grace period.
    pub fn begin(&self) {
        self.drain.cancel();
    }

    /// Closes every open connection now, ending the grace period early.
    pub fn cut_short(&self) {
        self.cut.cancel();
    }

    /// Returns true if and only if [`begin`](Self::begin) or
    /// [`cut_short`](Self::cut_short) was called.
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    pub(crate) fn drain_token(&self) -> &CancellationToken {
        &self.drain
    }

    pub(crate) fn cut_token(&self) -> &CancellationToken {
        &self.cut
    }
}

#[cfg(test)]
mod tests {
    use super::ShutdownSignal;

    #[test]
    fn a_default_signal_that_is_cut_short_is_also_draining() {
        let signal = ShutdownSignal::default();
        signal.cut_short();
        assert!(signal.is_draining());
    }
}
