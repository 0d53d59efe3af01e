//! `upecho serve --metrics`: Prometheus text at `GET /metrics`, the
//! contract's metric names, and an endpoint no slow client can block.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::support::{PATIENCE, ServerProcess, assert_error_line, exchange, run, wait_until};

/// Sends `request` on a new connection and reads the reply to EOF.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to metrics");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// `GET /metrics`: the whole reply, head and body.
pub(crate) fn scrape(addr: SocketAddr) -> String {
    http(addr, b"GET /metrics HTTP/1.1\r\nHost: upecho\r\n\r\n")
}

/// The value of the sample whose line starts with `series` followed by a space.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A server with a TCP, a UDP and the metrics listener, verbose (for the
/// "connection closed" log).
fn start() -> ServerProcess {
    let server = ServerProcess::start(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "-v",
        ],
        3,
    );
    assert!(server.ready_lines[0].starts_with("listening tcp 127.0.0.1:"));
    assert!(server.ready_lines[1].starts_with("listening udp 127.0.0.1:"));
    assert!(
        server.ready_lines[2].starts_with("listening metrics 127.0.0.1:"),
        "{:?}",
        server.ready_lines
    );
    assert_ne!(server.addrs[2].port(), 0, "the real port is printed");
    server
}

/// Every metric name of the contract has a sample in `body`.
fn assert_every_name_is_served(body: &str) {
    for name in [
        "upecho_connections_accepted_total",
        "upecho_connections_active",
        "upecho_connections_closed_total",
        "upecho_bytes_received_total",
        "upecho_bytes_sent_total",
        "upecho_datagrams_received_total",
        "upecho_datagrams_sent_total",
        "upecho_datagrams_dropped_total",
        "upecho_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(name)),
            "{name} missing in\n{body}"
        );
    }
}

#[test]
fn metrics_count_connections_bytes_and_datagrams_by_listener() {
    let server = start();
    let (tcp, udp, metrics) = (server.addrs[0], server.addrs[1], server.addrs[2]);
    let data = vec![b'x'; 1000];
    assert_eq!(exchange(tcp, &data), vec![b'X'; 1000]);
    server.wait_for_log("connection closed");

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"ping", udp).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"PING");
    // The socket adds its batch right after sending the reply, which may be
    // just after the client has it.
    let udp_sent = format!("upecho_datagrams_sent_total{{listener=\"udp {udp}\"}}");
    wait_until("the datagram counted", PATIENCE, || {
        value(&scrape(metrics), &udp_sent).is_some_and(|n| n >= 1.0)
    });

    let reply = scrape(metrics);
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("Connection: close"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a length")
        .parse()
        .unwrap();
    assert_eq!(length, body.len());

    assert_every_name_is_served(body);
    let tcp_label = format!("listener=\"tcp {tcp}\"");
    let udp_label = format!("listener=\"udp {udp}\"");
    let at = |series: String| value(body, &series).unwrap_or_else(|| panic!("{series} in\n{body}"));
    assert!(at(format!("upecho_connections_accepted_total{{{tcp_label}}}")) >= 1.0);
    assert_eq!(at(format!("upecho_connections_active{{{tcp_label}}}")), 0.0);
    assert_eq!(
        at(format!("upecho_bytes_received_total{{{tcp_label}}}")),
        1000.0
    );
    assert_eq!(
        at(format!("upecho_bytes_sent_total{{{tcp_label}}}")),
        1000.0
    );
    assert!(
        at(format!(
            "upecho_connections_closed_total{{{tcp_label},reason=\"peer\"}}"
        )) >= 1.0
    );
    assert!(at(format!("upecho_datagrams_received_total{{{udp_label}}}")) >= 1.0);
    assert!(at(format!("upecho_datagrams_sent_total{{{udp_label}}}")) >= 1.0);
    assert_eq!(at("upecho_build_info{version=\"0.1.0\"}".into()), 1.0);
    assert!(at("process_resident_memory_bytes".into()) > 0.0);
    assert!(at("process_open_fds".into()) > 0.0);
}

#[test]
fn an_unanswered_datagram_is_counted_under_its_reason_and_the_others_stay_at_zero() {
    let args = [
        "--udp",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--transform",
        "unicode",
    ];
    let server = ServerProcess::start(&args, 2);
    let (udp, metrics) = (server.addrs[0], server.addrs[1]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // 60,000 bytes that would grow to 180,000: too large to answer.
    client
        .send_to(&"ΐ".repeat(30_000).into_bytes(), udp)
        .unwrap();
    client.send_to(b"ping", udp).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"PING", "only the small one is answered");
    let label = format!("listener=\"udp {udp}\"");
    let series =
        |reason: &str| format!("upecho_datagrams_dropped_total{{{label},reason=\"{reason}\"}}");
    wait_until("the drop counted", PATIENCE, || {
        value(&scrape(metrics), &series("too_large")).is_some_and(|n| n >= 1.0)
    });
    let body = scrape(metrics);
    assert_eq!(value(&body, &series("too_large")), Some(1.0), "{body}");
    assert_eq!(value(&body, &series("loop")), Some(0.0), "{body}");
    assert_eq!(value(&body, &series("send_failed")), Some(0.0), "{body}");
}

