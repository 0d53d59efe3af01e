//! Measuring: one tally of counters and latency histograms shared by every
//! connection of a run, the rule that tells a stalled connection, and the CPU
//! time this process uses.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::intervals::{Interval, Sample};

/// A connection is stalled when the bytes it was owed had not moved for at least
/// this long at the window's end (or [`STALL_FACTOR`] x p99, if longer).
pub const STALL_MIN: Duration = Duration::from_secs(1);

/// How many times the window's p99 latency a silence must exceed to be a stall,
/// so that a server that is uniformly slow under load is not called stalled.
pub const STALL_FACTOR: u32 = 10;

/// Latencies in microseconds, 1 us to 100 s, 3 significant digits (about
/// 150 KiB each, which is why a run has three, not three per connection).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// How late sends leave, in microseconds from 0 (on time) to 100 s.
pub fn lateness_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Records how late a send left (0 if on time).
pub fn record_lateness(hist: &mut Histogram<u64>, late: Duration) {
    let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(us);
}

/// Records `latency` (saturating at the histogram's top).
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    hist.saturating_record(us);
}

/// What the connections of a run have measured so far.
///
/// One for the whole run: the generator runs on one thread, so its connections
/// share this (behind a `RefCell`) instead of each keeping a histogram, which
/// would cost 150 KiB per connection.
#[derive(Debug)]
pub struct Tally {
    /// Verified replies (pingpong) or writes echoed (stream: `--size`
    /// writes whose reply came back whole in the window; the one partly
    /// echoed when it ended is in `echoing`) in the window.
    pub requests: u64,
    /// Verified reply bytes received in the window.
    pub bytes: u64,
    /// Wrong, missing or extra bytes, and broken connections.
    pub errors: u64,
    /// A description of the first error, for the report.
    pub first_error: Option<String>,
    /// UDP messages whose reply did not come in time (counted in the window).
    pub lost: u64,
    /// Connections with at least one verified reply in the window.
    pub replied: usize,
    /// Stream: connections whose reply stream, at their latest verified read
    /// in the window, stood inside a write (part of its reply back, not all):
    /// each is one request more in the report, however the window ends, at
    /// its end or at Ctrl-C.
    pub echoing: u64,
    /// Latency of the replies counted in `requests`.
    pub latency: Histogram<u64>,
    /// For each connection with a request unanswered at the window's end, how
    /// long it had waited: a stall must show in the latency, not vanish.
    /// (With `--rate`, every request unanswered, from its scheduled time.)
    pub unanswered: Histogram<u64>,
    /// `--rate`: the latency of the same replies from when each request was
    /// really sent (what a tool that does not correct for coordinated
    /// omission reports), `latency` being from when it was due.
    pub uncorrected: Histogram<u64>,
    /// `--rate`: what `unanswered` holds, from the real send times.
    pub unanswered_uncorrected: Histogram<u64>,
    /// `--rate`: how late each request of the window left, in microseconds
    /// (0 if on time).
    pub behind: Histogram<u64>,
    /// `--rate`: requests sent in the window.
    pub sent: u64,
    /// Connect mode: how long each connect (with `--tls`, and the
    /// handshake) of the window's completed cycles took.
    pub connect: Histogram<u64>,
    /// Why the run had to stop before its end (connect mode ran out of
    /// local ports): the run's error, not a count.
    pub fatal: Option<std::io::Error>,
    /// For each connection that had been answered before and was owed bytes at
    /// the window's end, how long nothing had arrived: the stall detector.
    pub silences: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            requests: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
            lost: 0,
            replied: 0,
            echoing: 0,
            latency: latency_histogram(),
            unanswered: latency_histogram(),
            uncorrected: latency_histogram(),
            unanswered_uncorrected: latency_histogram(),
            behind: lateness_histogram(),
            silences: latency_histogram(),
            sent: 0,
            connect: latency_histogram(),
            fatal: None,
        }
    }
}

impl Tally {
    /// Counts one error; `what` describes it if it is the first.
    pub fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    /// Adds what another generator thread counted (`--threads`).
    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.lost += other.lost;
        self.replied += other.replied;
        self.echoing += other.echoing;
        // Same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.unanswered.add(&other.unanswered);
        let _ = self.uncorrected.add(&other.uncorrected);
        let _ = self
            .unanswered_uncorrected
            .add(&other.unanswered_uncorrected);
        let _ = self.behind.add(&other.behind);
        self.sent += other.sent;
        let _ = self.connect.add(&other.connect);
        if self.fatal.is_none() {
            self.fatal = other.fatal;
        }
        let _ = self.silences.add(&other.silences);
    }

    /// Its totals now, for the second-by-second figures.
    pub fn sample(&self) -> Sample {
        Sample::of(self.requests, self.errors, &self.latency, &self.uncorrected)
    }

    /// The silence from which a connection counts as stalled: [`STALL_MIN`], or
    /// [`STALL_FACTOR`] times the p99 of the window's verified replies if that
    /// is longer.
    pub fn stall_threshold(&self) -> Duration {
        let p99 = if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(0.99)
        };
        STALL_MIN.max(Duration::from_micros(p99) * STALL_FACTOR)
    }

    /// Connections whose silence at the window's end reached `threshold`.
    pub fn stalled(&self, threshold: Duration) -> usize {
        let us = u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX);
        let count = self.silences.count_between(us, u64::MAX);
        usize::try_from(count).unwrap_or(usize::MAX)
    }
}

