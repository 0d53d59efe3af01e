//! Presenting a benchmark: the numbers a run produced ([`Report`], built
//! from the run's measurements), and the policy that decides whether they
//! fail the run ([`Report::failure`]). How they are shown lives beside it:
//! `human` (the summary) and `json` (one JSON object, the contract's
//! fields first).

pub mod hdr_log;
mod human;
mod json;
pub mod plot;

use std::io::{self, Write};

use serde::Serialize;

use hdrhistogram::Histogram;

use super::BenchConfig;
use super::intervals::Interval;
use super::stats::Measurements;
use crate::endpoint::Target;

/// The result of one run, in the units the contract names (MB = 10^6 bytes).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `pingpong` or `stream`.
    pub mode: &'static str,
    /// Connections asked for.
    pub connections: usize,
    /// Message (pingpong) or write (stream) size in bytes.
    pub size: usize,
    /// The measured window in seconds.
    pub duration_s: f64,
    /// Verified round trips (pingpong) or echoed writes (stream) per second.
    pub requests_per_s: f64,
    /// Verified reply megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Median latency in microseconds.
    pub p50_us: u64,
    /// 99th percentile latency in microseconds.
    pub p99_us: u64,
    /// 99.9th percentile latency in microseconds.
    pub p999_us: u64,
    /// Largest latency in microseconds. Like the percentiles, it includes, for
    /// each request unanswered when the window ended, how long it had waited.
    pub max_us: u64,
    /// Wrong, missing or extra bytes found (and failed connects).
    pub errors: u64,
    /// UDP messages whose reply did not come within 1 s (not errors; always
    /// 0 over TCP and Unix sockets, which do not lose bytes).
    pub lost: u64,
    /// Connections that got no verified reply in the window.
    pub starved: usize,
    /// Connections the server had answered but that, at the window's end, had
    /// been owed bytes with nothing arriving for `stall_after_s` or more.
    pub stalled: usize,
    /// The silence that counted as a stall in this run: 1 s, or 10 x p99 if
    /// longer (see [`crate::bench::stats::STALL_MIN`]).
    pub stall_after_s: f64,
    /// Seconds taken to open every connection, before the warm-up.
    pub setup_s: f64,
    /// The load generator's own CPU use over the window, in % of one core.
    pub client_cpu_percent: f64,
    /// The load generator's own CPU time, in microseconds, per verified
    /// round trip (pingpong), per verified MB (stream) or per connection
    /// cycle (connect); 0 when nothing was verified.
    pub client_cpu_us_per_op: f64,
    /// Verified requests in the window.
    pub requests: u64,
    /// Verified reply bytes in the window.
    pub bytes: u64,
    /// The transform replies were checked against.
    pub transform: &'static str,
    /// The payload seed.
    pub seed: u64,
    /// The warm-up before the window, in seconds.
    pub warmup_s: f64,
    /// How the server was reached: `tcp`, `tls`, `ws`, `wss`, `udp` or `unix`.
    pub transport: &'static str,
    /// The server address (or Unix socket path) as given.
    pub addr: String,
    /// Ctrl-C cut the run short (exit status 130): the figures are those of
    /// the `duration_s` measured until then (0 if it came in the warm-up).
    /// False for a run whose window ran to its end.
    pub interrupted: bool,
    /// The first error, described.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// `--rate`: the figures of the open loop; absent for a closed loop.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub open_loop: Option<OpenLoop>,
    /// Connect mode: the connection rate and the connect's latency.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
    /// The window's latency histograms, whole (for `--plot`); not in the
    /// JSON.
    #[serde(skip)]
    pub histograms: Histograms,
    /// Second by second, if asked for ([`BenchConfig::intervals`]: `-v`,
    /// `--histogram`); not in the JSON.
    #[serde(skip)]
    pub intervals: Vec<Interval>,
    /// When the window began, on the wall clock; not in the JSON.
    #[serde(skip)]
    pub window_start: std::time::SystemTime,
}

