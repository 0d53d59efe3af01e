//! The `--metrics` endpoint: the server's counters in Prometheus text format
//! at `GET /metrics`, from a tiny HTTP/1.x responder on the server's first
//! runtime. Not a data listener: no transform, no connection slot.
//!
//! Counting stays off the hot path: nothing here is touched per message.
//! Stream connections are counted when accepted and when closed (their bytes,
//! which each connection already counts for itself, are folded in at close);
//! UDP sockets fold their per-socket counts in once per batch.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Endpoint;

/// The longest request head read, in bytes.
const MAX_HEAD: usize = 8 * 1024;
/// How long one client has to send its request and take the reply.
const DEADLINE: Duration = Duration::from_secs(5);
/// Scrape connections served at once; more wait in the backlog.
const MAX_CLIENTS: usize = 64;

/// The `reason`s of `upecho_connections_closed_total`.
const CLOSE_REASONS: [&str; 5] = ["peer", "error", "idle", "shutdown", "proxy_header"];

/// `{listener}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    /// As in the listener's readiness line: `tcp 127.0.0.1:8080`.
    listener: String,
}

/// `{listener, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    /// As in the listener's readiness line.
    listener: String,
    /// Why: `peer`, `idle`, `too_large`, ...
    reason: String,
}

/// `{listener, kind}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    /// As in the listener's readiness line.
    listener: String,
    /// The error: the errno's name in lower case (`emfile`).
    kind: String,
}

/// `{version}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    /// The crate's version.
    version: String,
}

/// Every metric of the server, registered once; shared by all threads.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// What a scrape encodes.
    registry: Registry,
    /// `upecho_connections_accepted_total{listener}`.
    accepted: Family<ListenerLabel, Counter>,
    /// `upecho_connections_active{listener}`.
    active: Family<ListenerLabel, Gauge>,
    /// `upecho_connections_closed_total{listener,reason}`.
    closed: Family<ReasonLabels, Counter>,
    /// `upecho_bytes_received_total{listener}`.
    bytes_received: Family<ListenerLabel, Counter>,
    /// `upecho_bytes_sent_total{listener}`.
    bytes_sent: Family<ListenerLabel, Counter>,
    /// `upecho_datagrams_received_total{listener}`.
    datagrams_received: Family<ListenerLabel, Counter>,
    /// `upecho_datagrams_sent_total{listener}`.
    datagrams_sent: Family<ListenerLabel, Counter>,
    /// `upecho_datagrams_dropped_total{listener,reason}`.
    datagrams_dropped: Family<ReasonLabels, Counter>,
    /// `upecho_accept_errors_total{listener,kind}`.
    accept_errors: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics {
            registry: Registry::default(),
            accepted: Family::default(),
            active: Family::default(),
            closed: Family::default(),
            bytes_received: Family::default(),
            bytes_sent: Family::default(),
            datagrams_received: Family::default(),
            datagrams_sent: Family::default(),
            datagrams_dropped: Family::default(),
            accept_errors: Family::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        let counters = [
            (
                "upecho_connections_accepted",
                "Stream connections accepted",
                &metrics.accepted,
            ),
            (
                "upecho_bytes_received",
                "Bytes received on stream connections (counted at close)",
                &metrics.bytes_received,
            ),
            (
                "upecho_bytes_sent",
                "Bytes sent on stream connections (counted at close)",
                &metrics.bytes_sent,
            ),
            (
                "upecho_datagrams_received",
                "Datagrams received",
                &metrics.datagrams_received,
            ),
            (
                "upecho_datagrams_sent",
                "Datagrams sent",
                &metrics.datagrams_sent,
            ),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "upecho_connections_active",
            "Stream connections open now",
            metrics.active.clone(),
        );
        registry.register(
            "upecho_connections_closed",
            "Stream connections closed, by reason",
            metrics.closed.clone(),
        );
        registry.register(
            "upecho_datagrams_dropped",
            "Datagrams not answered, by reason",
            metrics.datagrams_dropped.clone(),
        );
        registry.register(
            "upecho_accept_errors",
            "Failed accepts, by error",
            metrics.accept_errors.clone(),
        );
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("upecho_build_info", "The upecho version", build);
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// The counters of one stream listener, looked up once so that counting
    /// needs no label lookup. Only a listener's own kind of series is shown.
    pub(crate) fn stream(self: &Arc<Self>, endpoint: &Endpoint) -> StreamMetrics {
        let label = ListenerLabel {
            listener: endpoint.to_string(),
        };
        // Known reasons start at 0, so rates work from the first scrape, and
        // are looked up here once, so a close takes no lock and allocates nothing.
        let closed = CLOSE_REASONS.map(|reason| {
            self.closed
                .get_or_create(&ReasonLabels {
                    listener: label.listener.clone(),
                    reason: reason.to_string(),
                })
                .clone()
        });
        StreamMetrics {
            closed,
            accepted: self.accepted.get_or_create(&label).clone(),
            active: self.active.get_or_create(&label).clone(),
            bytes_received: self.bytes_received.get_or_create(&label).clone(),
            bytes_sent: self.bytes_sent.get_or_create(&label).clone(),
            metrics: Arc::clone(self),
            listener: label.listener,
        }
    }

    /// The counters of one UDP socket, looked up once.
    pub(crate) fn datagram(self: &Arc<Self>, endpoint: &Endpoint) -> DatagramMetrics {
        let label = ListenerLabel {
            listener: endpoint.to_string(),
        };
        for reason in ["too_large", "loop", "send_failed"] {
            drop(self.datagrams_dropped.get_or_create(&ReasonLabels {
                listener: label.listener.clone(),
                reason: reason.to_string(),
            }));
        }
        DatagramMetrics {
            received: self.datagrams_received.get_or_create(&label).clone(),
            sent: self.datagrams_sent.get_or_create(&label).clone(),
            metrics: Arc::clone(self),
            listener: label.listener,
        }
    }

    /// The whole text a scrape returns.
    fn render(&self) -> String {
        let mut text = String::new();
        if let Err(err) =
            prometheus_client::encoding::text::encode_registry(&mut text, &self.registry)
        {
            tracing::warn!(error = %err, "cannot encode the metrics");
        }
        let mut text = counters_named_as_sampled(&text);
        process_metrics(&mut text);
        text
    }
}

