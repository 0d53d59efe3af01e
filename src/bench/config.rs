//! What a run is asked to do: [`BenchConfig`] (target, traffic pattern,
//! transform, sizes, times) and the bounds it must keep, built by the command
//! line or by a library caller before anything else of the run starts.

use std::net::SocketAddr;
use std::time::Duration;

use crate::endpoint::Target;
use crate::{HostPort, Transform};

/// The largest `--size`: 16 MiB.
pub const MAX_SIZE: usize = 16 << 20;

/// The longest warm-up plus window a run accepts (about 63 years): far past
/// any real use, and far from where adding it to a clock reading overflows.
pub const MAX_RUN: Duration = Duration::from_secs(2_000_000_000);

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
    /// The server: TCP, UDP (pingpong only) or a Unix stream socket.
    pub target: Target,
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
            target: Target::Tcp(HostPort::from(SocketAddr::from(([127, 0, 0, 1], 8080)))),
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
