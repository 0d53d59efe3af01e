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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::os::fd::AsRawFd;

use tokio::io::unix::AsyncFd;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::admission;
use super::connection::{Connection, End, ReadyStream, Traffic};
use super::state::{Settings, Shared};
use crate::Endpoint;
use crate::access::per_source::SourceSlot;
use crate::metrics::StreamMetrics;

/// Why the listener aborted a connection: idle.
const IDLE: &str = "idle timeout";
/// Why the listener aborted a connection: shutdown's cut-off.
const CUT_OFF: &str = "cut off at shutdown";
/// How long WebSocket connections have, after the cut-off, to send their
/// close frame (1001) before they are aborted: a little more than the time
/// each allows itself.
const WEBSOCKET_LAST_CALL: Duration = Duration::from_millis(1500);

/// What the listener knows about one of its open connections.
struct Open {
    /// Ends the connection's task.
    abort: AbortHandle,
    /// For the log: the peer's address, or for a Unix socket its path.
    peer: String,
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
/// listening socket is closed. `health` is shared by every thread's copy of
/// this socket.
pub(crate) async fn serve<L: StreamListener>(
    listener: AsyncFd<L>,
    endpoint: Endpoint,
    health: Arc<AcceptHealth>,
    open: TaskTrackerToken,
    shared: Shared,
) {
    let idle = shared.settings.idle_timeout;
    let mut tasks: JoinSet<End> = JoinSet::new();
    let mut conns: HashMap<Id, Open> = HashMap::new();
    // The idle sweep, and now and then giving freed memory back.
    let mut sweep = tokio::time::interval(sweep_period(idle));
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let drain = shared.signal.drain_token().clone();
    let mut backoff = Backoff::default();
    let resume = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(resume);
    let mut paused = false;
    let counters = shared.metrics.stream(&endpoint);

    loop {
        tokio::select! {
            biased;
            () = drain.cancelled() => break,
            Some(done) = tasks.join_next_with_id() => closed(&mut conns, done, &endpoint, &shared, &counters),
            _ = sweep.tick() => tick(&mut conns, idle, &shared),
            () = &mut resume, if paused => paused = false,
            accepted = accept(&listener, &shared.slots), if !paused => match accepted {
                Ok((stream, peer, permit)) => {
                    if backoff.succeed() {
                        health.recovered(&endpoint);
                    }
                    if let Some(held) = admit(&peer, permit, &shared, &endpoint, &counters) {
                        let open = start(stream, peer, held, &endpoint, &shared, &counters, &mut tasks);
                        conns.insert(open.abort.id(), open);
                    }
                }
                Err(err) => {
                    if let Some(delay) = failed(&err, &mut backoff, &health, &endpoint, &counters) {
                        resume.as_mut().reset(Instant::now() + delay);
                        paused = true;
                    }
                }
            },
        }
    }

    // Shutdown: close the socket now; from the moment every copy of it is
    // closed, connects are refused.
    drop(listener);
    drop(open);
    let mut serving = Serving {
        tasks,
        conns,
        sweep,
        endpoint,
        counters,
        shared,
    };
    serving.drain().await;
}

/// A listener's connections after its socket closed, until the last ends.
struct Serving {
    tasks: JoinSet<End>,
    conns: HashMap<Id, Open>,
    sweep: tokio::time::Interval,
    endpoint: Endpoint,
    counters: StreamMetrics,
    shared: Shared,
}

impl Serving {
    /// Lets the connections finish, sweeping idle ones, and cuts off the
    /// rest when the drain says so.
    async fn drain(&mut self) {
        let cut = self.shared.cut_off.clone();
        let idle = self.shared.settings.idle_timeout;
        let mut cut_done = false;
        // WebSocket connections close themselves at the cut-off, with 1001:
        // the stragglers are aborted after they had time to.
        let last_call = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(last_call);
        let mut calling = false;
        loop {
            tokio::select! {
                biased;
                () = cut.cancelled(), if !cut_done => {
                    cut_done = true;
                    if self.endpoint.is_websocket() {
                        last_call.as_mut().reset(Instant::now() + WEBSOCKET_LAST_CALL);
                        calling = true;
                    } else {
                        cut_all(&mut self.conns);
                    }
                }
                () = &mut last_call, if calling => {
                    calling = false;
                    cut_all(&mut self.conns);
                }
                done = self.tasks.join_next_with_id() => match done {
                    Some(done) => closed(&mut self.conns, done, &self.endpoint, &self.shared, &self.counters),
                    None => break,
                },
                _ = self.sweep.tick() => tick(&mut self.conns, idle, &self.shared),
            }
        }
    }
}

/// Aborts every open connection at shutdown's cut-off.
fn cut_all(conns: &mut HashMap<Id, Open>) {
    for conn in conns.values_mut() {
        conn.aborted_for = Some(CUT_OFF);
        conn.abort.abort();
    }
}

/// Counts a failed accept and returns how long to pause accepting, if at
/// all: not for a failure of one connection, a growing pause for a lack of
/// resources.
fn failed(
    err: &io::Error,
    backoff: &mut Backoff,
    health: &AcceptHealth,
    endpoint: &Endpoint,
    counters: &StreamMetrics,
) -> Option<Duration> {
    if err.kind() != io::ErrorKind::WouldBlock {
        counters.accept_error(err);
    }
    if is_per_connection(err) {
        return None;
    }
    // Out of descriptors or memory: the pending connection stays queued, so
    // retrying at once would spin a core. Keep serving the connections we
    // have and try again after a pause that grows to a second.
    let delay = backoff.fail();
    health.starved(endpoint, err);
    tracing::debug!(listener = %endpoint, error = %crate::error::plain(err),
        retry_ms = delay.as_millis() as u64, "accept failed");
    Some(delay)
}

/// What an open connection holds until it closes: its slot under
/// `--max-connections` and, under `--max-per-source`, its source's.
struct Held {
    _slot: OwnedSemaphorePermit,
    source: Option<SourceSlot>,
}

/// Counts a connection accepted from `peer`, then judges it
/// ([`admission::at_accept`]): `None` if it must be closed at once, which
/// this counts and logs; the caller drops it unread.
fn admit(
    peer: &str,
    slot: OwnedSemaphorePermit,
    shared: &Shared,
    endpoint: &Endpoint,
    counters: &StreamMetrics,
) -> Option<Held> {
    counters.opened();
    match admission::at_accept(peer, &shared.settings) {
        Ok(source) => Some(Held {
            _slot: slot,
            source,
        }),
        Err(refused) => {
            let reason = refused.reason();
            counters.closed(reason, 0, 0);
            tracing::debug!(listener = %endpoint, %peer, reason = %reason, "connection refused");
            None
        }
    }
}

/// Spawns the task serving one accepted connection and returns what the
/// listener keeps to watch and stop it.
fn start<S: ReadyStream + Send + 'static>(
    stream: S,
    peer: String,
    mut held: Held,
    endpoint: &Endpoint,
    shared: &Shared,
    counters: &StreamMetrics,
    tasks: &mut JoinSet<End>,
) -> Open {
    let traffic = Arc::new(Traffic::default());
    let connection = Connection::new(
        stream,
        shared.settings.transform.stream(),
        Arc::clone(&traffic),
    );
    // The one branch `--proxy-protocol` costs a connection that skips it,
    // and one more TLS does.
    let proxy = shared.settings.proxy.as_ref();
    let proxy = proxy
        .filter(|policy| policy.expects_header(&peer))
        .map(|policy| policy.timeout);
    let plain = matches!(endpoint, Endpoint::Tcp(_) | Endpoint::Unix(_));
    let abort = if proxy.is_none() && plain {
        tracing::debug!(listener = %endpoint, %peer, "connection opened");
        tasks.spawn(async move {
            let end = connection.run().await;
            drop(held);
            end
        })
    } else {
        let (endpoint, socket_peer) = (endpoint.clone(), peer.clone());
        let (settings, counters) = (Arc::clone(&shared.settings), counters.clone());
        let (draining, cut_off) = (shared.signal.drain_token().clone(), shared.cut_off.clone());
        let reclaim = Arc::clone(&shared.reclaim);
        tasks.spawn(async move {
            let phases = Phases {
                endpoint: &endpoint,
                peer: &socket_peer,
                settings: &settings,
                counters: &counters,
                draining: &draining,
                cut_off: &cut_off,
                reclaim: &reclaim,
            };
            let end = phases.serve(connection, proxy, &mut held).await;
            drop(held);
            end
        })
    };
    Open {
        abort,
        peer,
        traffic,
        moved: 0,
        active_at: Instant::now(),
        aborted_for: None,
    }
}

