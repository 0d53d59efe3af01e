//! The accept loop of one TCP listener: waits for a connection slot, accepts,
//! and hands the socket to its own task. It closes the listener (so new
//! connections are refused) as soon as shutdown begins.

use std::io;
use std::time::Duration;

use tokio::net::TcpListener;

use super::Shared;
use super::connection::Connection;
use crate::Endpoint;

/// Accepts on `listener` until shutdown begins, spawning one tracked task per
/// connection.
pub(crate) async fn accept_loop(listener: TcpListener, endpoint: Endpoint, shared: Shared) {
    let drain = shared.signal.drain_token().clone();
    loop {
        // Wait for a free slot before accepting, so that past the limit clients
        // queue in the kernel's backlog instead of being accepted and dropped.
        let permit = tokio::select! {
            biased;
            () = drain.cancelled() => break,
            permit = shared.slots.clone().acquire_owned() => match permit {
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
            shared.settings.transform.stream(),
            shared.settings.idle_timeout,
            shared.signal.cut_token().clone(),
        );
        shared.connections.spawn(async move {
            connection.run().await;
            drop(permit);
        });
    }
    // Dropping `listener` closes this thread's copy of the socket; the server
    // reports "listeners closed" once every copy is gone.
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
