//! `upecho serve --udp`: one datagram back for each datagram, transformed, to
//! its source; never truncated; loop-safe (the port rule itself is
//! unit-tested in src/server/udp/rules.rs: its source ports need root to send
//! from; the echo rule here, against another echo server and between two
//! upecho processes). And `upecho connect --udp`, in a pipe and on a terminal.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::activation::{ListenPid, activated};
use crate::support::{
    PATIENCE, ServerProcess, assert_error_line, run, run_with_input, upecho, upper, wait_until,
};

/// A client socket bound next to `server`'s family, with a receive timeout.
fn client_for(server: SocketAddr) -> UdpSocket {
    let local = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// Sends `datagram` and returns the first reply.
fn round_trip(server: SocketAddr, datagram: &[u8]) -> Vec<u8> {
    let socket = client_for(server);
    socket.send_to(datagram, server).unwrap();
    let mut reply = vec![0u8; 70_000];
    let (n, from) = socket.recv_from(&mut reply).expect("a reply");
    assert_eq!(from, server, "the reply comes from the server's address");
    reply.truncate(n);
    reply
}

#[test]
fn a_datagram_comes_back_transformed() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    assert!(server.ready_lines[0].starts_with("listening udp 127.0.0.1:"));
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(round_trip(server.addr(), &all), upper(&all));
}

#[test]
fn ipv6_udp_is_served() {
    let server = ServerProcess::start(&["--udp", "[::1]:0"], 1);
    assert!(server.ready_lines[0].starts_with("listening udp [::1]:"));
    assert_eq!(round_trip(server.addr(), b"six"), b"SIX");
}

#[test]
fn a_65507_byte_datagram_comes_back_whole() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let big: Vec<u8> = (0..65_507u32).map(|i| b'a' + (i % 26) as u8).collect();
    let reply = round_trip(server.addr(), &big);
    assert_eq!(reply.len(), 65_507);
    assert_eq!(reply, upper(&big));
}

#[test]
fn five_hundred_datagrams_at_most_32_in_flight_are_all_answered() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let socket = client_for(server.addr());
    let mut waiting: HashSet<Vec<u8>> = HashSet::new();
    let mut buf = [0u8; 64];
    let (mut sent, mut answered) = (0, 0);
    while answered < 500 {
        while sent < 500 && waiting.len() < 32 {
            let message = format!("datagram number {sent}").into_bytes();
            socket.send_to(&message, server.addr()).unwrap();
            waiting.insert(upper(&message));
            sent += 1;
        }
        let n = socket.recv(&mut buf).expect("every datagram is answered");
        assert!(waiting.remove(&buf[..n]), "an unexpected reply");
        answered += 1;
    }
    assert!(waiting.is_empty());
}

#[test]
fn a_burst_from_fifty_sockets_is_answered_whole_each_to_its_source() {
    // 200 datagrams queued before any reply is read: the server takes them in
    // batches, and each reply, grown or not, must go to its own source. (Not
    // necessarily in order: each server thread takes batches of its own.)
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0", "--transform", "unicode"], 1);
    let sockets: Vec<UdpSocket> = (0..50).map(|_| client_for(server.addr())).collect();
    let message = |socket: usize, n: usize| {
        let text = if (socket + n).is_multiple_of(2) {
            "straße"
        } else {
            "plain"
        };
        format!("{text} {socket}/{n}")
    };
    for n in 0..4 {
        for (i, socket) in sockets.iter().enumerate() {
            socket
                .send_to(message(i, n).as_bytes(), server.addr())
                .unwrap();
        }
    }
    let mut buf = [0u8; 64];
    for (i, socket) in sockets.iter().enumerate() {
        let mut waiting: HashSet<String> = (0..4).map(|n| message(i, n).to_uppercase()).collect();
        for _ in 0..4 {
            let (len, from) = socket
                .recv_from(&mut buf)
                .expect("every datagram is answered");
            assert_eq!(from, server.addr());
            let reply = String::from_utf8_lossy(&buf[..len]).into_owned();
            assert!(waiting.remove(&reply), "socket {i} got {reply:?}");
        }
    }
}

#[test]
fn a_wildcard_server_answers_from_the_address_each_datagram_was_sent_to() {
    let server = ServerProcess::start(&["--udp", "0.0.0.0:0"], 1);
    let port = server.addr().port();
    for to in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let to: SocketAddr = format!("{to}:{port}").parse().unwrap();
        // A connected socket takes replies only from the address it sent to.
        let socket = client_for(to);
        socket.connect(to).unwrap();
        socket.send(b"where from").unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = socket
            .recv_from(&mut buf)
            .expect("a reply from the address sent to");
        assert_eq!((&buf[..n], from), (&b"WHERE FROM"[..], to));
    }
}

