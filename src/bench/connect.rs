//! The set-up phase: opens every connection before the warm-up starts, a few at
//! a time, so that the measured window sees all of them and none is still
//! waiting for the kernel's SYN retry timer.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::{Error, HostPort};

/// Connections being opened at once. A burst of thousands of SYNs overflows
/// small backlogs (the tutorial's `listen(5)`, or a busy server's), and each
/// dropped SYN costs a 1 s retry; a handful in flight keeps the kernel's queues
/// short while still opening thousands per second on loopback.
pub const AT_ONCE: usize = 32;

/// How long one connection may take to open before the run gives up: longer
/// than two SYN retries (1 s, then 3 s), far shorter than the kernel's 2 min.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `EMFILE` on Linux: this process has as many descriptors open as its limit.
const EMFILE: i32 = 24;

/// Why the set-up phase stopped: the first connection that could not be
/// opened, and how many had been.
#[derive(Debug)]
pub struct SetupFailure {
    /// Connections opened before the failure.
    pub opened: usize,
    /// Why the next one could not be.
    pub cause: io::Error,
}

impl SetupFailure {
    /// The contract's error, naming the endpoint and, when the cause is the
    /// descriptor limit, saying so and how to raise it.
    pub fn into_error(self, addr: &HostPort, wanted: usize) -> Error {
        let mut cause = crate::error::plain(&self.cause);
        if self.cause.raw_os_error() == Some(EMFILE) {
            let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
            cause = format!(
                "{cause}: the descriptor limit ({limit}) is too low for {wanted} connections; \
                 raise it with 'ulimit -n'"
            );
        }
        if self.opened > 0 {
            cause = format!("{cause} (after opening {} of {wanted})", self.opened);
        }
        Error::Connect {
            endpoint: format!("tcp {addr}"),
            cause: io::Error::new(self.cause.kind(), cause),
        }
    }
}

/// Opens `count` connections to `target`, [`AT_ONCE`] at a time, and returns
/// them once all are open.
///
/// # Errors
///
/// At the first connection that cannot be opened (refused, timed out, out of
/// descriptors), with the count opened so far; the others are closed.
///
/// # Cancel safety
///
/// Dropping the future closes every connection opened so far.
pub async fn open_all(target: SocketAddr, count: usize) -> Result<Vec<TcpStream>, SetupFailure> {
    let mut streams = Vec::with_capacity(count);
    let mut pending = JoinSet::new();
    let mut started = 0;
    while streams.len() < count {
        while started < count && pending.len() < AT_ONCE {
            pending.spawn(open(target));
            started += 1;
        }
        let opened = match pending.join_next().await {
            Some(Ok(opened)) => opened,
            // A connect task cannot panic; if the runtime still lost one,
            // say so rather than wait forever.
            Some(Err(lost)) => Err(io::Error::other(lost.to_string())),
            None => Err(io::Error::other("no connection attempt left")),
        };
        match opened {
            Ok(stream) => streams.push(stream),
            Err(cause) => {
                return Err(SetupFailure {
                    opened: streams.len(),
                    cause,
                });
            }
        }
    }
    Ok(streams)
}

/// Opens one connection with Nagle's algorithm off (a pingpong message must
/// not wait for the previous one's ACK).
async fn open(target: SocketAddr) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}
