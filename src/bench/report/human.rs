//! The report as a human reads it: a header naming the run, then one
//! labelled line per figure (first, on a run Ctrl-C cut short, a line
//! saying so).

use std::fmt;

use super::Report;

/// The human summary.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "upecho bench: {} {}, {} connection{}, {} B, {}, {:.1} s after {:.1} s warm-up, seed {}",
            self.mode,
            self.peer(),
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            self.size,
            self.transform,
            self.duration_s,
            self.warmup_s,
            self.seed
        )?;
        self.figures(f)
    }
}

impl Report {
    /// What `client_cpu_us_per_op` is per.
    fn unit_of_work(&self) -> &'static str {
        match self.mode {
            "stream" => "MB",
            "connect" => "connection",
            _ => "round trip",
        }
    }

    /// The lines under the header: one per figure, after a line saying the
    /// run was cut short if Ctrl-C did that.
    fn figures(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.interrupted {
            writeln!(
                f,
                "  interrupted by Ctrl-C after {:.3} s measured",
                self.duration_s
            )?;
        }
        writeln!(
            f,
            "  set-up      {} connection{} opened in {:.3} s",
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            self.setup_s
        )?;
        let unit = match self.mode {
            "pingpong" => "round trips",
            "connect" => "connections, each with a verified exchange",
            _ => "writes echoed",
        };
        writeln!(
            f,
            "  requests    {} {unit} ({:.1}/s)",
            self.requests, self.requests_per_s
        )?;
        writeln!(f, "  throughput  {:.3} MB/s verified", self.mb_per_s)?;
        writeln!(
            f,
            "  latency     {}p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            match (self.open_loop.is_some(), self.churn.is_some()) {
                (true, true) => "(cycle, from schedule) ",
                (true, false) => "(from schedule) ",
                (false, true) => "(cycle) ",
                (false, false) => "",
            },
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us
        )?;
        if let Some(open) = &self.open_loop {
            open.lines(f)?;
        }
        if let Some(churn) = &self.churn {
            writeln!(
                f,
                "  connect     p50 {} us, p99 {} us, max {} us",
                churn.connect_p50_us, churn.connect_p99_us, churn.connect_max_us
            )?;
        }
        self.health(f)
    }

    /// The lines on what went wrong, and the generator's own cost.
    fn health(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  errors      {}", self.errors)?;
        if let Some(first) = &self.first_error {
            writeln!(f, "  first error {first}")?;
        }
        writeln!(
            f,
            "  lost        {} repl{} not back within 1 s",
            self.lost,
            if self.lost == 1 { "y" } else { "ies" }
        )?;
        writeln!(
            f,
            "  starved     {} of {} connections",
            self.starved, self.connections
        )?;
        writeln!(
            f,
            "  stalled     {} of {} connections",
            self.stalled, self.connections
        )?;
        write!(
            f,
            "  client CPU  {:.1}% of one core, {:.2} us per {}",
            self.client_cpu_percent,
            self.client_cpu_us_per_op,
            self.unit_of_work()
        )
    }
}

impl super::OpenLoop {
    /// The open loop's lines: the latency from the real send times, and how
    /// the schedule was kept.
    fn lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from_send = &self.uncorrected;
        writeln!(
            f,
            "  (from send) p50 {} us, p99 {} us, p99.9 {} us, max {} us (uncorrected)",
            from_send.p50_us, from_send.p99_us, from_send.p999_us, from_send.max_us
        )?;
        writeln!(
            f,
            "  rate        {:.1}/s sent of {}/s asked; sends late by p50 {} us, p99 {} us, max {} us",
            self.achieved_rate,
            self.rate,
            self.behind_p50_us,
            self.behind_p99_us,
            self.behind_max_us
        )
    }
}
