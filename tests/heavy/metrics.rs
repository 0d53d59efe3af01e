//! The metrics endpoint under many idle clients: a scrape is answered at
//! once however many connections sit there saying nothing or half a request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::exclusive;
use crate::support::ServerProcess;

/// Idle connections opened before the scrape.
const IDLE: usize = 1000;
/// The bound for a scrape beside them; measured: a few milliseconds.
const SCRAPE_BOUND: Duration = Duration::from_secs(1);

/// `GET /metrics` on a new connection, read to EOF; gives up after `limit`.
fn scrape(addr: SocketAddr, limit: Duration) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, limit).expect("connect to metrics");
    stream.set_read_timeout(Some(limit)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: upecho\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// How long a scrape takes beside `idle` connections to the metrics
/// endpoint, half of which sent one byte of a request and stopped, half
/// nothing. Asserts the reply is a 200.
fn scrape_beside(idle: usize) -> Duration {
    upecho::endpoint::raise_fd_limit().expect("raise the test's descriptor limit");
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0"], 2);
    let metrics = server.addrs[1];
    let idle: Vec<TcpStream> = (0..idle)
        .map(|n| {
            let mut stream = TcpStream::connect(metrics).expect("an idle connection");
            if n % 2 == 0 {
                stream.write_all(b"G").unwrap();
            }
            stream
        })
        .collect();
    let started = Instant::now();
    // Patient enough to see how late a slow endpoint answers.
    let reply = scrape(metrics, 10 * SCRAPE_BOUND);
    let took = started.elapsed();
    eprintln!("scrape beside {} idle connections: {took:?}", idle.len());
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    took
}

#[test]
fn a_scrape_answers_within_a_second_beside_a_thousand_idle_connections() {
    let _serial = exclusive();
    let took = scrape_beside(IDLE);
    assert!(took < SCRAPE_BOUND, "the scrape took {took:?}");
}

#[test]
fn more_idle_connections_than_the_limit_do_not_hold_up_a_scrape() {
    let _serial = exclusive();
    // The endpoint serves 1,024 at once: past that the oldest make room.
    let took = scrape_beside(2 * IDLE);
    assert!(took < SCRAPE_BOUND, "the scrape took {took:?}");
}
