//! Faults around the service: the connection limit, and a stderr that fails
//! or that nobody reads. (The heavy faults, thousands of connections and
//! descriptor starvation, are in tests/heavy.)

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{
    PATIENCE, ServerProcess, bin, exchange, upper, wait_until, wait_with_deadline,
};

fn opened(server: &ServerProcess) -> usize {
    server
        .stderr_so_far()
        .iter()
        .filter(|l| l.contains("connection opened"))
        .count()
}

#[test]
fn the_eleventh_client_of_ten_waits_in_the_backlog_until_one_closes() {
    let server = ServerProcess::start(
        &["--tcp", "127.0.0.1:0", "--max-connections", "10", "-v"],
        1,
    );
    let mut ten: Vec<TcpStream> = (0..10)
        .map(|i| {
            let mut stream = TcpStream::connect(server.addr()).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let word = format!("client {i}");
            stream.write_all(word.as_bytes()).unwrap();
            let mut reply = vec![0u8; word.len()];
            stream.read_exact(&mut reply).unwrap();
            assert_eq!(reply, upper(word.as_bytes()));
            stream
        })
        .collect();
    wait_until("ten connections logged", PATIENCE, || opened(&server) == 10);

    // The eleventh gets through the kernel's handshake but is not served.
    let mut eleventh = TcpStream::connect(server.addr()).unwrap();
    eleventh.write_all(b"eleven").unwrap();
    eleventh
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reply = [0u8; 6];
    let err = eleventh
        .read(&mut reply)
        .expect_err("not served while ten are open");
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    assert_eq!(opened(&server), 10, "not even accepted");

    // One of the ten leaves: the eleventh is answered at once.
    drop(ten.remove(3));
    eleventh.set_read_timeout(Some(PATIENCE)).unwrap();
    eleventh.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ELEVEN");
}

/// Starts `upecho serve --tcp 127.0.0.1:0 -v` with `stderr` as its stderr
/// (our stderr reader is not wanted here) and returns it with its address.
fn serve_with_stderr(stderr: Stdio) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(bin())
        .args(["serve", "--tcp", "127.0.0.1:0", "-v"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening tcp ")
        .expect("readiness line")
        .parse()
        .unwrap();
    (child, addr)
}

/// Sends SIGTERM and asserts the server exits 0 in time.
fn stops_with_0_on_sigterm(child: &mut std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_with_deadline(child, PATIENCE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the server did not stop on SIGTERM");
    });
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_stderr_that_cannot_be_written_does_not_stop_the_server() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (mut child, addr) = serve_with_stderr(full.into());
    assert_eq!(exchange(addr, b"no stderr"), b"NO STDERR");
    stops_with_0_on_sigterm(&mut child);
}

#[test]
fn a_stderr_nobody_reads_neither_blocks_the_service_nor_signals() {
    // -v logs two lines per connection; the stderr pipe (64 KiB) is never
    // read, so it fills after a few hundred connections.
    let (mut child, addr) = serve_with_stderr(Stdio::piped());
    let _unread_stderr = child.stderr.take().unwrap();
    for i in 0..1500 {
        let word = format!("word {i}");
        assert_eq!(exchange(addr, word.as_bytes()), upper(word.as_bytes()));
    }
    stops_with_0_on_sigterm(&mut child);
}
