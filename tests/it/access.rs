//! `--allow`, `--deny` and their files: real distinct sources on loopback
//! (127.0.0.2 and 127.0.0.3; loopback is a /8), judged before a byte is read,
//! on TCP, UDP and behind PROXY; the files read again on SIGHUP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};

use nix::sys::signal::Signal;
use socket2::{Domain, Socket, Type};

use crate::metrics::{scrape, value};
use crate::support::{
    PATIENCE, ServerProcess, TempDir, assert_one_error_line, exchange_unix, run, wait_until,
};

/// A TCP connection to `server` from the loopback address `source`.
fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends `message` from `source` and returns what comes back before the
/// server closes: the reply if served, nothing if denied.
fn tcp_from(source: &str, server: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = connect_from(source, server);
    // A denied connection may be closed before this is sent: not an error.
    let _ = stream.write_all(message);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    // A reset (the server closed with our bytes unread) also means nothing came.
    let _ = stream.read_to_end(&mut reply);
    reply
}

/// A UDP socket on the loopback address `source`.
fn udp_from(source: &str) -> UdpSocket {
    let socket = UdpSocket::bind(format!("{source}:0")).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// A server with one UDP listener on 127.0.0.1 and the metrics listener,
/// with `flags`.
fn udp_server_with_metrics(flags: &[&str]) -> ServerProcess {
    let mut args = vec!["--udp", "127.0.0.1:0", "--metrics", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    ServerProcess::start(&args, 2)
}

/// The value of `series` on the server's metrics listener (the last
/// readiness line).
fn metric(server: &ServerProcess, series: &str) -> f64 {
    let metrics = *server.addrs.last().unwrap();
    value(&scrape(metrics), series).unwrap_or(0.0)
}

#[test]
fn only_allowed_sources_are_served_over_tcp_and_a_denied_one_is_closed_unread() {
    let server = ServerProcess::start(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--allow",
            "127.0.0.2",
            "--metrics",
            "127.0.0.1:0",
            "-v",
        ],
        2,
    );
    let addr = server.addrs[0];
    assert_eq!(tcp_from("127.0.0.2", addr, b"allowed"), b"ALLOWED");
    assert_eq!(tcp_from("127.0.0.3", addr, b"not me"), b"");
    let line = server.log_line("connection refused");
    assert!(
        line.contains("peer=127.0.0.3:") && line.contains("reason=denied"),
        "{line}"
    );
    let label = format!("listener=\"tcp {addr}\"");
    let denied = format!("upecho_connections_closed_total{{{label},reason=\"denied\"}}");
    assert_eq!(metric(&server, &denied), 1.0);
    let received = format!("upecho_bytes_received_total{{{label}}}");
    assert_eq!(
        metric(&server, &received),
        7.0,
        "not a byte of the denied one read"
    );
}

#[test]
fn deny_wins_over_allow() {
    let server = ServerProcess::start(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--allow",
            "127.0.0.0/8",
            "--deny",
            "127.0.0.3/32",
        ],
        1,
    );
    assert_eq!(tcp_from("127.0.0.2", server.addr(), b"two"), b"TWO");
    assert_eq!(tcp_from("127.0.0.3", server.addr(), b"three"), b"");
}

#[test]
fn a_denied_datagram_is_dropped_and_counted_and_others_answered() {
    let server = udp_server_with_metrics(&["--deny", "127.0.0.3"]);
    let addr = server.addrs[0];
    let denied = udp_from("127.0.0.3");
    denied.send_to(b"from three", addr).unwrap();
    let series =
        format!("upecho_datagrams_dropped_total{{listener=\"udp {addr}\",reason=\"denied\"}}");
    wait_until("the datagram is counted as denied", PATIENCE, || {
        metric(&server, &series) == 1.0
    });
    let allowed = udp_from("127.0.0.2");
    allowed.send_to(b"from two", addr).unwrap();
    let mut buf = [0u8; 64];
    let n = allowed.recv(&mut buf).expect("answered");
    assert_eq!(&buf[..n], b"FROM TWO");
    denied.set_nonblocking(true).unwrap();
    assert!(
        denied.recv(&mut buf).is_err(),
        "the denied source got a reply"
    );
}

