//! `upecho connect` in pipe mode, and its errors.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    PATIENCE, ServerProcess, assert_error_line, assert_one_error_line, exit_and_stderr,
    random_bytes, read_in_background, run, run_with_input, upecho, upper, wait_with_deadline,
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
    let (status, stderr) = exit_and_stderr(
        &mut child,
        PATIENCE,
        "connect kept running after its stdout closed",
    );
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
    assert_error_line(
        &out,
        &format!("error: cannot connect to tcp {addr}: connection refused"),
    );
}

#[test]
fn pipe_mode_with_empty_input_exits_0_after_server_closes() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let out = run_with_input(upecho(&["connect", &server.addr_arg()]), b"");
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

/// A listener that never accepts, with its queue full: the kernel drops
/// further SYNs, so a connect to it can only hang until it times out. Keep
/// the returned values alive for as long as the connect must hang.
fn unanswering_listener() -> (socket2::Socket, Vec<TcpStream>, SocketAddrV4) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket_ipv4().unwrap();
    let mut queued = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(_) => break, // the queue is full
        }
    }
    (socket, queued, addr)
}

/// Returns true if and only if a socket of this network namespace is in
/// SYN_SENT towards `addr` (per /proc/net/tcp): a connect is pending.
fn connect_pending_to(addr: SocketAddrV4) -> bool {
    // The kernel prints the address as the hex of its in-memory u32, and the
    // port in hex; state 02 is SYN_SENT.
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(addr.ip().octets()),
        addr.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"02")
    })
}

#[test]
fn connect_timeout_bounds_a_connect_that_gets_no_answer() {
    let (_listener, _queued, addr) = unanswering_listener();
    let start = Instant::now();
    let out = run(&["connect", &addr.to_string(), "--timeout", "0.5"]);
    assert_error_line(
        &out,
        &format!("error: cannot connect to tcp {addr}: connection timed out"),
    );
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[test]
fn ctrl_c_during_a_pending_connect_exits_130_at_once() {
    // --timeout 0: the connect has no limit of its own, only Ctrl-C ends it.
    let (_listener, _queued, addr) = unanswering_listener();
    let mut child = upecho(&["connect", &addr.to_string(), "--timeout", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The handler is installed before the connect starts, so a SYN_SENT
    // socket towards the listener means the client is ready for Ctrl-C.
    let deadline = Instant::now() + PATIENCE;
    while !connect_pending_to(addr) {
        assert!(
            Instant::now() < deadline,
            "the client never started connecting"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let (status, stderr) = exit_and_stderr(
        &mut child,
        Duration::from_secs(5),
        "connect ignored Ctrl-C while connecting",
    );
    assert_eq!(status.code(), Some(130));
    assert_eq!(stderr, "");
}

#[test]
fn timeout_0_means_no_limit_and_connects_as_usual() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let out = run_with_input(
        upecho(&["connect", &server.addr_arg(), "--timeout", "0"]),
        b"no limit\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"NO LIMIT\n");
    assert!(out.stderr.is_empty());
}

/// A one-connection server that answers its first read, uppercased, then
/// resets the connection (SO_LINGER 0 and close) while the client still sends.
fn resetting_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = conn.read(&mut buf).unwrap_or(0);
        let _ = conn.write_all(&upper(&buf[..n]));
        socket2::SockRef::from(&conn)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    addr
}

#[test]
fn pipe_mode_reports_a_reset_instead_of_exiting_0_with_truncated_output() {
    // The reset reaches either the sending or the receiving side first; the
    // other may see a plain EOF. Every run must still fail, so try several.
    let input = random_bytes(11, 10 << 20);
    for run in 0..10 {
        let addr = resetting_server();
        let out = run_with_input(upecho(&["connect", &addr.to_string()]), &input);
        assert_eq!(
            out.status.code(),
            Some(1),
            "run {run}: {} bytes out, stderr {:?}",
            out.stdout.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = assert_one_error_line(&out);
        assert_eq!(
            line.trim_end(),
            format!("error: connection to tcp {addr} failed: connection reset by peer"),
            "run {run}"
        );
        assert!(out.stdout.len() < input.len(), "run {run}");
    }
}

#[test]
fn pipe_mode_fails_when_stdin_cannot_be_read() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let mut child = upecho(&["connect", &server.addr_arg()])
        .stdin(std::fs::File::open("/tmp").unwrap()) // read(2) gives EISDIR
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut child, PATIENCE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("connect kept running with an unreadable stdin");
    });
    let out = std::process::Output {
        status,
        stdout: read_all(child.stdout.take().unwrap()),
        stderr: read_all(child.stderr.take().unwrap()),
    };
    assert_eq!(out.status.code(), Some(1));
    let line = assert_one_error_line(&out);
    assert_eq!(line.trim_end(), "error: cannot read stdin: is a directory");
    assert!(out.stdout.is_empty());
}

fn read_all(mut pipe: impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    pipe.read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn pipe_mode_exits_0_when_the_server_closes_cleanly_while_stdin_is_open() {
    // Like `nc -N`: the server answered and closed (FIN); stdin never ended.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.last() != Some(&b'\n') && conn.read(&mut byte).unwrap_or(0) == 1 {
            line.push(byte[0]);
        }
        conn.write_all(&upper(&line)).unwrap();
    });
    let mut child = upecho(&["connect", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"bye\n").unwrap();
    let status = wait_with_deadline(&mut child, PATIENCE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("connect kept running after the server closed");
    });
    drop(stdin);
    assert!(status.success(), "{status:?}");
    assert_eq!(read_all(child.stdout.take().unwrap()), b"BYE\n");
    assert_eq!(read_all(child.stderr.take().unwrap()), b"");
}

