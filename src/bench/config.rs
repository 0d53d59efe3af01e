//! What a run is asked to do: [`BenchConfig`] (target, traffic pattern,
//! transform, sizes, times) and the bounds it must keep, built by the command
//! line or by a library caller before anything else of the run starts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::endpoint::{MAX_DATAGRAM, Target};
use crate::{Error, HostPort, Transform};

/// The largest `--size`: 16 MiB.
pub const MAX_SIZE: usize = 16 << 20;

/// The most generator threads (`--threads`): far more than the cores of any
/// machine one generator would load a server from.
pub const MAX_THREADS: usize = 256;

/// The lowest `--rate`: one message every 1,000 s.
pub const MIN_RATE: f64 = 0.001;

/// The highest `--rate`: ten million messages per second, past what one
/// machine's loopback carries.
pub const MAX_RATE: f64 = 1e7;

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
    /// Connection churn: connect (and the TLS handshake), one verified
    /// exchange, close, again; measures connections per second.
    Connect,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "pingpong",
            Mode::Stream => "stream",
            Mode::Connect => "connect",
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
    /// TLS over TCP (`--tls`), and whom to trust; `None` for plain.
    pub tls: Option<crate::tls::client::ClientTls>,
    /// Open loop (`--rate`): messages per second in total, each sent at its
    /// scheduled time whether or not earlier replies are back; `None` for
    /// the closed loop.
    pub rate: Option<f64>,
    /// Generator threads (`--threads`), each with its share of the
    /// connections; more than there are connections run as many as there are.
    pub threads: usize,
    /// Local addresses to connect from (`--source`), used in turn; empty
    /// for the kernel's choice.
    pub sources: Vec<IpAddr>,
    /// Measure second by second too (`-v`, `--histogram`): the report's
    /// [`intervals`](super::Report::intervals).
    pub intervals: bool,
    /// WebSocket (`--ws URL`): each write one binary message, the target
    /// the URL's `host:port` (with `tls` for `wss://`); `None` for bytes.
    pub websocket: Option<crate::endpoint::WsUrl>,
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
            tls: None,
            rate: None,
            threads: 1,
            sources: Vec::new(),
            intervals: false,
            websocket: None,
        }
    }
}

impl BenchConfig {
    /// How the server is named in errors: `tcp 127.0.0.1:8080`,
    /// `tls ...`, `ws ...`, `wss ...`.
    pub fn named(&self) -> String {
        match &self.websocket {
            Some(url) => url.named(),
            None => self.target.named(self.tls.is_some()),
        }
    }

