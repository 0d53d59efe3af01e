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

#[test]
fn connect_timeout_bounds_a_connect_that_gets_no_answer() {
    // A listener that never accepts, with its queue full: the kernel drops
    // further SYNs, so a connect can only time out.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(_) => break, // the queue is full
        }
    }
    let start = std::time::Instant::now();
    let out = run(&["connect", &addr.to_string(), "--timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(1));
    let line = assert_one_error_line(&out);
    assert_eq!(
        line.trim_end(),
        format!("error: cannot connect to tcp {addr}: connection timed out")
    );
    assert!(start.elapsed() >= std::time::Duration::from_millis(400));
}

#[test]
fn pipe_mode_exits_130_on_ctrl_c() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let mut child = upecho(&["connect", &server.addr_arg()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Once a reply came back, the client is connected and its handler installed.
    std::io::Write::write_all(&mut stdin, b"ping\n").unwrap();
    let mut reply = [0u8; 5];
    stdout.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"PING\n");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = wait_with_deadline(&mut child, PATIENCE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("connect ignored Ctrl-C");
    });
    assert_eq!(status.code(), Some(130));
}
