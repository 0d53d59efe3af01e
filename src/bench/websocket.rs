//! `bench --ws`: WebSocket connections the stream traffic patterns drive as
//! byte streams, so pingpong, stream, `--rate` and connect mode are the same
//! code over WebSocket as over TCP. Each write the pattern makes is one
//! message (a pingpong request is written whole, so one message per round
//! trip; stream mode's writes are its `--size`): binary, or text with
//! `--transform unicode`, as the contract says; each reply message's
//! payload is read as bytes, checked as they come; a half-close is a close
//! frame (1000), and the server's close is the end of the stream. The
//! handshake is part of the set-up (and of each cycle in connect mode).
//!
//! Why the server's replies can be checked as one byte stream: it answers
//! every message with one message, in order, each transformed whole, so the
//! payloads in order are the transformed requests in order. A text message
//! must be whole characters: a write that ends inside one (stream mode cuts
//! its writes to the room it has) keeps that character's first bytes for
//! the next message.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};

/// Bytes the client reads from the socket at a time (tungstenite's read
/// buffer, one per connection).
const READ_BUFFER: usize = 32 * 1024;

/// One WebSocket connection of a run, over `S` (TCP or TLS).
pub struct WsConnection<S>(RefCell<Inner<S>>);

impl<S> std::fmt::Debug for WsConnection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsConnection")
    }
}

/// The WebSocket and what is left of the reply message being read.
struct Inner<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the current reply's payload.
    reply: Bytes,
    /// Send text messages (`--transform unicode`), not binary ones.
    text: bool,
    /// Text: the first bytes of a character the last write cut (3 at most).
    held: Vec<u8>,
    /// The close frame is queued.
    closing: bool,
}

impl<S> Inner<S> {
    /// The message that carries `buf`: binary, or text of the whole
    /// characters of what is held and `buf` (the rest held for the next);
    /// `None` when that is no whole character yet.
    fn message(&mut self, buf: &[u8]) -> Option<Message> {
        if !self.text {
            return Some(Message::Binary(Bytes::copy_from_slice(buf)));
        }
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(buf);
        let whole = match std::str::from_utf8(&data) {
            Ok(_) => data.len(),
            // Not text at all: sent as it is, in a binary message.
            Err(err) if err.error_len().is_some() => {
                return Some(Message::Binary(Bytes::from(data)));
            }
            Err(err) => err.valid_up_to(),
        };
        self.held = data.split_off(whole);
        let text = String::from_utf8(data)
            .ok()
            .filter(|text| !text.is_empty())?;
        Some(Message::text(text))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsConnection<S> {
    /// The WebSocket handshake for `url` over `io`.
    ///
    /// # Errors
    ///
    /// When the server does not upgrade: `websocket handshake: ...`.
    pub async fn handshake(io: S, url: &str, text: bool) -> io::Result<WsConnection<S>> {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        match tokio_tungstenite::client_async_with_config(url, io, Some(config)).await {
            Ok((ws, _)) => Ok(WsConnection(RefCell::new(Inner {
                ws,
                reply: Bytes::new(),
                text,
                held: Vec::new(),
                closing: false,
            }))),
            Err(tungstenite::Error::Io(err)) => Err(err),
            Err(err) => Err(io::Error::other(format!("websocket handshake: {err}"))),
        }
    }

    /// The two halves, which borrow the connection in turn.
    pub fn halves(&mut self) -> (Half<'_, S>, Half<'_, S>) {
        (Half(&self.0), Half(&self.0))
    }
}

/// A half of a [`WsConnection`] borrowed for one task's loop.
pub struct Half<'a, S>(&'a RefCell<Inner<S>>);

/// A WebSocket error as the patterns report it.
fn io_error(err: tungstenite::Error) -> io::Error {
    match err {
        tungstenite::Error::Io(err) => err,
        other => io::Error::other(other.to_string()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Half<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &mut *self.0.borrow_mut();
        // A message a write left behind (the socket was full) goes out as
        // soon as there is room: the read is what a loop with nothing left
        // to write polls, and this registers the wake-up for that room.
        if let Poll::Ready(Err(err)) = Pin::new(&mut inner.ws).poll_ready(cx) {
            return Poll::Ready(Err(io_error(err)));
        }
        while inner.reply.is_empty() {
            let payload = match ready!(Pin::new(&mut inner.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => data,
                Some(Ok(Message::Text(text))) => Bytes::from(text),
                Some(Ok(_)) => continue,
                // The close handshake, or the connection's end: EOF.
                None | Some(Err(tungstenite::Error::ConnectionClosed)) => {
                    return Poll::Ready(Ok(()));
                }
                Some(Err(err)) => return Poll::Ready(Err(io_error(err))),
            };
            inner.reply = payload;
        }
        let n = inner.reply.len().min(buf.remaining());
        buf.put_slice(&inner.reply.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Half<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let inner = &mut *self.0.borrow_mut();
        ready!(Pin::new(&mut inner.ws).poll_ready(cx)).map_err(io_error)?;
        let Some(message) = inner.message(buf) else {
            return Poll::Ready(Ok(buf.len()));
        };
        let mut ws = Pin::new(&mut inner.ws);
        ws.as_mut().start_send(message).map_err(io_error)?;
        // What the socket did not take goes out when it has room.
        if let Poll::Ready(Err(err)) = ws.poll_flush(cx) {
            return Poll::Ready(Err(io_error(err)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = &mut *self.0.borrow_mut();
        Pin::new(&mut inner.ws).poll_flush(cx).map_err(io_error)
    }

    /// Sends the close frame (1000); the server's close ends the reads.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = &mut *self.0.borrow_mut();
        let mut ws = Pin::new(&mut inner.ws);
        if !inner.closing {
            ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
            let normal = tungstenite::protocol::CloseFrame {
                code: tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: "".into(),
            };
            ws.as_mut()
                .start_send(Message::Close(Some(normal)))
                .map_err(io_error)?;
            inner.closing = true;
        }
        ws.poll_close(cx).map_err(io_error)
    }
}

/// The bounds of a stream a WebSocket runs over.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

io_through_half!(WsConnection<S>, Half, S: Io);

/// A WebSocket server at `url`, reached through `inner` (TCP or TLS); it
/// dials as `super::connect` says.
#[derive(Clone, Debug)]
pub struct WsDial<D> {
    /// The connection under it.
    pub inner: D,
    /// The URL asked for in each handshake.
    pub url: std::sync::Arc<str>,
    /// Text messages (`--transform unicode`), not binary ones.
    pub text: bool,
}
