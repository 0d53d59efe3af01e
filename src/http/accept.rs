//! Accepts HTTP/1 connections and serves each in a task of its own with
//! hyper. A connection must send its request head within [`HEAD_DEADLINE`]
//! and keep it under [`MAX_BUF`] bytes and [`MAX_HEADERS`] headers (`431`
//! past them), and the connection closes after one reply, so an idle or slow
//! client holds a task for [`HEAD_DEADLINE`] at most (a reader that never
//! reads its reply: [`CONNECTION_DEADLINE`]) and never delays anyone else;
//! past [`MAX_CONNECTIONS`] the oldest is closed. Called by the parent
//! module's `serve` with the handler of [`routes`](super::routes).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Connections served at once. Idle ones cost a task and a small buffer each
/// and leave within [`HEAD_DEADLINE`]; past this many, the oldest is closed to
/// make room, so no number of idle clients keeps a scrape waiting.
const MAX_CONNECTIONS: usize = 1024;
/// How long a connection has to send its whole request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// The most a connection may take, reply included (a reader that never reads).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// The largest request head buffered, in bytes (hyper's minimum).
const MAX_BUF: usize = 8 * 1024;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 32;

/// Serves every connection `listener` accepts with `handler` until `stop`
/// completes; then the connections still open are dropped.
pub(super) async fn serve<H>(listener: TcpListener, handler: H, stop: impl Future<Output = ()>)
where
    H: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let builder = Arc::new(builder());
    let mut open = Open::default();
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let (builder, handler) = (Arc::clone(&builder), handler.clone());
                let closed = open.admit();
                connections.spawn(async move {
                    // Marks this connection gone for `Open`, however it ends.
                    let _gone = closed.clone().drop_guard();
                    tokio::select! {
                        () = closed.cancelled() => {}
                        () = serve_connection(stream, &builder, handler) => {}
                    }
                });
            }
            Err(err) => {
                tracing::debug!(error = %crate::error::plain(&err), "metrics accept failed");
                // Out of descriptors: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    connections.shutdown().await;
}

/// The connections open now, oldest first, each by the token that closes it
/// (cancelled too once it has ended).
#[derive(Debug, Default)]
struct Open {
    /// At most [`MAX_CONNECTIONS`] live tokens, oldest first.
    tokens: VecDeque<CancellationToken>,
}

impl Open {
    /// Makes room for one more connection, closing the oldest if
    /// [`MAX_CONNECTIONS`] are open, and returns the new one's token.
    fn admit(&mut self) -> CancellationToken {
        self.tokens.retain(|token| !token.is_cancelled());
        if self.tokens.len() >= MAX_CONNECTIONS
            && let Some(oldest) = self.tokens.pop_front()
        {
            tracing::debug!("metrics connections at the limit, closing the oldest");
            oldest.cancel();
        }
        let token = CancellationToken::new();
        self.tokens.push_back(token.clone());
        token
    }
}

/// hyper's HTTP/1 settings for every metrics connection.
fn builder() -> http1::Builder {
    let mut builder = super::bounded_http1(HEAD_DEADLINE, MAX_BUF, MAX_HEADERS);
    builder.title_case_headers(true);
    builder
}

/// Serves one connection until hyper is done with it or its deadline passes.
async fn serve_connection<H>(stream: TcpStream, builder: &http1::Builder, handler: H)
where
    H: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + 'static,
{
    // The head and the body may go out in two writes: do not let Nagle hold
    // the second until the client's delayed ACK.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let reply = handler(&request);
        async move { Ok::<_, Infallible>(reply) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_DEADLINE, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(error = %err, "metrics connection failed"),
        Err(_) => tracing::debug!("metrics connection took too long, closed"),
    }
}
