//! `serve --tls` and `connect --tls`: certificates from files (made by
//! openssl, in every key form) or made at start, pinned fingerprints, client
//! certificates, reload on SIGHUP, the handshake timeout, hostile clients,
//! and real clients nobody here wrote (`openssl s_client`, Python's `ssl`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};

use nix::sys::signal::Signal;

use crate::metrics::{scrape, value};
use crate::support::{
    PATIENCE, Pki, ServerProcess, assert_error_line, random_bytes, run, run_with_input, upecho,
    upper, wait_until,
};

/// `upecho connect ADDR --tls ARGS` with `input` piped in.
fn connect_tls(server: &ServerProcess, args: &[&str], input: &[u8]) -> Output {
    let addr = server.addr_arg();
    let mut full = vec!["connect", addr.as_str(), "--tls"];
    full.extend_from_slice(args);
    run_with_input(upecho(&full), input)
}

/// The SHA-256 the server logged for its temporary certificate.
fn logged_fingerprint(server: &ServerProcess) -> String {
    let line = server.log_line("temporary certificate");
    let at = line.find("sha256=").expect("sha256= in the line") + "sha256=".len();
    line[at..].split_whitespace().next().unwrap().to_string()
}

/// What `openssl s_client` (with `flags`: `-tls1_3`, ...) prints after
/// sending `input`, up to `until` (or its end). It is stopped then: it
/// discards what comes after its own close.
fn s_client(addr: SocketAddr, flags: &[&str], input: &[u8], until: &[u8]) -> Vec<u8> {
    let connect = addr.to_string();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &connect, "-quiet"])
        .args(flags);
    read_back(cmd, input, until)
}

/// What a TLS client tool prints (its stdout) after `input`, until the
/// output holds `until` or the tool ends; then it is stopped.
fn read_back(mut cmd: Command, input: &[u8], until: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the TLS client (packages openssl, gnutls-bin)");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    let mut stdout = child.stdout.take().unwrap();
    let until = until.to_vec();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.windows(until.len()).any(|w| w == until.as_slice()) {
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        got
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    reader.join().unwrap()
}

#[test]
fn a_temporary_certificate_is_made_and_its_logged_fingerprint_is_the_one_served() {
    // -q: the fingerprint line is shown anyway, since a client pins it.
    let server = ServerProcess::start(&["--tls", "127.0.0.1:0", "-q"], 1);
    assert!(
        server.ready_lines[0].starts_with("listening tls 127.0.0.1:"),
        "{:?}",
        server.ready_lines
    );
    let print = logged_fingerprint(&server);
    assert_eq!(print.len(), 95, "{print}");
    // openssl's own reading of the served leaf.
    let script = format!(
        "openssl s_client -connect {} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        server.addr()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let theirs = String::from_utf8_lossy(&out.stdout);
    assert!(
        theirs.trim().ends_with(&print),
        "openssl: {theirs:?}, logged: {print}"
    );
    // Pinned in either form, the client is served.
    let out = connect_tls(&server, &["--tls-fingerprint", &print], b"pinned\n");
    assert_eq!(out.stdout, b"PINNED\n", "{out:?}");
    let bare = print.replace(':', "").to_lowercase();
    let out = connect_tls(&server, &["--tls-fingerprint", &bare], b"bare\n");
    assert_eq!(out.stdout, b"BARE\n", "{out:?}");
}

#[test]
fn a_client_refuses_a_certificate_it_does_not_trust_in_one_line() {
    let server = ServerProcess::start(&["--tls", "127.0.0.1:0"], 1);
    let addr = server.addr();
    // The system's roots do not hold a temporary certificate.
    let out = connect_tls(&server, &[], b"x\n");
    assert_error_line(
        &out,
        &format!("error: cannot connect to tls {addr}: certificate not trusted: unknown issuer"),
    );
    // Nor is another pin that certificate's.
    let wrong = "00".repeat(32);
    let out = connect_tls(&server, &["--tls-fingerprint", &wrong], b"x\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("certificate not trusted: its sha256 is "),
        "{err}"
    );
    // --insecure goes ahead, with one warning.
    let out = connect_tls(&server, &["--insecure"], b"anyway\n");
    assert_eq!(out.stdout, b"ANYWAY\n", "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("warning: --insecure"), "{err}");
}

#[test]
fn certificate_files_serve_their_chain_with_every_key_form() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    for (chain, key, subject) in [
        ("chain.pem", "server.key", "CN=localhost"), // PKCS#8
        ("chain.pem", "server.sec1.key", "CN=localhost"), // SEC1
        ("rsa-chain.pem", "rsa.key", "CN=localhost RSA"), // PKCS#1
    ] {
        let server = pki.serve(chain, key, &[]);
        // Verified against the root: the intermediate came from the chain.
        let out = connect_tls(&server, &["--tls-ca", &ca, "-v"], b"chained\n");
        assert_eq!(out.stdout, b"CHAINED\n", "{key}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("server certificate {subject} sha256=")),
            "{key}: {err}"
        );
        assert!(
            err.contains("tls: TLSv1.3 TLS13_AES_128_GCM_SHA256"),
            "{key}: {err}"
        );
        // And by name: localhost is in the certificate, not.example is not.
        let out = connect_tls(
            &server,
            &["--tls-ca", &ca, "--tls-server-name", "localhost"],
            b"n\n",
        );
        assert_eq!(out.stdout, b"N\n", "{out:?}");
        let out = connect_tls(
            &server,
            &["--tls-ca", &ca, "--tls-server-name", "not.example"],
            b"n\n",
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("certificate not trusted"),
            "{out:?}"
        );
    }
}

#[test]
fn unusable_certificate_files_are_one_error_line_naming_the_file() {
    let pki = Pki::new();
    let serve = |cert: &str, key: &str| {
        run(&[
            "serve",
            "--tls",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ])
    };
    let (chain, key, other) = (
        pki.path("chain.pem"),
        pki.path("server.key"),
        pki.path("other.key"),
    );
    let missing = pki.path("missing.pem");
    let out = serve(&missing, &key);
    assert_error_line(
        &out,
        &format!("error: cannot load tls certificate {missing}: no such file or directory"),
    );
    // A key file where the certificate should be, and the other way round.
    let out = serve(&key, &key);
    assert_error_line(
        &out,
        &format!("error: cannot load tls certificate {key}: no certificate in it"),
    );
    let out = serve(&chain, &chain);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("cannot load tls key {chain}: no private key")),
        "{out:?}"
    );
    let out = serve(&chain, &other);
    assert_error_line(
        &out,
        &format!(
            "error: cannot load tls key {other}: it does not match the certificate in {chain}"
        ),
    );
}

