//! The clients' TLS configuration (`connect --tls`, `bench --tls`): whom to
//! trust (the system's roots, a CA file, one pinned certificate, or no one
//! checked), what name to ask for, and which certificate to present.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::certs::{self, Identity};
use super::provider;
use crate::Error;

/// Whom a client trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The system's trusted roots.
    System,
    /// The CAs in this PEM file (`--tls-ca`).
    Ca(PathBuf),
    /// Only the certificate whose SHA-256 this is (`--tls-fingerprint`).
    Pinned([u8; 32]),
    /// Anyone (`--insecure`).
    Insecure,
}

/// What a TLS client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// Whom to trust.
    pub trust: Trust,
    /// The name to send and verify (`--tls-server-name`); by default the
    /// host of the address.
    pub server_name: Option<String>,
    /// A client certificate and its key (`--tls-cert`, `--tls-key`).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Whether sessions may be resumed (off to measure full handshakes).
    pub resume: bool,
}

impl ClientTls {
    /// The rustls configuration.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming a file that cannot be read or parsed.
    pub fn build(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|err| Error::InvalidConfig(format!("tls: {err}")))?;
        let builder = match &self.trust {
            Trust::System => builder.with_root_certificates(system_roots()?),
            Trust::Ca(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certs::read_chain(path)? {
                    roots
                        .add(cert)
                        .map_err(|err| certs::file_error("ca", path, &err))?;
                }
                builder.with_root_certificates(roots)
            }
            Trust::Pinned(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked {
                    pin: Some(*pin),
                    provider,
                })),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked {
                    pin: None,
                    provider,
                })),
        };
        let mut config = match &self.identity {
            Some((cert, key)) => {
                let identity = Identity::from_files(cert, key)?;
                builder
                    .with_client_auth_cert(identity.chain, identity.key)
                    .map_err(|err| certs::file_error("key", key, &err))?
            }
            None => builder.with_no_client_auth(),
        };
        if !self.resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Arc::new(config))
    }

    /// The name to ask for when connecting to `host`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if it is neither a DNS name nor an address.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, Error> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_string())
            .map_err(|_| Error::InvalidConfig(format!("invalid TLS server name '{name}'")))
    }
}

/// The system's trusted roots; those that cannot be read are skipped.
fn system_roots() -> Result<rustls::RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), ToString::to_string);
        return Err(Error::InvalidConfig(format!(
            "cannot load the system's trusted certificates ({why}); use --tls-ca, --tls-fingerprint or --insecure"
        )));
    }
    Ok(roots)
}

/// Why a handshake failed, in the contract's words: `certificate not
/// trusted: ...` when verification refused the server.
pub fn handshake_failure(err: &std::io::Error) -> String {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(why)) => {
            format!("certificate not trusted: {}", certificate_error(why))
        }
        Some(err) => err.to_string(),
        None => crate::error::plain(err),
    }
}

/// A certificate error in words.
fn certificate_error(why: &rustls::CertificateError) -> String {
    match why {
        rustls::CertificateError::UnknownIssuer => "unknown issuer".into(),
        rustls::CertificateError::Expired => "expired".into(),
        rustls::CertificateError::NotValidForName => "not valid for the name asked for".into(),
        rustls::CertificateError::Other(other) => other.to_string(),
        other => format!("{other:?}"),
    }
}

/// The verifier of `--tls-fingerprint` (the leaf's SHA-256 must be the pin)
/// and `--insecure` (no pin: anything goes). Either way the handshake's
/// signatures are checked, so the server holds the certificate's key.
#[derive(Debug)]
struct Unchecked {
    /// The SHA-256 the leaf must have.
    pin: Option<[u8; 32]>,
    /// Whose signature algorithms check the handshake.
    provider: Arc<CryptoProvider>,
}

/// The error of a pin that does not match.
#[derive(Debug)]
struct PinMismatch(String);

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "its sha256 is {}, not the pinned one", self.0)
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        match self.pin {
            Some(pin) if sha2::Sha256::digest(end_entity).as_slice() != pin => Err(
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                    rustls::OtherError(Arc::new(PinMismatch(certs::fingerprint(end_entity)))),
                )),
            ),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
