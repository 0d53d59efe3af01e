//! `bench --tls`: TLS connections the stream traffic patterns drive like TCP
//! ones. The handshake is part of the set-up (full handshakes: the client
//! never resumes), so the window measures the echo over TLS only.
//!
//! Why a `RefCell` and not `tokio::io::split`: a task polls its read and its
//! write half within one `select!`, never both at once, so the halves can
//! borrow the one stream in turn; `tokio::io::split` would put it behind an
//! `Arc` and a lock, allocated at every split (once per round trip).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// One TLS connection of a run.
#[derive(Debug)]
pub struct TlsConnection(RefCell<TlsStream<TcpStream>>);

impl TlsConnection {
    /// Does the full handshake over `stream`.
    ///
    /// # Errors
    ///
    /// As the handshake: `certificate not trusted: ...` when the server is
    /// not the one trusted.
    pub async fn handshake(
        stream: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsConnection> {
        let connector = tokio_rustls::TlsConnector::from(config);
        match connector.connect(name, stream).await {
            Ok(tls) => Ok(TlsConnection(RefCell::new(tls))),
            Err(err) => Err(io::Error::new(
                err.kind(),
                crate::tls::client::handshake_failure(&err),
            )),
        }
    }
}

impl TlsConnection {
    /// The two halves, which borrow the stream in turn.
    pub fn halves(&mut self) -> (Half<'_>, Half<'_>) {
        (Half(&self.0), Half(&self.0))
    }
}

/// A half of a [`TlsConnection`] borrowed for one task's loop.
pub struct Half<'a>(&'a RefCell<TlsStream<TcpStream>>);

impl AsyncRead for Half<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut tls = self.0.borrow_mut();
        // Records a write left behind (the socket was full) go out as soon
        // as it has room: the read is what a loop with nothing left to write
        // polls, and this registers the wake-up for that room.
        if tls.get_ref().1.wants_write() {
            let _ = Pin::new(&mut *tls).poll_flush(cx)?;
        }
        Pin::new(&mut *tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for Half<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut tls = self.0.borrow_mut();
        let written = std::task::ready!(Pin::new(&mut *tls).poll_write(cx, buf))?;
        // Records rustls made but could not send yet go out now, or when
        // the socket has room: the loops never flush.
        let _ = Pin::new(&mut *tls).poll_flush(cx)?;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_shutdown(cx)
    }
}

io_through_half!(TlsConnection, Half);