/// What a connection with phases before its loop (a PROXY header, a TLS
/// handshake) needs to know.
struct Phases<'a> {
    /// Its listener.
    endpoint: &'a Endpoint,
    /// The socket's peer.
    peer: &'a str,
    /// The server's settings (access rules, TLS).
    settings: &'a Settings,
    /// The listener's counters (TLS handshakes).
    counters: &'a StreamMetrics,
    /// Cancelled when shutdown began.
    draining: &'a tokio_util::sync::CancellationToken,
    /// Cancelled when open connections must close.
    cut_off: &'a tokio_util::sync::CancellationToken,
    /// Told when a phase's memory is freed.
    reclaim: &'a super::memory::Reclaim,
}

impl Phases<'_> {
    /// Reads the PROXY header if `proxy` (its time limit) asks for one, then
    /// serves the listener's kind: the TLS handshake and the loop, the loop,
    /// or HTTP and WebSocket.
    async fn serve<S: ReadyStream + Send + 'static>(
        &self,
        mut connection: Connection<S>,
        proxy: Option<Duration>,
        held: &mut Held,
    ) -> End {
        let early = match proxy {
            Some(timeout) => match self.header(&mut connection, timeout, held).await {
                Ok(early) => early,
                Err(end) => return end,
            },
            None => {
                tracing::debug!(listener = %self.endpoint, peer = %self.peer, "connection opened");
                Vec::new()
            }
        };
        if self.endpoint.is_websocket() {
            let (stream, _, traffic) = connection.into_parts();
            let peer = traffic
                .client()
                .map_or_else(|| self.peer.to_string(), |c| c.to_string());
            let websocket = super::websocket::WsConnection {
                endpoint: self.endpoint,
                peer: &peer,
                settings: self.settings,
                counters: self.counters,
                traffic,
                draining: self.draining,
                cut_off: self.cut_off,
                reclaim: self.reclaim,
            };
            // Each kind's state is boxed, for its own connections only:
            // inline, the largest (WebSocket's) would be the size of every
            // task here. (Boxed in a statement of its own: a temporary of
            // the statement that awaits is kept in the task's state.)
            let serving = Box::pin(websocket.serve(stream, early));
            return serving.await;
        }
        if !self.endpoint.is_tls() {
            connection.answer_first(early);
            return connection.run().await;
        }
        // A TLS listener without a TLS configuration (which binding never
        // makes) closes rather than serve in the clear.
        match self.settings.tls.as_ref() {
            Some(config) => {
                let (stream, transform, traffic) = connection.into_parts();
                let peer = traffic
                    .client()
                    .map_or_else(|| self.peer.to_string(), |c| c.to_string());
                let log = (self.endpoint, peer.as_str(), self.counters);
                let serving = Box::pin(super::tls::serve(
                    stream, early, config, transform, traffic, log,
                ));
                serving.await
            }
            None => End::Tls("no TLS configuration".into()),
        }
    }

    /// Reads a PROXY protocol header (within `timeout`), judges the client
    /// it names, and logs the connection as opened by that client; returns
    /// the bytes that came with the header. The socket's peer stands when
    /// the header names no client. Without a valid header in time the
    /// connection is never logged as opened: only its close, with the
    /// socket's peer and an `end` starting with `proxy_header`.
    async fn header<S: ReadyStream>(
        &self,
        connection: &mut Connection<S>,
        timeout: Duration,
        held: &mut Held,
    ) -> Result<Vec<u8>, End> {
        let received = super::proxy::read_header(connection.stream_mut(), timeout)
            .await
            .map_err(End::ProxyHeader)?;
        match admission::after_header(received.source, self.peer, self.settings) {
            Ok(source) => held.source = source,
            Err(refused) => {
                if let Some(client) = received.source {
                    connection.traffic().set_client(client);
                }
                return Err(End::Refused(refused));
            }
        }
        let (endpoint, proxy) = (self.endpoint, self.peer);
        match received.source {
            Some(client) => {
                connection.traffic().set_client(client);
                tracing::debug!(listener = %endpoint, peer = %client, %proxy, "connection opened");
            }
            None => tracing::debug!(listener = %endpoint, peer = %proxy, "connection opened"),
        }
        Ok(received.payload)
    }
}

