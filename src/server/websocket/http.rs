//! What a WebSocket listener answers over HTTP/1.1: the upgrade, on any path
//! (RFC 6455 section 4.2), the page at `GET /`, the server's state at
//! `GET /healthz`, and 404 for any other path. Pure: a request in, a whole
//! response out; the caller takes the connection over after a `101`.

use std::sync::LazyLock;

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

/// The page, compiled into the binary.
const PAGE: &str = include_str!("page.html");

/// The page's Content-Security-Policy: nothing but its own inline script and
/// style (by their hashes) and WebSocket connections to this server.
static PAGE_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hash(PAGE, "script"),
        inline_hash(PAGE, "style"),
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

/// CSP's `sha256-...` source for the text of `page`'s one `<tag>` element.
fn inline_hash(page: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let body = page
        .split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map_or("", |(body, _)| body);
    let digest = sha2::Sha256::digest(body.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// What the listener does after answering a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Goes on serving HTTP on the connection.
    Http,
    /// Takes the connection over as a WebSocket once the `101` is out.
    Upgrade,
}

/// What a request is answered from.
#[derive(Debug)]
pub(super) struct Routes<'a> {
    /// `--ws-origin`: the `Origin` headers accepted; empty = any.
    pub(super) origins: &'a [String],
    /// Cancelled when shutdown began: `/healthz` then answers 503.
    pub(super) draining: &'a CancellationToken,
}

impl Routes<'_> {
    /// The whole response to `request`, and whether it upgrades.
    pub(super) fn respond<B>(&self, request: &Request<B>) -> (Response<Full<Bytes>>, Next) {
        let headers = request.headers();
        if lists(
            headers
                .get_all(header::UPGRADE)
                .iter()
                .map(HeaderValue::as_bytes),
            "websocket",
        ) {
            return match self.accept(request) {
                Ok(reply) => (reply, Next::Upgrade),
                Err(refusal) => (*refusal, Next::Http),
            };
        }
        let path = request.uri().path();
        if !matches!(path, "/" | "/healthz") {
            return (text(StatusCode::NOT_FOUND, "not found\n"), Next::Http);
        }
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            let mut reply = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = HeaderValue::from_static("GET, HEAD");
            reply.headers_mut().insert(header::ALLOW, allow);
            return (reply, Next::Http);
        }
        let reply = match path {
            "/" => page(),
            _ if self.draining.is_cancelled() => {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            }
            _ => text(StatusCode::OK, "ok\n"),
        };
        (reply, Next::Http)
    }

    /// The `101` of a valid upgrade request, or why it is refused.
    fn accept<B>(
        &self,
        request: &Request<B>,
    ) -> Result<Response<Full<Bytes>>, Box<Response<Full<Bytes>>>> {
        let headers = request.headers();
        let values = |name: &'static str| headers.get_all(name).iter().map(HeaderValue::as_bytes);
        let upgrade = match self.check(request.method() == Method::GET, values) {
            Ok(upgrade) => upgrade,
            Err(Refusal::Bad(why)) => {
                return Err(Box::new(text(
                    StatusCode::BAD_REQUEST,
                    format!("bad WebSocket handshake: {why}\n"),
                )));
            }
            Err(Refusal::Version) => {
                let mut reply = text(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only\n");
                let version = HeaderValue::from_static("13");
                reply
                    .headers_mut()
                    .insert(header::SEC_WEBSOCKET_VERSION, version);
                return Err(Box::new(reply));
            }
            Err(Refusal::Origin) => {
                return Err(Box::new(text(
                    StatusCode::FORBIDDEN,
                    "origin not allowed\n",
                )));
            }
        };
        let mut reply = Response::new(Full::new(Bytes::new()));
        *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let out = reply.headers_mut();
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&upgrade.accept_key()) {
            out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = upgrade.protocol
            && let Ok(protocol) = HeaderValue::from_str(protocol)
        {
            out.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        Ok(reply)
    }

    /// Checks an upgrade request, whatever parsed it: `get` says whether its
    /// method is GET, `values(name)` gives its values of the header `name`
    /// (lower case), in order.
    pub(super) fn check<'h, I>(
        &self,
        get: bool,
        values: impl Fn(&'static str) -> I,
    ) -> Result<Upgrade<'h>, Refusal>
    where
        I: Iterator<Item = &'h [u8]>,
    {
        if !get {
            return Err(Refusal::Bad("the method must be GET"));
        }
        if !tokens(values("connection")).any(|t| t.eq_ignore_ascii_case("upgrade")) {
            return Err(Refusal::Bad("no Connection: upgrade"));
        }
        if values("sec-websocket-version").next() != Some(b"13") {
            return Err(Refusal::Version);
        }
        let key = values("sec-websocket-key")
            .next()
            .filter(|key| {
                base64::engine::general_purpose::STANDARD
                    .decode(key)
                    .is_ok_and(|nonce| nonce.len() == 16)
            })
            .ok_or(Refusal::Bad("Sec-WebSocket-Key is not 16 bytes in base64"))?;
        if !self.origin_allowed(values("origin").next()) {
            return Err(Refusal::Origin);
        }
        // Browsers fail the handshake unless one of the subprotocols they
        // offer is chosen: the echo speaks them all alike, so the first.
        let protocol = tokens(values("sec-websocket-protocol")).next();
        Ok(Upgrade { key, protocol })
    }

    /// Whether an upgrade with this `Origin` header is served.
    fn origin_allowed(&self, origin: Option<&[u8]>) -> bool {
        if self.origins.is_empty() {
            return true;
        }
        let Some(origin) = origin.and_then(visible_ascii) else {
            return false;
        };
        let origin = origin.trim_end_matches('/');
        self.origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// A valid upgrade request: what its `101` says.
#[derive(Debug)]
pub(super) struct Upgrade<'h> {
    /// `Sec-WebSocket-Key`.
    key: &'h [u8],
    /// The first subprotocol offered, if any.
    protocol: Option<&'h str>,
}

impl Upgrade<'_> {
    /// `Sec-WebSocket-Accept` for the key.
    fn accept_key(&self) -> String {
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(self.key)
    }

    /// The whole `101` response head, as hyper would write it.
    pub(super) fn response_head(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-accept: {}\r\n",
            self.accept_key()
        );
        if let Some(protocol) = self.protocol {
            head.push_str("sec-websocket-protocol: ");
            head.push_str(protocol);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

/// Why an upgrade request is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 400, for this reason.
    Bad(&'static str),
    /// 426: not version 13.
    Version,
    /// 403: `--ws-origin` does not list its `Origin`.
    Origin,
}

/// Whether the header values list `token` (any case).
pub(super) fn lists<'h>(values: impl Iterator<Item = &'h [u8]>, token: &str) -> bool {
    tokens(values).any(|t| t.eq_ignore_ascii_case(token))
}

/// The items of comma-separated header values, trimmed, empty ones left
/// out; values that are not visible ASCII are skipped (as `to_str` does).
fn tokens<'h>(values: impl Iterator<Item = &'h [u8]>) -> impl Iterator<Item = &'h str> {
    values
        .filter_map(visible_ascii)
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// A header value as text, if it is visible ASCII (tabs allowed).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// The page, with its security headers.
fn page() -> Response<Full<Bytes>> {
    let mut reply = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let headers = reply.headers_mut();
    let html = HeaderValue::from_static("text/html; charset=utf-8");
    headers.insert(header::CONTENT_TYPE, html);
    headers.insert(header::CONTENT_SECURITY_POLICY, PAGE_POLICY.clone());
    let nosniff = HeaderValue::from_static("nosniff");
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, nosniff);
    let referrer = HeaderValue::from_static("no-referrer");
    headers.insert(header::REFERRER_POLICY, referrer);
    reply
}