/// What a whole run measured.
#[derive(Debug)]
pub struct Measurements {
    /// Connections opened (all that were asked for).
    pub connections: usize,
    /// How long opening them took, before the warm-up.
    pub setup: Duration,
    /// Verified replies (pingpong) or writes echoed (stream: `--size`
    /// writes whose reply came back whole in the window, plus the one partly
    /// echoed when it ended) in the window.
    pub requests: u64,
    /// Verified reply bytes received in the window.
    pub bytes: u64,
    /// Wrong, missing or extra bytes, and broken connections.
    pub errors: u64,
    /// A description of the first error, for the report.
    pub first_error: Option<String>,
    /// UDP: messages whose reply did not come within
    /// the loss timeout (`datagram::LOSS`), counted when that time ran out in the window.
    pub lost: u64,
    /// Connections that got no verified reply in the window.
    pub starved: usize,
    /// Connections that had been answered but were owed bytes that had not
    /// moved for `stall_after` at the window's end.
    pub stalled: usize,
    /// The silence that made a connection stalled in this run.
    pub stall_after: Duration,
    /// Latency of every verified reply in the window, plus, for each request
    /// unanswered at its end, how long it had waited by then.
    pub latency: Histogram<u64>,
    /// `--rate`: the latency from the real send times, unanswered waits
    /// included.
    pub uncorrected: Histogram<u64>,
    /// `--rate`: how late the window's sends left, in microseconds.
    pub behind: Histogram<u64>,
    /// `--rate`: requests sent in the window.
    pub sent: u64,
    /// Connect mode: how long the connects of the window's cycles took.
    pub connect: Histogram<u64>,
    /// Why the run stopped before its end, if it had to.
    pub fatal: Option<std::io::Error>,
    /// The measured window's real length.
    pub window: Duration,
    /// CPU time this process used during the window.
    pub cpu: Option<Duration>,
    /// When the window began, on the wall clock.
    pub window_start: std::time::SystemTime,
    /// Second by second, if asked for ([`BenchConfig::intervals`](super::BenchConfig::intervals)).
    pub intervals: Vec<Interval>,
}

impl Measurements {
    /// The run's totals, on which its last interval ends, so that the
    /// intervals add up to the report (unanswered waits included).
    pub fn sample(&self) -> Sample {
        Sample::of(self.requests, self.errors, &self.latency, &self.uncorrected)
    }

    /// Decides stalls (they depend on the whole run's p99) and folds the
    /// waits of unanswered requests into the latency.
    pub fn new(
        mut tally: Tally,
        connections: usize,
        setup: Duration,
        window: Duration,
        cpu: Option<Duration>,
    ) -> Measurements {
        let stall_after = tally.stall_threshold();
        let stalled = tally.stalled(stall_after);
        // Same bounds, so adding cannot fail.
        let _ = tally.latency.add(&tally.unanswered);
        let _ = tally.uncorrected.add(&tally.unanswered_uncorrected);
        Measurements {
            connections,
            setup,
            requests: tally.requests + tally.echoing,
            bytes: tally.bytes,
            errors: tally.errors,
            first_error: tally.first_error,
            lost: tally.lost,
            starved: connections.saturating_sub(tally.replied),
            stalled,
            stall_after,
            latency: tally.latency,
            uncorrected: tally.uncorrected,
            behind: tally.behind,
            sent: tally.sent,
            connect: tally.connect,
            fatal: tally.fatal,
            window,
            cpu,
            window_start: std::time::SystemTime::UNIX_EPOCH,
            intervals: Vec::new(),
        }
    }
}

/// CPU time used so far by this process, every thread it has had included
/// (`CLOCK_PROCESS_CPUTIME_ID`: the scheduler's own nanosecond accounting).
///
/// Why not `getrusage` or `/proc/self/stat`: the tick-based counters are coarse
/// (10 ms) and on some kernels stay near zero. Why not the sum of
/// `/proc/self/task/*/schedstat`, as the peer comparison reads a server's: a
/// generator thread that ends before the window's last sample takes its time
/// out of that sum, which made a connect run's CPU read 0.
pub fn process_cpu_time() -> Option<Duration> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).ok()?;
    Some(Duration::from(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_reports_percentiles_in_microseconds() {
        let mut hist = latency_histogram();
        for us in 1..=1000u64 {
            record(&mut hist, Duration::from_micros(us));
        }
        assert_eq!(hist.len(), 1000);
        assert!((495..=505).contains(&hist.value_at_quantile(0.5)));
        assert!(hist.max() >= 1000);
    }

    #[test]
    fn a_silence_is_a_stall_past_one_second_or_ten_times_p99() {
        let mut tally = Tally::default();
        assert_eq!(tally.stall_threshold(), STALL_MIN);
        record(&mut tally.silences, Duration::from_millis(900));
        record(&mut tally.silences, Duration::from_millis(1500));
        assert_eq!(tally.stalled(tally.stall_threshold()), 1);
        // A server that answers everything in about 200 ms is slow, not stalled.
        for _ in 0..100 {
            record(&mut tally.latency, Duration::from_millis(200));
        }
        assert!(tally.stall_threshold() >= Duration::from_millis(1990));
        assert_eq!(tally.stalled(tally.stall_threshold()), 0);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = process_cpu_time().expect("schedstat readable");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = process_cpu_time().unwrap();
        assert!(after > before);
    }
}
