//! The two-step shutdown every part of the server listens to: first stop
//! accepting and let connections drain, then (after the grace period, or on a
//! second signal) cut off whatever is still open.

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
#[derive(Clone, Debug, Default)]
pub struct ShutdownSignal {
    /// Cancelled when listeners must close and connections start draining.
    drain: CancellationToken,
    /// Cancelled when open connections must be closed now. Cancelling it also
    /// cancels `drain`: cutting off implies no more accepting.
    cut: CancellationToken,
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

/// Drives `signal` from the operating system, as `upecho serve` does: the first
/// SIGINT or SIGTERM begins a graceful shutdown, a second one cuts it short.
///
/// The handlers are installed when this returns, so a caller can announce
/// readiness knowing that a signal from then on shuts down gracefully; the
/// returned future does the rest and should be spawned.
///
/// # Errors
///
/// When the handlers cannot be installed. Must be called inside a Tokio runtime.
pub fn watch_os_signals(
    signal: ShutdownSignal,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal as os_signal};
    let mut interrupt = os_signal(SignalKind::interrupt())?;
    let mut terminate = os_signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: closing listeners; a second signal stops at once");
        signal.begin();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("second signal: closing open connections now");
        signal.cut_short();
    })
}