/// The latency of a whole window, in microseconds, as recorded.
#[derive(Clone, Debug)]
pub struct Histograms {
    /// Every verified reply's latency (with `--rate`, from its scheduled
    /// send time), and each unanswered request's wait.
    pub latency: Histogram<u64>,
    /// `--rate`: the same from the real send times; `None` for a closed
    /// loop.
    pub uncorrected: Option<Histogram<u64>>,
}

/// What connect mode adds: the cycles (connect, one verified exchange,
/// close) are the requests above, their latency the percentiles above; this
/// is the connect alone (with `--tls`, and the handshake).
#[derive(Clone, Debug, Serialize)]
pub struct Churn {
    /// Cycles completed per second in the window.
    pub connects_per_s: f64,
    /// Median connect time in microseconds.
    pub connect_p50_us: u64,
    /// 99th percentile connect time in microseconds.
    pub connect_p99_us: u64,
    /// Largest connect time in microseconds.
    pub connect_max_us: u64,
}

/// What an open-loop run (`--rate`) adds: the latency percentiles above are
/// from each message's scheduled send time; these say how the schedule was
/// kept and what the latency looks like from the real send times.
#[derive(Clone, Debug, Serialize)]
pub struct OpenLoop {
    /// The rate asked for, messages per second.
    pub rate: f64,
    /// Messages really sent per second in the window.
    pub achieved_rate: f64,
    /// The latest a message left after its scheduled time, in microseconds.
    pub behind_max_us: u64,
    /// The 99th percentile of how late messages left, in microseconds.
    pub behind_p99_us: u64,
    /// The median of how late messages left, in microseconds.
    pub behind_p50_us: u64,
    /// Latency from the real send times (not corrected for coordinated
    /// omission), for comparison.
    pub uncorrected: Percentiles,
}

impl OpenLoop {
    /// The open-loop figures of `outcome`, a window of `secs` at `rate`.
    fn of(rate: f64, outcome: &Measurements, secs: f64) -> OpenLoop {
        let behind = Percentiles::of(&outcome.behind);
        OpenLoop {
            rate,
            achieved_rate: round3(outcome.sent as f64 / secs),
            behind_max_us: behind.max_us,
            behind_p99_us: behind.p99_us,
            behind_p50_us: behind.p50_us,
            uncorrected: Percentiles::of(&outcome.uncorrected),
        }
    }
}

impl Churn {
    /// The connect-mode figures of `outcome`, a window of `secs`.
    fn of(outcome: &Measurements, secs: f64) -> Churn {
        let connect = Percentiles::of(&outcome.connect);
        Churn {
            connects_per_s: round3(outcome.requests as f64 / secs),
            connect_p50_us: connect.p50_us,
            connect_p99_us: connect.p99_us,
            connect_max_us: connect.max_us,
        }
    }
}

/// How the report names the server's transport: as the server's readiness
/// line names its listener.
fn transport(config: &BenchConfig) -> &'static str {
    match (&config.target, &config.websocket) {
        (Target::Tcp(_), Some(url)) if url.tls() => "wss",
        (Target::Tcp(_), Some(_)) => "ws",
        (Target::Tcp(_), None) if config.tls.is_some() => "tls",
        (Target::Tcp(_), None) => "tcp",
        (Target::Udp(_), _) => "udp",
        (Target::Unix(_), _) => "unix",
    }
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Percentiles {
    /// The median.
    pub p50_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The 99.9th percentile.
    pub p999_us: u64,
    /// The largest.
    pub max_us: u64,
}

impl Percentiles {
    /// Of `hist` (all 0 when it is empty).
    pub fn of(hist: &hdrhistogram::Histogram<u64>) -> Percentiles {
        if hist.is_empty() {
            return Percentiles {
                p50_us: 0,
                p99_us: 0,
                p999_us: 0,
                max_us: 0,
            };
        }
        Percentiles {
            p50_us: hist.value_at_quantile(0.5),
            p99_us: hist.value_at_quantile(0.99),
            p999_us: hist.value_at_quantile(0.999),
            max_us: hist.max(),
        }
    }
}

