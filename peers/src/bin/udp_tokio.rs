//! Benchmark baseline: the plain Tokio UDP uppercase-echo server — one
//! current-thread runtime, one socket, a `recv_from` / `send_to` loop over a
//! 64 KiB buffer. `cargo run --release --manifest-path peers/Cargo.toml --bin udp_tokio -- 127.0.0.1:9000`.

use tokio::net::UdpSocket;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let socket = UdpSocket::bind(&addr).await?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // A failed receive or send loses one datagram, as UDP may; go on.
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        buf[..n].make_ascii_uppercase();
        let _ = socket.send_to(&buf[..n], peer).await;
    }
}
