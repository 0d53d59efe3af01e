//! Which rustls crypto provider upecho should use, measured: aws-lc-rs
//! against ring, in memory (a client and a server connection handing records
//! to each other, no sockets), on one thread. For each: full TLS 1.3
//! handshakes per second with an ECDSA P-256 certificate (the key type of
//! upecho's temporary certificate), and MB/s of an echo's crypto (the client
//! encrypts 8 KiB (rustls takes in 16 KiB of plaintext at most), the server decrypts it and encrypts it back, the client
//! decrypts), AES-128-GCM.
//! `tls_providers chain.pem key.pem [seconds]` (the last certificate of the
//! chain is the client's trust anchor).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (cert, key) = (
        args.next().ok_or("cert.pem")?,
        args.next().ok_or("key.pem")?,
    );
    let seconds: f64 = args.next().map_or(Ok(3.0), |s| s.parse())?;
    let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key)?;
    let one_suite = |p: CryptoProvider, suite| CryptoProvider {
        cipher_suites: vec![suite],
        ..p
    };
    let providers = [
        (
            "aws-lc-rs",
            one_suite(
                rustls::crypto::aws_lc_rs::default_provider(),
                rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
            ),
        ),
        (
            "ring",
            one_suite(
                rustls::crypto::ring::default_provider(),
                rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            ),
        ),
    ];
    println!("| provider | full handshakes/s | echo crypto MB/s |");
    println!("| --- | ---: | ---: |");
    for (name, provider) in providers {
        let provider = Arc::new(provider);
        let server = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())?,
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(chain[chain.len() - 1].clone())?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.resumption = rustls::client::Resumption::disabled();
        let client = Arc::new(client);
        let limit = Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut handshakes = 0u64;
        while started.elapsed() < limit {
            pair(&client, &server)?;
            handshakes += 1;
        }
        let rate = handshakes as f64 / started.elapsed().as_secs_f64();
        let (mut c, mut s) = pair(&client, &server)?;
        let block = vec![b'a'; 8 * 1024];
        let mut back = vec![0u8; 8 * 1024];
        let started = Instant::now();
        let mut bytes = 0u64;
        while started.elapsed() < limit {
            c.writer().write_all(&block)?;
            transfer(&mut c, &mut s)?;
            let mut got = 0;
            while got < block.len() {
                got += s.reader().read(&mut back[got..])?;
            }
            s.writer().write_all(&back)?;
            transfer(&mut s, &mut c)?;
            let mut got = 0;
            while got < block.len() {
                got += c.reader().read(&mut back[got..])?;
            }
            bytes += block.len() as u64;
        }
        let mbps = bytes as f64 / 1e6 / started.elapsed().as_secs_f64();
        println!("| {name} | {rate:.0} | {mbps:.0} |");
    }
    Ok(())
}

/// A client and a server connection, through the handshake.
fn pair(
    client: &Arc<rustls::ClientConfig>,
    server: &Arc<rustls::ServerConfig>,
) -> Result<(rustls::ClientConnection, rustls::ServerConnection), Box<dyn std::error::Error>> {
    let mut c = rustls::ClientConnection::new(client.clone(), ServerName::try_from("localhost")?)?;
    let mut s = rustls::ServerConnection::new(server.clone())?;
    while c.is_handshaking() || s.is_handshaking() {
        transfer(&mut c, &mut s)?;
        transfer(&mut s, &mut c)?;
    }
    Ok((c, s))
}

/// Moves every record `from` has to send into `to`, and has `to` process them.
fn transfer<DA, DB>(
    from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<DA>>,
    to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<DB>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire)?;
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest)?;
        to.process_new_packets()?;
    }
    Ok(())
}
