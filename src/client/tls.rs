//! `connect --tls`: the client's TLS handshake (run by the [relay](super::relay))
//! and what `-v` says of it.

use std::time::Duration;

use crate::tls::certs;
use crate::tls::client::handshake_failure;

/// What `-v` says of an established TLS connection.
#[derive(Debug)]
pub(super) struct Established {
    /// `TLSv1.3`.
    pub(super) version: &'static str,
    /// `TLS13_AES_128_GCM_SHA256`.
    pub(super) suite: String,
    /// The server certificate's subject.
    pub(super) subject: String,
    /// Its SHA-256, in the form the server logs.
    pub(super) sha256: String,
}

impl std::fmt::Display for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tls: {} {}, server certificate {} sha256={}",
            self.version, self.suite, self.subject, self.sha256
        )
    }
}

/// The TLS handshake over `stream` for `name`, within `timeout`; why it
/// failed, in the words of [`handshake_failure`].
pub(super) async fn handshake(
    config: std::sync::Arc<rustls::ClientConfig>,
    name: rustls_pki_types::ServerName<'static>,
    stream: tokio::net::TcpStream,
    timeout: Option<Duration>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, stream);
    let connected = match timeout {
        Some(limit) => tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("TLS handshake timed out"))),
        None => connect.await,
    };
    connected.map_err(|err| handshake_failure(&err))
}

/// What the handshake settled.
pub(super) fn established(session: &rustls::ClientConnection) -> Established {
    let leaf = session.peer_certificates().and_then(|chain| chain.first());
    Established {
        version: session
            .protocol_version()
            .map_or("-", crate::tls::version_name),
        suite: session
            .negotiated_cipher_suite()
            .map_or_else(|| "-".into(), |suite| format!("{:?}", suite.suite())),
        subject: leaf
            .and_then(|leaf| certs::describe(leaf))
            .map_or_else(|| "(unreadable)".into(), |described| described.subject),
        sha256: leaf.map_or_else(|| "-".into(), |leaf| certs::fingerprint(leaf)),
    }
}
