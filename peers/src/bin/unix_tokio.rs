//! Benchmark baseline: a single-threaded Tokio uppercase-echo server on a Unix
//! stream socket, a task and a 64 KiB buffer per connection — the Unix
//! counterpart of `single_thread.rs`.
//! `cargo run --release --manifest-path peers/Cargo.toml --bin unix_tokio -- /tmp/upecho.sock`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/upecho.sock".into());
    let listener = UnixListener::bind(&path)?;
    loop {
        let (mut socket, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf[..n].make_ascii_uppercase();
                if socket.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}
