//! What the server counts and how a scrape shows it: the [`registry`] of
//! upecho's own counters, updated by the accept loops and UDP sockets, and the
//! standard [`process`] metrics; the HTTP front serves [`Metrics::render`]
//! at `GET /metrics`.

mod process;
mod registry;

pub(crate) use registry::{DatagramMetrics, Metrics, StreamMetrics};

impl Metrics {
    /// The whole text a scrape returns (Prometheus text format 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut text = self.encode();
        process::append(&mut text);
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::Endpoint;

    #[test]
    fn rendered_names_are_the_contracts() {
        let metrics = Arc::new(Metrics::default());
        let tcp = metrics.stream(&Endpoint::Tcp("127.0.0.1:8080".parse().unwrap()));
        tcp.opened();
        tcp.closed("peer", 5, 5);
        tcp.accept_error(&std::io::Error::from_raw_os_error(24));
        let udp = metrics.datagram(&Endpoint::Udp("127.0.0.1:8080".parse().unwrap()));
        udp.add(
            1,
            1,
            [
                ("too_large", 0),
                ("loop", 1),
                ("send_failed", 0),
                ("denied", 0),
                ("rate_limited", 0),
            ],
        );
        let text = metrics.render();
        for line in [
            "upecho_connections_accepted_total{listener=\"tcp 127.0.0.1:8080\"} 1",
            "upecho_connections_active{listener=\"tcp 127.0.0.1:8080\"} 0",
            "upecho_connections_closed_total{listener=\"tcp 127.0.0.1:8080\",reason=\"peer\"} 1",
            "upecho_bytes_received_total{listener=\"tcp 127.0.0.1:8080\"} 5",
            "upecho_bytes_sent_total{listener=\"tcp 127.0.0.1:8080\"} 5",
            "upecho_datagrams_dropped_total{listener=\"udp 127.0.0.1:8080\",reason=\"loop\"} 1",
            "upecho_datagrams_sent_total{listener=\"udp 127.0.0.1:8080\"} 1",
            "# TYPE upecho_connections_accepted_total counter",
            "# TYPE upecho_connections_active gauge",
            "upecho_accept_errors_total{listener=\"tcp 127.0.0.1:8080\",kind=\"emfile\"} 1",
            "upecho_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("upecho_datagrams_received_total{listener=\"tcp"),
            "a listener shows only its own kind of series:\n{text}"
        );
    }

    #[test]
    fn process_metrics_are_read_with_the_systems_clock_tick() {
        let text = Metrics::default().render();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} in\n{text}"))
        };
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") > 0.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        // Started within the last day and not in the future: a wrong tick
        // rate would move it by a multiple of the machine's uptime.
        assert!(
            start <= now + 2.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{text}"
        );
    }
}
