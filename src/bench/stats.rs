//! Measuring: latency histograms and the CPU time this process uses.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies in microseconds, 1 us to 100 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Records `latency` (saturating at the histogram's top).
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    hist.saturating_record(us);
}

/// CPU time used so far by every thread of this process, from the scheduler's
/// accounting (`/proc/self/task/*/schedstat`, nanoseconds on a CPU).
///
/// Why not `getrusage` or `/proc/self/stat`: the tick-based counters are coarse
/// (10 ms) and on some kernels stay near zero; schedstat is exact and is what the
/// peer comparison uses for servers too.
pub fn process_cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that exited between listing and reading is simply skipped.
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(Duration::from_nanos(total))
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
