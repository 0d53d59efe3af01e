//! What `upecho bench` writes besides its report: `--histogram` (HdrHistogram's
//! interval log, read back by the PyPI `hdrhistogram` package's reader),
//! `--plot` (an SVG picture that a browser draws) and `-v` (a line per
//! second on stderr).

use std::process::Command;

use crate::bench::{bench_for, count};
use crate::support::{ServerProcess, TempDir, assert_error_line, json, run};

/// Reads an interval log with the PyPI `hdrhistogram` package (`hdrh`),
/// adds up each tag's intervals, and says, per tag (`-` for none): how many
/// intervals, their total count, p50, p99, p99.9 and max, as JSON.
fn read_back(log: &str) -> serde_json::Value {
    let script = r#"
import json, sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 100000000, 3))
series = {}
while True:
    interval = reader.get_next_interval_histogram()
    if interval is None:
        break
    tag = interval.get_tag() or "-"
    count, total = series.get(tag, (0, HdrHistogram(1, 100000000, 3)))
    total.add(interval)
    series[tag] = (count + 1, total)
print(json.dumps({tag: {
    "intervals": count,
    "count": total.get_total_count(),
    "p50_us": total.get_value_at_percentile(50),
    "p99_us": total.get_value_at_percentile(99),
    "max_us": total.get_max_value(),
} for tag, (count, total) in series.items()}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, log])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the hdrhistogram package (pip install hdrhistogram) could not read {log}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the reader")
}

/// Asserts the reader's figures of one series are the report's: the same
/// maximum, and p50 and p99 within the histogram's resolution (3 digits;
/// the two libraries round a percentile's rank apart by one sample).
fn assert_same_percentiles(read: &serde_json::Value, p50: u64, p99: u64, max: u64) {
    let close = |field: &str, expected: u64| {
        let got = read[field].as_u64().unwrap();
        assert!(
            got.abs_diff(expected) * 100 <= expected.max(100),
            "{field}: read back {got}, reported {expected}: {read}"
        );
    };
    close("p50_us", p50);
    close("p99_us", p99);
    assert_eq!(read["max_us"].as_u64(), Some(max), "{read}");
}

#[test]
fn the_histogram_log_reads_back_with_the_reports_percentiles() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "-q"], 1);
    let dir = TempDir::new();
    let log = dir.path("closed.hlog");
    let out = bench_for(
        "2.5",
        &server.addr_arg(),
        &["--connections", "2", "--histogram", &log],
    );
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    let read = read_back(&log);
    // A closed loop is one series, untagged: a second, a second, a half.
    let series = &read["-"];
    assert_eq!(series["intervals"], 3, "{read}");
    assert!(
        count(series, "count") >= count(&report, "requests"),
        "{read}"
    );
    assert_same_percentiles(
        series,
        count(&report, "p50_us"),
        count(&report, "p99_us"),
        count(&report, "max_us"),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("#[StartTime: "), "{text}");
    assert!(
        text.contains("\"StartTimestamp\",\"Interval_Length\""),
        "{text}"
    );
}

#[test]
fn under_rate_the_log_has_corrected_and_uncorrected_series() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "-q"], 1);
    let dir = TempDir::new();
    let log = dir.path("open.hlog");
    let out = bench_for(
        "2",
        &server.addr_arg(),
        &["--connections", "2", "--rate", "2000", "--histogram", &log],
    );
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    let read = read_back(&log);
    assert!(read.get("-").is_none(), "{read}");
    let (corrected, uncorrected) = (&read["corrected"], &read["uncorrected"]);
    assert_eq!(corrected["intervals"], 2, "{read}");
    assert_eq!(uncorrected["intervals"], 2, "{read}");
    assert_same_percentiles(
        corrected,
        count(&report, "p50_us"),
        count(&report, "p99_us"),
        count(&report, "max_us"),
    );
    let plain = &report["uncorrected"];
    assert_same_percentiles(
        uncorrected,
        count(plain, "p50_us"),
        count(plain, "p99_us"),
        count(plain, "max_us"),
    );
}

#[test]
fn verbose_prints_a_line_per_second_with_rate_p99_and_errors() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "-q"], 1);
    let out = bench_for("2.5", &server.addr_arg(), &["-v"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    let mut requests = 0.0;
    for (line, (end, length)) in lines.iter().zip([(1.0, 1.0), (2.0, 1.0), (2.5, 0.5)]) {
        // "   1.0 s  81295 req/s  p99 101 us  errors 0"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 9, "{line}");
        assert_eq!(words[0].parse::<f64>().unwrap(), end, "{line}");
        assert_eq!(
            (words[1], words[3], words[4], words[6]),
            ("s", "req/s", "p99", "us"),
            "{line}"
        );
        assert!(words[5].parse::<u64>().unwrap() > 0, "{line}");
        assert_eq!((words[7], words[8]), ("errors", "0"), "{line}");
        requests += words[2].parse::<f64>().unwrap() * length;
    }
    // The seconds add up to the report (their rates are rounded to 1/s).
    let reported = report["requests"].as_f64().unwrap();
    assert!(
        (requests - reported).abs() <= 3.0,
        "{requests} vs {reported}"
    );
}

#[test]
fn the_plot_is_an_svg_with_a_line_per_series() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "-q"], 1);
    let dir = TempDir::new();
    for (extra, lines) in [(&[][..], 1), (&["--rate", "1000"][..], 2)] {
        let plot = dir.path("latency.svg");
        let mut args = vec!["--plot", plot.as_str()];
        args.extend_from_slice(extra);
        let out = bench_for("1", &server.addr_arg(), &args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let svg = std::fs::read_to_string(&plot).unwrap();
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), lines, "{svg}");
        for label in ["percentile", "latency (µs)", "90 %", "99 %"] {
            assert!(svg.contains(label), "no {label:?}: {svg}");
        }
        if lines == 2 {
            assert!(svg.contains("uncorrected (from the real send)"), "{svg}");
        }
    }
}

#[test]
fn an_output_file_that_cannot_be_written_fails_before_the_run() {
    // Port 9: nobody serves it, and the run never gets as far as trying.
    for flag in ["--histogram", "--plot"] {
        let out = run(&["bench", "127.0.0.1:9", flag, "/nonexistent/dir/out"]);
        let what = if flag == "--plot" {
            "plot"
        } else {
            "histogram log"
        };
        assert_error_line(
            &out,
            &format!(
                "error: cannot write the {what} to /nonexistent/dir/out: no such file or directory"
            ),
        );
    }
}
