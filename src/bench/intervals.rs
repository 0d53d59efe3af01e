//! Second by second (`-v`, `--histogram`): each generator thread samples its
//! running tally at every whole second of the window; the coordinator adds
//! the threads' samples of the same second and takes the previous second's
//! sum away, which leaves that second's own counts and latency histograms.
//!
//! Nothing is added to the hot path: the histograms sampled are the ones
//! the connections already record into, and a sample is a copy made once a
//! second per thread (about 150 KiB a histogram), only when asked for.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

/// The length of an interval (the last one of a window may be shorter, or
/// longer where a thread stopped early).
pub const INTERVAL: Duration = Duration::from_secs(1);

/// A tally's running totals at one moment: what an interval is the
/// difference of.
#[derive(Clone, Debug)]
pub struct Sample {
    requests: u64,
    errors: u64,
    latency: Histogram<u64>,
    uncorrected: Histogram<u64>,
}

impl Sample {
    /// Totals of requests, errors and latencies (from the scheduled and the
    /// real send times), as a tally or a whole run holds them.
    pub fn of(
        requests: u64,
        errors: u64,
        latency: &Histogram<u64>,
        uncorrected: &Histogram<u64>,
    ) -> Sample {
        Sample {
            requests,
            errors,
            latency: latency.clone(),
            uncorrected: uncorrected.clone(),
        }
    }

    /// Adds another thread's totals.
    fn add(&mut self, other: &Sample) {
        self.requests += other.requests;
        self.errors += other.errors;
        // Same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.uncorrected.add(&other.uncorrected);
    }

    /// What was counted after `earlier` (from the start if `None`) up to
    /// this one, as the interval from `start` (since the window began) to
    /// `end`.
    fn since(
        &self,
        earlier: Option<&Sample>,
        start: Duration,
        end: Duration,
        open_loop: bool,
    ) -> Interval {
        let (mut requests, mut errors) = (self.requests, self.errors);
        let mut latency = self.latency.clone();
        let mut uncorrected = self.uncorrected.clone();
        if let Some(earlier) = earlier {
            requests -= earlier.requests.min(requests);
            errors -= earlier.errors.min(errors);
            // Totals only grow, so what was counted earlier is all still
            // there.
            let _ = latency.subtract(&earlier.latency);
            let _ = uncorrected.subtract(&earlier.uncorrected);
        }
        let length = end.saturating_sub(start);
        let mut interval = Interval {
            start,
            length,
            requests,
            errors,
            samples: latency.len(),
            p99_us: p99(&latency),
            uncorrected_p99_us: open_loop.then(|| p99(&uncorrected)),
            log: String::new(),
        };
        let series = if open_loop {
            vec![
                (&latency, Tag::new("corrected")),
                (&uncorrected, Tag::new("uncorrected")),
            ]
        } else {
            vec![(&latency, None)]
        };
        interval.log = log_lines(&series, start, length);
        interval
    }
}

/// The 99th percentile of `histogram` (0 when it is empty).
fn p99(histogram: &Histogram<u64>) -> u64 {
    if histogram.is_empty() {
        0
    } else {
        histogram.value_at_quantile(0.99)
    }
}

