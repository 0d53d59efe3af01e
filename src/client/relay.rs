//! `connect --tls` and `connect --ws`: a relay between the server and one end
//! of a Unix socket pair, whose other end the session uses as it uses a
//! plain connection. So the prompt, pipe mode, the half-close and hangup
//! detection are the same code over TLS and WebSocket as over TCP.
//!
//! Over TLS alone the relay copies bytes: the session's half-close becomes
//! our `close_notify`, the server's `close_notify` the pair's end. Over
//! WebSocket (on TLS for `wss://`) it turns each line the session writes,
//! without its `\n`, into one message (text if it is valid UTF-8, binary
//! otherwise) and each reply message into its payload and a `\n`; the
//! session's half-close becomes a close frame (1000) after the last line,
//! and the server's close the pair's end, once every reply has come.
//!
//! The relay is a thread with a single-threaded tokio runtime: a session
//! moves a few lines a second, so its buffers (8 KiB each way) are all it
//! costs.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

use super::tls::{Established, established, handshake};
use crate::Error;
use crate::endpoint::WsUrl;
use crate::tls::client::ClientTls;

/// What the relay speaks over the connection.
pub(super) struct Layers {
    /// TLS, whom to trust and the name asked for; `None`: plain TCP.
    pub(super) tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    /// WebSocket to this URL; `None`: bytes as they are.
    pub(super) websocket: Option<WsUrl>,
}

impl Layers {
    /// The layers of a connection to `host`: TLS by `tls`, WebSocket by
    /// `websocket`. Warns once of `--insecure`.
    ///
    /// # Errors
    ///
    /// When the TLS configuration cannot be built (a CA or key file).
    pub(super) fn new(
        host: &str,
        tls: Option<&ClientTls>,
        websocket: Option<WsUrl>,
    ) -> Result<Layers, Error> {
        let tls = match tls {
            Some(tls) => {
                if tls.trust == crate::tls::client::Trust::Insecure {
                    let _ = writeln!(
                        std::io::stderr(),
                        "warning: --insecure: the server's certificate is not verified"
                    );
                }
                Some((tls.build()?, tls.server_name(host)?))
            }
            None => None,
        };
        Ok(Layers { tls, websocket })
    }
}

/// Starts the relay over `stream`, whose handshakes must end within
/// `timeout`, and returns the session's end of the pair and, over TLS, what
/// the handshake settled. `endpoint` names the server in errors.
///
/// # Errors
///
/// [`Error::Connect`] when a handshake fails: `certificate not trusted: ...`
/// when the server is not the one trusted, `websocket handshake: ...` when
/// the server does not upgrade.
pub(super) fn connect(
    stream: TcpStream,
    layers: Layers,
    timeout: Option<Duration>,
    endpoint: &str,
) -> Result<(UnixStream, Option<Established>), Error> {
    let fail = |why: String| Error::Connect {
        endpoint: endpoint.to_string(),
        cause: std::io::Error::other(why),
    };
    let (ours, theirs) = UnixStream::pair().map_err(|err| fail(crate::error::plain(&err)))?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || relay(stream, theirs, layers, timeout, &tx))
        .map_err(|err| fail(crate::error::plain(&err)))?;
    match rx.recv() {
        Ok(Ok(established)) => Ok((ours, established)),
        Ok(Err(why)) => Err(fail(why)),
        Err(_) => Err(fail("the relay stopped".into())),
    }
}

/// What the relay tells the session once its handshakes are done.
type Ready = mpsc::Sender<Result<Option<Established>, String>>;

/// The relay thread: the handshakes (the outcome goes to `ready`), then the
/// relay until both directions have ended.
fn relay(
    stream: TcpStream,
    pair: UnixStream,
    layers: Layers,
    timeout: Option<Duration>,
    ready: &Ready,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(|err| crate::error::plain(&err))
        .and_then(|runtime| {
            runtime.block_on(async move {
                let setup = || -> std::io::Result<_> {
                    stream.set_nonblocking(true)?;
                    pair.set_nonblocking(true)?;
                    Ok((
                        tokio::net::TcpStream::from_std(stream)?,
                        tokio::net::UnixStream::from_std(pair)?,
                    ))
                };
                let (stream, pair) = setup().map_err(|err| crate::error::plain(&err))?;
                let Layers { tls, websocket } = layers;
                match tls {
                    Some((config, name)) => {
                        let tls = handshake(config, name, stream, timeout).await?;
                        let settled = established(tls.get_ref().1);
                        over(tls, pair, websocket, timeout, Some(settled), ready).await
                    }
                    None => over(stream, pair, websocket, timeout, None, ready).await,
                }
            })
        });
    if let Err(why) = result {
        let _ = ready.send(Err(why));
    }
}

