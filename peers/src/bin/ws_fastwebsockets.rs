//! Benchmark peer: fastwebsockets' echo server (its examples/echo_server.rs,
//! on hyper's upgrade) with the replies upper-cased: multi-thread runtime, a
//! task per connection, fragments collected into whole messages.
//! `cargo run --release --manifest-path peers/Cargo.toml --bin ws_fastwebsockets -- 127.0.0.1:9000`.

use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), fastwebsockets::WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => {
                let mut data = frame.payload.to_vec();
                data.make_ascii_uppercase();
                ws.write_frame(Frame::new(true, frame.opcode, None, Payload::Owned(data)))
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

async fn serve(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, fastwebsockets::WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

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
            let io = TokioIo::new(stream);
            let _ = http1::Builder::new()
                .serve_connection(io, service_fn(serve))
                .with_upgrades()
                .await;
        });
    }
}
