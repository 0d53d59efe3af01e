//! The fault-injection suite: memory per connection through rounds of
//! churn, clients that never read, descriptor starvation, resets, and a large
//! integrity stream. Each test runs alone (see `exclusive`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::{
    PATIENCE, ServerProcess, bin, exchange, fd_count, random_bytes, rss_kib, upper, wait_until,
};
use crate::{HEAVY_PATIENCE, exclusive};

/// The reliability target is 4 KiB of server memory per open connection;
/// tests allow 4x that so a busy machine cannot make them fail.
const KIB_PER_CONNECTION_BOUND: u64 = 16;

/// Lets the test process open thousands of sockets.
fn raise_own_fd_limit() {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the test's descriptor limit");
}

/// Opens `n` connections and does one 64-byte exchange on each.
fn open_and_ping(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let message = [b'q'; 64];
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let stream = TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            stream
        })
        .collect();
    for conn in &mut conns {
        conn.write_all(&message).unwrap();
    }
    let mut reply = [0u8; 64];
    for conn in &mut conns {
        conn.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [b'Q'; 64]);
    }
    conns
}

#[test]
fn five_thousand_connections_twice_cost_a_few_kib_each_and_are_given_back() {
    let _serial = exclusive();
    raise_own_fd_limit();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let (pid, addr) = (server.pid(), server.addr());
    let fds = fd_count(pid);
    // Warm up: the first connections set up each thread's scratch buffer.
    drop(open_and_ping(addr, 20));
    wait_until("warm-up connections to close", PATIENCE, || {
        fd_count(pid) <= fds
    });
    let start = rss_kib(pid);

    const N: u64 = 5000;
    for round in 1..=2 {
        let conns = open_and_ping(addr, N as usize);
        wait_until("the server to hold every connection", PATIENCE, || {
            fd_count(pid) >= fds + N as usize
        });
        let grown = rss_kib(pid).saturating_sub(start);
        eprintln!(
            "round {round}: {:.2} KiB of server RSS per open connection",
            grown as f64 / N as f64
        );
        let per_connection = grown / N;
        assert!(
            per_connection < KIB_PER_CONNECTION_BOUND,
            "round {round}: {per_connection} KiB per open connection"
        );
        drop(conns);
        wait_until("the server to close every connection", PATIENCE, || {
            fd_count(pid) <= fds
        });
    }
    let after = rss_kib(pid).saturating_sub(start);
    eprintln!("with all closed: {after} KiB above the start");
    assert!(
        after < 64 * 1024,
        "{after} KiB more than at the start with every connection closed"
    );
}

#[test]
fn fifty_clients_that_never_read_hold_bounded_memory_and_stall_only_themselves() {
    let _serial = exclusive();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let (pid, addr) = (server.pid(), server.addr());
    drop(open_and_ping(addr, 4));
    let start = rss_kib(pid);

    // Each writes until its own socket buffer is full: the server has then
    // filled its replies' path and stopped reading from it.
    let mut stalled = Vec::new();
    let chunk = vec![b'w'; 64 * 1024];
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        let mut written = 0usize;
        let mut idle_rounds = 0;
        // Bounded: stop once writes would block for a while, or after 64 MiB.
        while written < 64 << 20 && idle_rounds < 50 {
            match stream.write(&chunk) {
                Ok(n) => {
                    written += n;
                    idle_rounds = 0;
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    idle_rounds += 1;
                    thread::sleep(Duration::from_millis(2));
                }
                Err(err) => panic!("write: {err}"),
            }
        }
        assert!(
            written < 64 << 20,
            "the server never stopped reading from a client that does not read"
        );
        stalled.push(stream);
    }
    let growth = rss_kib(pid).saturating_sub(start);
    eprintln!("50 clients that never read: server RSS grew {growth} KiB");
    // At most one 64 KiB scratch buffer's worth owed per stalled client.
    assert!(
        growth < 50 * 4 * 64,
        "{growth} KiB for 50 clients that never read"
    );

    // Everyone else is served as usual, a large exchange included.
    let data = random_bytes(5, 1 << 20);
    assert!(exchange(addr, &data) == upper(&data));
    drop(stalled);
}

#[test]
fn silent_connections_are_closed_by_the_idle_timeout() {
    let _serial = exclusive();
    raise_own_fd_limit();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--idle-timeout", "1"], 1);
    let (pid, addr) = (server.pid(), server.addr());
    let fds = fd_count(pid);
    let mut silent: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    wait_until(
        "the server to close every silent connection",
        HEAVY_PATIENCE,
        || fd_count(pid) <= fds,
    );
    for conn in &mut silent {
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(conn.read(&mut buf).unwrap(), 0, "closed by the server");
    }
}