#[test]
fn behind_proxy_the_client_the_header_names_is_judged_not_the_balancer() {
    // The balancer is 127.0.0.1 and is itself in a denied network: only the
    // clients its headers name count.
    let server = ServerProcess::start(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--proxy-protocol",
            "--deny",
            "203.0.113.0/24",
            "--deny",
            "127.0.0.1",
        ],
        1,
    );
    let proxied = |header: &[u8]| {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut sent = header.to_vec();
        sent.extend_from_slice(b"payload");
        let _ = stream.write_all(&sent);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        reply
    };
    assert_eq!(
        proxied(b"PROXY TCP4 198.51.100.7 192.0.2.1 4711 80\r\n"),
        b"PAYLOAD"
    );
    assert_eq!(
        proxied(b"PROXY TCP4 203.0.113.7 192.0.2.1 4711 80\r\n"),
        b""
    );
}

#[test]
fn a_unix_listener_has_no_source_address_and_is_not_judged() {
    let dir = TempDir::new();
    let path = dir.path("open.sock");
    let _server = ServerProcess::start(&["--unix", &path, "--allow", "127.0.0.2"], 1);
    assert_eq!(exchange_unix(&path, b"no address"), b"NO ADDRESS");
}

#[test]
fn sighup_reads_the_deny_file_again_and_a_bad_one_keeps_the_old_rules() {
    let dir = TempDir::new();
    let file = dir.path("deny.txt");
    std::fs::write(&file, "# nobody yet\n").unwrap();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--deny-file", &file], 1);
    assert_eq!(tcp_from("127.0.0.3", server.addr(), b"before"), b"BEFORE");
    std::fs::write(&file, "127.0.0.3 # now denied\n").unwrap();
    server.signal(Signal::SIGHUP);
    server.wait_for_log("access files read again");
    assert_eq!(tcp_from("127.0.0.3", server.addr(), b"after"), b"");
    assert_eq!(tcp_from("127.0.0.2", server.addr(), b"two"), b"TWO");
    std::fs::write(&file, "127.0.0.300\n").unwrap();
    server.signal(Signal::SIGHUP);
    let warning = server.log_line("the old access rules stay");
    assert!(
        warning.contains("deny.txt") && warning.contains("line 1"),
        "{warning}"
    );
    assert_eq!(tcp_from("127.0.0.3", server.addr(), b"still"), b"");
}