#[test]
fn openssl_s_client_gets_its_replies_over_tls_1_2_and_1_3_and_nothing_older() {
    let pki = Pki::new();
    let server = pki.serve("chain.pem", "server.key", &["-v"]);
    let ca = pki.path("ca.pem");
    for version in ["-tls1_3", "-tls1_2"] {
        let out = s_client(
            server.addr(),
            &[version, "-CAfile", &ca, "-verify_return_error"],
            b"hello s_client\n",
            b"HELLO S_CLIENT\n",
        );
        assert_eq!(out, b"HELLO S_CLIENT\n", "{version}");
    }
    let out = s_client(server.addr(), &["-tls1_1"], b"old\n", b"OLD");
    assert!(out.is_empty(), "{out:?}");
    server.wait_for_log("end=tls: peer is incompatible");
}

#[test]
fn gnutls_cli_gets_its_reply_with_a_client_certificate_and_none_without() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    let server = pki.serve("chain.pem", "server.key", &["--tls-client-ca", &ca, "-v"]);
    let gnutls = |extra: &[String]| {
        let mut cmd = Command::new("gnutls-cli");
        cmd.args([
            "--x509cafile",
            &ca,
            "-p",
            &server.addr().port().to_string(),
            "localhost",
        ]);
        cmd.args(extra);
        cmd
    };
    let with = [
        "--x509certfile".to_string(),
        pki.path("client.pem"),
        "--x509keyfile".to_string(),
        pki.path("client.key"),
    ];
    let out = read_back(gnutls(&with), b"hello gnutls\n", b"HELLO GNUTLS\n");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("HELLO GNUTLS\n"), "{text}");
    server.wait_for_log("client_cert=\"CN=upecho test client\"");
    let out = read_back(gnutls(&[]), b"anonymous\n", b"ANONYMOUS");
    assert!(
        !String::from_utf8_lossy(&out).contains("ANONYMOUS"),
        "{out:?}"
    );
    server.wait_for_log("end=tls: peer sent no certificates");
}

/// Runs a Python `ssl` client `script` with argv: host, port, the CA file,
/// then `more`.
fn python_tls_client(script: &str, server: &ServerProcess, pki: &Pki, more: &[&str]) -> Output {
    let (port, ca) = (server.addr().port().to_string(), pki.path("ca.pem"));
    Command::new("python3")
        .args(["-c", script, "127.0.0.1", &port, &ca])
        .args(more)
        .output()
        .expect("python3")
}

