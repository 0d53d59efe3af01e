//! The interactive `>>: ` prompt, in a real pseudo-terminal, against a test
//! server that records exactly which bytes the client sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::thread;

use nix::sys::wait::WaitStatus;
use rexpect::session::{PtySession, spawn_command};

use crate::support::{PATIENCE, bin, upper};

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

fn spawn_repl(addr: SocketAddr) -> PtySession {
    let mut cmd = Command::new(bin());
    cmd.args(["connect", &addr.to_string()])
        .env("TERM", "xterm");
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
fn repl_says_so_and_exits_1_when_the_server_closes() {
    let (addr, _received) = recording_server(Some(1));
    let mut p = spawn_repl(addr);
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "one\r");
    p.exp_string("ONE").unwrap();
    p.exp_string(">>: ").unwrap();
    type_keys(&mut p, "two\r");
    p.exp_string("closed the connection").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 1);
}