#[test]
fn a_bad_network_is_a_usage_error_and_a_bad_file_an_error_naming_it() {
    let out = run(&["serve", "--tcp", "127.0.0.1:0", "--allow", "127.0.0.0/33"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(assert_one_error_line(&out).contains("'127.0.0.0/33' is not a network"));
    let dir = TempDir::new();
    let file = dir.path("allow.txt");
    std::fs::write(&file, "127.0.0.2\nlocalhost\n").unwrap();
    let out = run(&["serve", "--tcp", "127.0.0.1:0", "--allow-file", &file]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        assert_one_error_line(&out),
        format!(
            "error: cannot read --allow-file {file}: line 2: 'localhost' is not a network \
             (CIDR such as 127.0.0.0/8) or an address\n"
        )
    );
    let out = run(&[
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--deny-file",
        &dir.path("none"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(assert_one_error_line(&out).ends_with("none: no such file or directory\n"));
}

#[test]
fn max_per_source_closes_one_connection_too_many_from_one_source_only() {
    let server = ServerProcess::start(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--max-per-source",
            "2",
            "--metrics",
            "127.0.0.1:0",
        ],
        2,
    );
    let addr = server.addrs[0];
    let round_trip = |stream: &mut TcpStream, word: &[u8]| {
        stream.write_all(word).unwrap();
        let mut reply = vec![0; word.len()];
        stream.read_exact(&mut reply).map(|()| reply)
    };
    // Two open from 127.0.0.2 (each answered, so each is surely accepted).
    let mut one = connect_from("127.0.0.2", addr);
    let mut two = connect_from("127.0.0.2", addr);
    assert_eq!(round_trip(&mut one, b"one").unwrap(), b"ONE");
    assert_eq!(round_trip(&mut two, b"two").unwrap(), b"TWO");
    assert_eq!(
        tcp_from("127.0.0.2", addr, b"three"),
        b"",
        "a third is closed"
    );
    assert_eq!(
        tcp_from("127.0.0.3", addr, b"other"),
        b"OTHER",
        "another source"
    );
    let series =
        format!("upecho_connections_closed_total{{listener=\"tcp {addr}\",reason=\"per_source\"}}");
    assert_eq!(metric(&server, &series), 1.0);
    // One closes: its source has a slot again.
    drop(one);
    wait_until("the closed one is counted", PATIENCE, || {
        let peer =
            format!("upecho_connections_closed_total{{listener=\"tcp {addr}\",reason=\"peer\"}}");
        metric(&server, &peer) >= 2.0
    });
    assert_eq!(tcp_from("127.0.0.2", addr, b"again"), b"AGAIN");
    assert_eq!(round_trip(&mut two, b"still").unwrap(), b"STILL");
}

#[test]
fn behind_proxy_the_per_source_limit_counts_the_named_clients() {
    // Every connection comes from the balancer (127.0.0.1); the limit is
    // per client its headers name.
    let server = ServerProcess::start(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--proxy-protocol",
            "--max-per-source",
            "1",
        ],
        1,
    );
    let open = |client: &str| {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let header = format!("PROXY TCP4 {client} 192.0.2.1 4711 80\r\nhi");
        stream.write_all(header.as_bytes()).unwrap();
        let mut reply = [0u8; 2];
        let answered = stream.read_exact(&mut reply).is_ok() && &reply == b"HI";
        (stream, answered)
    };
    let (_first, answered) = open("198.51.100.1");
    assert!(answered);
    let (_other, answered) = open("198.51.100.2");
    assert!(answered, "another client behind the same balancer");
    let (_second, answered) = open("198.51.100.1");
    assert!(!answered, "a second from the same client is closed");
}

#[test]
fn udp_rate_answers_a_burst_then_drops_and_counts_while_other_sources_are_answered() {
    let server = udp_server_with_metrics(&["--udp-rate", "1"]);
    let addr = server.addrs[0];
    let flood = udp_from("127.0.0.2");
    let started = std::time::Instant::now();
    for _ in 0..20 {
        flood.send_to(b"again", addr).unwrap();
    }
    let label = format!("listener=\"udp {addr}\"");
    let received = format!("upecho_datagrams_received_total{{{label}}}");
    wait_until("all 20 received", PATIENCE, || {
        metric(&server, &received) == 20.0
    });
    let elapsed = started.elapsed().as_secs_f64();
    let limited = metric(
        &server,
        &format!("upecho_datagrams_dropped_total{{{label},reason=\"rate_limited\"}}"),
    );
    let sent = metric(&server, &format!("upecho_datagrams_sent_total{{{label}}}"));
    assert_eq!(sent + limited, 20.0);
    // A burst of 1, then 1 a second.
    assert!(
        sent >= 1.0 && sent <= 1.0 + elapsed.ceil(),
        "{sent} answered in {elapsed:.2} s"
    );
    let other = udp_from("127.0.0.3");
    other.send_to(b"other", addr).unwrap();
    let mut buf = [0u8; 16];
    let n = other
        .recv(&mut buf)
        .expect("another source has its own bucket");
    assert_eq!(&buf[..n], b"OTHER");
}

#[test]
fn an_open_udp_listener_without_a_rate_is_warned_of_at_start() {
    // Every line is in once the server has stopped.
    let all_lines = |args: &[&str], listeners| {
        let mut server = ServerProcess::start(args, listeners);
        server.signal(Signal::SIGTERM);
        assert!(server.wait_exit(PATIENCE).success());
        server.wait_for_log("server stopped");
        server.stderr_so_far()
    };
    let open = all_lines(&["--udp", "0.0.0.0:0", "--udp", "127.0.0.1:0"], 2);
    let warned: Vec<_> = open
        .iter()
        .filter(|l| l.contains("abused as a reflector"))
        .collect();
    assert_eq!(
        warned.len(),
        1,
        "the loopback listener is not warned of: {open:?}"
    );
    assert!(
        warned[0].contains("WARN") && warned[0].contains("udp 0.0.0.0:"),
        "{warned:?}"
    );
    let limited = all_lines(&["--udp", "0.0.0.0:0", "--udp-rate", "100"], 1);
    assert!(
        !limited.iter().any(|l| l.contains("reflector")),
        "{limited:?}"
    );
}
