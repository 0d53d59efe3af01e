//! `upecho bench`: a verifying load generator. [`load`] drives the connections
//! and checks every reply byte, [`stats`] measures (latency histogram, CPU),
//! [`report`] presents the result (human summary or JSON). Measuring,
//! presenting and exporting stay separate, as in hyperfine.

pub mod load;
pub mod report;
pub mod stats;

use std::net::SocketAddr;
use std::time::Duration;

use crate::{Error, HostPort, Transform};

pub use report::Report;

/// The traffic pattern of each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Closed loop: one message in flight per connection; measures round trips.
    PingPong,
    /// Write continuously while reading back; measures verified bytes.
    Stream,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "pingpong",
            Mode::Stream => "stream",
        }
    }
}

/// A validated `upecho bench`.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The server.
    pub addr: HostPort,
    /// Traffic pattern.
    pub mode: Mode,
    /// The transform the server is expected to apply.
    pub transform: Transform,
    /// Concurrent connections.
    pub connections: usize,
    /// Message size (pingpong) or write size (stream), in bytes.
    pub size: usize,
    /// The measured window.
    pub duration: Duration,
    /// Run before the window, not counted.
    pub warmup: Duration,
    /// Seed of the pseudo-random payloads.
    pub seed: u64,
}

impl Default for BenchConfig {
    /// The contract's defaults: 127.0.0.1:8080, pingpong, ascii, 1 connection,
    /// 64 bytes, 10 s after a 1 s warm-up, seed 1.
    fn default() -> Self {
        BenchConfig {
            addr: HostPort::from(SocketAddr::from(([127, 0, 0, 1], 8080))),
            mode: Mode::PingPong,
            transform: Transform::Ascii,
            connections: 1,
            size: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            seed: 1,
        }
    }
}

/// Runs the benchmark on a single-threaded runtime (the load generator is meant
/// to be pinned to one core) and returns the measurements.
///
/// `progress` receives the elapsed fraction of the whole run, several times a
/// second, for a progress bar.
///
/// # Errors
///
/// [`Error::Resolve`] when the address does not resolve, [`Error::Connect`]
/// when no connection at all could be made; wrong replies are not errors of
/// this function but counted in the report.
pub fn run(config: &BenchConfig, progress: impl FnMut(f64)) -> Result<Report, Error> {
    let target = config.addr.resolve("tcp")?[0];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|cause| Error::Io {
            context: "cannot start the async runtime".into(),
            cause,
        })?;
    let outcome = runtime.block_on(load::drive(config, target, progress));
    if outcome.connected == 0
        && let Some(cause) = outcome.connect_error
    {
        return Err(Error::Connect {
            endpoint: format!("tcp {}", config.addr),
            cause,
        });
    }
    Ok(Report::new(config, &outcome))
}
