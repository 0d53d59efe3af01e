//! The HTTP front of the server, on hyper: the `--metrics` listener. It
//! answers `GET /metrics` with the [`crate::metrics`] text and `GET /healthz`
//! with the server's state ([`routes`]); [`accept`] serves each connection in
//! a task of its own under a header deadline and a size bound, so idle or slow
//! clients never hold up a scrape. Not a data listener: no transform, no
//! connection slot, and it keeps answering through the drain.

mod accept;
mod routes;

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// hyper's HTTP/1 server settings with the bounds every listener of ours
/// keeps: the whole request head within `head_deadline`, in at most
/// `max_buf` bytes and `max_headers` header lines. Shared by the metrics
/// endpoint and the WebSocket listeners.
pub(crate) fn bounded_http1(
    head_deadline: std::time::Duration,
    max_buf: usize,
    max_headers: usize,
) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(head_deadline)
        .max_buf_size(max_buf)
        .max_headers(max_headers);
    builder
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop` completes.
/// `/healthz` answers 503 once `draining` is cancelled (shutdown began);
/// `stop` should come later, when the server is gone, so a readiness probe
/// sees the drain.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    draining: CancellationToken,
    stop: impl Future<Output = ()>,
) {
    let routes = Arc::new(routes::Routes::new(metrics, draining));
    accept::serve(listener, move |request| routes.respond(request), stop).await;
}
