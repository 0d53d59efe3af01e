//! A connection of a WebSocket listener (`--ws`, `--wss`): after the PROXY
//! header (if any) and, on `wss`, the TLS handshake, HTTP/1.1 on hyper
//! ([`http`]: the upgrade on any path, the page, `/healthz`), then, once a
//! `101` is out, the message echo ([`echo`]) on the same connection.
//!
//! Why a TLS stream here and not the unbuffered TLS of [`super::tls`]:
//! hyper and tungstenite read and write through `AsyncRead`/`AsyncWrite`,
//! which tokio-rustls provides; the unbuffered loop is written for the byte
//! echo.

mod echo;
mod http;
mod quick;
mod read_ahead;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::connection::{End, Traffic};
use super::state::Settings;
use crate::Endpoint;
use crate::metrics::StreamMetrics;
use read_ahead::ReadAhead;

/// What HTTP and WebSocket run over: the socket, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How long a connection has to send a whole request head (the contract's).
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// The largest request head, in bytes: room for a browser's cookies.
const MAX_HEAD: usize = 16 * 1024;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 64;

/// What a WebSocket connection needs besides its socket.
pub(super) struct WsConnection<'a> {
    /// Its listener, for logs.
    pub(super) endpoint: &'a Endpoint,
    /// The peer, as logged (the client a PROXY header named, if one did).
    pub(super) peer: &'a str,
    /// The server's settings (transform, TLS, WebSocket limits).
    pub(super) settings: &'a Settings,
    /// The listener's counters.
    pub(super) counters: &'a StreamMetrics,
    /// The connection's byte counters.
    pub(super) traffic: Arc<Traffic>,
    /// Cancelled when shutdown began (`/healthz` turns 503).
    pub(super) draining: &'a CancellationToken,
    /// Cancelled when open connections must close (close code 1001).
    pub(super) cut_off: &'a CancellationToken,
    /// Told when the HTTP phase's memory is freed.
    pub(super) reclaim: &'a super::memory::Reclaim,
}

impl WsConnection<'_> {
    /// Serves `stream`, whose first bytes are `early`: TLS first if the
    /// listener is `wss`, then HTTP and WebSocket.
    pub(super) async fn serve<S>(self, stream: S, early: Vec<u8>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let stream = ReadAhead::new(stream, early, Arc::clone(&self.traffic));
        let io: Box<dyn Io> = if self.endpoint.is_tls() {
            match self.tls(stream).await {
                Ok(tls) => tls,
                Err(end) => return end,
            }
        } else {
            Box::new(stream)
        };
        self.http(io).await
    }

    /// The TLS handshake, within `--tls-handshake-timeout`.
    async fn tls<S>(&self, stream: ReadAhead<S>) -> Result<Box<dyn Io>, End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(tls) = self.settings.tls.as_ref() else {
            return Err(End::Tls("no TLS configuration".into()));
        };
        // Boxed: the handshake's state is freed once it is done.
        let accept = Box::pin(tokio_rustls::TlsAcceptor::from(tls.current()).accept(stream));
        let done = match tls.handshake_timeout() {
            Some(limit) => tokio::time::timeout(limit, accept)
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("handshake timed out"))),
            None => accept.await,
        };
        self.counters.handshake(done.is_ok());
        match done {
            Ok(stream) => {
                let (_, session) = stream.get_ref();
                let version = session.protocol_version().map(crate::tls::version_name);
                tracing::debug!(listener = %self.endpoint, peer = %self.peer,
                    version = version.unwrap_or("-"), "tls established");
                Ok(Box::new(stream))
            }
            Err(err) => Err(End::Tls(crate::error::plain(&err))),
        }
    }

    /// Serves HTTP on `io` until the client leaves or upgrades, then the
    /// WebSocket. The first request is looked at first ([`quick`]): a plain
    /// upgrade is answered there, anything else goes to hyper.
    ///
    /// Why the stream comes boxed: an async fn keeps its arguments in its
    /// state for its whole life, and a TLS stream is a few KiB.
    async fn http(&self, mut io: Box<dyn Io>) -> End {
        let routes = http::Routes {
            origins: &self.settings.websocket.origins,
            draining: self.draining,
        };
        let started = Instant::now();
        let first = match tokio::time::timeout(HEAD_DEADLINE, quick::first(&mut io, &routes)).await
        {
            Ok(Ok(first)) => first,
            Ok(Err(err)) => return End::Io(err),
            Err(_) => {
                return End::Io(std::io::Error::other(
                    "http: read header from client timeout",
                ));
            }
        };
        match first {
            quick::First::Upgrade { response, after } => {
                if let Err(err) = io.write_all(&response).await {
                    return End::Io(err);
                }
                if let Err(err) = io.flush().await {
                    return End::Io(err);
                }
                drop(response);
                self.websocket(ReadAhead::rewind(io, after)).await
            }
            quick::First::Http(read) => {
                let left = HEAD_DEADLINE.saturating_sub(started.elapsed());
                self.hyper(Box::new(ReadAhead::rewind(io, read)), &routes, left)
                    .await
            }
        }
    }

    /// Serves HTTP on hyper until the client leaves or upgrades, then the
    /// WebSocket; `deadline` is the time the first request head has left.
    async fn hyper(&self, io: Box<dyn Io>, routes: &http::Routes<'_>, deadline: Duration) -> End {
        let upgrade: Mutex<Option<OnUpgrade>> = Mutex::new(None);
        let service = service_fn(|mut request: hyper::Request<Incoming>| {
            let (reply, next) = routes.respond(&request);
            if next == http::Next::Upgrade {
                let on = hyper::upgrade::on(&mut request);
                *upgrade.lock().unwrap_or_else(PoisonError::into_inner) = Some(on);
            }
            std::future::ready(Ok::<_, Infallible>(reply))
        });
        // Boxed, so that its buffers and state are freed once it has
        // upgraded, rather than held in the connection's task for its life.
        let connection = Box::pin(
            crate::http::bounded_http1(deadline, MAX_HEAD, MAX_HEADERS)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        if let Err(err) = connection.await {
            return End::Io(std::io::Error::other(format!("http: {err}")));
        }
        let upgrade = upgrade
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(upgrade) = upgrade else {
            return End::Finished;
        };
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => return End::Io(std::io::Error::other(format!("upgrade: {err}"))),
        };
        let upgraded: Box<dyn Io> = Box::new(TokioIo::new(upgraded));
        self.websocket(ReadAhead::rewind(upgraded, Vec::new()))
            .await
    }

    /// The WebSocket echo on `io`, whose `101` is out.
    async fn websocket(&self, io: ReadAhead<Box<dyn Io>>) -> End {
        self.reclaim.phase_ended();
        tracing::debug!(listener = %self.endpoint, peer = %self.peer, "websocket opened");
        let echo = echo::Echo {
            transform: self.settings.transform,
            max_message: self.settings.websocket.max_message,
            traffic: &self.traffic,
            cut_off: self.cut_off,
        };
        echo.run(io).await
    }
}