/// The encoder writes OpenMetrics, where a counter's family `x` has samples
/// `x_total`; in the text format 0.0.4 we serve, HELP and TYPE must name the
/// samples, or Prometheus takes them for untyped metrics. Renames them.
fn counters_named_as_sampled(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 16 * counters.len());
    for line in text.lines() {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(renamed) => out.push_str(&renamed),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// One stream listener's counters (clones share their values with the
/// registry). Touched at accept and at close, never per message.
#[derive(Clone, Debug)]
pub(crate) struct StreamMetrics {
    /// `upecho_connections_accepted_total`.
    accepted: Counter,
    /// `upecho_connections_active`.
    active: Gauge,
    /// `upecho_bytes_received_total`.
    bytes_received: Counter,
    /// `upecho_bytes_sent_total`.
    bytes_sent: Counter,
    /// `upecho_connections_closed_total`, one per [`CLOSE_REASONS`].
    closed: [Counter; 5],
    /// For the rarer counters with a second label.
    metrics: Arc<Metrics>,
    /// The `listener` label.
    listener: String,
}

impl StreamMetrics {
    /// A stream connection was accepted.
    pub(crate) fn opened(&self) {
        self.accepted.inc();
        self.active.inc();
    }

    /// A stream connection closed for `reason` after moving these bytes.
    pub(crate) fn closed(&self, reason: &'static str, bytes_in: u64, bytes_out: u64) {
        self.active.dec();
        self.bytes_received.inc_by(bytes_in);
        self.bytes_sent.inc_by(bytes_out);
        let at = CLOSE_REASONS.iter().position(|known| *known == reason);
        match at {
            Some(at) => {
                self.closed[at].inc();
            }
            None => {
                self.metrics
                    .closed
                    .get_or_create(&ReasonLabels {
                        listener: self.listener.clone(),
                        reason: reason.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// An accept failed with `err`; its kind is the errno's name in lower
    /// case (`emfile`).
    pub(crate) fn accept_error(&self, err: &std::io::Error) {
        let kind = match err.raw_os_error() {
            Some(errno) => format!("{:?}", nix::errno::Errno::from_raw(errno)).to_lowercase(),
            None => format!("{:?}", err.kind()).to_lowercase(),
        };
        self.metrics
            .accept_errors
            .get_or_create(&KindLabels {
                listener: self.listener.clone(),
                kind,
            })
            .inc();
    }
}

/// One UDP socket's counters. Touched once per batch, never per datagram.
#[derive(Clone, Debug)]
pub(crate) struct DatagramMetrics {
    /// `upecho_datagrams_received_total`.
    received: Counter,
    /// `upecho_datagrams_sent_total`.
    sent: Counter,
    /// For `upecho_datagrams_dropped_total`, with its second label.
    metrics: Arc<Metrics>,
    /// The `listener` label.
    listener: String,
}

impl DatagramMetrics {
    /// Adds one batch's worth of counts; counters that did not change are
    /// not touched.
    pub(crate) fn add(&self, received: u64, sent: u64, dropped: [(&'static str, u64); 3]) {
        if received > 0 {
            self.received.inc_by(received);
        }
        if sent > 0 {
            self.sent.inc_by(sent);
        }
        for (reason, n) in dropped {
            if n > 0 {
                self.metrics
                    .datagrams_dropped
                    .get_or_create(&ReasonLabels {
                        listener: self.listener.clone(),
                        reason: reason.to_string(),
                    })
                    .inc_by(n);
            }
        }
    }
}

/// Appends the standard `process_*` metrics, read from `/proc/self` now.
/// Where a file cannot be read, its metrics are left out.
fn process_metrics(text: &mut String) {
    // Linux's USER_HZ, fixed at 100 for user space on every architecture;
    // reading it would need `sysconf`, which only an `unsafe` call offers here.
    const TICKS: f64 = 100.0;
    let mut put = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which may hold spaces: the 3rd field is fields[0].
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            put(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                (utime + stime) / TICKS,
            );
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(start), Some(boot)) = (field(22), boot) {
            put(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot + start / TICKS,
            );
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kib = |key: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        };
        if let Some(rss) = kib("VmRSS:") {
            put(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                rss * 1024.0,
            );
        }
        if let Some(vsz) = kib("VmSize:") {
            put(
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                vsz * 1024.0,
            );
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        put(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            dir.count() as f64,
        );
    }
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Max open files"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        });
    if let Some(max) = max {
        put(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
}

/// Serves scrapes on `listener` until `stop` fires; each client is its own
/// task with a deadline, at most [`MAX_CLIENTS`] at once, all ended at stop.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut clients = JoinSet::new();
    loop {
        // A slot first: past the limit, clients wait in the backlog.
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = clients.join_next() => continue,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let metrics = Arc::clone(&metrics);
                clients.spawn(async move {
                    let _ = tokio::time::timeout(DEADLINE, answer(stream, &metrics)).await;
                    drop(permit);
                });
            }
            Err(err) => {
                tracing::debug!(error = %crate::error::plain(&err), "metrics accept failed");
                // Out of descriptors: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    clients.shutdown().await;
}

/// Reads one request head and writes the reply, then closes.
async fn answer(mut stream: tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break false;
        }
        head.extend_from_slice(&buf[..n]);
    };
    let reply = if complete {
        respond(&head, metrics)
    } else if head.is_empty() {
        return Ok(());
    } else {
        plain_reply("400 Bad Request", "bad request\n")
    };
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// The reply to a complete request head.
fn respond(head: &[u8], metrics: &Metrics) -> String {
    let Some(line) = std::str::from_utf8(head)
        .ok()
        .and_then(|text| text.lines().next())
    else {
        return plain_reply("400 Bad Request", "bad request\n");
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return plain_reply("400 Bad Request", "bad request\n");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') || method.is_empty() {
        return plain_reply("400 Bad Request", "bad request\n");
    }
    if method != "GET" {
        return plain_reply("405 Method Not Allowed", "method not allowed\n");
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != "/metrics" {
        return plain_reply("404 Not Found", "not found\n");
    }
    let body = metrics.render();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A short text reply with `status`.
fn plain_reply(status: &str, body: &str) -> String {
    let allow = if status.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n{allow}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_names_are_the_contracts() {
        let metrics = Arc::new(Metrics::default());
        let tcp = metrics.stream(&Endpoint::Tcp("127.0.0.1:8080".parse().unwrap()));
        tcp.opened();
        tcp.closed("peer", 5, 5);
        tcp.accept_error(&std::io::Error::from_raw_os_error(24));
        let udp = metrics.datagram(&Endpoint::Udp("127.0.0.1:8080".parse().unwrap()));
        udp.add(1, 1, [("too_large", 0), ("loop", 1), ("send_failed", 0)]);
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
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(
            !text.contains("upecho_datagrams_received_total{listener=\"tcp"),
            "a listener shows only its own kind of series:\n{text}"
        );
    }

    #[test]
    fn requests_get_their_status() {
        let metrics = Metrics::default();
        let status = |head: &[u8]| respond(head, &metrics).lines().next().unwrap().to_string();
        assert_eq!(
            status(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status(b"GET /other HTTP/1.0\r\n\r\n"),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(b"POST /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(
            status(b"\x01\x02 garbage\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
    }
}