    /// Checks the rules a run needs, the one place they are checked: the
    /// command line calls it before anything starts, and [`super::run`] calls
    /// it again, so a library caller's configuration is held to the same
    /// rules. The messages name the `upecho bench` flag of each field.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero window (`duration`), a `size`
    /// outside 1..=[`MAX_SIZE`], zero connections, a warm-up plus window
    /// longer than [`MAX_RUN`], or over UDP: stream mode or a `size` over
    /// [`MAX_DATAGRAM`].
    pub fn validate(&self) -> Result<(), Error> {
        let run = self.warmup.checked_add(self.duration);
        let udp = matches!(self.target, Target::Udp(_));
        let problem = if self.duration.is_zero() {
            "--duration must be more than 0 seconds".to_string()
        } else if !(1..=MAX_SIZE).contains(&self.size) {
            format!("--size must be 1 to {MAX_SIZE} bytes, not {}", self.size)
        } else if self.connections == 0 {
            "--connections must be at least 1".to_string()
        } else if !(1..=MAX_THREADS).contains(&self.threads) {
            format!("--threads must be 1 to {MAX_THREADS}, not {}", self.threads)
        } else if run.is_none_or(|run| run > MAX_RUN) {
            format!(
                "--warmup plus --duration must be at most {} seconds",
                MAX_RUN.as_secs()
            )
        } else if let Some(rate) = self.rate
            && !(rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate))
        {
            format!("--rate must be {MIN_RATE} to {MAX_RATE} messages per second, not {rate}")
        } else if self.rate.is_some() && self.mode == Mode::Stream {
            "--rate cannot be used with --mode stream: a stream has no messages to schedule"
                .to_string()
        } else if udp && self.mode == Mode::Connect {
            "--mode connect cannot be used with --udp: UDP has no connections to open".to_string()
        } else if !self.sources.is_empty() && matches!(self.target, Target::Unix(_)) {
            "--source cannot be used with --unix: a Unix socket has no local address to choose"
                .to_string()
        } else if self.tls.is_some() && !matches!(self.target, Target::Tcp(_)) {
            "--tls runs over TCP only (not with --udp or --unix)".to_string()
        } else if self.websocket.is_some() && !matches!(self.target, Target::Tcp(_)) {
            "--ws runs over TCP only (not with --udp or --unix)".to_string()
        } else if udp && self.mode == Mode::Stream {
            "--mode stream cannot be used with --udp: datagrams are pingpong only".to_string()
        } else if udp && self.size > MAX_DATAGRAM {
            format!(
                "--size {} is too large for --udp: a datagram holds at most {MAX_DATAGRAM} bytes",
                self.size
            )
        } else {
            return Ok(());
        };
        Err(Error::InvalidConfig(problem))
    }

    /// Over UDP, rejects messages whose longest reply (`longest`, known once
    /// the payload is generated: a `unicode` reply can be longer than its
    /// message) would not fit in one datagram: the server would drop it, and
    /// every such message would count as lost.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the reply length and `--size`.
    pub fn validate_reply_len(&self, longest: usize) -> Result<(), Error> {
        if matches!(self.target, Target::Udp(_)) && longest > MAX_DATAGRAM {
            return Err(Error::InvalidConfig(format!(
                "over UDP, a reply to these {}-byte {} messages would be {longest} bytes, \
                 more than one datagram holds ({MAX_DATAGRAM}); use a smaller --size",
                self.size, self.transform,
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp() -> BenchConfig {
        BenchConfig {
            target: Target::Udp(HostPort::from(SocketAddr::from(([127, 0, 0, 1], 9)))),
            ..BenchConfig::default()
        }
    }

    fn problem(config: &BenchConfig) -> String {
        match config.validate() {
            Err(Error::InvalidConfig(problem)) => problem,
            other => panic!("not rejected as invalid: {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(BenchConfig::default().validate().is_ok());
        assert!(udp().validate().is_ok());
    }

    #[test]
    fn what_the_command_line_cannot_produce_is_rejected_naming_the_flag() {
        let config = BenchConfig::default();
        for (bad, flag) in [
            (
                BenchConfig {
                    duration: Duration::ZERO,
                    ..config.clone()
                },
                "--duration",
            ),
            (
                BenchConfig {
                    size: 0,
                    ..config.clone()
                },
                "--size",
            ),
            (
                BenchConfig {
                    size: MAX_SIZE + 1,
                    ..config.clone()
                },
                "--size",
            ),
            (
                BenchConfig {
                    connections: 0,
                    ..config.clone()
                },
                "--connections",
            ),
            (
                BenchConfig {
                    warmup: MAX_RUN,
                    ..config.clone()
                },
                "--warmup",
            ),
        ] {
            assert!(problem(&bad).starts_with(flag), "{bad:?}");
        }
    }

    #[test]
    fn udp_takes_neither_stream_mode_nor_more_than_a_datagram() {
        let stream = BenchConfig {
            mode: Mode::Stream,
            ..udp()
        };
        assert_eq!(
            problem(&stream),
            "--mode stream cannot be used with --udp: datagrams are pingpong only"
        );
        let large = BenchConfig {
            size: MAX_DATAGRAM + 1,
            ..udp()
        };
        assert!(problem(&large).starts_with("--size 65508 is too large for --udp"));
        assert!(udp().validate_reply_len(MAX_DATAGRAM).is_ok());
        assert!(udp().validate_reply_len(MAX_DATAGRAM + 1).is_err());
        assert!(BenchConfig::default().validate_reply_len(1 << 20).is_ok());
    }
}
