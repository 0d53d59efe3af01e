//! `connect --tls`: the handshake, then a relay between the TLS connection
//! and one end of a Unix socket pair, whose other end the session uses as it
//! uses a plain connection. So the prompt, pipe mode, the half-close and
//! hangup detection are the same code for TLS as for TCP: the relay turns
//! the session's half-close into our `close_notify` and the server's
//! `close_notify` into the end of the pair.
//!
//! The relay is a thread with a single-threaded tokio runtime and
//! `copy_bidirectional`: a session moves a few lines a second, so its two
//! 8 KiB copy buffers are all it costs.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use crate::Error;
use crate::tls::certs;
use crate::tls::client::{ClientTls, handshake_failure};

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

/// Does the handshake over `stream` for `host` (the name asked for and
/// verified, unless the config names another) within `timeout`, and returns
/// the session's end of the relay. `endpoint` names the server in errors.
///
/// # Errors
///
/// [`Error::Connect`] when the handshake fails: `certificate not trusted:
/// ...` when the server is not the one trusted.
pub(super) fn connect(
    stream: TcpStream,
    host: &str,
    tls: &ClientTls,
    timeout: Option<Duration>,
    endpoint: &str,
) -> Result<(UnixStream, Established), Error> {
    let config = tls.build()?;
    if tls.trust == crate::tls::client::Trust::Insecure {
        let _ = writeln!(
            std::io::stderr(),
            "warning: --insecure: the server's certificate is not verified"
        );
    }
    let name = tls.server_name(host)?;
    let fail = |why: String| Error::Connect {
        endpoint: endpoint.to_string(),
        cause: std::io::Error::other(why),
    };
    let (ours, theirs) = UnixStream::pair().map_err(|err| fail(crate::error::plain(&err)))?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("tls relay".into())
        .spawn(move || relay(stream, theirs, config, name, timeout, &tx))
        .map_err(|err| fail(crate::error::plain(&err)))?;
    match rx.recv() {
        Ok(Ok(established)) => Ok((ours, established)),
        Ok(Err(why)) => Err(fail(why)),
        Err(_) => Err(fail("the TLS relay stopped".into())),
    }
}

/// The relay thread: handshake (the outcome goes to `ready`), then copies
/// both ways until both have ended.
fn relay(
    stream: TcpStream,
    pair: UnixStream,
    config: std::sync::Arc<rustls::ClientConfig>,
    name: rustls_pki_types::ServerName<'static>,
    timeout: Option<Duration>,
    ready: &mpsc::Sender<Result<Established, String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(crate::error::plain(&err)));
            return;
        }
    };
    runtime.block_on(async move {
        let setup = || -> std::io::Result<_> {
            stream.set_nonblocking(true)?;
            pair.set_nonblocking(true)?;
            Ok((
                tokio::net::TcpStream::from_std(stream)?,
                tokio::net::UnixStream::from_std(pair)?,
            ))
        };
        let (stream, mut pair) = match setup() {
            Ok(both) => both,
            Err(err) => {
                let _ = ready.send(Err(crate::error::plain(&err)));
                return;
            }
        };
        let connect = tokio_rustls::TlsConnector::from(config).connect(name, stream);
        let connected = match timeout {
            Some(limit) => tokio::time::timeout(limit, connect)
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("TLS handshake timed out"))),
            None => connect.await,
        };
        let mut tls = match connected {
            Ok(tls) => tls,
            Err(err) => {
                let _ = ready.send(Err(handshake_failure(&err)));
                return;
            }
        };
        let _ = ready.send(Ok(established(tls.get_ref().1)));
        // Ends when both directions have: the session's half-close becomes
        // our close_notify, the server's close_notify the pair's end.
        let _ = tokio::io::copy_bidirectional(&mut tls, &mut pair).await;
    });
}

/// What the handshake settled.
fn established(session: &rustls::ClientConnection) -> Established {
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