/// The interval log's lines for these series of one interval: the
/// histograms V2-encoded, deflated and in base64, a few hundred bytes each
/// where the histograms take 150 KiB, so that a long run keeps a few
/// kilobytes a second, not 300.
fn log_lines(
    series: &[(&Histogram<u64>, Option<Tag<'_>>)],
    start: Duration,
    length: Duration,
) -> String {
    let mut lines = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    if let Ok(mut log) = IntervalLogWriterBuilder::new().begin_log_with(&mut lines, &mut serializer)
    {
        for (histogram, tag) in series {
            // Into memory, and a histogram of these bounds always encodes.
            let _ = log.write_histogram(histogram, start, length, *tag);
        }
    }
    String::from_utf8(lines).unwrap_or_default()
}

/// One interval's own figures.
#[derive(Clone, Debug)]
pub struct Interval {
    /// When it began, from the start of the window.
    pub start: Duration,
    /// How long it lasted.
    pub length: Duration,
    /// Verified requests (or connect cycles) completed in it.
    pub requests: u64,
    /// Errors counted in it.
    pub errors: u64,
    /// Latencies recorded in it (with the waits of requests unanswered at
    /// the window's end, in the last).
    pub samples: u64,
    /// Its 99th percentile latency in microseconds (with `--rate`, from the
    /// scheduled send times); 0 with no request.
    pub p99_us: u64,
    /// `--rate`: the same from the real send times.
    pub uncorrected_p99_us: Option<u64>,
    /// Its lines of HdrHistogram's interval log (`--histogram`): one, or
    /// with `--rate` two, tagged `corrected` and `uncorrected`.
    pub log: String,
}

impl Interval {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.length.as_secs_f64().max(1e-9)
    }
}

/// A thread's sample of the end of second `.0` of the window.
pub type Sampled = (u32, Sample);

/// The coordinator's side: adds up the threads' samples of each second and
/// turns them into intervals, in order.
#[derive(Debug)]
pub struct Intervals {
    /// Generator threads: a second is complete once each has sent its
    /// sample.
    threads: usize,
    /// `--rate`: two series, corrected and uncorrected.
    open_loop: bool,
    /// Seconds some threads have sent, with how many and their sum.
    pending: BTreeMap<u32, (usize, Sample)>,
    /// The last complete second, and the totals at its end (none before
    /// the first).
    last: (u32, Option<Sample>),
    /// The intervals so far.
    done: Vec<Interval>,
}

impl Intervals {
    /// For a run on `threads` generator threads, open loop or not.
    pub fn new(threads: usize, open_loop: bool) -> Intervals {
        Intervals {
            threads,
            open_loop,
            pending: BTreeMap::new(),
            last: (0, None),
            done: Vec::new(),
        }
    }

    /// Takes one thread's sample; returns the interval it completed, if it
    /// was the last thread's of its second. Seconds complete in order, as
    /// each thread sends them in order.
    pub fn add(&mut self, (second, sample): Sampled) -> Option<&Interval> {
        let threads = match self.pending.entry(second) {
            Entry::Vacant(entry) => entry.insert((1, sample)).0,
            Entry::Occupied(mut entry) => {
                let (threads, sum) = entry.get_mut();
                *threads += 1;
                sum.add(&sample);
                *threads
            }
        };
        if threads < self.threads {
            return None;
        }
        let (_, total) = self.pending.remove(&second)?;
        let interval = total.since(
            self.last.1.as_ref(),
            INTERVAL * self.last.0,
            INTERVAL * second,
            self.open_loop,
        );
        self.last = (second, Some(total));
        self.done.push(interval);
        self.done.last()
    }

    /// How many intervals are complete so far.
    pub fn complete(&self) -> usize {
        self.done.len()
    }

    /// The intervals, the last one running from the last complete second
    /// to `end`, how long the window ran, and to the run's totals `all`.
    pub fn finish(mut self, all: &Sample, end: Duration) -> Vec<Interval> {
        let from = INTERVAL * self.last.0;
        if end > from {
            let last = all.since(self.last.1.as_ref(), from, end, self.open_loop);
            self.done.push(last);
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Totals of `requests` with these latencies.
    fn totals(requests: u64, latencies_us: &[u64]) -> Sample {
        let histogram = || Histogram::new_with_bounds(1, 100_000_000, 3).unwrap();
        let mut latency = histogram();
        for &us in latencies_us {
            latency.record(us).unwrap();
        }
        Sample::of(requests, 0, &latency, &histogram())
    }

    #[test]
    fn a_second_is_the_sum_of_the_threads_minus_the_second_before() {
        let mut intervals = Intervals::new(2, false);
        assert!(intervals.add((1, totals(1, &[100]))).is_none());
        let first = intervals
            .add((1, totals(2, &[200, 300])))
            .expect("both threads sent second 1")
            .clone();
        assert_eq!((first.start, first.length), (Duration::ZERO, INTERVAL));
        assert_eq!((first.requests, first.samples), (3, 3));
        // Second 2: thread one did nothing more, thread two one slow reply.
        intervals.add((2, totals(1, &[100])));
        let second = intervals
            .add((2, totals(3, &[200, 300, 50_000])))
            .unwrap()
            .clone();
        assert_eq!(second.start, INTERVAL);
        assert_eq!((second.requests, second.samples), (1, 1));
        assert!(second.p99_us >= 49_000, "{}", second.p99_us);
        assert!(second.log.starts_with("1.000,1.000,"), "{}", second.log);
        assert!((second.rate() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_last_interval_runs_from_the_last_whole_second_to_the_end() {
        let mut intervals = Intervals::new(1, false);
        intervals.add((1, totals(10, &[100; 10])));
        let all = intervals.finish(&totals(15, &[100; 15]), Duration::from_millis(1500));
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].start, INTERVAL);
        assert_eq!(all[1].length, Duration::from_millis(500));
        assert_eq!((all[1].requests, all[1].samples), (5, 5));
        assert!((all[1].rate() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_second_a_thread_never_sent_is_folded_into_the_last_interval() {
        let mut intervals = Intervals::new(2, false);
        intervals.add((1, totals(4, &[])));
        let all = intervals.finish(&totals(9, &[]), Duration::from_secs(2));
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].start, all[0].length),
            (Duration::ZERO, Duration::from_secs(2))
        );
        assert_eq!(all[0].requests, 9);
    }
}
