//! The interactive `>>: ` prompt, in a real pseudo-terminal, against a test
//! server that records exactly which bytes the client sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use rexpect::session::{PtySession, spawn_command};

use crate::support::{PATIENCE, ServerProcess, TempDir, bin, upper, wait_until};

/// A one-connection uppercase server that reports every byte it received, and
/// closes after `replies` replies if given.
fn recording_server(replies: Option<usize>) -> (SocketAddr, Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        let mut answered = 0;
        while replies != Some(answered) {
            let Ok(n) = conn.read(&mut buf) else { break };
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
            conn.write_all(&upper(&buf[..n])).unwrap();
            answered += buf[..n].iter().filter(|&&b| b == b'\n').count();
        }
        let _ = tx.send(received);
    });
    (addr, rx)
}

/// A one-connection server that reports the first line it receives and never
/// answers; it holds the connection until the client closes it.
fn silent_server() -> (SocketAddr, Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.last() != Some(&b'\n') && conn.read(&mut byte).unwrap_or(0) == 1 {
            line.push(byte[0]);
        }
        let _ = tx.send(line);
        let _ = conn.read(&mut byte); // until the client goes away
    });
    (addr, rx)
}

fn spawn_repl(addr: SocketAddr) -> PtySession {
    spawn_repl_on(addr, "xterm")
}

/// The client in a pty whose `TERM` is `term`: `dumb` makes the line
/// editor give up editing and read plain lines.
fn spawn_repl_on(addr: SocketAddr, term: &str) -> PtySession {
    let mut cmd = Command::new(bin());
    cmd.args(["connect", &addr.to_string()]).env("TERM", term);
    spawn_command(cmd, Some(PATIENCE.as_millis() as u64)).expect("spawn in a pty")
}

/// Types `keys` into the terminal (rexpect buffers until flushed).
fn type_keys(session: &mut PtySession, keys: &str) {
    session.send(keys).unwrap();
    session.flush().unwrap();
}

fn exit_code(session: &PtySession) -> i32 {
    match session.process().wait().unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("client did not exit normally: {other:?}"),
    }
}

#[test]
fn repl_prompts_strips_skips_empty_recalls_edits_and_exits_0_on_ctrl_d() {
    let (addr, received) = recording_server(None);
    let mut p = spawn_repl(addr);

    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "   hello world  \r");
    p.exp_string("HELLO WORLD").unwrap();

    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "   \t \r"); // only white space: nothing is sent
    p.exp_string(">>: ").unwrap();

    // Up arrow recalls "hello world"; left arrow moves before the "d".
    type_keys(&mut p, "\x1b[A");
    type_keys(&mut p, "\x1b[D");
    type_keys(&mut p, "X\r");
    p.exp_string("HELLO WORLXD").unwrap();

    p.exp_string(">>: ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 0);

    let sent = received.recv_timeout(PATIENCE).unwrap();
    assert_eq!(sent, b"hello world\nhello worlXd\n");
}

#[test]
fn repl_exits_130_on_ctrl_c() {
    let (addr, _received) = recording_server(None);
    let mut p = spawn_repl(addr);
    p.exp_string(">>: ").unwrap();
    p.send_control('c').unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 130);
}

#[test]
fn repl_exits_130_on_ctrl_c_while_waiting_for_a_reply() {
    let (addr, received) = silent_server();
    let mut p = spawn_repl(addr);
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "anyone there\r");
    // Once the line reached the server, the editor has given the terminal
    // back (cooked mode), so Ctrl-C is a SIGINT, not a key.
    let sent = received.recv_timeout(PATIENCE).unwrap();
    assert_eq!(sent, b"anyone there\n");
    p.send_control('c').unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 130);
}

