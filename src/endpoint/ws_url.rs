//! [`WsUrl`]: a `ws://` or `wss://` URL as `connect --ws` and `bench --ws`
//! take it: whether it is over TLS, the `host:port` to connect to (80 or
//! 443 when none is written) and the path asked for.

use std::fmt;
use std::str::FromStr;

use super::HostPort;

/// A WebSocket URL, checked for syntax; the host is resolved when used.
///
/// ```
/// let url: upecho::endpoint::WsUrl = "wss://[::1]/echo?x=1".parse().unwrap();
/// assert!(url.tls());
/// assert_eq!(url.addr().to_string(), "[::1]:443");
/// assert_eq!(url.path(), "/echo?x=1");
/// assert_eq!(url.to_string(), "wss://[::1]:443/echo?x=1");
/// assert!("http://localhost/".parse::<upecho::endpoint::WsUrl>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`.
    tls: bool,
    /// Where to connect.
    addr: HostPort,
    /// The path and query, `/` at least.
    path: String,
}

impl WsUrl {
    /// Whether the URL is `wss://`.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    /// The path and query asked for.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// How the server is named in errors and logs: `ws 127.0.0.1:8081`.
    pub fn named(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme} {}", self.addr)
    }
}

impl FromStr for WsUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<WsUrl, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("ws://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("wss://") {
            (true, rest)
        } else {
            return Err("expected a ws:// or wss:// URL".into());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.contains('@') {
            return Err("user names in the URL are not supported".into());
        }
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        };
        let addr = authority
            .parse::<HostPort>()
            .map_err(|err| err.to_string())?;
        if addr.host().is_empty() {
            return Err("the URL names no host".into());
        }
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err("the path has a space or a control character".into());
        }
        Ok(WsUrl { tls, addr, path })
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.addr, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_default_ports_and_paths() {
        let url: WsUrl = "ws://localhost:8081".parse().unwrap();
        assert_eq!(
            (url.tls(), url.addr().port(), url.path()),
            (false, 8081, "/")
        );
        let url: WsUrl = "ws://127.0.0.1?x".parse().unwrap();
        assert_eq!(
            (url.addr().to_string(), url.path()),
            ("127.0.0.1:80".into(), "/?x")
        );
        for bad in [
            "localhost:80",
            "ws://",
            "ws://:80/",
            "ws://u@h:1/",
            "ws://h:99999/",
        ] {
            assert!(bad.parse::<WsUrl>().is_err(), "{bad}");
        }
    }
}