/// Waits until a client is waiting, then for a free connection slot, then
/// accepts. Past the limit, clients wait in the kernel's backlog instead of
/// being accepted and dropped.
///
/// Why readiness comes first: a slot held while waiting in `accept` belongs
/// to a listener nobody may be connecting to, while a client of another
/// listener waits for it (measured: up to 15 s with a TCP and a Unix listener
/// at `--max-connections 1`). Here a slot is taken only by a socket with a
/// client waiting, and given back at once if another thread took that client.
///
/// # Cancel safety
///
/// Dropping the future gives the slot back and loses no connection.
async fn accept<L: StreamListener>(
    listener: &AsyncFd<L>,
    slots: &Arc<Semaphore>,
) -> io::Result<(L::Stream, String, OwnedSemaphorePermit)> {
    loop {
        let mut ready = listener.readable().await?;
        let permit = Arc::clone(slots)
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        if let Ok(accepted) = ready.try_io(|socket| socket.get_ref().accept_now()) {
            let (stream, peer) = accepted?;
            return Ok((stream, peer, permit));
        }
        // Another thread took the client: the slot goes back, readiness is
        // cleared, and we wait again.
    }
}

/// A listening stream socket the accept loop can serve: TCP or Unix. Both
/// kinds share everything after the accept.
pub(crate) trait StreamListener: AsRawFd + Send + Sync + 'static {
    /// The accepted connection.
    type Stream: ReadyStream + Send + 'static;

    /// Accepts one waiting connection without blocking (`WouldBlock` when
    /// none is waiting), sets it up for serving, and names its peer.
    fn accept_now(&self) -> io::Result<(Self::Stream, String)>;
}

