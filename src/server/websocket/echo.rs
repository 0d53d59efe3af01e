//! The WebSocket echo, on tungstenite: each text or binary message, however
//! fragmented, is answered with one message of the same type, its payload
//! transformed; tungstenite answers pings and echoes the client's close.
//! Invalid UTF-8 in a text message closes with 1007, a message over
//! `--ws-max-message` with 1009, any other protocol error with 1002; the
//! end of the shutdown grace with 1001.
//!
//! Memory: tungstenite keeps one read buffer per connection (sized by
//! [`READ_BUFFER`]; the socket itself is read 64 KiB at a time through
//! [`ReadAhead`](super::read_ahead::ReadAhead)) and a write buffer that holds at most the reply being
//! sent. A message is held whole until it is answered, so a connection
//! holds at most one message in and one out (`--ws-max-message` each); the
//! next message is read only once the reply has gone (backpressure).
//! Measured with `peers/conn_memory.py --ws`: 5.1 KiB of server memory per
//! open connection at 10,000 (docs/WEBSOCKET.md).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::super::connection::{End, Traffic};
use crate::Transform;

/// How many bytes tungstenite takes from the stream at a time, and so
/// the buffer each connection keeps (zero-filled) for the whole of its
/// life. Measured at 10,000 open connections: 13.4 KiB per connection with
/// 4 KiB, 10.4 KiB with 1 KiB; 64 KiB messages stream as fast either way,
/// as the socket is read 64 KiB at a time.
const READ_BUFFER: usize = 1024;
/// How long a close we send may take, and how long we then read and
/// discard what the client still sends, so that our close frame is not lost
/// to a reset (closing with unread bytes resets the connection).
const LINGER: Duration = Duration::from_secs(1);

/// What one WebSocket connection is served with.
pub(super) struct Echo<'a> {
    /// The transform of every payload.
    pub(super) transform: Transform,
    /// `--ws-max-message`.
    pub(super) max_message: usize,
    /// The connection's byte counters, watched by the listener for idleness.
    pub(super) traffic: &'a Traffic,
    /// Cancelled when open connections must close (the end of the grace).
    pub(super) cut_off: &'a CancellationToken,
}

impl Echo<'_> {
    /// Serves WebSocket messages on `io`, whose handshake is done, until the
    /// close handshake, an error or the cut-off.
    pub(super) async fn run<I>(&self, io: I) -> End
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(self.max_message))
            .max_frame_size(Some(self.max_message));
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        loop {
            let next = tokio::select! {
                biased;
                () = self.cut_off.cancelled() => return going_away(&mut ws).await,
                next = ws.next() => next,
            };
            let message = match next {
                None => return End::Finished,
                Some(Ok(message)) => message,
                Some(Err(err)) => return failed(&mut ws, err).await,
            };
            let Some(reply) = self.answer(message) else {
                // A ping's pong is queued: send it before reading on, so a
                // client that pings and never reads holds one pong here,
                // not one per ping.
                let flushed = tokio::select! {
                    biased;
                    () = self.cut_off.cancelled() => return going_away(&mut ws).await,
                    flushed = ws.flush() => flushed,
                };
                if let Err(err) = flushed {
                    return failed(&mut ws, err).await;
                }
                continue;
            };
            self.traffic.message_in();
            let sent = tokio::select! {
                biased;
                () = self.cut_off.cancelled() => return going_away(&mut ws).await,
                sent = ws.send(reply) => sent,
            };
            if let Err(err) = sent {
                return failed(&mut ws, err).await;
            }
            self.traffic.message_out();
        }
    }

    /// The reply to a data message, counted; `None` for a control message
    /// (tungstenite has queued its answer).
    fn answer(&self, message: Message) -> Option<Message> {
        let reply = match message {
            Message::Text(text) => {
                self.traffic.add_in(text.len());
                let out = self.transformed(Bytes::from(text));
                // Upper-casing valid UTF-8 gives valid UTF-8; checked anyway,
                // so a text reply can never be invalid.
                let text = match Utf8Bytes::try_from(out.clone()) {
                    Ok(text) => text,
                    Err(_) => String::from_utf8_lossy(&out).into_owned().into(),
                };
                Message::Text(text)
            }
            Message::Binary(data) => {
                self.traffic.add_in(data.len());
                Message::Binary(self.transformed(data))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {
                return None;
            }
        };
        self.traffic.add_out(reply.len());
        Some(reply)
    }

    /// `payload`, transformed: in place when the message is ours alone and
    /// the transform keeps lengths, copied otherwise.
    fn transformed(&self, payload: Bytes) -> Bytes {
        let mut buf = payload
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        match self.transform {
            Transform::Unicode => Bytes::copy_from_slice(&self.transform.apply(&mut buf)),
            Transform::Ascii | Transform::None => {
                let _ = self.transform.apply(&mut buf);
                buf.freeze()
            }
        }
    }
}

/// Ends a connection after `err`: with the close code the contract gives its
/// kind, or at once when the socket itself failed.
async fn failed<I: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<I>,
    err: WsError,
) -> End {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    let (code, why) = match err {
        WsError::ConnectionClosed | WsError::AlreadyClosed => return End::Finished,
        WsError::Io(err) => return End::Io(err),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            let closed = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed without a close frame",
            );
            return End::Io(closed);
        }
        WsError::Utf8(_) => (
            CloseCode::Invalid,
            "invalid UTF-8 in a text message".to_string(),
        ),
        WsError::Capacity(err) => (CloseCode::Size, err.to_string()),
        WsError::Protocol(err) => (CloseCode::Protocol, err.to_string()),
        other => (CloseCode::Protocol, other.to_string()),
    };
    close_and_linger(ws, code, &why).await;
    End::WebSocket(why)
}

/// Closes with 1001 at the end of the shutdown grace.
async fn going_away<I: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<I>) -> End {
    close_and_linger(ws, CloseCode::Away, "server shutting down").await;
    End::Shutdown
}

/// Sends a close frame with `code` and `reason`, shuts our side and reads
/// and discards what comes until the client closes or [`LINGER`] passes.
async fn close_and_linger<I: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<I>,
    code: CloseCode,
    reason: &str,
) {
    // A close frame's reason has room for 123 bytes: cut at a character.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].to_string().into(),
    };
    let linger = async {
        ws.close(Some(frame)).await.ok()?;
        let io = ws.get_mut();
        io.shutdown().await.ok()?;
        // On the heap: in the future's state it would be part of every
        // connection's task for its whole life.
        let mut discard = vec![0u8; 1024];
        while io.read(&mut discard).await.ok()? > 0 {}
        Some(())
    };
    let _ = tokio::time::timeout(LINGER, linger).await;
}