/// Python's `ssl` over a `MemoryBIO`: sends `data`, then `close_notify`,
/// and reads what comes after it: everything owed, then the server's
/// `close_notify` (printed as `close_notify`), then EOF.
const PYTHON_HALF_CLOSE: &str = r#"
import socket, ssl, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[4])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(sys.argv[3])
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
sock = socket.create_connection((host, port), timeout=30)
def pump():
    data = outgoing.read()
    if data:
        sock.sendall(data)
def fill():
    data = sock.recv(65536)
    if not data:
        incoming.write_eof()
    else:
        incoming.write(data)
    return bool(data)
while True:
    try:
        tls.do_handshake(); pump(); break
    except ssl.SSLWantReadError:
        pump(); fill()
payload = bytes((i * 7 + 97) % 26 + 97 for i in range(size))
tls.write(payload); pump()
try:
    tls.unwrap()
except ssl.SSLWantReadError:
    pass
pump()
got = bytearray()
notify = False
while True:
    try:
        chunk = tls.read(65536)
        if not chunk:
            notify = True
            break
        got += chunk
    except ssl.SSLWantReadError:
        if not fill():
            break
    except ssl.SSLZeroReturnError:
        notify = True
        break
ok = bytes(got) == payload.upper()
print(len(got), "match" if ok else "mismatch", "close_notify" if notify else "no close_notify")
"#;

#[test]
fn close_notify_is_a_half_close_and_every_reply_still_owed_comes_after_it() {
    let pki = Pki::new();
    let server = pki.serve("chain.pem", "server.key", &["-v"]);
    let size = (3 << 20).to_string();
    let out = python_tls_client(PYTHON_HALF_CLOSE, &server, &pki, &[&size]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.trim(), format!("{size} match close_notify"), "{out:?}");
    let closed = server.log_line("connection closed");
    assert!(closed.contains("end=peer finished"), "{closed}");
    // The project's own client: a half-close in pipe mode, 4 MiB back.
    let data = random_bytes(3, 4 << 20);
    let out = connect_tls(&server, &["--tls-ca", &pki.path("ca.pem")], &data);
    assert!(
        out.stdout == upper(&data),
        "{} of {} bytes",
        out.stdout.len(),
        data.len()
    );
}

#[test]
fn a_client_certificate_is_required_with_tls_client_ca_and_its_subject_logged() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    let server = pki.serve("chain.pem", "server.key", &["--tls-client-ca", &ca, "-v"]);
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let out = connect_tls(
        &server,
        &["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key],
        b"me\n",
    );
    assert_eq!(out.stdout, b"ME\n", "{out:?}");
    let line = server.log_line("tls established");
    assert!(
        line.contains("client_cert=\"CN=upecho test client\""),
        "{line}"
    );
    // Without one: no reply. (TLS 1.3 settles the client's certificate after
    // the client's side of the handshake, so the refusal comes as an alert.)
    let out = connect_tls(&server, &["--tls-ca", &ca], b"anonymous\n");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = s_client(
        server.addr(),
        &["-tls1_2", "-CAfile", &ca],
        b"anonymous\n",
        b"ANONYMOUS",
    );
    assert!(out.is_empty(), "{out:?}");
    server.wait_for_log("end=tls: peer sent no certificates");
}

