//! The server's own counters: what is counted (a [`Metrics`] registry shared
//! by every thread, and the per-listener handles [`StreamMetrics`] and
//! [`DatagramMetrics`] that the accept loops and UDP sockets hold) and its
//! encoding in the Prometheus text format.
//!
//! Counting stays off the hot path: nothing here is touched per message.
//! Stream connections are counted when accepted and when closed (their bytes,
//! which each connection already counts for itself, are folded in at close);
//! UDP sockets fold their per-socket counts in once per batch.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Endpoint;

/// The `reason`s of `upecho_connections_closed_total`.
const CLOSE_REASONS: [&str; 9] = [
    "peer",
    "error",
    "idle",
    "shutdown",
    "proxy_header",
    "denied",
    "per_source",
    "tls",
    "ws_protocol",
];

/// The `result`s of `upecho_tls_handshakes_total`.
const HANDSHAKE_RESULTS: [&str; 2] = ["ok", "failed"];

/// The `reason`s of `upecho_datagrams_dropped_total`, in the order the UDP
/// counts keep them.
pub(crate) const DROP_REASONS: [&str; 5] =
    ["too_large", "loop", "send_failed", "denied", "rate_limited"];

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

/// `{listener, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    /// As in the listener's readiness line.
    listener: String,
    /// `ok` or `failed`.
    result: String,
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
    /// `upecho_tls_handshakes_total{listener,result}`.
    tls_handshakes: Family<ResultLabels, Counter>,
    /// `upecho_websocket_messages_received_total{listener}`.
    ws_received: Family<ListenerLabel, Counter>,
    /// `upecho_websocket_messages_sent_total{listener}`.
    ws_sent: Family<ListenerLabel, Counter>,
    /// `upecho_tls_certificate_expiry_timestamp_seconds`: Unix seconds, 0
    /// (not shown) without TLS. Not in the registry: it has no labels, and
    /// shows only when set.
    tls_expiry: std::sync::atomic::AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Metrics {
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
            tls_handshakes: Family::default(),
            ws_received: Family::default(),
            ws_sent: Family::default(),
            tls_expiry: std::sync::atomic::AtomicI64::new(0),
        };
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.registry = registry;
        metrics
    }
}

