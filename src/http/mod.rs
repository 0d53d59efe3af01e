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