impl Report {
    /// Turns raw measurements into rates and percentiles, for a window that
    /// ran to its end (the caller sets [`Report::interrupted`] otherwise).
    pub fn new(config: &BenchConfig, outcome: &Measurements) -> Report {
        let secs = outcome.window.as_secs_f64();
        let latency = Percentiles::of(&outcome.latency);
        let open_loop = config.rate.map(|rate| OpenLoop::of(rate, outcome, secs));
        let churn = (config.mode == super::Mode::Connect).then(|| Churn::of(outcome, secs));
        Report {
            mode: config.mode.name(),
            connections: config.connections,
            size: config.size,
            duration_s: round3(secs),
            requests_per_s: round3(outcome.requests as f64 / secs),
            mb_per_s: round3(outcome.bytes as f64 / secs / 1e6),
            p50_us: latency.p50_us,
            p99_us: latency.p99_us,
            p999_us: latency.p999_us,
            max_us: latency.max_us,
            errors: outcome.errors,
            lost: outcome.lost,
            starved: outcome.starved,
            stalled: outcome.stalled,
            stall_after_s: round3(outcome.stall_after.as_secs_f64()),
            setup_s: round3(outcome.setup.as_secs_f64()),
            client_cpu_percent: round3(
                outcome
                    .cpu
                    .map_or(0.0, |cpu| cpu.as_secs_f64() / secs * 100.0),
            ),
            client_cpu_us_per_op: round3(cpu_per_op(config.mode, outcome)),
            requests: outcome.requests,
            bytes: outcome.bytes,
            transform: config.transform.name(),
            seed: config.seed,
            warmup_s: config.warmup.as_secs_f64(),
            transport: transport(config),
            addr: match &config.target {
                Target::Tcp(addr) | Target::Udp(addr) => addr.to_string(),
                Target::Unix(path) => path.to_string(),
            },
            interrupted: false,
            first_error: outcome.first_error.clone(),
            open_loop,
            churn,
            histograms: Histograms {
                latency: outcome.latency.clone(),
                uncorrected: config.rate.map(|_| outcome.uncorrected.clone()),
            },
            intervals: outcome.intervals.clone(),
            window_start: outcome.window_start,
        }
    }

    /// Writes the report, JSON (one line) or the human summary, and flushes.
    ///
    /// # Errors
    ///
    /// When `out` cannot be written (a full disk, a closed pipe).
    pub fn write_to(&self, mut out: impl Write, json: bool) -> io::Result<()> {
        if json {
            writeln!(out, "{}", self.to_json())?;
        } else {
            writeln!(out, "{self}")?;
        }
        out.flush()
    }

    /// The server as the contract names endpoints: `tcp 127.0.0.1:8080`,
    /// `unix /run/upecho.sock`.
    pub fn peer(&self) -> String {
        format!("{} {}", self.transport, self.addr)
    }

    /// Returns why this run fails (exit status 1), or `None` if it passes.
    ///
    /// The decision, in the order checked:
    /// - any error (a wrong, missing or extra byte, a connection broken
    ///   mid-reply): the contract makes any error a failure;
    /// - any stalled connection: a server that stops answering a connection it
    ///   had been answering is not a working server, even while it serves the
    ///   others; otherwise a stall would show only as a lower rate;
    /// - every connection starved (no verified reply in the window): nothing
    ///   was measured, the contract's "no reply".
    ///
    /// Starved connections alone, while others got replies, pass and are
    /// reported: a server past its `--max-connections` keeps extra clients
    /// waiting in its backlog by design, and the report says how many waited.
    pub fn failure(&self) -> Option<String> {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let peer = self.peer();
        if self.errors > 0 {
            Some(format!(
                "{} error{} in replies from {peer}; first: {}",
                self.errors,
                if self.errors == 1 { "" } else { "s" },
                self.first_error.as_deref().unwrap_or("unknown")
            ))
        } else if self.stalled > 0 {
            Some(format!(
                "{} of {} connection{} stalled: {peer} stopped replying to them \
                 (nothing for {:.1} s or more when the window ended)",
                self.stalled,
                self.connections,
                plural(self.connections),
                self.stall_after_s
            ))
        } else if self.starved >= self.connections {
            Some(format!(
                "no reply from {peer} in the window: all {} connection{} starved",
                self.connections,
                plural(self.connections)
            ))
        } else {
            None
        }
    }
}

