//! `upecho bench --rate R`: the open loop. Each message is sent at its
//! scheduled time whether or not earlier replies are back, and its latency
//! is measured from that time, so a server's stall shows in the latency
//! where a closed loop hides it; and when the generator itself cannot keep
//! the schedule, it says so.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::bench::{bench_for, bench_to, count};
use crate::support::{ServerProcess, TempDir, assert_passes, run, upper};

/// An upper-casing echo server on 127.0.0.1:0 that runs `serve` on each
/// connection in a thread of its own, with the time the server started.
fn server(serve: fn(TcpStream, Instant)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let started = Instant::now();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            thread::spawn(move || serve(conn, started));
        }
    });
    addr
}

/// Echoes, except that for the first 200 ms of every second (from the
/// server's start) it answers nothing: a server that stalls once a second.
fn stalling(mut conn: TcpStream, started: Instant) {
    let mut buf = [0u8; 65536];
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        let into_second = started.elapsed().as_millis() % 1000;
        if into_second < 200 {
            thread::sleep(Duration::from_millis((200 - into_second) as u64));
        }
        if conn.write_all(&upper(&buf[..n])).is_err() {
            return;
        }
    }
}

/// Echoes, but reads only 16 KiB per millisecond (about 16 MB/s).
fn slow_reader(mut conn: TcpStream, _started: Instant) {
    let mut buf = [0u8; 16384];
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        if conn.write_all(&upper(&buf[..n])).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_stall_once_a_second_shows_at_a_fixed_rate_and_hides_in_a_closed_loop() {
    let addr = server(stalling);
    // Two windows of 2 s: each holds at least one whole 200 ms stall.
    let open = assert_passes(&bench_for("2", &addr, &["--rate", "1000"]));
    let closed = assert_passes(&bench_for("2", &addr, &[]));
    // At 1,000 per second, the 200 messages due during a stall wait up to
    // 200 ms: a tenth of the messages, so p99 is well inside the stall.
    assert!(count(&open, "p99_us") >= 100_000, "open loop: {open}");
    // A closed loop sends nothing while it waits: one slow round trip per
    // stall among thousands of fast ones.
    assert!(count(&closed, "p99_us") < 100_000, "closed loop: {closed}");
    assert_eq!(open["rate"], 1000.0);
    let achieved = open["achieved_rate"].as_f64().unwrap();
    assert!((900.0..=1100.0).contains(&achieved), "{open}");
    assert!(closed.get("achieved_rate").is_none(), "{closed}");
}

#[test]
fn a_generator_held_back_by_a_slow_reader_says_so_and_the_uncorrected_figures_hide_it() {
    let addr = server(slow_reader);
    // 64 MB/s offered to a server that takes 16: the writes block, so the
    // messages leave later and later.
    let out = bench_for("3", &addr, &["--rate", "1000", "--size", "65536"]);
    let report = assert_passes(&out);
    assert!(count(&report, "behind_max_us") >= 1_000_000, "{report}");
    let achieved = report["achieved_rate"].as_f64().unwrap();
    assert!(achieved < 700.0, "{report}");
    // From the real send times, a message waits only for the bytes queued
    // ahead of it; from its scheduled time, also for how late it left.
    let corrected = count(&report, "p50_us");
    let uncorrected = count(&report["uncorrected"], "p50_us");
    assert!(corrected >= 2 * uncorrected, "{report}");
}

#[test]
fn rate_with_stream_mode_is_a_usage_error() {
    let out = run(&["bench", "127.0.0.1:9", "--rate", "100", "--mode", "stream"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--rate") && stderr.contains("stream"),
        "{stderr}"
    );
    let out = run(&["bench", "127.0.0.1:9", "--rate", "-5"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_open_loop_runs_over_unix_sockets_and_tls_verifying_every_reply() {
    let dir = TempDir::new();
    let path = dir.path("rate.sock");
    let unix = ServerProcess::start(&["--unix", &path], 1);
    let tls = ServerProcess::start(&["--tls", "127.0.0.1:0", "-q"], 1);
    let tls_addr = tls.addr_arg();
    for target in [
        vec!["--unix", path.as_str()],
        vec![tls_addr.as_str(), "--tls", "--insecure"],
    ] {
        let out = bench_to("1", &target, &["--rate", "500", "--connections", "2"]);
        let report = assert_passes(&out);
        assert_eq!(report["starved"], 0, "{report}");
        assert!(report["requests"].as_u64().unwrap() >= 400, "{report}");
    }
    drop(unix);
}

#[test]
fn the_summary_gives_both_latencies_and_the_rate_kept() {
    let addr = server(stalling);
    let out = run(&[
        "bench",
        &addr,
        "--rate",
        "200",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    ]);
    let summary = String::from_utf8_lossy(&out.stdout);
    for line in [
        "latency     (from schedule) p50",
        "(from send) p50",
        "/s sent of 200/s asked",
    ] {
        assert!(summary.contains(line), "no {line:?} in:\n{summary}");
    }
}

/// A UDP upper-casing echo on 127.0.0.1:0 that answers datagram `n` (from
/// 0) as `answer(n, elapsed)` says: `Some(delay)` to answer after that
/// delay, `None` to drop it. Replies leave in the order they come due.
fn udp_server(answer: fn(u64, Duration) -> Option<Duration>) -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let started = Instant::now();
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut held: Vec<(Instant, Vec<u8>, std::net::SocketAddr)> = Vec::new();
        socket
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let mut n = 0;
        loop {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                if let Some(delay) = answer(n, started.elapsed()) {
                    held.push((Instant::now() + delay, upper(&buf[..len]), from));
                }
                n += 1;
            }
            let now = Instant::now();
            held.sort_by_key(|(at, _, _)| *at);
            while held.first().is_some_and(|(at, _, _)| *at <= now) {
                let (_, reply, to) = held.remove(0);
                let _ = socket.send_to(&reply, to);
            }
        }
    });
    addr
}

#[test]
fn over_udp_a_stall_once_a_second_shows_at_a_fixed_rate_and_hides_in_a_closed_loop() {
    // Every datagram that comes in the first 200 ms of a second waits until
    // the 200 ms are over.
    let addr = udp_server(|_, elapsed| {
        let into_second = elapsed.as_millis() % 1000;
        Some(Duration::from_millis(
            200u64.saturating_sub(into_second as u64),
        ))
    });
    let target = ["--udp", addr.as_str()];
    let open = assert_passes(&bench_to("2", &target, &["--rate", "1000"]));
    let closed = assert_passes(&bench_to("2", &target, &[]));
    assert!(count(&open, "p99_us") >= 100_000, "open loop: {open}");
    assert!(count(&closed, "p99_us") < 100_000, "closed loop: {closed}");
    let achieved = open["achieved_rate"].as_f64().unwrap();
    assert!((900.0..=1100.0).contains(&achieved), "{open}");
    assert_eq!(open["lost"], 0, "{open}");
}

#[test]
fn over_udp_the_open_loop_counts_drops_as_lost_and_takes_reordered_replies() {
    // Every tenth datagram dropped; of each other pair, the first answered
    // 2 ms after the second.
    let addr = udp_server(|n, _| match n % 10 {
        9 => None,
        n if n % 2 == 0 => Some(Duration::from_millis(2)),
        _ => Some(Duration::ZERO),
    });
    let out = bench_to(
        "2",
        &["--udp", addr.as_str()],
        &["--rate", "500", "--connections", "2", "--warmup", "0"],
    );
    let report = assert_passes(&out);
    // 1,000 sent, a tenth dropped: 900 replies (a few fewer if the last
    // ones come after the window). A drop counts as lost when its second
    // is up: in the window, those of the first second's 500.
    let (requests, lost) = (count(&report, "requests"), count(&report, "lost"));
    assert!((880..=900).contains(&requests), "{report}");
    assert!((45..=55).contains(&lost), "{report}");
    assert!(
        report["achieved_rate"].as_f64().unwrap() >= 490.0,
        "{report}"
    );
}

#[test]
fn over_udp_replies_held_past_their_loss_time_are_late_not_errors() {
    // Every datagram that comes in the first 1.5 s is answered at 1.5 s:
    // all 64 messages of the socket are lost at once, their numbers sent
    // again, and then the old replies come.
    let addr = udp_server(|_, elapsed| Some(Duration::from_millis(1500).saturating_sub(elapsed)));
    let out = bench_to(
        "3",
        &["--udp", addr.as_str()],
        &["--rate", "200", "--warmup", "0"],
    );
    let report = assert_passes(&out);
    assert!(count(&report, "lost") >= 64, "{report}");
    assert!(count(&report, "requests") > 0, "{report}");
}