impl Metrics {
    /// Registers every family in `registry`, with the contract's names.
    fn register(&self, registry: &mut Registry) {
        // Counters get their `_total` suffix from the encoder.
        let counters = [
            (
                "upecho_connections_accepted",
                "Stream connections accepted",
                &self.accepted,
            ),
            (
                "upecho_bytes_received",
                "Bytes received on stream connections (counted at close)",
                &self.bytes_received,
            ),
            (
                "upecho_bytes_sent",
                "Bytes sent on stream connections (counted at close)",
                &self.bytes_sent,
            ),
            (
                "upecho_datagrams_received",
                "Datagrams received",
                &self.datagrams_received,
            ),
            (
                "upecho_datagrams_sent",
                "Datagrams sent",
                &self.datagrams_sent,
            ),
            (
                "upecho_websocket_messages_received",
                "WebSocket messages received, however fragmented (counted at close)",
                &self.ws_received,
            ),
            (
                "upecho_websocket_messages_sent",
                "WebSocket messages sent (counted at close)",
                &self.ws_sent,
            ),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        let by_reason = [
            (
                "upecho_connections_closed",
                "Stream connections closed, by reason",
                &self.closed,
            ),
            (
                "upecho_datagrams_dropped",
                "Datagrams not answered, by reason",
                &self.datagrams_dropped,
            ),
        ];
        for (name, help, family) in by_reason {
            registry.register(name, help, family.clone());
        }
        self.register_others(registry);
    }

    /// Registers the families of one of a kind.
    fn register_others(&self, registry: &mut Registry) {
        registry.register(
            "upecho_connections_active",
            "Stream connections open now",
            self.active.clone(),
        );
        registry.register(
            "upecho_accept_errors",
            "Failed accepts, by error",
            self.accept_errors.clone(),
        );
        registry.register(
            "upecho_tls_handshakes",
            "TLS handshakes, by result",
            self.tls_handshakes.clone(),
        );
        registry.register("upecho_build_info", "The upecho version", build_info());
    }
}

/// `upecho_build_info{version}`, always 1.
fn build_info() -> Family<VersionLabel, Gauge> {
    let build = Family::<VersionLabel, Gauge>::default();
    build
        .get_or_create(&VersionLabel {
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
        .set(1);
    build
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
        let handshakes = endpoint.is_tls().then(|| {
            HANDSHAKE_RESULTS.map(|result| {
                self.tls_handshakes
                    .get_or_create(&ResultLabels {
                        listener: label.listener.clone(),
                        result: result.to_string(),
                    })
                    .clone()
            })
        });
        let messages = endpoint.is_websocket().then(|| {
            [&self.ws_received, &self.ws_sent].map(|family| family.get_or_create(&label).clone())
        });
        StreamMetrics {
            closed,
            handshakes,
            messages,
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
        // Looked up once, like the stream reasons: a batch adds without a
        // label lookup or an allocation.
        let dropped = DROP_REASONS.map(|reason| {
            self.datagrams_dropped
                .get_or_create(&ReasonLabels {
                    listener: label.listener.clone(),
                    reason: reason.to_string(),
                })
                .clone()
        });
        DatagramMetrics {
            received: self.datagrams_received.get_or_create(&label).clone(),
            sent: self.datagrams_sent.get_or_create(&label).clone(),
            dropped,
        }
    }

    /// Records when the TLS certificate in use expires (Unix seconds).
    pub(crate) fn set_tls_expiry(&self, at: i64) {
        self.tls_expiry
            .store(at, std::sync::atomic::Ordering::Relaxed);
    }

    /// The registry in the Prometheus text format 0.0.4, without the
    /// `process_*` metrics.
    pub(super) fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) =
            prometheus_client::encoding::text::encode_registry(&mut text, &self.registry)
        {
            tracing::warn!(error = %err, "cannot encode the metrics");
        }
        let mut text = counters_named_as_sampled(&text);
        let expiry = self.tls_expiry.load(std::sync::atomic::Ordering::Relaxed);
        if expiry != 0 {
            let name = "upecho_tls_certificate_expiry_timestamp_seconds";
            text.push_str(&format!("# HELP {name} When the TLS certificate in use expires.\n# TYPE {name} gauge\n{name} {expiry}\n"));
        }
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
    closed: [Counter; CLOSE_REASONS.len()],
    /// `upecho_tls_handshakes_total`, one per [`HANDSHAKE_RESULTS`]; `None`
    /// on a plain listener.
    handshakes: Option<[Counter; HANDSHAKE_RESULTS.len()]>,
    /// `upecho_websocket_messages_received_total` and `_sent_total`; `None`
    /// on a listener that is not a WebSocket one.
    messages: Option<[Counter; 2]>,
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

    /// A TLS handshake ended, well or not.
    pub(crate) fn handshake(&self, ok: bool) {
        if let Some(handshakes) = &self.handshakes {
            handshakes[usize::from(!ok)].inc();
        }
    }

    /// A WebSocket connection received and sent these many messages.
    pub(crate) fn websocket_messages(&self, received: u64, sent: u64) {
        if let Some([counted_in, counted_out]) = &self.messages {
            counted_in.inc_by(received);
            counted_out.inc_by(sent);
        }
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
    /// `upecho_datagrams_dropped_total`, one per [`DROP_REASONS`].
    dropped: [Counter; DROP_REASONS.len()],
}

impl DatagramMetrics {
    /// Adds one batch's worth of counts; counters that did not change are
    /// not touched.
    pub(crate) fn add(
        &self,
        received: u64,
        sent: u64,
        dropped: [(&'static str, u64); DROP_REASONS.len()],
    ) {
        if received > 0 {
            self.received.inc_by(received);
        }
        if sent > 0 {
            self.sent.inc_by(sent);
        }
        for (reason, n) in dropped {
            let at = DROP_REASONS.iter().position(|known| *known == reason);
            if let (Some(at), true) = (at, n > 0) {
                self.dropped[at].inc_by(n);
            }
        }
    }
}