#[test]
fn an_unresolvable_name_is_one_line_naming_the_host() {
    // A `.invalid` name never resolves (RFC 6761). A machine without a
    // reachable resolver says "temporary failure" instead; both are plain.
    let expected = [
        "error: cannot resolve nosuch.invalid: no such host",
        "error: cannot resolve nosuch.invalid: temporary failure in name resolution",
    ];
    for args in [
        &["connect", "nosuch.invalid:80"][..],
        &["serve", "--tcp", "nosuch.invalid:80"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let line = assert_one_error_line(&out);
        assert!(expected.contains(&line.trim_end()), "{args:?}: {line}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
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

/// Peak resident memory (`VmHWM`) of process `pid` in KiB, if it still runs.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

#[test]
fn connect_udp_fails_at_once_on_a_line_longer_than_a_datagram_with_bounded_memory() {
    const CHUNK: usize = 1 << 20;
    const OFFERED: usize = 200; // MiB of a line that never ends
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let mut child = upecho(&["connect", "--udp", &server.addr_arg()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = read_in_background(child.stdout.take().unwrap());
    let stderr = read_in_background(child.stderr.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let feeder = thread::spawn(move || {
        stdin.write_all(b"one\ntwo\n").unwrap();
        let chunk = vec![b'x'; CHUNK];
        // Stops when the client has gone (broken pipe), or after OFFERED MiB.
        (0..OFFERED)
            .take_while(|_| stdin.write_all(&chunk).is_ok())
            .count()
    });
    let deadline = Instant::now() + PATIENCE;
    let mut peak = 0;
    let status = loop {
        peak = peak_kib(child.id()).unwrap_or(peak);
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("connect --udp kept reading a line longer than a datagram");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let fed = feeder.join().unwrap();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let stderr = String::from_utf8_lossy(&stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, b"ONE\nTWO\n", "the lines before it are answered");
    assert_eq!(
        stderr,
        format!(
            "error: cannot send line 3 of stdin to udp {}: longer than 65507 bytes, \
             the largest UDP datagram\n",
            server.addr_arg()
        )
    );
    assert!(fed < 16, "the client read {fed} MiB before it gave up");
    assert!(peak < 64 * 1024, "peak resident memory {peak} KiB");
}

#[test]
fn source_binds_the_local_end_and_v_names_both_ends_and_the_connect_time() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "-v"], 1);
    let out = run_with_input(
        upecho(&[
            "connect",
            &server.addr_arg(),
            "--source",
            "127.0.0.2:0",
            "-v",
        ]),
        b"from two\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"FROM TWO\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = stderr.lines().next().unwrap_or_default();
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[..2], ["connected:", "local"], "{line}");
    let local: SocketAddr = words[2].parse().expect("the local address");
    assert_eq!(local.ip().to_string(), "127.0.0.2");
    assert_eq!(
        (words[3], words[4]),
        ("peer", server.addr_arg().as_str()),
        "{line}"
    );
    assert!(line.ends_with(" ms"), "{line}");
    // The server saw the connection come from there.
    server.wait_for_log(&format!("peer={local}"));
}

#[test]
fn source_over_udp_sends_from_that_address() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let out = run_with_input(
        upecho(&[
            "connect",
            "--udp",
            &server.addr_arg(),
            "--source",
            "127.0.0.3:0",
            "-v",
        ]),
        b"datagram\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"DATAGRAM\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("connected: local 127.0.0.3:"),
        "{stderr}"
    );
}

#[test]
fn a_source_that_cannot_be_bound_or_with_a_unix_target_is_one_error_line() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    // TEST-NET-1 is not a local address: the bind fails, nothing is sent.
    let out = run(&["connect", &server.addr_arg(), "--source", "192.0.2.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        assert_one_error_line(&out),
        format!(
            "error: cannot connect to tcp {}: cannot bind 192.0.2.1:0: cannot assign requested address\n",
            server.addr_arg()
        )
    );
    let out = run(&[
        "connect",
        "--unix",
        "/nonexistent.sock",
        "--source",
        "127.0.0.2:0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = run(&["connect", "[::1]:9", "--source", "127.0.0.2:0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(assert_one_error_line(&out).contains("no address of the family of 127.0.0.2:0"));
}

/// `hexdump -C` of `bytes`, the reference for `--hex`; `None` (the test
/// skips, saying so) where Debian's `bsdextrautils` is not installed.
fn hexdump_c(test: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let spawned = std::process::Command::new("hexdump")
        .arg("-C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        crate::support::skip(test, "no hexdump (Debian bsdextrautils)");
        return None;
    };
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    Some(child.wait_with_output().unwrap().stdout)
}

#[test]
fn hex_in_pipe_mode_prints_what_hexdump_c_prints_for_the_replies() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    // Text with a run of identical lines (hexdump's `*`) and bytes of every value.
    let mut input = b"hello, hex\n".repeat(3);
    input.extend(vec![b'z'; 64]);
    input.extend((0..=255u8).collect::<Vec<_>>());
    input.extend(random_bytes(9, 5000));
    let Some(expected) = hexdump_c("hex_in_pipe_mode", &upper(&input)) else {
        return;
    };
    let out = run_with_input(upecho(&["connect", &server.addr_arg(), "--hex"]), &input);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

#[test]
fn hex_over_udp_dumps_the_replies_without_separators() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let out = run_with_input(
        upecho(&["connect", "--udp", &server.addr_arg(), "--hex"]),
        b"first datagram\nsecond\n",
    );
    assert!(out.status.success(), "{out:?}");
    if let Some(expected) = hexdump_c("hex_over_udp", b"FIRST DATAGRAMSECOND") {
        assert_eq!(out.stdout, expected);
    }
}
