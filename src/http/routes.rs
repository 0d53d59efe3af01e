//! What each request gets: the Prometheus text at `GET /metrics`, the
//! server's state at `GET /healthz`, 404 for any other path and 405 for any
//! other method. Pure: a request in, a whole response out.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The content type of the Prometheus text format we serve.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of every other reply.
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// What the endpoint answers from.
#[derive(Debug)]
pub(super) struct Routes {
    /// What `/metrics` shows.
    metrics: Arc<Metrics>,
    /// Cancelled when shutdown began: `/healthz` then answers 503.
    draining: CancellationToken,
}

impl Routes {
    /// Routes over these counters and this shutdown state.
    pub(super) fn new(metrics: Arc<Metrics>, draining: CancellationToken) -> Routes {
        Routes { metrics, draining }
    }

    /// The whole response to `request`; its body is never read.
    pub(super) fn respond<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            let mut reply = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            reply
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return reply;
        }
        match request.uri().path() {
            "/metrics" => {
                let mut reply = text(StatusCode::OK, self.metrics.render());
                reply
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
                reply
            }
            "/healthz" if self.draining.is_cancelled() => {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// A text reply with `status`; the connection closes after it, so an idle
/// client never keeps a connection between scrapes.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut reply = Response::new(Full::new(body.into()));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PLAIN_TEXT));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status `routes` gives `method path`.
    fn status(routes: &Routes, method: Method, path: &str) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        routes.respond(&request).status()
    }

    #[test]
    fn requests_get_their_status() {
        let routes = Routes::new(Arc::default(), CancellationToken::new());
        assert_eq!(status(&routes, Method::GET, "/metrics?x=1"), StatusCode::OK);
        assert_eq!(status(&routes, Method::GET, "/healthz"), StatusCode::OK);
        assert_eq!(
            status(&routes, Method::GET, "/other"),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(&routes, Method::POST, "/metrics"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status(&routes, Method::HEAD, "/healthz"),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn healthz_is_503_once_shutdown_began_and_metrics_still_answer() {
        let draining = CancellationToken::new();
        let routes = Routes::new(Arc::default(), draining.clone());
        draining.cancel();
        assert_eq!(
            status(&routes, Method::GET, "/healthz"),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&routes, Method::GET, "/metrics"), StatusCode::OK);
    }
}
