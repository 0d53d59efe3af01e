//! `upecho serve --proxy-protocol` and `--proxy-from`: the PROXY protocol
//! header (v1, v2) is read first and never echoed, the client it names is the
//! connection's peer in the log, and a connection without a valid header in
//! time is closed with nothing echoed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{PATIENCE, ServerProcess, TempDir};

/// A v1 header naming client 203.0.113.7:4711.
const V1: &[u8] = b"PROXY TCP4 203.0.113.7 192.0.2.1 4711 80\r\n";

/// Starts a server on loopback TCP expecting PROXY headers, logging each
/// connection as JSON; `extra` are further flags.
fn server(extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        "--tcp",
        "127.0.0.1:0",
        "--proxy-protocol",
        "-v",
        "--log-format",
        "json",
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(&args, 1)
}

/// A connection to the server, with reads bounded by `PATIENCE`.
fn connect(server: &ServerProcess) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Half-closes and reads everything until the server closes.
fn finish(mut stream: TcpStream) -> Vec<u8> {
    stream.shutdown(Shutdown::Write).unwrap();
    read_to_close(&mut stream)
}

/// Reads until the server closes (EOF or reset), within `PATIENCE`.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
        Err(err) => panic!("the server did not close the connection: {err}"),
    }
    reply
}

/// The `connection closed` event of the server's (only) connection, once
/// logged.
fn closed_event(server: &ServerProcess) -> Value {
    server.wait_for_log("connection closed");
    let line = server
        .stderr_so_far()
        .into_iter()
        .find(|line| line.contains("connection closed"))
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"))
}

/// A v2 PROXY header naming client 198.51.100.9:5000, with two TLVs.
fn v2_with_tlvs() -> Vec<u8> {
    use ppp::v2::{Builder, Command, IPv4, Protocol, Type, Version};
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        IPv4::new([198, 51, 100, 9], [192, 0, 2, 1], 5000, 80),
    )
    .write_tlv(Type::Authority, b"example.com")
    .unwrap()
    .write_tlv(Type::NoOp, &[0; 40])
    .unwrap()
    .build()
    .unwrap()
}

#[test]
fn v1_header_split_across_writes_is_not_echoed_and_names_the_peer() {
    let server = server(&[]);
    let mut stream = connect(&server);
    stream.write_all(&V1[..20]).unwrap();
    stream.flush().unwrap();
    stream.write_all(&V1[20..]).unwrap();
    stream.write_all(b"hello proxy").unwrap();
    let mut reply = [0u8; 11];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"HELLO PROXY");
    assert_eq!(finish(stream), b"");
    let event = closed_event(&server);
    assert_eq!(event["peer"], "203.0.113.7:4711", "{event}");
    assert_eq!(event["bytes_in"], 11, "the header is not payload: {event}");
}

#[test]
fn header_and_payload_in_one_write_lose_no_byte() {
    let server = server(&[]);
    let mut stream = connect(&server);
    let mut bytes = V1.to_vec();
    bytes.extend_from_slice(b"abc\ndef");
    stream.write_all(&bytes).unwrap();
    assert_eq!(finish(stream), b"ABC\nDEF");
    assert_eq!(closed_event(&server)["peer"], "203.0.113.7:4711");
}

#[test]
fn v2_header_with_tlvs_is_not_echoed_and_names_the_peer() {
    let server = server(&[]);
    let mut stream = connect(&server);
    let mut bytes = v2_with_tlvs();
    bytes.extend_from_slice(b"over v2");
    stream.write_all(&bytes).unwrap();
    assert_eq!(finish(stream), b"OVER V2");
    assert_eq!(closed_event(&server)["peer"], "198.51.100.9:5000");
}