#[test]
fn repl_caps_a_long_typed_line_so_its_redraw_stays_small() {
    let (addr, received) = recording_server(Some(1));
    let mut p = spawn_repl(addr);
    p.exp_string(">>: ").unwrap();
    // rexpect drains the terminal on its own thread, so typing never blocks.
    let typed = "x".repeat(12_000);
    for chunk in typed.as_bytes().chunks(1000) {
        type_keys(&mut p, std::str::from_utf8(chunk).unwrap());
    }
    type_keys(&mut p, "\r");
    let shown = p.exp_string(&format!("{}\r\n", "X".repeat(4096))).unwrap();
    let sent = received.recv_timeout(PATIENCE).unwrap();
    assert_eq!(sent.len(), 4097, "the line is cut at 4096 bytes");
    // Uncapped, 12 000 keys on 80 columns redraw about 900 KB.
    assert!(shown.len() < 300_000, "{} bytes of redraw", shown.len());
}

/// Reads up to and including a `\n`, or to EOF.
fn read_line(conn: &mut impl Read) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') && conn.read(&mut byte).unwrap_or(0) == 1 {
        line.push(byte[0]);
    }
    line
}

/// When [`answer_once_then_close`]'s server closes the connection.
#[derive(Clone, Copy)]
enum CloseAt {
    /// When the test says so (or drops the sender), the client at its prompt.
    Request,
    /// Once the next line arrived, without answering it.
    NextLine,
}

/// A one-connection server that answers the first line, then closes the
/// connection as `close` says.
fn answer_once_then_close(close: CloseAt) -> (SocketAddr, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (request, requested) = mpsc::channel();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let first = read_line(&mut conn);
        conn.write_all(&upper(&first)).unwrap();
        match close {
            CloseAt::Request => drop(requested.recv_timeout(PATIENCE)),
            CloseAt::NextLine => drop(read_line(&mut conn)),
        }
    });
    (addr, request)
}

#[test]
fn repl_says_so_and_exits_1_when_the_server_closes_after_a_line_is_sent() {
    let (addr, _close) = answer_once_then_close(CloseAt::NextLine);
    let mut p = spawn_repl(addr);
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "one\r");
    p.exp_string("ONE").unwrap();
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "two\r");
    p.exp_string("server closed the connection").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 1);
}

#[test]
fn repl_says_so_and_exits_1_when_the_server_closes_while_the_prompt_waits() {
    let (addr, close) = answer_once_then_close(CloseAt::Request);
    let mut p = spawn_repl(addr);
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "one\r");
    p.exp_string("ONE").unwrap();
    p.exp_string(">>: ").unwrap();
    close.send(()).unwrap();
    // Nothing typed: the client notices the close on its own.
    p.exp_string("server closed the connection").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 1);
}

#[test]
fn repl_over_unix_says_so_and_exits_1_when_a_stopping_server_ends_the_drain() {
    let dir = TempDir::new();
    let path = dir.path("echo.sock");
    let server = ServerProcess::start(&["--unix", &path, "--shutdown-grace", "0.2"], 1);
    let mut cmd = Command::new(bin());
    cmd.args(["connect", "--unix", &path]).env("TERM", "xterm");
    let mut p = spawn_command(cmd, Some(PATIENCE.as_millis() as u64)).expect("spawn in a pty");
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "one\r");
    p.exp_string("ONE").unwrap();
    p.exp_string(">>: ").unwrap();
    // The drain lets the idle connection stay for the grace, then closes it.
    server.signal(nix::sys::signal::Signal::SIGTERM);
    p.exp_string("server closed the connection").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 1);
}

#[test]
fn repl_on_a_dumb_terminal_says_so_and_exits_1_when_the_server_closes_while_the_prompt_waits() {
    let (addr, close) = answer_once_then_close(CloseAt::Request);
    let mut p = spawn_repl_on(addr, "dumb");
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "one\r");
    p.exp_string("ONE").unwrap();
    p.exp_string(">>: ").unwrap();
    close.send(()).unwrap();
    let closed = Instant::now();
    // Nothing typed: the client notices the close on its own, at once.
    p.exp_string("server closed the connection").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 1);
    let took = closed.elapsed();
    assert!(took < Duration::from_secs(10), "noticed after {took:?}");
}

