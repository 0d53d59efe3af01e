//! The operating system's signals, as `upecho serve` answers them: SIGINT
//! and SIGTERM drive the [`ShutdownSignal`] (the first begins the drain, a
//! second cuts it short); SIGHUP re-reads the access files
//! ([`Reloader`]); SIGUSR1 and SIGUSR2 are ignored.
//! Without a handler each of those three would end the process at once, with
//! no drain and the socket files left behind.

use tokio::signal::unix::{Signal, SignalKind, signal as os_signal};

use super::reload::Reloader;
use super::shutdown::ShutdownSignal;

/// Drives `signal` from the operating system, as `upecho serve` does: the first
/// SIGINT or SIGTERM begins a graceful shutdown, a second one cuts it short.
/// SIGHUP calls `reload`; it, SIGUSR1 and SIGUSR2 never stop the server.
///
/// The handlers are installed when this returns, so a caller can announce
/// readiness knowing that a signal from then on is answered as described; the
/// returned future does the rest and should be spawned.
///
/// # Errors
///
/// When the handlers cannot be installed. Must be called inside a Tokio runtime.
pub fn watch_os_signals(
    signal: ShutdownSignal,
    reload: Reloader,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut handlers = Handlers::install(reload)?;
    Ok(async move {
        handlers.next_stop().await;
        tracing::info!("shutting down: closing listeners; a second signal stops at once");
        signal.begin();
        handlers.next_stop().await;
        tracing::info!("second signal: closing open connections now");
        signal.cut_short();
        // The handlers stay installed for the life of the process: a
        // SIGHUP during the last moments is still harmless.
    })
}

/// Makes SIGHUP, SIGUSR1 and SIGUSR2 harmless from now on, before any
/// serving runtime exists. Binding can wait for a Unix path's lock (up to
/// [`LOCK_PATIENCE`](crate::endpoint::LOCK_PATIENCE)), and a SIGHUP then (a
/// terminal closing, a supervisor's reload) would otherwise end the process.
/// SIGINT and SIGTERM keep their default until [`watch_os_signals`]: a start
/// that hangs can still be stopped.
///
/// Tokio installs a process-wide handler the first time a signal is asked
/// for and keeps it for the life of the process, whether or not anyone
/// listens: so asking once, on a runtime made for that and dropped at once,
/// is enough. Such a signal before readiness is ignored without a log line.
///
/// # Errors
///
/// When the runtime or the handlers cannot be made.
pub fn survive_hangups_while_starting() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _inside = runtime.enter();
    for kind in [
        SignalKind::hangup(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ] {
        drop(os_signal(kind)?);
    }
    Ok(())
}

/// The signals the server handles.
struct Handlers {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    user1: Signal,
    user2: Signal,
    /// What SIGHUP does.
    reload: Reloader,
}

impl Handlers {
    fn install(reload: Reloader) -> std::io::Result<Handlers> {
        Ok(Handlers {
            interrupt: os_signal(SignalKind::interrupt())?,
            terminate: os_signal(SignalKind::terminate())?,
            hangup: os_signal(SignalKind::hangup())?,
            user1: os_signal(SignalKind::user_defined1())?,
            user2: os_signal(SignalKind::user_defined2())?,
            reload,
        })
    }

    /// Waits for the next SIGINT or SIGTERM, answering the others meanwhile.
    async fn next_stop(&mut self) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return,
                _ = self.terminate.recv() => return,
                Some(()) = self.hangup.recv() => {
                    // Off the runtime's thread: it reads files.
                    let reload = self.reload.clone();
                    let _ = tokio::task::spawn_blocking(move || reload.reload()).await;
                }
                Some(()) = self.user1.recv() => {}
                Some(()) = self.user2.recv() => {}
            }
        }
    }
}