#[test]
fn other_paths_methods_and_garbage_are_refused() {
    let server = start();
    let metrics = server.addrs[2];
    let other = http(metrics, b"GET /other HTTP/1.1\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
    let post = http(metrics, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let garbage = http(metrics, b"\x00\x01\x02 not http at all\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400 "),
        "{garbage}"
    );
    // An HTTP/1.0 request gets an HTTP/1.0 reply.
    let query = scrape_with_query(metrics);
    assert!(query.starts_with("HTTP/1.0 200 OK\r\n"), "{query}");
}

fn scrape_with_query(addr: SocketAddr) -> String {
    http(addr, b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n")
}

#[test]
fn a_stalled_client_does_not_block_a_scrape() {
    let server = start();
    let metrics = server.addrs[2];
    let mut stalled = TcpStream::connect(metrics).unwrap();
    stalled.write_all(b"GET /metr").unwrap();
    let started = Instant::now();
    let reply = scrape(metrics);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the scrape waited {:?}",
        started.elapsed()
    );
    // The data listener is not held up either.
    assert_eq!(exchange(server.addrs[0], b"still here"), b"STILL HERE");
    drop(stalled);
}

#[test]
fn metrics_on_a_port_in_use_is_one_error_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run(&[
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--metrics",
        &addr.to_string(),
    ]);
    assert_error_line(
        &out,
        &format!("error: cannot listen on metrics {addr}: address already in use"),
    );
    assert!(out.stdout.is_empty(), "no readiness line on failure");
}

#[test]
fn the_metrics_endpoint_stops_with_the_server() {
    let mut server = start();
    let metrics = server.addrs[2];
    assert!(scrape(metrics).starts_with("HTTP/1.1 200 OK"));
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(PATIENCE).success());
    assert!(
        TcpStream::connect(metrics).is_err(),
        "the endpoint is closed"
    );
}

#[test]
fn an_idle_close_and_a_proxy_header_failure_are_counted_by_reason() {
    let server = ServerProcess::start(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--idle-timeout",
            "0.3",
            "--proxy-protocol",
            "--proxy-timeout",
            "30",
        ],
        2,
    );
    let (tcp, metrics) = (server.addrs[0], server.addrs[1]);
    let closed_by_server = |request: &[u8]| {
        let mut stream = TcpStream::connect(tcp).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.write_all(request).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    };
    closed_by_server(b"not a proxy header\r\n");
    closed_by_server(b"");
    let closed = |reason: &str| {
        let series = format!(
            "upecho_connections_closed_total{{listener=\"tcp {tcp}\",reason=\"{reason}\"}}"
        );
        value(&scrape(metrics), &series)
    };
    wait_until("both closes counted", PATIENCE, || {
        closed("proxy_header") == Some(1.0) && closed("idle") == Some(1.0)
    });
    let body = scrape(metrics);
    let active = format!("upecho_connections_active{{listener=\"tcp {tcp}\"}}");
    assert_eq!(value(&body, &active), Some(0.0), "{body}");
}

/// The status line of `GET path` on a new connection.
fn status_of(addr: SocketAddr, path: &str) -> String {
    let reply = http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: upecho\r\n\r\n").as_bytes(),
    );
    reply.lines().next().unwrap_or_default().to_string()
}

#[test]
fn healthz_is_ok_while_serving_and_only_get_is_allowed() {
    let server = start();
    let metrics = server.addrs[2];
    let reply = http(metrics, b"GET /healthz HTTP/1.1\r\nHost: upecho\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        reply.ends_with("\r\n\r\nok\n") || reply.ends_with("\r\n\r\nok"),
        "{reply}"
    );
    let post = http(
        metrics,
        b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("Allow: GET\r\n"), "{post}");
    assert_eq!(status_of(metrics, "/healthz/x"), "HTTP/1.1 404 Not Found");
}

#[test]
fn during_the_drain_healthz_is_503_and_metrics_still_answer() {
    let mut server = ServerProcess::start(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--shutdown-grace",
            "20",
        ],
        2,
    );
    let (tcp, metrics) = (server.addrs[0], server.addrs[1]);
    // An open connection keeps the drain waiting.
    let mut client = TcpStream::connect(tcp).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"hi\n").unwrap();
    let mut echoed = [0u8; 3];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(status_of(metrics, "/healthz"), "HTTP/1.1 200 OK");

    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_for_log("waiting for open connections to finish");
    assert!(
        TcpStream::connect(tcp).is_err(),
        "the data listener is closed"
    );
    assert_eq!(
        status_of(metrics, "/healthz"),
        "HTTP/1.1 503 Service Unavailable"
    );
    let reply = scrape(metrics);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("upecho_connections_active"), "{reply}");

    drop(client);
    assert!(server.wait_exit(PATIENCE).success());
    assert!(
        TcpStream::connect(metrics).is_err(),
        "the endpoint is closed at exit"
    );
}

#[test]
fn a_request_head_past_the_bounds_is_refused_with_431() {
    let server = start();
    let metrics = server.addrs[2];
    let mut long = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 9000));
    long.extend_from_slice(b"\r\n\r\n");
    let reply = http(metrics, &long);
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
    for n in 0..100 {
        many.extend_from_slice(format!("X-{n}: a\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let reply = http(metrics, &many);
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    // The endpoint still answers.
    assert_eq!(status_of(metrics, "/healthz"), "HTTP/1.1 200 OK");
}
