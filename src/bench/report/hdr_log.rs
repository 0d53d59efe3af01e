//! `--histogram FILE`: the run's intervals in HdrHistogram's interval log
//! format, the one its own tools (`HistogramLogProcessor`, the log
//! analyzer) and its ports' log readers take: a header of `#` lines, then a
//! line per interval and series, `[Tag=T,]start,length,max,histogram` with
//! the histogram V2-encoded, deflated and in base64. Values are
//! microseconds; timestamps are seconds from the window's start (the
//! `BaseTime`).

use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use super::Report;
#[cfg(doc)]
use crate::bench::intervals::Interval;

/// Writes `report`'s intervals as an interval log: one series, untagged,
/// for a closed loop; with `--rate` two, `corrected` (from the scheduled
/// send times) and `uncorrected` (from the real ones). The header's
/// `StartTime` and `BaseTime` are written here rather than by the crate's
/// log writer because the legend line must follow them, as Java's writer
/// puts it.
///
/// # Errors
///
/// When `out` cannot be written.
pub fn write(report: &Report, mut out: impl Write) -> io::Result<()> {
    let start = report
        .window_start
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    // The header Java's HistogramLogWriter writes, the legend included, so
    // that every reader finds what it looks for.
    writeln!(
        out,
        "#upecho bench {} against {}: latency in microseconds, an interval a second",
        report.mode,
        report.peer()
    )?;
    writeln!(out, "#[Histogram log format version 1.3]")?;
    writeln!(out, "#[StartTime: {start:.3} (seconds since epoch)]")?;
    writeln!(out, "#[BaseTime: {start:.3} (seconds since epoch)]")?;
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    // Each interval's lines were encoded as it ended ([`Interval::log`]).
    for interval in &report.intervals {
        out.write_all(interval.log.as_bytes())?;
    }
    out.flush()
}