/// A `connect --tls` session kept open, a line at a time.
struct Session {
    child: std::process::Child,
    input: Option<std::process::ChildStdin>,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl Session {
    fn open(server: &ServerProcess, args: &[&str]) -> Session {
        let mut child = Command::new(crate::support::bin())
            .args(["connect", &server.addr_arg(), "--tls"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take();
        let output = std::io::BufReader::new(child.stdout.take().unwrap());
        Session {
            child,
            input,
            output,
        }
    }

    /// Sends `line` and returns the reply line.
    fn say(&mut self, line: &str) -> String {
        let input = self.input.as_mut().unwrap();
        input.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        std::io::BufRead::read_line(&mut self.output, &mut reply).unwrap();
        reply
    }

    /// Ends stdin and waits for the client to exit.
    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.input.take());
        crate::support::wait_with_deadline(&mut self.child, PATIENCE).expect("client exits")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to `addr`, sends `bytes`, and returns what comes back before the
/// server closes.
fn send_until_closed(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

#[test]
fn sighup_swaps_the_certificate_for_new_handshakes_and_a_bad_file_keeps_the_old() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("live.pem"), pki.path("live.key"));
    std::fs::copy(pki.path("chain.pem"), &cert).unwrap();
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    let metrics_flag = ["--metrics", "127.0.0.1:0"];
    let mut args = vec![
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    args.extend_from_slice(&metrics_flag);
    let server = ServerProcess::start(&args, 2);
    let (ca, other_ca) = (pki.path("ca.pem"), pki.path("other-ca.pem"));
    let expiry_before = value(
        &scrape(server.addrs[1]),
        "upecho_tls_certificate_expiry_timestamp_seconds",
    )
    .unwrap();
    // A connection opened before the reload.
    let mut open = Session::open(&server, &["--tls-ca", &ca]);
    assert_eq!(open.say("before"), "BEFORE\n");
    // The other identity, from another CA.
    std::fs::copy(pki.path("other.pem"), &cert).unwrap();
    std::fs::copy(pki.path("other.key"), &key).unwrap();
    server.signal(Signal::SIGHUP);
    server.wait_for_log("tls files read again");
    let out = connect_tls(&server, &["--tls-ca", &other_ca], b"after\n");
    assert_eq!(out.stdout, b"AFTER\n", "{out:?}");
    let out = connect_tls(&server, &["--tls-ca", &ca], b"after\n");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the old CA no longer fits: {out:?}"
    );
    // The connection from before is untouched.
    assert_eq!(open.say("still"), "STILL\n");
    assert!(open.finish().success());
    // A key that does not match: a warning naming it, the other one stays.
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    server.signal(Signal::SIGHUP);
    let warning = server.log_line("the old tls certificate stays");
    assert!(
        warning.contains("WARN") && warning.contains("live.key"),
        "{warning}"
    );
    let out = connect_tls(&server, &["--tls-ca", &other_ca], b"kept\n");
    assert_eq!(out.stdout, b"KEPT\n", "{out:?}");
    let expiry_after = value(
        &scrape(server.addrs[1]),
        "upecho_tls_certificate_expiry_timestamp_seconds",
    )
    .unwrap();
    assert!(
        expiry_before > 1.0e9 && expiry_after > 1.0e9,
        "{expiry_before} {expiry_after}"
    );
}

#[test]
fn hostile_handshakes_cost_a_debug_line_each_and_a_stall_ends_at_the_timeout() {
    let server = ServerProcess::start(
        &[
            "--tls",
            "127.0.0.1:0",
            "--tls-handshake-timeout",
            "1",
            "--metrics",
            "127.0.0.1:0",
            "-v",
        ],
        2,
    );
    // Plain text to a TLS port, and garbage that looks like a record header.
    let reply = send_until_closed(server.addr(), b"hello, is this plain?\n");
    assert!(
        !reply.windows(5).any(|w| w == b"HELLO"),
        "never echoed: {reply:?}"
    );
    send_until_closed(
        server.addr(),
        &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
    );
    // A stall: connected, never a byte. Closed by the handshake timeout.
    let mut stalled = TcpStream::connect(server.addr()).unwrap();
    stalled.set_read_timeout(Some(PATIENCE)).unwrap();
    let started = std::time::Instant::now();
    let n = stalled.read(&mut [0u8; 16]).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    server.wait_for_log("end=tls: handshake timed out");
    wait_until("three closed with reason tls", PATIENCE, || {
        let text = scrape(server.addrs[1]);
        value(
            &text,
            &format!(
                "upecho_connections_closed_total{{listener=\"tls {}\",reason=\"tls\"}}",
                server.addr()
            ),
        ) == Some(3.0)
    });
    let text = scrape(server.addrs[1]);
    let failed = format!(
        "upecho_tls_handshakes_total{{listener=\"tls {}\",result=\"failed\"}}",
        server.addr()
    );
    assert_eq!(value(&text, &failed), Some(3.0), "{text}");
    let lines = server.stderr_so_far();
    let failures: Vec<&String> = lines.iter().filter(|l| l.contains("end=tls:")).collect();
    assert_eq!(failures.len(), 3, "one line each: {lines:#?}");
    assert!(
        failures.iter().all(|l| l.contains("DEBUG")),
        "{failures:#?}"
    );
}

#[test]
fn a_proxy_header_comes_before_the_handshake_and_names_the_client() {
    let pki = Pki::new();
    let server = pki.serve("chain.pem", "server.key", &["--proxy-protocol", "-v"]);
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
sock.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n")
tls = ctx.wrap_socket(sock, server_hostname="localhost")
tls.sendall(b"behind a balancer")
print(tls.recv(100).decode())
"#;
    let out = python_tls_client(script, &server, &pki, &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "BEHIND A BALANCER",
        "{out:?}"
    );
    let line = server.log_line("tls established");
    assert!(line.contains("peer=192.0.2.7:40000"), "{line}");
}

#[test]
fn tls_handshakes_and_the_certificate_expiry_are_in_the_metrics() {
    let server = ServerProcess::start(&["--tls", "127.0.0.1:0", "--metrics", "127.0.0.1:0"], 2);
    let print = logged_fingerprint(&server);
    let out = connect_tls(&server, &["--tls-fingerprint", &print], b"counted\n");
    assert_eq!(out.stdout, b"COUNTED\n", "{out:?}");
    let ok = format!(
        "upecho_tls_handshakes_total{{listener=\"tls {}\",result=\"ok\"}}",
        server.addr()
    );
    wait_until("one handshake counted", PATIENCE, || {
        value(&scrape(server.addrs[1]), &ok) == Some(1.0)
    });
    let text = scrape(server.addrs[1]);
    let expiry = value(&text, "upecho_tls_certificate_expiry_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The temporary certificate is valid for a year.
    assert!(
        expiry > now + 300.0 * 86_400.0 && expiry < now + 367.0 * 86_400.0,
        "{expiry}"
    );
    assert!(
        text.contains("# TYPE upecho_tls_certificate_expiry_timestamp_seconds gauge"),
        "{text}"
    );
}

#[test]
fn bench_tls_verifies_every_reply_byte_in_pingpong_and_stream_mode() {
    let server = ServerProcess::start(&["--tls", "127.0.0.1:0"], 1);
    let print = logged_fingerprint(&server);
    let addr = server.addr_arg();
    for (mode, size) in [
        ("pingpong", "64"),
        ("pingpong", "200000"),
        ("stream", "65536"),
    ] {
        let out = run(&[
            "bench",
            &addr,
            "--tls",
            "--tls-fingerprint",
            &print,
            "--mode",
            mode,
            "--size",
            size,
            "--connections",
            "3",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            "--json",
        ]);
        let report = crate::support::assert_passes(&out);
        assert!(
            report["requests"].as_u64().unwrap() > 0,
            "{mode} {size}: {report}"
        );
        assert_eq!(report["errors"], 0, "{mode} {size}: {report}");
        assert_eq!(report["starved"], 0, "{mode} {size}: {report}");
    }
    let out = run(&["bench", &addr, "--tls", "--duration", "0.5"]);
    assert_error_line(
        &out,
        &format!("error: cannot connect to tls {addr}: certificate not trusted: unknown issuer"),
    );
    let out = run(&["bench", &addr, "--tls", "--udp", "--duration", "0.5"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Python's `ssl`: a PROXY v2 header (1,100 bytes, a TLV pads it) and the
/// whole ClientHello in one write, so that the server reads the end of the
/// header and the ClientHello at once; then the handshake and one exchange.
const PYTHON_HEADER_AND_HELLO: &str = r#"
import socket, ssl, struct, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outgoing.read()
addrs = socket.inet_aton("192.0.2.9") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40001, 443)
tlv = bytes([0x04]) + struct.pack("!H", 1069) + bytes(1069)
body = addrs + tlv
header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body
sock = socket.create_connection((host, port), timeout=30)
sock.sendall(header + hello)
def fill():
    data = sock.recv(65536)
    if not data:
        raise SystemExit("closed by the server")
    incoming.write(data)
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        data = outgoing.read()
        if data:
            sock.sendall(data)
        fill()
tls.write(b"in one read")
sock.sendall(outgoing.read())
got = b""
while len(got) < 11:
    try:
        got += tls.read(100)
    except ssl.SSLWantReadError:
        fill()
print(got.decode())
"#;

#[test]
fn a_client_hello_read_with_the_end_of_the_proxy_header_is_answered() {
    let pki = Pki::new();
    let server = pki.serve(
        "chain.pem",
        "server.key",
        &["--proxy-protocol", "--tls-handshake-timeout", "3", "-v"],
    );
    let out = python_tls_client(PYTHON_HEADER_AND_HELLO, &server, &pki, &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "IN ONE READ",
        "{out:?}"
    );
    let line = server.log_line("tls established");
    assert!(line.contains("peer=192.0.2.9:40001"), "{line}");
}