#[test]
fn v2_local_is_served_with_the_socket_peer() {
    use ppp::v2::{Builder, Command, Version};
    let server = server(&[]);
    let mut stream = connect(&server);
    let own = stream.local_addr().unwrap();
    let mut bytes = Builder::new(Version::Two | Command::Local, 0x00)
        .build()
        .unwrap();
    bytes.extend_from_slice(b"health check");
    stream.write_all(&bytes).unwrap();
    assert_eq!(finish(stream), b"HEALTH CHECK");
    assert_eq!(closed_event(&server)["peer"], own.to_string());
}

#[test]
fn garbage_first_is_closed_with_nothing_echoed() {
    let server = server(&[]);
    assert_closed_for_its_header(&server, b"hello\r\n");
}

/// Sends `first` where a header is expected and checks that the server closes
/// the connection without echoing a byte, logging `proxy_header`.
fn assert_closed_for_its_header(server: &ServerProcess, first: &[u8]) {
    let mut stream = connect(server);
    stream.write_all(first).unwrap();
    assert_eq!(read_to_close(&mut stream), b"");
    let event = closed_event(server);
    assert!(
        event["end"].as_str().unwrap().starts_with("proxy_header"),
        "{event}"
    );
}

#[test]
fn sender_outside_proxy_from_is_served_without_header() {
    let server = server(&["--proxy-from", "10.0.0.0/8"]);
    let mut stream = connect(&server);
    let own = stream.local_addr().unwrap();
    stream.write_all(b"direct").unwrap();
    assert_eq!(finish(stream), b"DIRECT");
    assert_eq!(closed_event(&server)["peer"], own.to_string());
}

#[test]
fn sender_inside_proxy_from_without_header_is_closed() {
    let server = server(&["--proxy-from", "127.0.0.0/8", "--proxy-from", "::1/128"]);
    assert_closed_for_its_header(&server, b"direct\r\n");
}

#[test]
fn half_a_header_is_closed_after_the_deadline() {
    let server = server(&["--proxy-timeout", "0.3"]);
    let mut stream = connect(&server);
    let sent = Instant::now();
    stream.write_all(&V1[..15]).unwrap();
    assert_eq!(read_to_close(&mut stream), b"");
    assert!(sent.elapsed() >= Duration::from_millis(300));
    let event = closed_event(&server);
    assert!(
        event["end"]
            .as_str()
            .unwrap()
            .contains("not complete in time"),
        "{event}"
    );
}

#[test]
fn unix_socket_clients_send_a_header_unless_a_source_list_leaves_them_out() {
    use std::os::unix::net::UnixStream;
    let dir = TempDir::new();
    let path = dir.path("proxy.sock");
    let server = ServerProcess::start(
        &[
            "--unix",
            &path,
            "--proxy-protocol",
            "-v",
            "--log-format",
            "json",
        ],
        1,
    );
    let mut with_header = UnixStream::connect(&path).unwrap();
    with_header.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut bytes = V1.to_vec();
    bytes.extend_from_slice(b"via unix");
    with_header.write_all(&bytes).unwrap();
    with_header.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    with_header.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"VIA UNIX");
    assert_eq!(closed_event(&server)["peer"], "203.0.113.7:4711");

    let mut without = UnixStream::connect(&path).unwrap();
    without.set_read_timeout(Some(PATIENCE)).unwrap();
    without.write_all(b"no header\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = without.read_to_end(&mut reply);
    assert_eq!(reply, b"");
    server.wait_for_log("proxy_header");

    // With a source list, a Unix client is not in it: served directly.
    let listed = dir.path("listed.sock");
    let server = ServerProcess::start(&["--unix", &listed, "--proxy-from", "127.0.0.0/8"], 1);
    assert_eq!(
        crate::support::exchange_unix(&listed, b"no header needed"),
        b"NO HEADER NEEDED"
    );
    drop(server);
}

#[test]
fn proxy_from_that_is_not_a_network_is_a_usage_error() {
    let out = crate::support::run(&["serve", "--proxy-from", "10.0.0.0/33"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
}
