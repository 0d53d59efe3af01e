//! `--plot FILE.svg`: the window's latency by percentile, laid out as
//! HdrHistogram's plotter lays it out: the percentile axis scaled by
//! log10(1 / (1 - p)), so that 90 %, 99 %, 99.9 % and 99.99 % sit at even
//! steps and the tail, where servers differ, gets the room; latency on a
//! linear axis. Under `--rate`, the corrected and uncorrected series
//! together, which is the picture of coordinated omission.
//!
//! Hand-written SVG, about two hundred lines with its tests: a plotting
//! crate would bring a font stack and a rasteriser for one line chart.

use std::fmt::Write as _;
use std::io::{self, Write};

use hdrhistogram::Histogram;

use super::Report;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
/// The plot area's edges: room for the title above, labels left and below.
const LEFT: f64 = 80.0;
const RIGHT: f64 = 740.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 420.0;

/// One line of the chart.
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    histogram: &'a Histogram<u64>,
}

/// Writes `report`'s latency distribution as an SVG picture.
///
/// # Errors
///
/// When `out` cannot be written.
pub fn write(report: &Report, mut out: impl Write) -> io::Result<()> {
    let histograms = &report.histograms;
    let mut series = vec![Series {
        name: if histograms.uncorrected.is_some() {
            "corrected (from the scheduled send)"
        } else {
            "latency"
        },
        colour: "#1f5fbf",
        histogram: &histograms.latency,
    }];
    if let Some(uncorrected) = &histograms.uncorrected {
        series.push(Series {
            name: "uncorrected (from the real send)",
            colour: "#e07b00",
            histogram: uncorrected,
        });
    }
    out.write_all(svg(report, &series).as_bytes())?;
    out.flush()
}