/// The generator's CPU time in microseconds per unit of the mode's work.
fn cpu_per_op(mode: super::Mode, outcome: &Measurements) -> f64 {
    let ops = match mode {
        super::Mode::Stream => outcome.bytes as f64 / 1e6,
        super::Mode::PingPong | super::Mode::Connect => outcome.requests as f64,
    };
    match outcome.cpu {
        Some(cpu) if ops > 0.0 => cpu.as_secs_f64() * 1e6 / ops,
        _ => 0.0,
    }
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pingpong report over TCP with these counts of trouble.
    fn report(errors: u64, starved: usize, stalled: usize) -> Report {
        Report {
            mode: "pingpong",
            connections: 4,
            size: 64,
            duration_s: 1.0,
            requests_per_s: 0.0,
            mb_per_s: 0.0,
            p50_us: 0,
            p99_us: 0,
            p999_us: 0,
            max_us: 0,
            errors,
            lost: 0,
            starved,
            stalled,
            stall_after_s: 1.0,
            setup_s: 0.0,
            client_cpu_percent: 0.0,
            client_cpu_us_per_op: 0.0,
            requests: 0,
            bytes: 0,
            transform: "ascii",
            seed: 1,
            warmup_s: 1.0,
            transport: "tcp",
            addr: "127.0.0.1:8080".into(),
            interrupted: false,
            first_error: Some("wrong reply".into()),
            open_loop: None,
            churn: None,
            histograms: Histograms {
                latency: super::super::stats::latency_histogram(),
                uncorrected: None,
            },
            intervals: Vec::new(),
            window_start: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn errors_then_stalls_then_total_starvation_fail_a_run_in_that_order() {
        let failure = |errors, starved, stalled| report(errors, starved, stalled).failure();
        assert_eq!(
            failure(2, 4, 4).unwrap(),
            "2 errors in replies from tcp 127.0.0.1:8080; first: wrong reply"
        );
        assert!(
            failure(0, 4, 1)
                .unwrap()
                .starts_with("1 of 4 connections stalled")
        );
        assert_eq!(
            failure(0, 4, 0).unwrap(),
            "no reply from tcp 127.0.0.1:8080 in the window: all 4 connections starved"
        );
    }

    #[test]
    fn some_starved_connections_alone_are_reported_not_failed() {
        let report = report(0, 3, 0);
        assert_eq!(report.failure(), None);
        assert!(
            report
                .to_string()
                .contains("starved     3 of 4 connections")
        );
    }

    #[test]
    fn an_interrupted_run_says_so_in_json_and_in_the_summary() {
        let whole = report(0, 0, 0);
        let json: serde_json::Value = serde_json::from_str(&whole.to_json()).unwrap();
        assert_eq!(json["interrupted"], false);
        assert!(!whole.to_string().contains("interrupted"));
        let cut = Report {
            interrupted: true,
            duration_s: 0.512,
            ..whole
        };
        let json: serde_json::Value = serde_json::from_str(&cut.to_json()).unwrap();
        assert_eq!(json["interrupted"], true);
        assert!(
            cut.to_string()
                .contains("\n  interrupted by Ctrl-C after 0.512 s measured\n  set-up "),
            "{cut}"
        );
    }
}
