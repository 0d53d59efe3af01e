//! The validated configuration of one `upecho connect`: what the flags of
//! `cli.rs` become before [`run`](super::run) connects.

use std::net::SocketAddr;
use std::time::Duration;

use crate::endpoint::Target;

/// A validated `upecho connect`: where to connect and how long to wait. The
/// binary builds it from the flags; a library caller builds it directly.
#[derive(Debug)]
pub struct ConnectConfig {
    /// Where to connect.
    pub target: Target,
    /// Bound on the connect and, with `--udp`, on each reply wait; `None`
    /// (`--timeout 0`) means no limit.
    pub timeout: Option<Duration>,
    /// The local address to connect from (`--source`); `None`: the
    /// system's choice.
    pub source: Option<SocketAddr>,
    /// Say on stderr where the connection runs from and to, and how long the
    /// connect took (`-v`).
    pub verbose: bool,
    /// Write the replies as a hex dump in `hexdump -C`'s layout (`--hex`).
    pub hex: bool,
    /// TLS over TCP (`--tls`, or a `wss://` URL), and whom to trust; `None`
    /// for plain TCP.
    pub tls: Option<crate::tls::client::ClientTls>,
    /// WebSocket (`--ws URL`): each line one message, each reply one line;
    /// the target is then the URL's `host:port`.
    pub websocket: Option<crate::endpoint::WsUrl>,
}

impl ConnectConfig {
    /// How the server is named in errors: `tcp 127.0.0.1:8080`,
    /// `tls 127.0.0.1:8443`, `ws 127.0.0.1:8081`.
    pub(super) fn named(&self) -> String {
        match &self.websocket {
            Some(url) => url.named(),
            None => self.target.named(self.tls.is_some()),
        }
    }
}
