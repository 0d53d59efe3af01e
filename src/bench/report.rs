//! Presenting a benchmark: the numbers a run produced, as a human summary or as
//! one JSON object (the contract's fields first).

use std::fmt;

use serde::Serialize;

use super::BenchConfig;
use super::load::Outcome;

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
    /// Largest latency in microseconds.
    pub max_us: u64,
    /// Wrong, missing or extra bytes found (and failed connects).
    pub errors: u64,
    /// Connections that got no reply in the window.
    pub starved: usize,
    /// The load generator's own CPU use over the window, in % of one core.
    pub client_cpu_percent: f64,
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
    /// The server address as given.
    pub addr: String,
    /// The first error, described.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Report {
    /// Turns raw measurements into rates and percentiles.
    pub fn new(config: &BenchConfig, outcome: &Outcome) -> Report {
        let secs = outcome.window.as_secs_f64();
        let hist = &outcome.latency;
        let quantile = |q| {
            if hist.is_empty() {
                0
            } else {
                hist.value_at_quantile(q)
            }
        };
        Report {
            mode: config.mode.name(),
            connections: config.connections,
            size: config.size,
            duration_s: round3(secs),
            requests_per_s: round3(outcome.requests as f64 / secs),
            mb_per_s: round3(outcome.bytes as f64 / secs / 1e6),
            p50_us: quantile(0.5),
            p99_us: quantile(0.99),
            p999_us: quantile(0.999),
            max_us: if hist.is_empty() { 0 } else { hist.max() },
            errors: outcome.errors,
            starved: outcome.starved,
            client_cpu_percent: round3(
                outcome
                    .cpu
                    .map_or(0.0, |cpu| cpu.as_secs_f64() / secs * 100.0),
            ),
            requests: outcome.requests,
            bytes: outcome.bytes,
            transform: config.transform.name(),
            seed: config.seed,
            warmup_s: config.warmup.as_secs_f64(),
            addr: config.addr.to_string(),
            first_error: outcome.first_error.clone(),
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// The human summary.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "upecho bench: {} tcp {}, {} connection{}, {} B, {}, {:.1} s after {:.1} s warm-up, seed {}",
            self.mode,
            self.addr,
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            self.size,
            self.transform,
            self.duration_s,
            self.warmup_s,
            self.seed
        )?;
        let unit = if self.mode == "pingpong" {
            "round trips"
        } else {
            "writes echoed"
        };
        writeln!(
            f,
            "  requests    {} {unit} ({:.1}/s)",
            self.requests, self.requests_per_s
        )?;
        writeln!(f, "  throughput  {:.3} MB/s verified", self.mb_per_s)?;
        writeln!(
            f,
            "  latency     p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            self.p50_us, self.p99_us, self.p999_us, self.max_us
        )?;
        writeln!(f, "  errors      {}", self.errors)?;
        if let Some(first) = &self.first_error {
            writeln!(f, "  first error {first}")?;
        }
        writeln!(
            f,
            "  starved     {} of {} connections",
            self.starved, self.connections
        )?;
        write!(
            f,
            "  client CPU  {:.1}% of one core",
            self.client_cpu_percent
        )
    }
}
