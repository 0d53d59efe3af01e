//! Benchmark candidate: an io_uring uppercase-echo server (tokio-uring),
//! single-threaded, 64 KiB buffers, TCP_NODELAY — to decide whether upecho
//! should have an io_uring backend (docs/ARCHITECTURE.md).
//! `cargo run --release --manifest-path peers/Cargo.toml --bin uring -- 127.0.0.1:9000`.

use tokio_uring::net::TcpListener;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let addr = addr.parse().map_err(std::io::Error::other)?;
    tokio_uring::start(async move {
        let listener = TcpListener::bind(addr)?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio_uring::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let (read, back) = stream.read(buf).await;
                    buf = back;
                    let n = match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf[..n].make_ascii_uppercase();
                    let (written, slice) = stream
                        .write_all(tokio_uring::buf::BoundedBuf::slice(buf, ..n))
                        .await;
                    buf = slice.into_inner();
                    if written.is_err() {
                        return;
                    }
                }
            });
        }
    })
}