impl StreamListener for std::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    fn accept_now(&self) -> io::Result<(Self::Stream, String)> {
        let (stream, peer) = self.accept()?;
        stream.set_nonblocking(true)?;
        // Replies must leave as soon as they are written: without this, Nagle
        // holds a small reply until the previous one is acknowledged. If the
        // peer is already gone this fails; the connection's first read then
        // says so, and the listener never pauses for one connection's trouble.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %crate::error::plain(&err), "cannot set TCP_NODELAY");
        }
        Ok((tokio::net::TcpStream::from_std(stream)?, peer.to_string()))
    }
}

impl StreamListener for std::os::unix::net::UnixListener {
    type Stream = tokio::net::UnixStream;

    fn accept_now(&self) -> io::Result<(Self::Stream, String)> {
        let (stream, peer) = self.accept()?;
        stream.set_nonblocking(true)?;
        // A client socket usually has no name; say "unix" then.
        let peer = match peer.as_pathname() {
            Some(path) => format!("unix {}", path.display()),
            None => "unix".to_string(),
        };
        Ok((tokio::net::UnixStream::from_std(stream)?, peer))
    }
}

/// The accept loop's pause after a failure for lack of resources: 5 ms, then
/// doubling to 1 s, back to 5 ms after a success.
///
/// Why: while out of descriptors the kernel keeps the connection queued and
/// the socket readable, so an immediate retry fails again at once, forever.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// The last pause, while failures follow one another.
    delay: Option<Duration>,
}

impl Backoff {
    /// The first pause after a success.
    const FIRST: Duration = Duration::from_millis(5);
    /// The longest pause: service resumes at most this long after resources free.
    const MAX: Duration = Duration::from_secs(1);

    /// Records a failure and returns how long to pause.
    pub(crate) fn fail(&mut self) -> Duration {
        let next = self
            .delay
            .map_or(Self::FIRST, |delay| (delay * 2).min(Self::MAX));
        self.delay = Some(next);
        next
    }

    /// Records a success; returns true if and only if it ends a run of failures.
    pub(crate) fn succeed(&mut self) -> bool {
        self.delay.take().is_some()
    }
}

/// Whether one listening socket is starved for resources, shared by every
/// thread's copy of it, so a burst of failures is logged once, not once per
/// thread per retry.
#[derive(Debug, Default)]
pub(crate) struct AcceptHealth {
    /// True from the first failure of a burst until an accept succeeds again.
    starved: AtomicBool,
}