#[test]
fn a_reply_over_65507_bytes_is_dropped_not_truncated() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0", "--transform", "unicode"], 1);
    let socket = client_for(server.addr());
    // 'ΐ' is 2 bytes and its upper case 6: 60,000 bytes would become 180,000.
    let growing = "ΐ".repeat(30_000).into_bytes();
    socket.send_to(&growing, server.addr()).unwrap();
    socket.send_to("straße".as_bytes(), server.addr()).unwrap();
    let mut reply = vec![0u8; 70_000];
    let n = socket.recv(&mut reply).unwrap();
    // The first (and only) reply is the small one's.
    assert_eq!(&reply[..n], "STRASSE".as_bytes());
}

#[test]
fn a_second_server_on_the_same_udp_address_fails() {
    let first = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let addr = first.addr().to_string();
    let out = run(&["serve", "--udp", &addr]);
    assert_error_line(
        &out,
        &format!("error: cannot listen on udp {addr}: address already in use"),
    );
}

#[test]
fn udp_tcp_and_unix_listeners_mix_in_flag_order_and_stop_together() {
    let dir = crate::support::TempDir::new();
    let path = dir.path("mixed.sock");
    let mut server = ServerProcess::start(
        &[
            "--udp",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--unix",
            &path,
            "--udp",
            "[::1]:0",
        ],
        4,
    );
    let lines = &server.ready_lines;
    assert!(
        lines[0].starts_with("listening udp 127.0.0.1:"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("listening tcp 127.0.0.1:"),
        "{lines:?}"
    );
    assert_eq!(lines[2], format!("listening unix {path}"));
    assert!(lines[3].starts_with("listening udp [::1]:"), "{lines:?}");
    let addrs = server.addrs.clone();
    assert_eq!(round_trip(addrs[0], b"udp4"), b"UDP4");
    assert_eq!(crate::support::exchange(addrs[1], b"tcp"), b"TCP");
    assert_eq!(crate::support::exchange_unix(&path, b"unix"), b"UNIX");
    assert_eq!(round_trip(addrs[2], b"udp6"), b"UDP6");
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn udp_with_nothing_to_say_waits_for_no_one() {
    // A reply to an address nobody listens on must not hold up the next peer.
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
    gone.send_to(b"then I leave", server.addr()).unwrap();
    drop(gone);
    assert_eq!(round_trip(server.addr(), b"next"), b"NEXT");
}

#[test]
fn connect_udp_in_a_pipe_sends_a_datagram_per_line_and_prints_each_reply() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let out = run_with_input(
        upecho(&["connect", "--udp", &server.addr_arg()]),
        b"hello\nudp world\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"HELLO\nUDP WORLD\n");
    assert!(out.stderr.is_empty());
}

#[test]
fn connect_udp_with_no_server_fails_at_once_saying_refused() {
    // A port nobody listens on: the kernel answers with ICMP, which the
    // connected client socket reports as "connection refused".
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = run_with_input(upecho(&["connect", "--udp", &addr]), b"anyone?\n");
    assert_error_line(
        &out,
        &format!("error: no reply from udp {addr}: connection refused"),
    );
}

#[test]
fn connect_udp_gives_up_on_a_silent_server_after_its_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = std::time::Instant::now();
    let out = run_with_input(
        upecho(&["connect", "--udp", &addr, "--timeout", "0.5"]),
        b"hello?\n",
    );
    assert_error_line(
        &out,
        &format!("error: no reply from udp {addr}: timed out after 0.5 s"),
    );
    // Measured from before the client started, so this holds under any load.
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    let mut buf = [0u8; 16];
    let (n, _) = silent.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello?", "the datagram was sent");
}

#[test]
fn connect_udp_on_a_terminal_prompts_and_prints_each_reply() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let mut cmd = std::process::Command::new(crate::support::bin());
    cmd.args(["connect", "--udp", &server.addr_arg()])
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(PATIENCE.as_millis() as u64))
        .expect("spawn in a pty");
    p.exp_string(">>: ").unwrap();
    p.send("  datagram one \r").unwrap();
    p.flush().unwrap();
    p.exp_string("DATAGRAM ONE").unwrap();
    p.exp_string(">>: ").unwrap();
    p.send_control('d').unwrap();
    match p.process().wait().unwrap() {
        nix::sys::wait::WaitStatus::Exited(_, code) => assert_eq!(code, 0),
        other => panic!("client did not exit normally: {other:?}"),
    }
}

