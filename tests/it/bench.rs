//! `upecho bench`: it measures a correct server without errors and catches
//! every kind of broken server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::thread;

use crate::support::{ServerProcess, run};

/// The JSON report on stdout, parsed; it must be the only thing there.
fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object alone: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

fn bench(addr: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "bench",
        addr,
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn pingpong_against_upecho_reports_every_contract_field_and_no_error() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let out = bench(&server.addr_arg(), &["--connections", "4", "--size", "100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    for field in [
        "mode",
        "connections",
        "size",
        "duration_s",
        "requests_per_s",
        "mb_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "errors",
        "starved",
        "client_cpu_percent",
    ] {
        assert!(report.get(field).is_some(), "missing {field}: {report}");
    }
    assert_eq!(report["mode"], "pingpong");
    assert_eq!(report["connections"], 4);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["starved"], 0);
    assert!(report["requests_per_s"].as_f64().unwrap() > 0.0);
    let (p50, p99, max) = (
        report["p50_us"].as_u64().unwrap(),
        report["p99_us"].as_u64().unwrap(),
        report["max_us"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    // MB/s is verified reply bytes: requests x size.
    let expected_mb = report["requests_per_s"].as_f64().unwrap() * 100.0 / 1e6;
    assert!((report["mb_per_s"].as_f64().unwrap() - expected_mb).abs() < 0.01);
}

#[test]
fn stream_against_upecho_verifies_bytes_without_error() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let out = bench(
        &server.addr_arg(),
        &["--mode", "stream", "--size", "65536", "--connections", "2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["mode"], "stream");
    assert_eq!(report["errors"], 0);
    assert!(report["mb_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn transform_none_is_checked_as_plain_echo() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0", "--transform", "none"], 1);
    let out = bench(&server.addr_arg(), &["--transform", "none"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same server is wrong for a bench that expects upper case.
    let out = bench(&server.addr_arg(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(json(&out)["errors"].as_u64().unwrap() > 0);
}

#[test]
fn human_summary_names_the_numbers() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let out = run(&[
        "bench",
        &server.addr_arg(),
        "--duration",
        "0.3",
        "--warmup",
        "0",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in [
        "round trips",
        "MB/s",
        "p99.9",
        "errors      0",
        "starved     0",
        "client CPU",
    ] {
        assert!(text.contains(word), "{word} missing in {text}");
    }
}

/// A server with a defect: `reply` turns the bytes at stream offset `at` into
/// what it sends back; `None` closes the connection.
fn broken_server(reply: fn(u64, &[u8]) -> Option<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut at = 0u64;
                loop {
                    let n = match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let Some(out) = reply(at, &buf[..n]) else {
                        return;
                    };
                    at += n as u64;
                    if conn.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn assert_caught(addr: SocketAddr, extra: &[&str]) -> serde_json::Value {
    let out = bench(&addr.to_string(), extra);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    let report = json(&out);
    assert!(report["errors"].as_u64().unwrap() > 0, "{report}");
    report
}

#[test]
fn a_server_leaving_one_byte_in_a_thousand_untransformed_is_caught() {
    let addr = broken_server(|at, bytes| {
        let mut out: Vec<u8> = bytes.iter().map(u8::to_ascii_uppercase).collect();
        for (i, byte) in out.iter_mut().enumerate() {
            if (at + i as u64) % 1000 == 999 {
                *byte = bytes[i];
            }
        }
        Some(out)
    });
    assert_caught(addr, &[]);
    assert_caught(addr, &["--mode", "stream", "--size", "4096"]);
}

#[test]
fn a_server_dropping_the_last_byte_of_each_reply_is_caught() {
    let addr = broken_server(|_, bytes| Some(bytes[..bytes.len() - 1].to_ascii_uppercase()));
    assert_caught(addr, &[]);
    assert_caught(addr, &["--mode", "stream", "--size", "4096"]);
}

#[test]
fn a_server_closing_early_is_caught() {
    let addr = broken_server(|at, bytes| (at < 1000).then(|| bytes.to_ascii_uppercase()));
    assert_caught(addr, &["--connections", "3"]);
    assert_caught(addr, &["--mode", "stream", "--size", "4096"]);
}

#[test]
fn a_server_adding_a_byte_is_caught() {
    let addr = broken_server(|_, bytes| {
        let mut out = bytes.to_ascii_uppercase();
        out.push(b'!');
        Some(out)
    });
    let out = bench(&addr.to_string(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 more bytes than were sent"), "{stderr}");
    assert_caught(addr, &[]);
}

#[test]
fn a_server_that_never_replies_starves_every_connection_and_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for conn in listener.incoming().take(3) {
            held.push(conn.unwrap());
        }
        held
    });
    let out = bench(&addr.to_string(), &["--connections", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["starved"], 3);
    assert_eq!(report["requests_per_s"], 0.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no reply"), "{stderr}");
    drop(held.join().unwrap());
}

#[test]
fn bench_to_a_closed_port_fails_saying_refused() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bench(&format!("127.0.0.1:{port}"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connection refused"), "{stderr}");
}
