//! The accept loop of one TCP listener: waits for a connection slot, accepts,
//! and hands the socket to its own task. It closes the listener (so new
//! connections are refused) as soon as shutdown begins.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::connection::Connection;
use super::{Settings, ShutdownSignal};
use crate::Endpoint;

/// Accepts on `listener` until shutdown begins, spawning one tracked task per
/// connection.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    endpoint: Endpoint,
    settings: Arc<Settings>,
    slots: Arc<Semaphore>,
    connections: TaskTracker,
    signal: ShutdownSignal,
) {
    let drain = signal.drain_token().clone();
    loop {
        // Wait for a free slot before accepting, so that past the limit clients
        // queue in the kernel's backlog instead of being accepted and dropped.
        let permit = tokio::select! {
            biased;
            () = drain.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = drain.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) if is_per_connection(&err) => continue,
            Err(err) => {
                // Out of descriptors or memory: log, back off, and keep serving
                // the connections we have rather than spinning.
                tracing::warn!(listener = %endpoint, error = %crate::error::plain(&err), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Replies must leave as soon as they are written: without this, Nagle
        // holds a small reply until the previous one is acknowledged.
        let _ = stream.set_nodelay(true);
        let connection = Connection::new(
            stream,
            peer,
            settings.transform.stream(),
            settings.idle_timeout,
            signal.cut_token().clone(),
        );
        connections.spawn(async move {
            connection.run().await;
            drop(permit);
        });
    }
    // Close the socket before saying so: from here on, connects are refused.
    drop(listener);
    tracing::info!(listener = %endpoint, "listener closed");
}

/// Returns true if and only if an accept error concerns one connection only
/// (it was reset or aborted before we took it), so the loop just goes on.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