impl AcceptHealth {
    /// Warns if this failure starts a burst.
    fn starved(&self, endpoint: &Endpoint, err: &io::Error) {
        if !self.starved.swap(true, Ordering::Relaxed) {
            tracing::warn!(listener = %endpoint, error = %crate::error::plain(err),
                "accept failed; retrying with a pause of up to 1 s until resources free up");
        }
    }

    /// Says so once when service resumes after a burst.
    fn recovered(&self, endpoint: &Endpoint) {
        if self.starved.swap(false, Ordering::Relaxed) {
            tracing::info!(listener = %endpoint, "accepting again");
        }
    }
}

/// The periodic work: close idle connections, return freed memory.
fn tick(conns: &mut HashMap<Id, Open>, idle: Option<Duration>, shared: &Shared) {
    sweep_idle(conns, idle);
    shared.reclaim.maybe_trim();
}

/// Forgets a finished connection and logs how it ended.
fn closed(
    conns: &mut HashMap<Id, Open>,
    done: Result<(Id, End), JoinError>,
    endpoint: &Endpoint,
    shared: &Shared,
    counters: &StreamMetrics,
) {
    shared.reclaim.closed();
    // A task that ended by itself says why, even if the listener had just
    // decided to abort it (an idle sweep racing the peer's own close).
    let (id, end, reason) = match done {
        Ok((id, end)) => (id, Some(end.to_string()), Some(end.reason())),
        Err(err) => (err.id(), None, None),
    };
    let Some(conn) = conns.remove(&id) else {
        return;
    };
    // Give back the table's memory after a crowd has gone.
    if conns.capacity() > 64 && conns.len() < conns.capacity() / 4 {
        conns.shrink_to(conns.len() * 2);
    }
    let (bytes_in, bytes_out) = conn.traffic.counts();
    // The connection's bytes reach the metrics once, here, not per message.
    let reason = reason.unwrap_or(match conn.aborted_for {
        Some(IDLE) => "idle",
        Some(CUT_OFF) => "shutdown",
        _ => "error",
    });
    counters.closed(reason, bytes_in, bytes_out);
    if endpoint.is_websocket() {
        let (received, sent) = conn.traffic.messages();
        counters.websocket_messages(received, sent);
    }
    let end = match (end, conn.aborted_for) {
        (Some(end), _) => end,
        (None, Some(reason)) => reason.to_string(),
        (None, None) => "task failed".to_string(),
    };
    match conn.traffic.client() {
        Some(client) => tracing::debug!(listener = %endpoint, peer = %client,
            proxy = %conn.peer, bytes_in, bytes_out, %end, "connection closed"),
        None => tracing::debug!(listener = %endpoint, peer = %conn.peer, bytes_in, bytes_out,
            %end, "connection closed"),
    }
}

/// Aborts the connections on which no byte moved for `idle`.
fn sweep_idle(conns: &mut HashMap<Id, Open>, idle: Option<Duration>) {
    let Some(idle) = idle else { return };
    let now = Instant::now();
    for conn in conns.values_mut() {
        let moved = conn.traffic.moved();
        if moved != conn.moved {
            conn.moved = moved;
            conn.active_at = now;
        } else if now - conn.active_at >= idle && conn.aborted_for.is_none() {
            conn.aborted_for = Some(IDLE);
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
    ) || matches!(
        // Linux passes errors already pending on the new socket on to
        // accept(2); its manual says to retry them like EAGAIN.
        err.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::EPERM
        )
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

    #[test]
    fn backoff_grows_from_milliseconds_to_a_second_and_resets_on_success() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u128> = (0..10).map(|_| backoff.fail().as_millis()).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert!(backoff.succeed(), "a success ends the burst");
        assert!(!backoff.succeed(), "and only once");
        assert_eq!(backoff.fail(), Duration::from_millis(5));
    }

    #[test]
    fn errors_of_one_connection_do_not_pause_the_listener() {
        for errno in [103, 104, 71, 113, 1] {
            assert!(
                is_per_connection(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: the listener backs off.
        for errno in [24, 23, 105, 12] {
            assert!(
                !is_per_connection(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }
}
