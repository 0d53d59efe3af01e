//! The first request of a WebSocket connection, looked at before hyper: a
//! valid upgrade whose whole head came in the first read is answered here,
//! with nothing allocated but the `101` (the head is read into this thread's
//! buffer and parsed by httparse, which hyper uses too); anything else, or a
//! head that came in pieces, goes to hyper with the bytes read so far.
//!
//! Why: memory. Through hyper, an upgrade allocated its read buffer (8 KiB),
//! its connection state and the upgrade's machinery, alive across several
//! polls while thousands of other handshakes were allocating their own and
//! the connections' lasting state between them. Freed, they left pages
//! partly used, which stay resident: with 10,000 open connections the
//! server's RSS was twice its live heap (docs/WEBSOCKET.md). Answered here,
//! an upgrade leaves nothing behind.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::ready;

use tokio::io::{AsyncRead, ReadBuf};

use super::http::{Routes, lists};
use super::{MAX_HEAD, MAX_HEADERS};

thread_local! {
    /// Where the first request head of every connection on this thread is
    /// read and parsed, within one poll.
    static HEAD: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_HEAD].into_boxed_slice());
}

/// What the first read of a connection held.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum First {
    /// A valid upgrade: its `101`, and the bytes that came after the head
    /// (the first frames, if the client did not wait).
    Upgrade {
        /// The whole response head to send.
        response: Vec<u8>,
        /// What came after the request head.
        after: Vec<u8>,
    },
    /// Anything else, for hyper: every byte read.
    Http(Vec<u8>),
}

/// Reads what the client sent first (waiting for it) and says what it is.
pub(super) async fn first<R: AsyncRead + Unpin>(
    io: &mut R,
    routes: &Routes<'_>,
) -> io::Result<First> {
    poll_fn(|cx| {
        HEAD.with_borrow_mut(|head| {
            let mut buf = ReadBuf::new(head);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
            Ok(look_at(buf.filled(), routes)).into()
        })
    })
    .await
}

/// What `read`, the first bytes of a connection, is.
fn look_at(read: &[u8], routes: &Routes<'_>) -> First {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(length)) = request.parse(read) else {
        return First::Http(read.to_vec());
    };
    let headers = &*request.headers;
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // Only the plain case: HTTP/1.1, no body, `Upgrade: websocket`, and
    // every check passed (a refusal is hyper's to answer).
    let plain = request.version == Some(1)
        && values("content-length").next().is_none()
        && values("transfer-encoding").next().is_none()
        && lists(values("upgrade"), "websocket");
    match routes.check(request.method == Some("GET"), values) {
        Ok(upgrade) if plain => First::Upgrade {
            response: upgrade.response_head(),
            after: read[length..].to_vec(),
        },
        _ => First::Http(read.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

    fn look(read: &str, origins: &[String]) -> First {
        let draining = CancellationToken::new();
        look_at(
            read.as_bytes(),
            &Routes {
                origins,
                draining: &draining,
            },
        )
    }

    #[test]
    fn a_whole_valid_upgrade_is_answered_here_with_what_came_after_it() {
        let read = format!("{UPGRADE}\u{82}\u{0}");
        let First::Upgrade { response, after } = look(&read, &[]) else {
            panic!("not answered here");
        };
        assert_eq!(
            String::from_utf8(response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             sec-websocket-protocol: chat\r\n\r\n"
        );
        assert_eq!(after, "\u{82}\u{0}".as_bytes());
    }

    #[test]
    fn anything_else_goes_to_hyper_with_every_byte() {
        let allowed = ["https://example.org".to_string()];
        let cases = [
            ("a head in pieces", &UPGRADE[..30], &[][..]),
            ("a page", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &[][..]),
            (
                "HTTP/1.0",
                &UPGRADE.replace("HTTP/1.1", "HTTP/1.0"),
                &[][..],
            ),
            (
                "version 8",
                &UPGRADE.replace("Version: 13", "Version: 8"),
                &[][..],
            ),
            ("no origin", UPGRADE, &allowed[..]),
            (
                "a body",
                &UPGRADE.replace("Host: x", "Content-Length: 1"),
                &[][..],
            ),
            ("POST", &UPGRADE.replace("GET", "POST"), &[][..]),
            ("not HTTP", "\u{16}\u{3}\u{1}garbage\r\n\r\n", &[][..]),
        ];
        for (what, read, origins) in cases {
            assert_eq!(
                look(read, origins),
                First::Http(read.as_bytes().to_vec()),
                "{what}"
            );
        }
    }
}
