//! `upecho bench --threads N`: the connections are spread over N generator
//! threads and their figures merged, so a run on two threads measures the
//! same server the same way as a run on one.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use crate::bench::bench_for;
use crate::support::{ServerProcess, assert_passes, run, upper};

/// What the counting server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    bytes: AtomicU64,
}

/// An upper-casing echo server on 127.0.0.1:0 that counts the connections
/// it accepts and the bytes it receives.
fn counting_server() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Seen::default());
    let counts = Arc::clone(&seen);
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            counts.connections.fetch_add(1, Ordering::Relaxed);
            let counts = Arc::clone(&counts);
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if conn.write_all(&upper(&buf[..n])).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn two_threads_open_every_connection_and_merge_every_reply() {
    let (addr, seen) = counting_server();
    let out = bench_for("1", &addr, &["--connections", "5", "--threads", "2"]);
    let report = assert_passes(&out);
    assert_eq!(report["connections"], 5, "{report}");
    assert_eq!(
        report["starved"], 0,
        "every connection of both threads replied: {report}"
    );
    assert_eq!(seen.connections.load(Ordering::Relaxed), 5);
    // Every byte counted as verified was sent to and seen by the server.
    let verified = report["bytes"].as_u64().unwrap();
    assert!(
        verified > 0 && verified <= seen.bytes.load(Ordering::Relaxed),
        "{report}"
    );
    assert_eq!(
        verified,
        report["requests"].as_u64().unwrap() * 64,
        "{report}"
    );
}

#[test]
fn more_threads_than_connections_run_one_thread_per_connection() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let out = bench_for(
        "1",
        &server.addr_arg(),
        &["--threads", "8", "--mode", "stream"],
    );
    let report = assert_passes(&out);
    assert_eq!(report["connections"], 1, "{report}");
    assert!(report["bytes"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn zero_threads_is_a_usage_error_naming_the_flag() {
    let out = run(&["bench", "127.0.0.1:9", "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
}

#[test]
fn at_a_fixed_rate_one_and_two_threads_send_the_same_messages() {
    let mut totals = Vec::new();
    for threads in ["1", "2"] {
        let (addr, seen) = counting_server();
        let out = bench_for(
            "1",
            &addr,
            &["--rate", "2000", "--connections", "4", "--threads", threads],
        );
        let report = assert_passes(&out);
        assert_eq!(seen.connections.load(Ordering::Relaxed), 4);
        totals.push((seen.bytes.load(Ordering::Relaxed) / 64, report));
    }
    // 2,000 per second over the 0.1 s warm-up and the 1 s window: 2,200
    // messages, whichever thread sends them (a few may be cut by the
    // window's end on a loaded machine, none doubled).
    for (sent, report) in &totals {
        assert!((2150..=2200).contains(sent), "{sent} messages: {report}");
    }
}
