//! Benchmark peer: tokio-tungstenite's echo server (its examples/echo-server.rs)
//! with the replies upper-cased: multi-thread runtime, a task per
//! connection, tungstenite's default configuration (128 KiB read and write
//! buffers, 64 MiB messages).
//! `cargo run --release --manifest-path peers/Cargo.toml --bin ws_tungstenite -- 127.0.0.1:9000`.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::{Bytes, Message};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                let reply = match message {
                    Message::Text(text) => Message::text(text.as_str().to_ascii_uppercase()),
                    Message::Binary(data) => Message::Binary(Bytes::from(data.to_ascii_uppercase())),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if ws.send(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}
