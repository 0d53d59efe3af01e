//! The end of serving: once shutdown begins, every listener closes, open
//! connections get the grace to finish, and the rest are cut off. The one
//! drain both ways of running a server ([`workers`](super::workers)) end with.

use super::state::Shared;

/// Waits for shutdown, then: all listeners closed, connections drained
/// within the grace, the rest cut off.
pub(super) async fn drain(shared: &Shared) {
    shared.signal.drain_token().cancelled().await;
    shared.open_listeners.close();
    shared.open_listeners.wait().await;
    tracing::info!("listeners closed");
    // Now, not at exit: a successor may bind the path during our grace.
    // Off the runtime's thread, which still serves open connections: each
    // removal waits for the path's lock (`endpoint::LOCK_PATIENCE` at most).
    let files = shared
        .files
        .lock()
        .map(|mut files| std::mem::take(&mut *files))
        .unwrap_or_default();
    let removed = tokio::task::spawn_blocking(move || drop(files));
    shared.listeners.close();
    let open = shared.open_connections();
    if open > 0 {
        tracing::info!(
            open,
            grace_s = shared.grace.as_secs_f64(),
            "waiting for open connections to finish"
        );
    }
    tokio::select! {
        () = shared.listeners.wait() => {}
        () = tokio::time::sleep(shared.grace) => {
            tracing::info!(open = shared.open_connections(), "shutdown grace over, closing connections");
        }
        () = shared.signal.cut_token().cancelled() => {
            tracing::info!(open = shared.open_connections(), "shutdown cut short, closing connections");
        }
    }
    shared.cut_off.cancel();
    shared.listeners.wait().await;
    let _ = removed.await;
    tracing::info!("server stopped");
}