/// The picture.
fn svg(report: &Report, series: &[Series]) -> String {
    let count = series.iter().map(|s| s.histogram.len()).max().unwrap_or(0);
    let max = series.iter().map(|s| s.histogram.max()).max().unwrap_or(0);
    let scale = Scale::new(count, max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(&title(report))
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="44" fill="#555">{} · p50 {} µs · p99 {} µs · p99.9 {} µs · max {} µs · {} samples</text>"##,
        escape(&report.peer()),
        report.p50_us,
        report.p99_us,
        report.p999_us,
        report.max_us,
        count
    );
    scale.grid(&mut s);
    for (i, line) in series.iter().enumerate() {
        scale.line(&mut s, line, i);
    }
    if count == 0 {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="18">no reply was measured</text>"#,
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Where values go on the picture.
struct Scale {
    /// Nines on the percentile axis: as many as the samples resolve
    /// (10,000 resolve 99.99 %).
    nines: f64,
    /// The latency axis's unit, and microseconds per unit.
    unit: &'static str,
    divisor: f64,
    /// The latency axis's top, in its unit.
    top: f64,
}

impl Scale {
    fn new(count: u64, max: u64) -> Scale {
        let (unit, divisor) = if max >= 10_000 {
            ("ms", 1000.0)
        } else {
            ("µs", 1.0)
        };
        Scale {
            nines: ((count.max(10) as f64).log10().ceil()).clamp(1.0, 6.0),
            unit,
            divisor,
            top: nice_ceiling(max as f64 / divisor),
        }
    }

    fn x(&self, nines: f64) -> f64 {
        LEFT + (RIGHT - LEFT) * nines / self.nines
    }

    fn y(&self, us: f64) -> f64 {
        BOTTOM - (BOTTOM - TOP) * us / self.divisor / self.top
    }

    /// The grid, a line per nine and per fifth of the latency axis, with
    /// their labels and the axes' names.
    fn grid(&self, s: &mut String) {
        for nine in 0..=self.nines as u32 {
            let at = self.x(f64::from(nine));
            let _ = writeln!(
                s,
                r##"<line x1="{at:.1}" y1="{TOP}" x2="{at:.1}" y2="{BOTTOM}" stroke="#ddd"/><text x="{at:.1}" y="{}" text-anchor="middle">{}</text>"##,
                BOTTOM + 20.0,
                percentile_label(nine)
            );
        }
        for i in 0..=5 {
            let value = self.top / 5.0 * f64::from(i);
            let at = self.y(value * self.divisor);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{at:.1}" x2="{RIGHT}" y2="{at:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT - 8.0,
                at + 4.0,
                trim(value)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">percentile</text><text transform="translate(20 {}) rotate(-90)" text-anchor="middle">latency ({})</text>"##,
            (LEFT + RIGHT) / 2.0,
            BOTTOM + 45.0,
            (TOP + BOTTOM) / 2.0,
            self.unit
        );
    }

    /// Series number `i`: its line and its entry in the legend.
    fn line(&self, s: &mut String, line: &Series, i: usize) {
        let points: Vec<String> = distribution(line.histogram, self.nines)
            .into_iter()
            .map(|(nine, value)| format!("{:.1},{:.1}", self.x(nine), self.y(value as f64)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            line.colour,
            points.join(" ")
        );
        let at = TOP + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{at}" x2="{}" y2="{at}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            LEFT + 15.0,
            LEFT + 40.0,
            line.colour,
            LEFT + 48.0,
            at + 4.0,
            escape(line.name)
        );
    }
}

/// The points of `histogram`'s percentile distribution, as (nines, value in
/// microseconds), from p0 to the maximum at the right edge (`nines`).
fn distribution(histogram: &Histogram<u64>, nines: f64) -> Vec<(f64, u64)> {
    let mut points = Vec::new();
    if histogram.is_empty() {
        return points;
    }
    // Five points per halving of the distance to 100 %, as the Java
    // reference's percentile output prints them.
    for value in histogram.iter_quantiles(5) {
        let quantile = value.quantile_iterated_to();
        let nine = if quantile >= 1.0 {
            nines
        } else {
            (-(1.0 - quantile).log10()).min(nines)
        };
        points.push((nine, value.value_iterated_to()));
    }
    points.push((nines, histogram.max()));
    points
}

/// What the chart is of.
fn title(report: &Report) -> String {
    let rate = report
        .open_loop
        .as_ref()
        .map_or_else(String::new, |open| format!(", {} /s offered", open.rate));
    format!(
        "upecho bench {}: {} connection{}, {} B{rate}",
        report.mode,
        report.connections,
        if report.connections == 1 { "" } else { "s" },
        report.size
    )
}

/// `0 %`, `90 %`, `99 %`, `99.9 %`, ... for the number of nines.
fn percentile_label(nines: u32) -> String {
    match nines {
        0 => "0 %".to_owned(),
        1 => "90 %".to_owned(),
        2 => "99 %".to_owned(),
        n => format!("99.{} %", "9".repeat(n as usize - 2)),
    }
}

/// The smallest of 1, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten that is
/// at least `value` (1 for nothing), so that the latency axis ends on a
/// round number not far above the maximum (its fifths are ticks with one
/// decimal at most).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&nice| nice >= value)
        .unwrap_or(10.0 * power)
}

/// A tick value without a trailing `.0`.
fn trim(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").unwrap_or(&text).to_owned()
}

/// Text made safe for SVG (a Unix path may hold `<` or `&`).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_axis_counts_nines() {
        let labels: Vec<String> = (0..5).map(percentile_label).collect();
        assert_eq!(labels, ["0 %", "90 %", "99 %", "99.9 %", "99.99 %"]);
    }

    #[test]
    fn the_latency_axis_ends_on_a_round_number() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 4.0);
        assert_eq!(nice_ceiling(204.5), 250.0);
        assert_eq!(nice_ceiling(170.0), 200.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(nice_ceiling(1001.0), 2000.0);
    }

    #[test]
    fn the_distribution_climbs_to_the_maximum_at_the_right_edge() {
        let mut histogram = crate::bench::stats::latency_histogram();
        for us in 1..=10_000 {
            histogram.record(us).unwrap();
        }
        let points = distribution(&histogram, 4.0);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
        let &(nine, value) = points.last().unwrap();
        assert_eq!(nine, 4.0);
        assert!(value >= 9_990, "{value}");
        // The median sits at 0.3 nines (log10 of 2), at about 5,000 us.
        let median = points.iter().find(|(n, _)| *n >= 0.3).unwrap();
        assert!((4_900..=5_200).contains(&median.1), "{median:?}");
    }
}
