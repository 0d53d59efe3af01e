//! The server's TLS configuration: which certificate (files, or the
//! temporary one), which clients (`--tls-client-ca`), and the rustls
//! [`rustls::ServerConfig`] built from them, which SIGHUP rebuilds. Handshakes
//! take the configuration in force when they begin; a reload that fails keeps
//! the old one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;

use super::certs::{self, Identity};
use super::provider;
use crate::Error;

/// What `serve`'s TLS flags ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// `--tls-cert` and `--tls-key`: the chain (leaf first) and its key;
    /// `None` for a temporary certificate.
    pub files: Option<(PathBuf, PathBuf)>,
    /// `--tls-client-ca`: clients must present a certificate that chains to
    /// one in this file.
    pub client_ca: Option<PathBuf>,
    /// `--tls-handshake-timeout`: `None` = no limit.
    pub handshake_timeout: Option<Duration>,
}

impl TlsConfig {
    /// The contract's default: a temporary certificate, any client, 10 s to
    /// finish a handshake.
    pub fn new() -> TlsConfig {
        TlsConfig {
            handshake_timeout: Some(Duration::from_secs(10)),
            ..TlsConfig::default()
        }
    }
}

/// The TLS state of a running server: what to re-read, and what is in force.
#[derive(Debug)]
pub(crate) struct ServerTls {
    /// What the flags asked for.
    config: TlsConfig,
    /// The temporary identity, made once at start (a reload keeps it, so
    /// a pinned fingerprint stays valid); `None` with certificate files.
    temporary: Option<Arc<Identity>>,
    /// What handshakes use now.
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// When the certificate in use expires (Unix seconds), for the metrics.
    expiry: AtomicI64,
}

impl ServerTls {
    /// Loads the files (or makes the temporary certificate for `hosts`, and
    /// logs its fingerprint).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file that cannot be read or parsed, or the
    /// key that does not match the certificate.
    pub(crate) fn load(config: &TlsConfig, hosts: Vec<String>) -> Result<ServerTls, Error> {
        let temporary = match config.files {
            Some(_) => None,
            None => {
                let identity = Identity::temporary(hosts)?;
                // Also under -q: the fingerprint is how a client pins it.
                tracing::info!(
                    target: super::CERTIFICATE_TARGET,
                    sha256 = %certs::fingerprint(&identity.chain[0]),
                    "temporary certificate"
                );
                Some(Arc::new(identity))
            }
        };
        let (built, expiry) = build(config, temporary.as_deref())?;
        Ok(ServerTls {
            config: config.clone(),
            temporary,
            current: RwLock::new(Arc::new(built)),
            expiry: AtomicI64::new(expiry),
        })
    }

    /// The configuration a handshake beginning now uses.
    pub(crate) fn current(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// How long a handshake may take.
    pub(crate) fn handshake_timeout(&self) -> Option<Duration> {
        self.config.handshake_timeout
    }

    /// When the certificate in use expires, in Unix seconds.
    pub(crate) fn expiry(&self) -> i64 {
        self.expiry.load(Ordering::Relaxed)
    }

    /// Whether SIGHUP has files to re-read.
    pub(crate) fn has_files(&self) -> bool {
        self.config.files.is_some() || self.config.client_ca.is_some()
    }

    /// Re-reads the files (SIGHUP). On an error the old configuration stays.
    ///
    /// # Errors
    ///
    /// As [`ServerTls::load`].
    pub(crate) fn reload(&self) -> Result<(), Error> {
        let (built, expiry) = build(&self.config, self.temporary.as_deref())?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(built);
        self.expiry.store(expiry, Ordering::Relaxed);
        Ok(())
    }
}

/// Builds a rustls configuration from the files of `config`, or from
/// `temporary`; returns it with the leaf's expiry.
fn build(
    config: &TlsConfig,
    temporary: Option<&Identity>,
) -> Result<(rustls::ServerConfig, i64), Error> {
    let loaded;
    let (identity, cert_file, key_file) = match (&config.files, temporary) {
        (Some((cert, key)), _) => {
            loaded = Identity::from_files(cert, key)?;
            (&loaded, Some(cert), Some(key))
        }
        (None, Some(identity)) => (identity, None, None),
        (None, None) => unreachable!("a temporary identity is made when no files are given"),
    };
    let expiry = certs::describe(&identity.chain[0]).map_or(0, |d| d.not_after);
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| Error::InvalidConfig(format!("tls: {err}")))?;
    let builder = match &config.client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs::read_chain(path)? {
                roots
                    .add(cert)
                    .map_err(|err| certs::file_error("client ca", path, &err))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| certs::file_error("client ca", path, &err))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut built = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|err| match (err, key_file, cert_file) {
            (rustls::Error::InconsistentKeys(_), Some(key), Some(cert)) => certs::file_error(
                "key",
                key,
                &format!(
                    "it does not match the certificate in {}",
                    crate::escape::control(&cert.to_string_lossy())
                ),
            ),
            (err, Some(key), _) => certs::file_error("key", key, &err),
            (err, None, _) => Error::InvalidConfig(format!("temporary certificate: {err}")),
        })?;
    // The server's order of suites, not the client's (testssl.sh rates a
    // server without one lower).
    built.ignore_client_order = true;
    Ok((built, expiry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_configuration_survives_a_reload_with_the_same_certificate() {
        let tls = ServerTls::load(&TlsConfig::new(), vec!["localhost".into()]).unwrap();
        let before = tls.temporary.as_ref().unwrap().chain[0].clone();
        assert!(tls.expiry() > 0);
        assert!(!tls.has_files());
        tls.reload().unwrap();
        assert_eq!(tls.temporary.as_ref().unwrap().chain[0], before);
        assert!(tls.current().ignore_client_order);
    }
}
