//! Certificates and keys: read from PEM files (a chain, leaf first; a key in
//! any of the three forms), made on the spot (the temporary self-signed
//! certificate), and described (the SHA-256 fingerprint the server logs and a
//! client pins, the subject, the expiry).

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::Error;

/// A certificate chain (leaf first) and its private key.
#[derive(Debug)]
pub struct Identity {
    /// The leaf, then the chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads a chain from `cert` and its key from `key` (PKCS#8, PKCS#1 or
    /// SEC1 PEM).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file that cannot be read, or holds no
    /// certificate or key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Identity, Error> {
        Ok(Identity {
            chain: read_chain(cert)?,
            key: read_key(key)?,
        })
    }

    /// A self-signed ECDSA P-256 certificate for `hosts` (names or
    /// addresses), valid from a day ago for a year: the server's temporary
    /// certificate when no files are given.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if a host cannot be put in a certificate.
    pub fn temporary(hosts: Vec<String>) -> Result<Identity, Error> {
        let invalid =
            |err: rcgen::Error| Error::InvalidConfig(format!("temporary certificate: {err}"));
        let mut params = rcgen::CertificateParams::new(hosts).map_err(invalid)?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, "upecho temporary certificate");
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().map_err(invalid)?;
        let cert = params.self_signed(&key).map_err(invalid)?;
        Ok(Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der())
                .map_err(|why| Error::InvalidConfig(format!("temporary certificate: {why}")))?,
        })
    }
}

/// Reads every certificate in the PEM file `path`, in order.
///
/// # Errors
///
/// [`Error::Io`] naming the file: unreadable, malformed, or with no
/// certificate in it.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| file_error("certificate", path, &pem_error(err)))?;
    if chain.is_empty() {
        return Err(file_error("certificate", path, &"no certificate in it"));
    }
    Ok(chain)
}

/// Reads the first private key in the PEM file `path`.
///
/// # Errors
///
/// [`Error::Io`] naming the file: unreadable, malformed, or with no key.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => file_error(
            "key",
            path,
            &"no private key in it (PKCS#8, PKCS#1 or SEC1 PEM)",
        ),
        err => file_error("key", path, &pem_error(err)),
    })
}

/// The error for a TLS file: `cannot load tls certificate FILE: why`.
pub(crate) fn file_error(what: &str, path: &Path, why: &dyn std::fmt::Display) -> Error {
    Error::Io {
        context: format!(
            "cannot load tls {what} {}",
            crate::escape::control(&path.to_string_lossy())
        ),
        cause: std::io::Error::other(why.to_string()),
    }
}

/// A PEM reader's error in words: for I/O, what the system said
/// (`no such file or directory`).
fn pem_error(err: rustls_pki_types::pem::Error) -> String {
    match err {
        rustls_pki_types::pem::Error::Io(err) => crate::error::plain(&err),
        err => err.to_string(),
    }
}

/// The SHA-256 of a DER certificate as the server logs it and a client pins
/// it: upper-case hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let pairs: Vec<String> = digest.iter().map(|byte| format!("{byte:02X}")).collect();
    pairs.join(":")
}

/// Reads a fingerprint as a user may type it: case and colons do not matter.
/// `None` unless it is 32 bytes of hex.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (at, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(at * 2..at * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What a certificate says of itself, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    /// The subject, as `CN=..., O=...`.
    pub subject: String,
    /// The end of its validity, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// Reads the subject and expiry of a DER certificate; `None` if it cannot be
/// parsed.
pub fn describe(der: &[u8]) -> Option<Described> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(Described {
        subject: cert.subject().to_string(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_upper_case_pairs_and_reads_back_whatever_the_form() {
        let print = fingerprint(b"abc");
        assert_eq!(
            print,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        let bytes = parse_fingerprint(&print).unwrap();
        assert_eq!(parse_fingerprint(&print.to_lowercase()), Some(bytes));
        assert_eq!(parse_fingerprint(&print.replace(':', "")), Some(bytes));
        assert_eq!(parse_fingerprint("AB:CD"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn a_temporary_certificate_names_its_hosts_and_expires_within_the_year() {
        let id = Identity::temporary(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert_eq!(id.chain.len(), 1);
        let described = describe(&id.chain[0]).unwrap();
        assert!(described.subject.contains("upecho"), "{described:?}");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(described.not_after > now && described.not_after <= now + 366 * 86_400);
    }
}
