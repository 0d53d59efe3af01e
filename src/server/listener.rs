//! One listening socket and the connections accepted from it: waits for a
//! connection slot, accepts, runs each connection as a task it owns, closes
//! the connections that go idle, and at shutdown closes the socket (new
//! connections are refused), lets its connections finish, and cuts off the
//! rest when told to.
//!
//! Why the listener owns its connections: idle timeouts and cut-offs are then
//! one sweep and one abort here instead of a timer and a cancellation check
//! around every read and write of every connection (measured: about a fifth of
//! the server's instructions per message, docs/ARCHITECTURE.md).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::Shared;
use super::connection::{Connection, End, Traffic};
use crate::Endpoint;

/// What the listener knows about one of its open connections.
struct Open {
    /// Ends the connection's task.
    abort: AbortHandle,
    /// For the log.
    peer: SocketAddr,
    /// The connection's byte counters.
    traffic: Arc<Traffic>,
    /// Bytes moved (in + out) at the last sweep.
    moved: u64,
    /// When bytes were last seen moving.
    active_at: Instant,
    /// Why the listener aborted the task, if it did.
    aborted_for: Option<&'static str>,
}

/// Accepts on `listener` until shutdown begins, then drains its connections.
/// `open` is held while the socket is open, so the server knows when every
/// listening socket is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    open: TaskTrackerToken,
    shared: Shared,
) {
    let idle = shared.settings.idle_timeout;
    let mut tasks: JoinSet<End> = JoinSet::new();
    let mut conns: HashMap<Id, Open> = HashMap::new();
    let mut sweep = tokio::time::interval(sweep_period(idle));
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let drain = shared.signal.drain_token().clone();
    let cut = shared.signal.cut_token().clone();

    loop {
        tokio::select! {
            biased;
            () = drain.cancelled() => break,
            Some(done) = tasks.join_next_with_id() => closed(&mut conns, done),
            _ = sweep.tick(), if idle.is_some() => sweep_idle(&mut conns, idle),
            accepted = accept(&listener, &shared.slots) => match accepted {
                Ok((stream, peer, permit)) => {
                    let traffic = Arc::new(Traffic::default());
                    let connection = Connection::new(
                        stream,
                        shared.settings.transform.stream(),
                        Arc::clone(&traffic),
                    );
                    let abort = tasks.spawn(async move {
                        let end = connection.run().await;
                        drop(permit);
                        end
                    });
                    tracing::debug!(%peer, "connection opened");
                    let open = Open {
                        abort,
                        peer,
                        traffic,
                        moved: 0,
                        active_at: Instant::now(),
                        aborted_for: None,
                    };
                    conns.insert(open.abort.id(), open);
                }
                Err(err) if is_per_connection(&err) => {}
                Err(err) => {
                    // Out of descriptors or memory: log, back off, and keep
                    // serving the connections we have rather than spinning.
                    let error = crate::error::plain(&err);
                    tracing::warn!(listener = %endpoint, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }

    // Shutdown: close the socket now; from the moment every copy of it is
    // closed, connects are refused.
    drop(listener);
    drop(open);
    let mut cut_done = false;
    loop {
        tokio::select! {
            biased;
            () = cut.cancelled(), if !cut_done => {
                cut_done = true;
                for conn in conns.values_mut() {
                    conn.aborted_for = Some("cut off at shutdown");
                    conn.abort.abort();
                }
            }
            done = tasks.join_next_with_id() => match done {
                Some(done) => closed(&mut conns, done),
                None => break,
            },
            _ = sweep.tick(), if idle.is_some() => sweep_idle(&mut conns, idle),
        }
    }
}

/// Waits for a free connection slot, then accepts. Past the limit, clients
/// wait in the kernel's backlog instead of being accepted and dropped.
///
/// # Cancel safety
///
/// Dropping the future gives the slot back and loses no connection.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(io::Error::other)?;
    let (stream, peer) = listener.accept().await?;
    // Replies must leave as soon as they are written: without this, Nagle
    // holds a small reply until the previous one is acknowledged.
    stream.set_nodelay(true)?;
    Ok((stream, peer, permit))
}

/// Forgets a finished connection and logs how it ended.
fn closed(conns: &mut HashMap<Id, Open>, done: Result<(Id, End), JoinError>) {
    let (id, end) = match done {
        Ok((id, end)) => (id, end.to_string()),
        Err(err) => (err.id(), String::new()),
    };
    let Some(conn) = conns.remove(&id) else {
        return;
    };
    let (bytes_in, bytes_out) = conn.traffic.counts();
    let end = match conn.aborted_for {
        Some(reason) => reason.to_string(),
        None if end.is_empty() => "task failed".to_string(),
        None => end,
    };
    tracing::debug!(peer = %conn.peer, bytes_in, bytes_out, %end, "connection closed");
}

/// Aborts the connections on which no byte moved for `idle`.
fn sweep_idle(conns: &mut HashMap<Id, Open>, idle: Option<Duration>) {
    let Some(idle) = idle else { return };
    let now = Instant::now();
    for conn in conns.values_mut() {
        let (bytes_in, bytes_out) = conn.traffic.counts();
        let moved = bytes_in + bytes_out;
        if moved != conn.moved {
            conn.moved = moved;
            conn.active_at = now;
        } else if now - conn.active_at >= idle && conn.aborted_for.is_none() {
            conn.aborted_for = Some("idle timeout");
            conn.abort.abort();
        }
    }
}

/// How often idleness is checked: a tenth of the timeout, between 10 ms and
/// 1 s, so a connection closes at most that long after its timeout.
fn sweep_period(idle: Option<Duration>) -> Duration {
    idle.map_or(Duration::from_secs(1), |idle| {
        (idle / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    })
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
            | io::ErrorKind::InvalidInput // set_nodelay on a socket already reset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_period_is_a_tenth_of_the_timeout_within_bounds() {
        assert_eq!(
            sweep_period(Some(Duration::from_secs(300))),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_period(Some(Duration::from_secs(2))),
            Duration::from_millis(200)
        );
        assert_eq!(
            sweep_period(Some(Duration::from_millis(5))),
            Duration::from_millis(10)
        );
        assert_eq!(sweep_period(None), Duration::from_secs(1));
    }
}