#[test]
fn connect_udp_in_a_pipe_exits_130_on_ctrl_c_while_its_input_is_silent() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let mut child = upecho(&["connect", "--udp", &server.addr_arg()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Once a reply came back, the client runs and its Ctrl-C handler is set.
    std::io::Write::write_all(&mut stdin, b"ping\n").unwrap();
    let mut reply = [0u8; 5];
    std::io::Read::read_exact(&mut stdout, &mut reply).unwrap();
    assert_eq!(&reply, b"PING\n");
    // stdin stays open and silent.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGINT).unwrap();
    let (status, stderr) =
        crate::support::exit_and_stderr(&mut child, PATIENCE, "connect --udp ignored Ctrl-C");
    assert_eq!(status.code(), Some(130), "{stderr}");
    drop(stdin);
}

/// Echoes in a row from one source that are still answered (the contract's
/// rule: the next one is dropped).
const ECHOES_ANSWERED: usize = 64;

/// True once `server` logged a datagram dropped for reason `loop`.
fn dropped_a_loop(server: &ServerProcess) -> bool {
    server
        .stderr_so_far()
        .iter()
        .any(|line| line.contains("datagram dropped") && line.contains(r#"reason="loop""#))
}

/// An RFC 862 echo server on its own thread: sends every datagram back to
/// its source unchanged, counting them, until `stop`.
fn echo_server(
    socket: UdpSocket,
    seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                seen.fetch_add(1, Ordering::Relaxed);
                socket.send_to(&buf[..n], from).unwrap();
            }
        }
    })
}

#[test]
fn a_loop_with_another_echo_server_dies_after_64_echoes_of_our_reply() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0", "-v"], 1);
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    // One datagram starts it: the echo server sends our reply back, we answer
    // it again, and so on.
    echo.send_to(b"ping", server.addr()).unwrap();
    let (seen, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let peer = echo_server(echo, Arc::clone(&seen), Arc::clone(&stop));
    wait_until("the loop is cut, or runs away", PATIENCE, || {
        dropped_a_loop(&server) || seen.load(Ordering::Relaxed) > 10 * ECHOES_ANSWERED
    });
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
    // Our reply to "ping", then one reply to each of the echoes answered.
    assert_eq!(seen.load(Ordering::Relaxed), 1 + ECHOES_ANSWERED);
}

#[test]
fn two_upecho_servers_started_ping_ponging_stop_after_64_echoes() {
    // Server A's socket is bound here and handed over as systemd would, so
    // this test can send one datagram from A's own address and port to B:
    // the spoofed packet of the issue, without a raw socket.
    let a_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cmd = activated(&[a_socket.as_raw_fd()], ListenPid::Own, &["-v"]);
    let mut a = ServerProcess::spawn(cmd, 1);
    let mut b = ServerProcess::start(&["--udp", "127.0.0.1:0", "-v"], 1);
    a_socket.send_to(b"ping", b.addr()).unwrap();
    // B sees the first echo of its own reply first, so it is B that cuts
    // the loop.
    wait_until("B cuts the loop", PATIENCE, || dropped_a_loop(&b));
    for server in [&mut a, &mut b] {
        server.signal(Signal::SIGTERM);
        assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
        server.wait_for_log("server stopped");
    }
    let totals = drop_totals(&b, b.addr());
    assert_eq!(totals.len(), 1, "{totals:?}");
    // In: "ping" and 65 echoes; out: PING and 64 answers; one loop drop.
    for field in ["received=66", "sent=65", "loop=1"] {
        assert!(totals[0].contains(field), "{field} in {}", totals[0]);
    }
    assert!(drop_totals(&a, a.addr()).is_empty(), "A dropped nothing");
}

#[test]
fn a_client_repeating_our_reply_is_answered_64_times_then_dropped_until_it_says_something_else() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0", "-v"], 1);
    let socket = client_for(server.addr());
    let mut buf = [0u8; 64];
    let mut exchange = |message: &[u8]| {
        socket.send_to(message, server.addr()).unwrap();
        let n = socket.recv(&mut buf).expect("a reply");
        buf[..n].to_vec()
    };
    assert_eq!(exchange(b"hello"), b"HELLO");
    // HELLO is now the reply last sent: sending it back is an echo. Fewer
    // than 64 in a row (and 64 itself) are all answered.
    for n in 1..=ECHOES_ANSWERED {
        assert_eq!(exchange(b"HELLO"), b"HELLO", "echo {n}");
    }
    socket.send_to(b"HELLO", server.addr()).unwrap();
    wait_until("the 65th echo is dropped", PATIENCE, || {
        dropped_a_loop(&server)
    });
    // Something else is answered again, and starts a new count.
    assert_eq!(
        exchange(b"other"),
        b"OTHER",
        "the dropped HELLO got no reply"
    );
    assert_eq!(exchange(b"OTHER"), b"OTHER");
    assert_eq!(exchange(b"HELLO"), b"HELLO");
}

