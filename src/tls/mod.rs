//! TLS on rustls, for the server (`serve --tls`) and the clients
//! (`connect --tls`, `bench --tls`):
//!
//! - [`certs`]: certificate chains and keys from PEM files, the temporary
//!   self-signed certificate, fingerprints, subjects and expiry;
//! - [`server`]: the server's configuration, rebuilt on SIGHUP;
//! - [`client`]: the clients' configuration: trust, name, certificate.
//!
//! One crypto provider for everything, ring, chosen by measurement
//! (docs/TLS.md): in one paired run against upecho built on aws-lc-rs
//! (rustls' default), TLS 64 KiB stream x16 went 443 -> 614 MB/s (1.39x,
//! range 1.37-1.48) and the server's CPU per MB 2.19 -> 1.60 ms; full
//! handshakes were equal (`peers/src/bin/tls_providers.rs`: 2,128-2,186 vs
//! 2,140-2,176 a second with an ECDSA P-256 certificate). The suites in the
//! server's order: AES-128-GCM first (the fastest here with AES-NI), then
//! AES-256-GCM, then ChaCha20-Poly1305; TLS 1.3, then TLS 1.2 with ECDHE
//! only (forward secrecy on every suite).

pub mod certs;
pub mod client;
pub mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::cipher_suite as suite;

/// The target of the one log line shown whatever `-q` says: the temporary
/// certificate's fingerprint, which is how a client pins it.
pub const CERTIFICATE_TARGET: &str = "upecho::certificate";

/// The crypto provider every TLS configuration of upecho uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            suite::TLS13_AES_128_GCM_SHA256,
            suite::TLS13_AES_256_GCM_SHA384,
            suite::TLS13_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    })
}

/// A protocol version as people write it: `TLSv1.3`.
pub fn version_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "older than TLSv1.2",
    }
}
