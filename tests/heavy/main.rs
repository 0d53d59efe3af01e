//! Heavy integration tests: many connections and large streams. They run one
//! at a time (a process-wide lock) so they do not starve each other on a small
//! machine; cargo runs this binary after the light one, never beside it.

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod bench;
mod faults;
mod metrics;

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{ServerProcess, exchange, random_bytes, upper};

/// Serialises the tests of this binary.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub(crate) fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bound for a whole heavy test; on an idle machine each takes under 2 s.
pub(crate) const HEAVY_PATIENCE: Duration = Duration::from_secs(120);

#[test]
fn four_mib_then_half_close_returns_all_of_it_then_eof() {
    let _serial = exclusive();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let data = random_bytes(42, 4 << 20);
    let reply = exchange(server.addr(), &data);
    assert_eq!(reply.len(), data.len(), "every byte comes back, then EOF");
    assert!(reply == upper(&data), "reply differs from bytes.upper()");
}

/// Sends about 16 KiB in 3,000-byte writes, half-closes, and returns true if
/// and only if the whole reply equals `bytes.upper()` of what was sent.
async fn verified_exchange(addr: std::net::SocketAddr, seed: u64) -> bool {
    let data = random_bytes(seed, 16 * 1024 + seed as usize);
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    let expected = upper(&data);
    let writer = tokio::spawn(async move {
        for piece in data.chunks(3000) {
            tx.write_all(piece).await.unwrap();
        }
        tx.shutdown().await.unwrap();
    });
    let mut reply = Vec::new();
    rx.read_to_end(&mut reply).await.unwrap();
    writer.await.unwrap();
    reply == expected
}

#[test]
fn two_hundred_clients_are_served_beside_stalled_ones() {
    let _serial = exclusive();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let addr = server.addr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // Five clients that connect and say nothing.
        let mut silent = Vec::new();
        for _ in 0..5 {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        // Five that send 8 MiB and never read: they fill their socket buffers
        // and stall the server's writes to them, forever.
        let mut blasters = Vec::new();
        for seed in 0..5u64 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            blasters.push(tokio::spawn(async move {
                let data = random_bytes(1000 + seed, 8 << 20);
                let _ = stream.write_all(&data).await;
                stream // kept open, unread, until the test ends
            }));
        }

        // Two hundred well-behaved clients at once, each verified.
        let clients: Vec<_> = (0..200u64)
            .map(|seed| tokio::spawn(verified_exchange(addr, seed)))
            .collect();
        let verified = tokio::time::timeout(HEAVY_PATIENCE, async {
            let mut ok = 0;
            for client in clients {
                if client.await.unwrap() {
                    ok += 1;
                }
            }
            ok
        })
        .await
        .expect("the 200 clients finish while their neighbours stall");
        assert_eq!(
            verified, 200,
            "every reply equals bytes.upper() of its request"
        );

        for blaster in blasters {
            blaster.abort();
        }
        drop(silent);
    });
}