/// The relay over `io` (TLS done, if any): bytes as they are, or WebSocket
/// once its handshake is done. `Err` only before `ready` was told.
async fn over<S>(
    mut io: S,
    mut pair: tokio::net::UnixStream,
    websocket: Option<WsUrl>,
    timeout: Option<Duration>,
    settled: Option<Established>,
    ready: &Ready,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(url) = websocket else {
        let _ = ready.send(Ok(settled));
        let _ = tokio::io::copy_bidirectional(&mut io, &mut pair).await;
        return Ok(());
    };
    let ws = upgrade(io, &url, timeout).await?;
    let _ = ready.send(Ok(settled));
    messages(ws, pair).await;
    Ok(())
}

/// The WebSocket handshake for `url` over `io`, within `timeout`.
pub(crate) async fn upgrade<S>(
    io: S,
    url: &WsUrl,
    timeout: Option<Duration>,
) -> Result<WebSocketStream<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = tokio_tungstenite::client_async(url.to_string(), io);
    let done = match timeout {
        Some(limit) => tokio::time::timeout(limit, handshake)
            .await
            .unwrap_or_else(|_| Err(tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))),
        None => handshake.await,
    };
    match done {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(format!(
            "websocket handshake: the server answered {}",
            response.status()
        )),
        Err(tungstenite::Error::Io(err)) => Err(format!(
            "websocket handshake: {}",
            crate::error::plain(&err)
        )),
        Err(err) => Err(format!("websocket handshake: {err}")),
    }
}

/// Relays lines from the session as messages and reply messages as lines,
/// until the server's close (or the connection's end) after the session's
/// half-close, or the server's close before it.
///
/// Why two loops at once, not one `select!`: a send that waits for room
/// (the server not reading) must not stop the replies from being read, or a
/// large input deadlocks with the server waiting for us to read.
async fn messages<S>(ws: WebSocketStream<S>, pair: tokio::net::UnixStream)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (from_session, mut to_session) = pair.into_split();
    let (sink, mut replies) = ws.split();
    let receiving = async {
        while let Some(Ok(message)) = replies.next().await {
            let payload = match message {
                Message::Text(text) => tungstenite::Bytes::from(text),
                Message::Binary(data) => data,
                _ => continue,
            };
            let written = async {
                to_session.write_all(&payload).await?;
                to_session.write_all(b"\n").await
            };
            if written.await.is_err() {
                break;
            }
        }
    };
    let sending = send_lines(from_session, sink);
    tokio::pin!(sending);
    tokio::select! {
        // The server closed first: nothing more can be sent.
        () = receiving => {}
        // Our close is sent: every reply still owed comes before the server's.
        () = &mut sending => {}
    }
    let _ = to_session.shutdown().await;
}

/// Sends each line the session writes as one message, the last one even
/// without its newline, then a close frame (1000) at the session's EOF.
async fn send_lines<S>(
    mut from_session: tokio::net::unix::OwnedReadHalf,
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut line = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = from_session.read(&mut buf).await.unwrap_or(0);
        line.extend_from_slice(&buf[..n]);
        while let Some(end) = line.iter().position(|&b| b == b'\n') {
            let rest = line.split_off(end + 1);
            line.pop();
            if sink
                .feed(message(std::mem::replace(&mut line, rest)))
                .await
                .is_err()
            {
                return;
            }
        }
        if n == 0 {
            break;
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    if !line.is_empty() && sink.feed(message(line)).await.is_err() {
        return;
    }
    let normal = tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(normal))).await;
    // Wait for the receiving loop to read the server's close: this loop is
    // done, and returning would end the relay.
    std::future::pending::<()>().await;
}

/// A line as a message: text if it is valid UTF-8, binary otherwise.
fn message(line: Vec<u8>) -> Message {
    match String::from_utf8(line) {
        Ok(text) => Message::text(text),
        Err(err) => Message::binary(err.into_bytes()),
    }
}