#[test]
fn repl_on_a_dumb_terminal_exits_130_on_ctrl_c_and_0_on_ctrl_d() {
    let (addr, _received) = recording_server(None);
    let mut p = spawn_repl_on(addr, "dumb");
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "hi\r");
    p.exp_string("HI").unwrap();
    p.exp_string(">>: ").unwrap();
    // The terminal stays in cooked mode: Ctrl-C is a SIGINT.
    p.send_control('c').unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 130);

    let (addr, received) = recording_server(None);
    let mut p = spawn_repl_on(addr, "dumb");
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "  a line  \r");
    p.exp_string("A LINE").unwrap();
    p.exp_string(">>: ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 0);
    assert_eq!(received.recv_timeout(PATIENCE).unwrap(), b"a line\n");
}

/// A one-connection server that reads one line, writes its reply and then
/// `extra` in one write, and closes at once.
fn reply_then_close(extra: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reply = upper(&read_line(&mut conn));
        reply.extend_from_slice(extra);
        conn.write_all(&reply).unwrap();
    });
    addr
}

#[test]
fn repl_shows_the_reply_of_a_server_that_closes_right_after_it_then_says_so() {
    let addr = reply_then_close(b"");
    let mut p = spawn_repl(addr);
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "last words\r");
    p.exp_string("LAST WORDS").unwrap();
    p.exp_string("server closed the connection").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 1);
}

#[test]
fn repl_shows_every_byte_a_closing_server_sent_beyond_the_reply_before_saying_so() {
    for term in ["xterm", "dumb"] {
        let addr = reply_then_close(b"MORE\nPART");
        let mut p = spawn_repl_on(addr, term);
        p.exp_string(">>: ").unwrap();
        type_keys(&mut p, "one\r");
        p.exp_string("ONE").unwrap();
        p.exp_string("MORE").unwrap();
        p.exp_string("PART").unwrap();
        p.exp_string("server closed the connection").unwrap();
        p.exp_eof().unwrap();
        assert_eq!(exit_code(&p), 1, "TERM={term}");
    }
}

#[test]
fn repl_with_stdout_in_a_file_says_so_and_exits_1_when_the_server_closes_while_the_prompt_waits() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (close, closing) = mpsc::channel::<()>();
    thread::spawn(move || {
        let (_conn, _) = listener.accept().unwrap();
        let _ = closing.recv_timeout(PATIENCE);
    });
    let dir = TempDir::new();
    let out = dir.path("out.txt");
    // stdin and stderr stay the pty; stdout, where the prompt goes, is a file.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"exec "$0" connect "$1" > "$2""#,
        bin(),
        &addr.to_string(),
        &out,
    ])
    .env("TERM", "xterm");
    let mut p = spawn_command(cmd, Some(PATIENCE.as_millis() as u64)).expect("spawn in a pty");
    // The prompt is written (and flushed) just before the wait for a line.
    wait_until("the prompt", PATIENCE, || {
        std::fs::read(&out).is_ok_and(|shown| shown.windows(4).any(|w| w == b">>: "))
    });
    close.send(()).unwrap();
    p.exp_string("server closed the connection").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 1);
}

#[test]
fn repl_with_hex_shows_each_reply_as_a_dump_at_once_with_offsets_going_on() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let mut cmd = Command::new(bin());
    cmd.args(["connect", &server.addr_arg(), "--hex"])
        .env("TERM", "xterm");
    let mut p = spawn_command(cmd, Some(PATIENCE.as_millis() as u64)).expect("spawn in a pty");
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "hi\r");
    p.exp_string("00000000  48 49 0a").unwrap();
    p.exp_string("|HI.|").unwrap();
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "there\r");
    p.exp_string("00000003  54 48 45 52 45 0a").unwrap();
    p.send_control('d').unwrap();
    p.exp_string("00000009").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 0);
}