#[test]
fn starved_of_descriptors_the_server_backs_off_then_serves_again() {
    let _serial = exclusive();
    let mut cmd = Command::new("prlimit");
    cmd.args([
        "--nofile=64:64",
        bin(),
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "-v",
    ]);
    let server = ServerProcess::spawn(cmd, 1);
    let addr = server.addr();

    // 150 clients: the server can hold about 50 of them at 64 descriptors.
    let mut clients: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"x").unwrap();
            stream
        })
        .collect();
    server.wait_for_log("retrying with a pause");
    let attempts = || {
        server
            .stderr_so_far()
            .iter()
            .filter(|l| l.contains("DEBUG") && l.contains("accept failed"))
            .count()
    };
    // A measured span, not a synchronisation: count retries over 3 s.
    let before = attempts();
    thread::sleep(Duration::from_secs(3));
    let during = attempts() - before;
    eprintln!("accept attempts in 3 s while starved: {during}");
    // Pauses of 5 ms doubling to 1 s: about a dozen tries per thread in 3 s
    // (a fixed 50 ms pause made 60 per thread; no pause, millions).
    assert!(
        during <= 40,
        "{during} accept attempts in 3 s while starved"
    );
    let warnings = server
        .stderr_so_far()
        .iter()
        .filter(|l| l.contains("WARN"))
        .count();
    assert_eq!(
        warnings,
        1,
        "one warning per burst: {:#?}",
        server.stderr_so_far()
    );

    // Served clients still get their replies; then all leave and service resumes.
    let mut one = [0u8; 1];
    clients[0].set_read_timeout(Some(PATIENCE)).unwrap();
    clients[0].read_exact(&mut one).unwrap();
    assert_eq!(&one, b"X");
    for client in &clients {
        let _ = client.shutdown(Shutdown::Both);
    }
    clients.clear();
    server.wait_for_log("accepting again");
    assert_eq!(exchange(addr, b"back again"), b"BACK AGAIN");
}

#[test]
fn three_hundred_clients_resetting_mid_stream_leave_no_descriptor_and_no_log() {
    let _serial = exclusive();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let (pid, addr) = (server.pid(), server.addr());
    let fds = fd_count(pid);
    let data = random_bytes(9, 256 * 1024);
    for i in 0..300 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        // Odd ones leave replies unread (the server is mid-write when the
        // reset comes); even ones reset right after sending.
        let _ = stream.write(&data);
        if i % 2 == 1 {
            let _ = stream.write(&data);
        }
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream); // RST
    }
    wait_until("descriptors back to their baseline", PATIENCE, || {
        fd_count(pid) <= fds
    });
    // Still serving, and nothing logged above debug for any of it.
    assert_eq!(exchange(addr, b"after"), b"AFTER");
    let loud: Vec<String> = server
        .stderr_so_far()
        .into_iter()
        .filter(|l| !l.contains("accepting connections"))
        .collect();
    assert!(loud.is_empty(), "{loud:#?}");
}

#[test]
fn four_clients_streaming_64_mib_each_get_exactly_the_transform_back() {
    let _serial = exclusive();
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let addr = server.addr();
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 256 * 1024;
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..4u64)
        .map(|seed| {
            thread::spawn(move || {
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let sender = thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    let mut expected = Sha256::new();
                    let mut chunk = vec![0u8; CHUNK];
                    for _ in 0..TOTAL / CHUNK {
                        rng.fill(&mut chunk);
                        writer.write_all(&chunk).unwrap();
                        expected.update(upper(&chunk));
                    }
                    writer.shutdown(Shutdown::Write).unwrap();
                    expected.finalize()
                });
                let mut reader = stream;
                let mut got = Sha256::new();
                let mut buf = vec![0u8; CHUNK];
                let mut len = 0usize;
                loop {
                    let n = reader.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.update(&buf[..n]);
                    len += n;
                }
                (len, got.finalize() == sender.join().unwrap())
            })
        })
        .collect();
    for client in clients {
        let (len, same) = client.join().unwrap();
        assert_eq!(len, TOTAL, "every byte comes back, then EOF");
        assert!(
            same,
            "SHA-256 of the reply differs from that of bytes.upper()"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "4 x 64 MiB verified in {secs:.2} s: {:.0} MB/s each way (test client included)",
        (4 * TOTAL) as f64 / secs / 1e6
    );
}
