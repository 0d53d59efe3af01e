//! One TLS connection: the handshake (within `--tls-handshake-timeout`),
//! then the same read -> transform -> write loop as a plain connection, over
//! rustls.
//!
//! Memory: rustls keeps its own buffers (the records coming in, the records
//! going out), so a TLS connection cannot write straight back from the
//! thread's scratch buffer as a plain one does. What it can do: decrypted
//! bytes are still read into the scratch buffer, transformed there, and
//! handed to rustls at once, which encrypts them into its outgoing buffer;
//! nothing more is read until that buffer has gone to the socket
//! (backpressure, as for plain connections), so what rustls holds for us is
//! at most one read's output plus its record overhead, and it frees it as
//! the socket takes it.
//!
//! A client's `close_notify` is the TLS form of a half-close: what is still
//! owed goes out, then our `close_notify`, then the socket's write side is
//! shut. A TCP FIN without `close_notify` is an error (a truncation rustls
//! refuses to take for an end).

use std::future::poll_fn;
use std::io::{self, Write};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::server::TlsStream;

use super::connection::{End, Traffic, poll_read_transformed};
use crate::Endpoint;
use crate::metrics::StreamMetrics;
use crate::tls::server::ServerTls;
use crate::transform::StreamTransform;

/// Does the handshake on `stream` (with `early`, bytes that came before the
/// loop, the ClientHello's beginning behind a PROXY header, fed to rustls
/// first), then serves the connection.
pub(super) async fn serve<S>(
    stream: S,
    early: Vec<u8>,
    tls: &ServerTls,
    transform: StreamTransform,
    traffic: Arc<Traffic>,
    log: (&Endpoint, &str, &StreamMetrics),
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (endpoint, peer, counters) = log;
    let stream = match handshake(stream, early, tls).await {
        Ok(stream) => {
            counters.handshake(true);
            stream
        }
        Err(why) => {
            counters.handshake(false);
            return End::Tls(why);
        }
    };
    let (_, session) = stream.get_ref();
    let version = session.protocol_version().map(crate::tls::version_name);
    let suite = session
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));
    let client_cert = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| crate::tls::certs::describe(leaf))
        .map(|described| described.subject);
    tracing::debug!(listener = %endpoint, %peer, version = version.unwrap_or("-"),
        suite = suite.as_deref().unwrap_or("-"), client_cert = client_cert.as_deref().unwrap_or("-"),
        "tls established");
    TlsConnection {
        stream,
        transform,
        traffic,
    }
    .run()
    .await
}

/// The handshake, within the configured time: the stream, or why not (the
/// `end` a failed handshake logs, after `tls: `).
async fn handshake<S>(stream: S, early: Vec<u8>, tls: &ServerTls) -> Result<TlsStream<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let mut preloaded = Ok(());
    let accept = acceptor.accept_with(stream, |session| {
        // Unlimited: we send what one read produced before reading again,
        // so it is bounded by that, and a limit would cut a write short.
        session.set_buffer_limit(None);
        preloaded = preload(session, &early);
    });
    // Bytes that came with a PROXY header were copied into rustls.
    drop(early);
    preloaded?;
    let accepted = match tls.handshake_timeout() {
        Some(limit) => match tokio::time::timeout(limit, accept).await {
            Ok(accepted) => accepted,
            Err(_) => return Err("handshake timed out".into()),
        },
        None => accept.await,
    };
    accepted.map_err(|err| handshake_error(&err))
}

/// Hands rustls the bytes that came before the handshake, and has it act on
/// them now: tokio-rustls only processes what it reads itself, and a client
/// whose whole ClientHello came with the header waits for our answer, with
/// nothing more to read.
fn preload(session: &mut rustls::ServerConnection, mut early: &[u8]) -> Result<(), String> {
    if early.is_empty() {
        return Ok(());
    }
    while !early.is_empty() {
        match session.read_tls(&mut early) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => return Err(crate::error::plain(&err)),
        }
    }
    session
        .process_new_packets()
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// A failed handshake in words: rustls' error (`peer sent no certificates`,
/// `received corrupt message of type InvalidContentType`), or the socket's.
fn handshake_error(err: &io::Error) -> String {
    match err.get_ref() {
        Some(inner) => inner.to_string(),
        None => crate::error::plain(err),
    }
}

/// A TCP FIN without `close_notify` in plain words (rustls' own message
/// carries a link to its manual).
fn truncated(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(io::ErrorKind::UnexpectedEof, "closed without close_notify")
    } else {
        err
    }
}

/// An established TLS connection.
struct TlsConnection<S> {
    /// The socket and its rustls session.
    stream: TlsStream<S>,
    /// The per-connection transform state.
    transform: StreamTransform,
    /// Shared with the listener, which watches it for idleness.
    traffic: Arc<Traffic>,
}

/// What one step of reading produced.
enum Step {
    /// Bytes were read and handed to rustls, to be sent.
    Served,
    /// The peer's `close_notify`.
    Eof,
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsConnection<S> {
    /// Serves until the peer's `close_notify` (then everything owed is sent,
    /// then ours) or an error.
    async fn run(mut self) -> End {
        loop {
            match poll_fn(|cx| self.poll_read_and_answer(cx)).await {
                Ok(Step::Served) => {
                    if let Err(err) = self.stream.flush().await {
                        return End::Io(err);
                    }
                }
                Ok(Step::Eof) => return self.finish().await,
                Err(err) => return End::Io(truncated(err)),
            }
        }
    }

    /// Reads decrypted bytes into the thread's scratch buffer, transforms
    /// them there and hands them to rustls, all within one poll.
    fn poll_read_and_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        let traffic = &self.traffic;
        let answered = poll_read_transformed(
            &mut self.stream,
            cx,
            &mut self.transform,
            traffic,
            |stream, out| {
                if !out.is_empty() {
                    stream.get_mut().1.writer().write_all(out)?;
                    traffic.add_out(out.len());
                }
                Ok(())
            },
        );
        Poll::Ready(ready!(answered).map(|read| match read {
            Some(()) => Step::Served,
            None => Step::Eof,
        }))
    }

    /// The half-close: the transform's held bytes, then our `close_notify`,
    /// then the socket's write side shut.
    async fn finish(mut self) -> End {
        let tail = self.transform.finish();
        if !tail.is_empty() {
            let (_, session) = self.stream.get_mut();
            if let Err(err) = session.writer().write_all(tail) {
                return End::Io(err);
            }
            self.traffic.add_out(tail.len());
        }
        match self.stream.shutdown().await {
            Ok(()) => End::Finished,
            Err(err) => End::Io(err),
        }
    }
}
