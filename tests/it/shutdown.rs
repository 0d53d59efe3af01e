//! SIGINT/SIGTERM: stop accepting, drain within the grace period, exit 0.
//! SIGHUP (logged), SIGUSR1 and SIGUSR2: ignored.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{PATIENCE, ServerProcess, TempDir, exchange, exchange_unix};

fn round_trip(stream: &mut TcpStream, word: &[u8]) -> Vec<u8> {
    stream.write_all(word).unwrap();
    let mut reply = vec![0u8; word.len()];
    stream.read_exact(&mut reply).unwrap();
    reply
}

#[test]
fn sigterm_keeps_serving_open_connections_and_refuses_new_ones() {
    let mut server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--shutdown-grace", "600"], 1);
    let mut open = TcpStream::connect(server.addr()).unwrap();
    open.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(round_trip(&mut open, b"before"), b"BEFORE");

    server.signal(Signal::SIGTERM);
    server.wait_for_log("listeners closed");
    // The open connection is still served...
    assert_eq!(
        round_trip(&mut open, b"after the signal"),
        b"AFTER THE SIGNAL"
    );
    // ...but new connections are refused.
    let err = TcpStream::connect(server.addr()).expect_err("listener must be closed");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn a_connection_still_open_when_the_grace_ends_is_cut_off() {
    let grace = Duration::from_secs(1);
    let mut server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--shutdown-grace", "1"], 1);
    let mut open = TcpStream::connect(server.addr()).unwrap();
    open.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(round_trip(&mut open, b"x"), b"X");
    // Taken before the signal is sent, so the server's grace cannot have
    // started earlier: the bound below holds however loaded the machine is.
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let mut buf = [0u8; 1];
    let n = match open.read(&mut buf) {
        Ok(n) => n,
        Err(err) if err.kind() == ErrorKind::ConnectionReset => 0,
        Err(err) => panic!("expected the server to close the connection: {err}"),
    };
    assert_eq!(n, 0);
    assert!(signalled.elapsed() >= grace);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn the_second_signal_log_counts_the_connections_still_open() {
    let mut server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--shutdown-grace", "600"], 1);
    let mut open = TcpStream::connect(server.addr()).unwrap();
    open.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(round_trip(&mut open, b"x"), b"X");
    server.signal(Signal::SIGTERM);
    server.wait_for_log("waiting for open connections");
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    let cut = server
        .stderr_so_far()
        .into_iter()
        .find(|l| l.contains("shutdown cut short"))
        .expect("a line for the cut-off");
    assert!(cut.contains("open=1"), "{cut}");
}

#[test]
fn sigterm_with_no_connections_exits_0_at_once() {
    let mut server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--shutdown-grace", "60"], 1);
    server.signal(Signal::SIGTERM);
    // Far less than the 60 s grace: nothing to wait for.
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn second_signal_cuts_the_grace_short_and_still_exits_0() {
    let mut server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--shutdown-grace", "600"], 1);
    let mut open = TcpStream::connect(server.addr()).unwrap();
    open.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(round_trip(&mut open, b"x"), b"X");

    server.signal(Signal::SIGINT);
    server.wait_for_log("waiting for open connections");
    server.signal(Signal::SIGINT);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    let mut buf = [0u8; 1];
    assert!(matches!(open.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn a_client_that_finishes_during_the_grace_gets_everything() {
    let mut server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--shutdown-grace", "30"], 1);
    let mut open = TcpStream::connect(server.addr()).unwrap();
    open.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(round_trip(&mut open, b"a"), b"A");
    server.signal(Signal::SIGTERM);
    server.wait_for_log("waiting for open connections");
    open.write_all(b"last words").unwrap();
    open.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"LAST WORDS");
    // The last connection closed, so the server exits without using its grace.
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn sighup_sigusr1_and_sigusr2_leave_the_server_serving_and_sigterm_still_drains() {
    let dir = TempDir::new();
    let path = dir.path("signals.sock");
    let mut server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--unix", &path], 2);
    for signal in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        server.signal(signal);
        if signal == Signal::SIGHUP {
            server.wait_for_log("SIGHUP");
        }
        assert_eq!(
            exchange(server.addr(), b"still here"),
            b"STILL HERE",
            "{signal}"
        );
        assert_eq!(exchange_unix(&path, b"unix too"), b"UNIX TOO", "{signal}");
    }
    server.signal(Signal::SIGTERM);
    // Killed by one of them, it would have no exit code.
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    assert!(
        !std::path::Path::new(&path).exists(),
        "the socket file is removed"
    );
    let hup = server
        .stderr_so_far()
        .into_iter()
        .find(|line| line.contains("SIGHUP"))
        .expect("a line for SIGHUP");
    assert!(hup.contains("INFO"), "{hup}");
}

#[test]
fn sighup_while_the_server_still_binds_is_survived() {
    // Binding a Unix path waits for PATH.lock (up to 5 s): a SIGHUP or
    // SIGUSR1 then must not end the process before it ever served.
    let dir = TempDir::new();
    let path = dir.path("waiting.sock");
    let lock_path = format!("{path}.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    let mut child = crate::support::upecho(&["serve", "--unix", &path])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    // Its readiness to be signalled: it has the lock file open, so it is
    // past the handlers and waiting in the bind.
    crate::support::wait_until("the server opens PATH.lock", PATIENCE, || {
        crate::support::has_file_open(pid.as_raw(), "waiting.sock.lock")
    });
    for signal in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        nix::sys::signal::kill(pid, signal).unwrap();
    }
    lock.unlock().unwrap();
    let stdout = crate::support::read_in_background(child.stdout.take().unwrap());
    crate::support::wait_until("the server listens", PATIENCE, || {
        if let Some(died) = child.try_wait().unwrap() {
            panic!("the server ended before serving: {died:?}");
        }
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    assert_eq!(exchange_unix(&path, b"survived"), b"SURVIVED");
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let status = crate::support::wait_with_deadline(&mut child, PATIENCE).expect("it stops");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let stdout = String::from_utf8(stdout.join().unwrap()).unwrap();
    assert!(stdout.starts_with("listening unix "), "{stdout:?}");
}
