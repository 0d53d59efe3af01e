//! `upecho serve --log-format text|json`: what the log lines on stderr look
//! like, and that the fatal `error:` line stays plain whatever the format.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{PATIENCE, ServerProcess, assert_error_line, assert_one_error_line, run};

/// Returns true if and only if `text` is an RFC 3339 timestamp in UTC:
/// `YYYY-MM-DDTHH:MM:SS`, optional decimals, then `Z`.
fn is_rfc3339_utc(text: &str) -> bool {
    let Some(rest) = text.strip_suffix('Z') else {
        return false;
    };
    let (whole, fraction) = rest.split_once('.').unwrap_or((rest, "0"));
    let shape = whole.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        _ => b.is_ascii_digit(),
    });
    shape
        && whole.len() == 19
        && !fraction.is_empty()
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// Parses one stderr line as a JSON object, panicking with the line if it is
/// not one.
fn object(line: &str) -> Value {
    match serde_json::from_str(line) {
        Ok(value @ Value::Object(_)) => value,
        other => panic!("not a JSON object: {line:?} ({other:?})"),
    }
}

/// The one event whose message is `message`.
fn the_event<'a>(events: &'a [Value], message: &str) -> &'a Value {
    let found: Vec<_> = events.iter().filter(|e| e["message"] == message).collect();
    assert_eq!(found.len(), 1, "one {message:?} event in {events:#?}");
    found[0]
}

#[test]
fn json_log_lines_are_objects_with_the_event_fields_at_the_top_level() {
    let mut server =
        ServerProcess::start(&["--tcp", "127.0.0.1:0", "--log-format", "json", "-v"], 1);
    let listener = server.ready_lines[0]
        .strip_prefix("listening ")
        .expect("readiness line")
        .to_string();
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let peer = stream.local_addr().unwrap().to_string();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"hello").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"HELLO");
    server.wait_for_log("connection closed");
    server.signal(Signal::SIGTERM);
    server.wait_for_log("server stopped");
    assert!(server.wait_exit(PATIENCE).success());

    let lines = server.stderr_so_far();
    let events: Vec<_> = lines.iter().map(String::as_str).map(object).collect();
    for event in &events {
        let timestamp = event["timestamp"].as_str().unwrap_or_default();
        assert!(is_rfc3339_utc(timestamp), "timestamp in {event}");
        let level = event["level"].as_str().unwrap_or_default();
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "level in {event}"
        );
        assert!(event["message"].is_string(), "message in {event}");
        for nested in ["fields", "span", "spans"] {
            assert!(event.get(nested).is_none(), "{nested} in {event}");
        }
        if event.get("peer").is_some() {
            assert_eq!(event["listener"], listener.as_str(), "listener in {event}");
        }
    }

    let accepting = the_event(&events, "accepting connections");
    assert_eq!(accepting["listener"], listener.as_str());
    let opened = the_event(&events, "connection opened");
    assert_eq!(opened["peer"], peer.as_str());
    let closed = the_event(&events, "connection closed");
    assert_eq!(closed["level"], "DEBUG");
    assert_eq!(closed["listener"], listener.as_str());
    assert_eq!(closed["peer"], peer.as_str());
    assert_eq!(closed["bytes_in"], 5);
    assert_eq!(closed["bytes_out"], 5);
    assert_eq!(closed["end"], "peer finished");
}

#[test]
fn text_is_the_default_log_format_and_its_lines_are_not_json() {
    for format in [&[][..], &["--log-format", "text"][..]] {
        let mut args = vec!["--tcp", "127.0.0.1:0"];
        args.extend_from_slice(format);
        let server = ServerProcess::start(&args, 1);
        let listener = server.ready_lines[0].strip_prefix("listening ").unwrap();
        server.wait_for_log("accepting connections");
        let lines = server.stderr_so_far();
        let line = lines
            .iter()
            .find(|l| l.contains("accepting connections"))
            .unwrap();
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "{format:?}: {line}"
        );
        assert!(
            line.contains(&format!(" INFO accepting connections listener={listener} ")),
            "{format:?}: {line}"
        );
    }
}

#[test]
fn a_fatal_error_stays_one_plain_line_with_json_logs() {
    let first = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let addr = first.addr_arg();
    let out = run(&["serve", "--tcp", &addr, "--log-format", "json"]);
    assert_error_line(
        &out,
        &format!("error: cannot listen on tcp {addr}: address already in use"),
    );
    assert!(out.stdout.is_empty(), "no readiness line on failure");
}

#[test]
fn an_unknown_log_format_is_a_usage_error_with_exit_2() {
    let out = run(&["serve", "--tcp", "127.0.0.1:0", "--log-format", "xml"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = assert_one_error_line(&out);
    assert!(line.contains("--log-format"), "{line}");
    assert!(out.stdout.is_empty(), "never started: {out:?}");
}

#[test]
fn a_unix_peer_path_with_control_characters_cannot_forge_a_log_line() {
    let dir = crate::support::TempDir::new();
    let socket = dir.path("s.sock");
    let mut server = ServerProcess::start(&["--unix", &socket, "-v"], 1);
    // A client bound to a path that holds a whole fake log line and a colour.
    let forged = "2026-01-01T00:00:00.000000Z  INFO server stopped";
    let client_path = dir.path(&format!("c\n{forged}\x1b[31m"));
    let client = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    client
        .bind(&socket2::SockAddr::unix(&client_path).unwrap())
        .unwrap();
    client
        .connect(&socket2::SockAddr::unix(&socket).unwrap())
        .unwrap();
    let mut stream: std::os::unix::net::UnixStream = client.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"hi").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"HI");
    server.wait_for_log("connection closed");
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(PATIENCE).success());
    let lines = server.stderr_so_far();
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with(forged) && !l.contains('\x1b')),
        "a raw control character reached the log: {lines:#?}"
    );
    assert!(
        lines.iter().any(
            |l| l.contains("connection opened") && l.contains(&format!("\\n{forged}\\x1b[31m"))
        ),
        "the peer is logged, escaped: {lines:#?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.ends_with("INFO server stopped"))
            .count(),
        1,
        "{lines:#?}"
    );
}
