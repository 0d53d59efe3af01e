//! `upecho bench`: a verifying load generator. A [`config::BenchConfig`]
//! says what to run; [`connect`] opens every connection (TCP or Unix stream,
//! or connected UDP socket) before the warm-up, [`load`] runs the phases and
//! spawns the connections (`pingpong` or `stream` over a stream,
//! [`datagram`] over UDP), which share what [`conn`] holds (the run's state,
//! checked reads, the drain), checking every reply byte with [`verify`]
//! against the [`payload`], [`stats`] measures (one latency histogram, stalls, CPU),
//! [`report`] decides pass or fail and presents the result (human summary or
//! JSON). With `--threads N`, `worker` runs a share of the connections on each
//! of N threads and `load` merges their tallies. Measuring, presenting and exporting stay separate, as in hyperfine.
//! Ctrl-C ends a run where it stands, with the report of the time measured
//! so far ([`Outcome::Interrupted`]); the binary prints it and exits 130.
//!
//! Memory is bounded whatever the flags: at most [`payload::MAX_PAYLOAD`]
//! bytes of payload, a fixed 64 KiB read buffer and a few histograms, and
//! about [`load::CONNECTION_MEMORY`] bytes per connection; in stream mode at
//! most [`conn::IN_FLIGHT`] bytes in the kernel's buffers for all the
//! connections together (at least 64 KiB each).

/// `AsyncRead` and `AsyncWrite` for a connection (`$conn`, generic over
/// `$($param)*` bounded by `$bound`) through its `Half` over `self.0`: the
/// whole connection reads and writes as its halves do (TLS and WebSocket).
macro_rules! io_through_half {
    ($conn:ty, $half:expr $(, $param:ident: $bound:path)?) => {
        impl$(<$param: $bound>)? tokio::io::AsyncRead for $conn {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut $half(&self.0)).poll_read(cx, buf)
            }
        }

        impl$(<$param: $bound>)? tokio::io::AsyncWrite for $conn {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut $half(&self.0)).poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut $half(&self.0)).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut $half(&self.0)).poll_shutdown(cx)
            }
        }
    };
}

mod churn;
pub mod config;
pub mod conn;
pub mod connect;
pub mod datagram;
mod datagram_rate;
pub mod intervals;
pub mod load;
mod open_loop;
pub mod pacer;
pub mod payload;
mod pingpong;
pub mod report;
pub mod stats;
mod stream;
pub mod tls;
pub mod verify;
pub mod websocket;
mod worker;

use crate::Error;

pub use config::{BenchConfig, MAX_RUN, MAX_SIZE, Mode};
pub use report::Report;

/// What a run says while it runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The elapsed fraction of warm-up plus window, several times a second.
    Elapsed(f64),
    /// A second of the window ended ([`BenchConfig::intervals`]): its own
    /// figures; the last one when the window ends (not at Ctrl-C).
    Interval(&'a intervals::Interval),
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The window ran to its end: the measurements, whatever they show.
    Measured(Box<Report>),
    /// Ctrl-C stopped the run (exit status 130). Once the connections were
    /// open, the report of the time measured until then, with
    /// [`Report::interrupted`] set (a window cut short,
    /// or none of it if Ctrl-C came in the warm-up; all of it if in the drain
    /// after); `None` if Ctrl-C came while they were being opened.
    Interrupted(Option<Box<Report>>),
}

/// Runs the benchmark on `config.threads` generator threads, each a
/// single-threaded runtime with its share of the connections (one thread,
/// the default, is meant to be pinned to one core), and returns the merged
/// measurements, or
/// [`Outcome::Interrupted`] if Ctrl-C (SIGINT) arrived: the run watches for it
/// from start to end and stops where it is, with what it measured so far, so
/// the caller can tidy up (a progress bar), print that report and exit with
/// status 130.
///
/// First it raises the process's soft descriptor limit to the hard one, since
/// each connection needs a descriptor. Then it opens every connection, and only
/// then starts the warm-up and the window, so the window never measures the
/// set-up.
///
/// `progress` receives the elapsed fraction of warm-up plus window, several
/// times a second, for a progress bar, and with [`BenchConfig::intervals`]
/// each second's figures as it ends (it is `'static` because it runs in the
/// generator's timekeeping task).
///
/// # Errors
///
/// [`Error::InvalidConfig`] for a configuration
/// [`BenchConfig::validate`] rejects, or over UDP for `unicode` replies
/// longer than a datagram (a reply can be longer than its message);
/// [`Error::Resolve`] when the address does not resolve; [`Error::Connect`]
/// when any connection cannot be opened (naming the descriptor limit if that
/// is the cause); [`Error::Io`] when the runtime or the Ctrl-C handler cannot
/// be set up.
/// Wrong replies and stalls are not errors of this function but counted in
/// the report; [`Report::failure`] says whether they fail the run.
pub fn run(config: &BenchConfig, progress: impl FnMut(Progress<'_>)) -> Result<Outcome, Error> {
    config.validate()?;
    if let Err(err) = crate::endpoint::raise_fd_limit() {
        tracing::debug!(error = %crate::error::plain(&err), "cannot raise the descriptor limit");
    }
    let peer = connect::Peer::resolve(
        &config.target,
        config.tls.as_ref(),
        &config.sources,
        // Text messages for unicode, as the contract says; binary otherwise.
        config
            .websocket
            .as_ref()
            .map(|url| (url, config.transform == crate::Transform::Unicode)),
    )?;
    let payload = payload::Payload::new(config);
    config.validate_reply_len(payload.max_reply_len())?;
    let mut ended = load::drive(config, &peer, payload, progress)?;
    if let Some(cause) = ended.fatal() {
        let named = config.named();
        let said = connect::out_of_ports(&cause).unwrap_or_else(|| crate::error::plain(&cause));
        return Err(Error::Connect {
            endpoint: named,
            cause: std::io::Error::new(cause.kind(), said),
        });
    }
    let report = |measured, interrupted| {
        let mut report = Report::new(config, &measured);
        report.interrupted = interrupted;
        Box::new(report)
    };
    Ok(match ended {
        load::Ended::Measured(measured) => Outcome::Measured(report(measured, false)),
        load::Ended::Interrupted(measured) => Outcome::Interrupted(Some(report(measured, true))),
        load::Ended::InterruptedInSetUp => Outcome::Interrupted(None),
    })
}
