//! The hot path allocates nothing per message: a counting global allocator
//! (stats_alloc) watches the whole process while a client exchanges thousands
//! of messages with an in-process server. Its own binary, with one test, so
//! nothing else allocates meanwhile.

use std::alloc::System;
use std::io::{Read, Write};
use std::net::TcpStream;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use upecho::{Server, ServerConfig, ShutdownSignal};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Sends `rounds` messages and reads each reply completely. Allocates nothing:
/// std's blocking socket calls and fixed buffers only.
fn ping(stream: &mut TcpStream, message: &[u8], reply: &mut [u8], rounds: usize) {
    for _ in 0..rounds {
        stream.write_all(message).unwrap();
        stream.read_exact(reply).unwrap();
        assert_eq!(reply[0], b'A');
    }
}

#[test]
fn serving_messages_allocates_nothing_per_message() {
    let server = Server::bind(ServerConfig::tcp("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = server.local_addrs()[0];
    let signal = ShutdownSignal::new();
    let stop = signal.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(server.run(stop)).unwrap();
    });

    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();

    for size in [64usize, 4096, 60_000] {
        let message = vec![b'a'; size];
        let mut reply = vec![0u8; size];
        // Warm-up: the connection's buffer and timer are allocated once.
        ping(&mut stream, &message, &mut reply, 50);
        let region = Region::new(GLOBAL);
        ping(&mut stream, &message, &mut reply, 2_000);
        let change = region.change();
        assert_eq!(
            change.allocations + change.reallocations,
            0,
            "{size}-byte messages allocated: {change:?}"
        );
    }

    signal.begin();
    drop(stream);
    thread.join().unwrap();
}
