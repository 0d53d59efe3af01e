//! `upecho serve` over TCP: the transform on the wire, readiness, limits,
//! listener errors.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{
    PATIENCE, ServerProcess, assert_error_line, assert_one_error_line, exchange, run, upper,
};

#[test]
fn all_256_byte_values_come_back_as_bytes_upper() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let all: Vec<u8> = (0..=255).collect();
    let reply = exchange(server.addr(), &all);
    assert_eq!(reply, upper(&all));
    assert_eq!(
        &reply[b'a' as usize..=b'z' as usize],
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    );
}

#[test]
fn transform_none_echoes_every_byte_unchanged() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--transform", "none"], 1);
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(exchange(server.addr(), &all), all);
}

#[test]
fn a_chunk_without_newline_is_answered_without_closing() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    for word in [&b"hello"[..], b"again, no newline"] {
        stream.write_all(word).unwrap();
        let mut reply = vec![0u8; word.len()];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply, upper(word));
    }
}

#[test]
fn readiness_lines_follow_flag_order_and_are_the_only_stdout() {
    let mut server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--tcp", "[::1]:0"], 2);
    assert!(server.ready_lines[0].starts_with("listening tcp 127.0.0.1:"));
    assert!(server.ready_lines[1].starts_with("listening tcp [::1]:"));
    assert_ne!(server.addrs[0].port(), 0, "the real port is printed");
    for addr in server.addrs.clone() {
        assert_eq!(exchange(addr, b"both families"), b"BOTH FAMILIES");
    }
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(PATIENCE).success());
    assert_eq!(server.extra_stdout(), Vec::<String>::new());
}

#[test]
fn ipv6_listener_is_ipv6_only_so_both_wildcards_can_be_served() {
    // The same port on [::] and 0.0.0.0 only works if the IPv6 socket does not
    // also claim IPv4.
    let first = ServerProcess::start(&["--tcp", "[::1]:0"], 1);
    let port = first.addr().port();
    let v4 = format!("127.0.0.1:{port}");
    let second = ServerProcess::start(&["--tcp", &v4], 1);
    assert_eq!(exchange(second.addr(), b"v4"), b"V4");
    assert_eq!(exchange(first.addr(), b"v6"), b"V6");
}

#[test]
fn second_server_on_a_used_port_fails_naming_the_address() {
    let first = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let addr = first.addr_arg();
    let out = run(&["serve", "--tcp", &addr]);
    assert_error_line(
        &out,
        &format!("error: cannot listen on tcp {addr}: address already in use"),
    );
    assert!(out.stdout.is_empty(), "no readiness line on failure");
}

#[test]
fn address_not_available_is_a_runtime_error() {
    // 192.0.2.1 (TEST-NET-1) is not assigned to this machine: bind fails
    // without sending anything.
    let out = run(&["serve", "--tcp", "192.0.2.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let line = assert_one_error_line(&out);
    assert!(
        line.contains("cannot listen on tcp 192.0.2.1:0: cannot assign requested address"),
        "{line}"
    );
}

#[test]
fn no_flags_listens_on_127_0_0_1_port_8080() {
    // In a network namespace of its own, so that its port 8080 is free
    // whatever else runs here (a server from the README's first command).
    let served = crate::support::in_own_network_namespace(|| {
        let server = ServerProcess::start(&[], 1);
        assert_eq!(server.ready_lines, vec!["listening tcp 127.0.0.1:8080"]);
        assert_eq!(exchange(server.addr(), b"default"), b"DEFAULT");
    });
    if let Err(why) = served {
        crate::support::skip("no_flags_listens_on_127_0_0_1_port_8080", &why);
    }
}

#[test]
fn descriptor_soft_limit_is_raised_to_the_hard_limit() {
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -S -n 256 && exec \"$0\" serve --tcp 127.0.0.1:0",
    ])
    .arg(crate::support::bin());
    let server = ServerProcess::spawn(cmd, 1);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, "256", "{line}");
}

#[test]
fn idle_connection_is_closed_by_the_server_process() {
    // How long it waits is tested on a paused clock (library.rs); here only
    // that the process does close a silent connection by itself.
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--idle-timeout", "0.3"], 1);
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"x").unwrap();
    let mut buf = [0u8; 8];
    stream.read_exact(&mut buf[..1]).unwrap();
    assert_eq!(&buf[..1], b"X");
    let n = stream
        .read(&mut buf)
        .expect("server closes, not a read timeout");
    assert_eq!(n, 0);
}

#[test]
fn connections_beyond_max_connections_wait_for_a_slot() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--max-connections", "1"], 1);
    let mut first = TcpStream::connect(server.addr()).unwrap();
    first.set_read_timeout(Some(PATIENCE)).unwrap();
    first.write_all(b"a").unwrap();
    let mut buf = [0u8; 1];
    first.read_exact(&mut buf).unwrap();

    // The second connects (the kernel's backlog) but is not served yet.
    let mut second = TcpStream::connect(server.addr()).unwrap();
    second.write_all(b"b").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = second
        .read(&mut buf)
        .expect_err("not served while the slot is taken");
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));

    drop(first);
    second.set_read_timeout(Some(PATIENCE)).unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"B");
}

#[test]
fn debug_log_has_one_line_per_connection_with_peer_and_bytes() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "-v"], 1);
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let peer = stream.local_addr().unwrap().to_string();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"12345").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    server.wait_for_log("connection closed");
    let logs = server.stderr_so_far();
    let opened: Vec<_> = logs
        .iter()
        .filter(|l| l.contains("connection opened"))
        .collect();
    let closed: Vec<_> = logs
        .iter()
        .filter(|l| l.contains("connection closed"))
        .collect();
    assert_eq!((opened.len(), closed.len()), (1, 1), "{logs:#?}");
    assert!(opened[0].contains(&peer), "{}", opened[0]);
    for field in [peer.as_str(), "bytes_in=5", "bytes_out=5", "peer finished"] {
        assert!(closed[0].contains(field), "{field} in {}", closed[0]);
    }
}