/// A plain-text reply with `status`.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut reply = Response::new(Full::new(body.into()));
    *reply.status_mut() = status;
    let plain = HeaderValue::from_static("text/plain; charset=utf-8");
    reply.headers_mut().insert(header::CONTENT_TYPE, plain);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upgrade request for `path`, with these headers set (replacing
    /// the defaults of the same name).
    fn upgrade(path: &str, set: &[(&'static str, &'static str)]) -> Request<()> {
        let mut request = Request::builder()
            .uri(path)
            .header("Upgrade", "websocket")
            .header("Connection", "keep-alive, Upgrade")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap();
        for (name, value) in set {
            let value = HeaderValue::from_static(value);
            request.headers_mut().insert(*name, value);
        }
        request
    }

    fn routes<'a>(origins: &'a [String], draining: &'a CancellationToken) -> Routes<'a> {
        Routes { origins, draining }
    }

    #[test]
    fn an_upgrade_on_any_path_gets_rfc_6455s_accept_key_and_the_first_subprotocol() {
        let draining = CancellationToken::new();
        let offered = [("Sec-WebSocket-Protocol", "chat, superchat")];
        let (reply, next) = routes(&[], &draining).respond(&upgrade("/any/path?x", &offered));
        assert_eq!(next, Next::Upgrade);
        assert_eq!(reply.status(), StatusCode::SWITCHING_PROTOCOLS);
        let headers = reply.headers();
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            headers[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(headers[header::SEC_WEBSOCKET_PROTOCOL], "chat");
        assert!(!headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS));
    }

    #[test]
    fn a_bad_upgrade_is_refused_with_its_status() {
        let draining = CancellationToken::new();
        let allowed = ["https://example.org".to_string()];
        let cases = [
            (
                upgrade("/", &[("Sec-WebSocket-Version", "8")]),
                &[][..],
                426,
            ),
            (
                upgrade("/", &[("Origin", "https://evil.example")]),
                &allowed[..],
                403,
            ),
            (
                upgrade("/", &[("Origin", "https://example.org")]),
                &allowed[..],
                101,
            ),
            (upgrade("/", &[]), &allowed[..], 403),
        ];
        for (request, origins, status) in cases {
            let (reply, _) = routes(origins, &draining).respond(&request);
            assert_eq!(reply.status().as_u16(), status, "{request:?}");
        }
        let request = upgrade("/", &[("Sec-WebSocket-Key", "c2hvcnQ=")]);
        let (reply, next) = routes(&[], &draining).respond(&request);
        assert_eq!(
            (reply.status(), next),
            (StatusCode::BAD_REQUEST, Next::Http)
        );
    }

    #[test]
    fn the_page_healthz_and_404() {
        let draining = CancellationToken::new();
        let get = |path: &str| {
            let request = Request::builder().uri(path).body(()).unwrap();
            routes(&[], &draining).respond(&request).0
        };
        let page = get("/");
        assert_eq!(page.status(), StatusCode::OK);
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            policy.starts_with("default-src 'none'; script-src 'sha256-"),
            "{policy}"
        );
        assert_eq!(get("/healthz").status(), StatusCode::OK);
        assert_eq!(get("/nothing").status(), StatusCode::NOT_FOUND);
        draining.cancel();
        assert_eq!(get("/healthz").status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
