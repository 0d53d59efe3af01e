//! Benchmark baseline for TLS: the minimal tokio-rustls echo server, as its
//! examples write it: multi-thread runtime, a task per connection, a 64 KiB
//! buffer, upper-case, write_all then flush. Same crypto provider as upecho
//! (aws-lc-rs) and rustls' default suite order.
//! `tls_tokio 127.0.0.1:9443 cert.pem key.pem`.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9443".into());
    let (cert, key) = (
        args.next().ok_or("cert.pem")?,
        args.next().ok_or("key.pem")?,
    );
    let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key)?;
    // rustls' default provider, named: this crate also builds ring (for
    // tls_providers), and with two the default is ambiguous.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(socket).await else {
                return;
            };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf[..n].make_ascii_uppercase();
                if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
            let _ = tls.shutdown().await;
        });
    }
}
