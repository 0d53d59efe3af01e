//! `upecho connect` in pipe mode, and its errors.

use std::io::Read;
use std::process::Stdio;

use crate::support::{
    PATIENCE, ServerProcess, assert_one_error_line, random_bytes, run, run_with_input, upecho,
    upper, wait_with_deadline,
};

#[test]
fn pipe_mode_prints_the_uppercased_lines() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let out = run_with_input(
        upecho(&["connect", &server.addr_arg()]),
        b"hello\nworld 42\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"HELLO\nWORLD 42\n");
    assert!(out.stderr.is_empty());
}

#[test]
fn pipe_mode_returns_every_byte_of_a_large_binary_input() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    // Larger than the socket buffers in both directions: needs full duplex.
    let input = random_bytes(7, 3 << 20);
    let out = run_with_input(upecho(&["connect", &server.addr_arg()]), &input);
    assert!(
        out.status.success(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), input.len());
    assert!(
        out.stdout == upper(&input),
        "reply differs from bytes.upper()"
    );
}

#[test]
fn pipe_mode_into_a_closed_pipe_ends_quietly() {
    // `upecho connect ADDR < /dev/zero | head -c 10`: after head exits, the
    // client must stop on its own, with status 0 and nothing on stderr.
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let mut child = upecho(&["connect", &server.addr_arg()])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0xffu8; 10];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(first, [0u8; 10]);
    drop(stdout);
    let status = wait_with_deadline(&mut child, PATIENCE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("connect kept running after its stdout closed");
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?} {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn connecting_to_a_closed_port_exits_1_saying_refused() {
    // Bind then drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = run(&["connect", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let line = assert_one_error_line(&out);
    assert_eq!(
        line.trim_end(),
        format!("error: cannot connect to tcp {addr}: connection refused")
    );
}

#[test]
fn pipe_mode_with_empty_input_exits_0_after_server_closes() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let out = run_with_input(upecho(&["connect", &server.addr_arg()]), b"");
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}
