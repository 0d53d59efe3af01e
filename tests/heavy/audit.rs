//! An outside audit of `serve --tls`: testssl.sh (Debian package
//! `testssl.sh`, offline: no DNS, no revocation lookups) against a server
//! with a certificate from a test CA (made by openssl, `tests/it/tls/pki.sh`).
//! About a minute of handshakes, so it runs here, one heavy test at a time.

use std::process::{Command, Stdio};

use crate::exclusive;
use crate::support::{Pki, ServerProcess};

/// Findings of severity MEDIUM or above that the test certificate causes,
/// not the server: it names no CRL or OCSP responder.
const CAUSED_BY_THE_TEST_CERTIFICATE: [&str; 1] = ["cert_revocation"];

#[test]
fn testssl_finds_nothing_medium_or_above_but_what_the_test_certificate_causes() {
    let _serial = exclusive();
    let pki = Pki::new();
    let server = pki.serve("chain.pem", "server.key", &[]);
    let (findings, text) = testssl(&pki, server.addr().port());
    let finding = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| f["finding"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no {id} in {text}"))
    };
    let serious: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .filter(|f| !CAUSED_BY_THE_TEST_CERTIFICATE.contains(&f["id"].as_str().unwrap_or("")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(serious.is_empty(), "{serious:#?}");
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(finding(old), "not offered", "{old}");
    }
    assert!(finding("TLS1_3").starts_with("offered"));
    assert_eq!(finding("PFS"), "offered");
    assert_eq!(finding("cipher_order"), "server");
    assert_eq!(finding("cert_chain_of_trust"), "passed.");
}

/// Runs testssl.sh against `localhost:PORT`, trusting the test CA of `pki`;
/// returns its findings and the JSON they came from.
fn testssl(pki: &Pki, port: u16) -> (Vec<serde_json::Value>, String) {
    let report = pki.path("testssl.json");
    let target = format!("localhost:{port}");
    let status = Command::new("testssl")
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--nodns",
            "none",
        ])
        .args([
            "--add-ca",
            &pki.path("ca.pem"),
            "--jsonfile",
            &report,
            &target,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("testssl (package testssl.sh)");
    // Its exit status counts findings; the JSON says which.
    assert!(status.code().is_some(), "{status}");
    let text = std::fs::read_to_string(&report).expect("testssl wrote its JSON");
    (serde_json::from_str(&text).unwrap(), text)
}

#[test]
fn a_thousand_half_open_handshakes_hold_only_their_slots_until_their_timeout() {
    use std::io::{Read, Write};
    let _serial = exclusive();
    let server = ServerProcess::start(
        &["--tls", "127.0.0.1:0", "--tls-handshake-timeout", "3", "-v"],
        1,
    );
    let print = {
        let line = server.log_line("temporary certificate");
        line.rsplit("sha256=").next().unwrap().trim().to_string()
    };
    let before_kib = crate::support::rss_kib(server.pid());
    let fds_before = crate::support::fd_count(server.pid());
    // Half a record header each: the handshake never gets a ClientHello.
    let stalled: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
            stream.write_all(&[0x16, 0x03]).unwrap();
            stream
        })
        .collect();
    crate::support::wait_until("all 1,000 accepted", crate::support::PATIENCE, || {
        crate::support::fd_count(server.pid()) >= fds_before + 1000
    });
    // Beside them a real client is served at once.
    let addr = server.addr_arg();
    let out = crate::support::run_with_input(
        crate::support::upecho(&["connect", &addr, "--tls", "--tls-fingerprint", &print]),
        b"still served\n",
    );
    assert_eq!(out.stdout, b"STILL SERVED\n", "{out:?}");
    // Little memory each: a slot, a socket, a rustls session waiting.
    let held_kib = crate::support::rss_kib(server.pid()).saturating_sub(before_kib);
    assert!(
        held_kib < 40 * 1024,
        "1,000 stalled handshakes hold {held_kib} KiB"
    );
    // At the timeout every one is closed: EOF on each.
    for mut stream in stalled {
        stream
            .set_read_timeout(Some(crate::support::PATIENCE))
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.len() < 16, "at most an alert: {rest:?}");
    }
    crate::support::wait_until("every stalled one closed", crate::support::PATIENCE, || {
        crate::support::fd_count(server.pid()) <= fds_before
    });
    let timed_out = || {
        server
            .stderr_so_far()
            .iter()
            .filter(|line| line.contains("end=tls: handshake timed out"))
            .count()
    };
    // The log lines reach us through a pipe, after the sockets closed.
    crate::support::wait_until("a line for each", crate::support::PATIENCE, || {
        timed_out() >= 1000
    });
    assert_eq!(timed_out(), 1000, "one debug line each");
}