#[test]
fn a_client_sending_one_lowercase_message_again_and_again_is_always_answered() {
    // "hello" is not our reply "HELLO": no echo, however often it comes.
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"], 1);
    let socket = client_for(server.addr());
    let mut buf = [0u8; 64];
    for n in 0..4 * ECHOES_ANSWERED {
        socket.send_to(b"hello", server.addr()).unwrap();
        let len = socket.recv(&mut buf).expect("every one is answered");
        assert_eq!(&buf[..len], b"HELLO", "message {n}");
    }
}

/// A UDP socket bound to `addr` with SO_REUSEADDR, so that another socket
/// with it can share the port: how this test sends from a server's own
/// address without spoofing.
fn shared_port_socket(addr: &str) -> UdpSocket {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.into()
}

#[test]
fn a_wildcard_server_drops_a_datagram_from_another_local_address_at_its_own_port() {
    // The server's 0.0.0.0:P is bound here and handed over, so that a second
    // socket can take 127.0.0.1:P beside it: what the server itself sends
    // from 127.0.0.1:P to 127.0.0.5:P would look like this.
    let wildcard = shared_port_socket("0.0.0.0:0");
    let port = wildcard.local_addr().unwrap().port();
    let cmd = activated(&[wildcard.as_raw_fd()], ListenPid::Own, &["-v"]);
    let server = ServerProcess::spawn(cmd, 1);
    let itself = shared_port_socket(&format!("127.0.0.1:{port}"));
    itself.set_nonblocking(true).unwrap();
    let to: SocketAddr = format!("127.0.0.5:{port}").parse().unwrap();
    itself.send_to(b"who is there", to).unwrap();
    let mut buf = [0u8; 64];
    let mut answered = false;
    wait_until("the datagram is dropped or answered", PATIENCE, || {
        answered |= itself.recv(&mut buf).is_ok();
        answered || dropped_a_loop(&server)
    });
    assert!(!answered, "the server answered its own address");
    // Anyone else on this host is still answered, from where they sent to.
    let socket = client_for(to);
    socket.send_to(b"client", to).unwrap();
    let (n, from) = socket.recv_from(&mut buf).expect("a reply");
    assert_eq!((&buf[..n], from), (&b"CLIENT"[..], to));
}

#[test]
fn an_ipv6_client_at_the_port_of_a_wildcard_ipv4_listener_is_answered() {
    // 0.0.0.0:P is IPv4 only: [::1]:P is someone else's socket, a client.
    let server = ServerProcess::start(&["--udp", "0.0.0.0:0", "--udp", "[::1]:0"], 2);
    let port = server.addrs[0].port();
    let client = UdpSocket::bind(format!("[::1]:{port}")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"same port", server.addrs[1]).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client
        .recv_from(&mut buf)
        .expect("answered, not dropped as a loop");
    assert_eq!((&buf[..n], from), (&b"SAME PORT"[..], server.addrs[1]));
}

/// The `datagrams dropped` lines `server` logged for `listener`.
fn drop_totals(server: &ServerProcess, listener: SocketAddr) -> Vec<String> {
    let name = format!("listener=udp {listener} ");
    server
        .stderr_so_far()
        .into_iter()
        .filter(|line| line.contains("datagrams dropped") && line.contains(&name))
        .collect()
}

#[test]
fn udp_drops_are_logged_at_stop_in_one_line_per_listener_with_the_totals() {
    let mut server = ServerProcess::start(
        &[
            "--udp",
            "127.0.0.1:0",
            "--udp",
            "[::1]:0",
            "--transform",
            "unicode",
        ],
        2,
    );
    // 60,000 bytes that would grow to 180,000: each is dropped (too_large).
    let growing = "ΐ".repeat(30_000).into_bytes();
    let senders = 40;
    for &listener in &server.addrs {
        // From many sockets, one after the other, so every server thread
        // takes some of them.
        for _ in 0..senders {
            let socket = client_for(listener);
            socket.send_to(&growing, listener).unwrap();
            socket.send_to(b"done?", listener).unwrap();
            let mut buf = [0u8; 64];
            let n = socket.recv(&mut buf).expect("the small one is answered");
            assert_eq!(&buf[..n], b"DONE?");
        }
    }
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    // Every line up to the last has been read.
    server.wait_for_log("server stopped");
    for &listener in &server.addrs {
        let lines = drop_totals(&server, listener);
        assert_eq!(lines.len(), 1, "one line for {listener}: {lines:?}");
        let expected = [
            format!("received={}", 2 * senders),
            format!("sent={senders}"),
            format!("too_large={senders}"),
        ];
        for field in expected {
            assert!(lines[0].contains(&field), "{field} in {}", lines[0]);
        }
    }
}
