//! `upecho serve --ws/--wss`: WebSocket echo (RFC 6455) on any path, the
//! page and `/healthz` over HTTP, against real clients (Python `websockets`
//! and Node `ws`, Debian's) and frames built by hand for the cases a client
//! library will not send.

mod frames;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

use frames::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, masked, read_close, read_frame, send};

use crate::metrics::{scrape, value};
use crate::support::{PATIENCE, ServerProcess};

/// Debian's Python, which has Debian's `python3-websockets` (the `python3`
/// on PATH may be another build without it); `None` after saying why
/// outside CI when it is missing.
fn python_websockets() -> Option<Command> {
    let python = "/usr/bin/python3";
    let found = Command::new(python)
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        return Some(Command::new(python));
    }
    crate::support::skip(
        "a websockets client test",
        "python3-websockets is not installed",
    );
    None
}

/// A verbose server with one `--ws` listener (first) and `extra` flags,
/// which add `more` readiness lines.
fn serve_ws_and(extra: &[&str], more: usize) -> ServerProcess {
    let mut args = vec!["--ws", "127.0.0.1:0", "-v"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args, 1 + more)
}

/// A verbose server with one `--ws` listener and `extra` flags.
fn serve_ws(extra: &[&str]) -> ServerProcess {
    serve_ws_and(extra, 0)
}

/// Sends an HTTP request and reads the whole reply.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// A Python `websockets` client: text, binary, a fragmented message, a ping,
/// then a close with 4001; one line of output per step.
const PYTHON_CLIENT: &str = r#"
import asyncio, ssl, sys, websockets
async def main(url):
    context = None
    if url.startswith("wss:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    async with websockets.connect(url, ssl=context, subprotocols=["echo", "other"]) as ws:
        print("subprotocol", ws.subprotocol)
        await ws.send("hello, straße"); print("text", repr(await ws.recv()))
        await ws.send(b"bin\x00ary\xff"); print("binary", repr(await ws.recv()))
        await ws.send(["frag", "mented ", "message"]); print("fragmented", repr(await ws.recv()))
        await (await ws.ping(b"are you there")); print("pong")
        await ws.close(4001, "done here")
        print("closed", ws.close_code, ws.close_reason)
asyncio.run(main(sys.argv[1]))
"#;

/// The lines [`PYTHON_CLIENT`] prints against an ascii upper-casing server.
const PYTHON_EXPECTED: &str = "subprotocol echo\n\
    text 'HELLO, STRAßE'\n\
    binary b'BIN\\x00ARY\\xff'\n\
    fragmented 'FRAGMENTED MESSAGE'\n\
    pong\n\
    closed 4001 done here\n";

fn run_python(url: &str) -> Option<Output> {
    let mut python = python_websockets()?;
    Some(
        python
            .args(["-c", PYTHON_CLIENT, url])
            .output()
            .expect("run python3"),
    )
}

#[test]
fn python_websockets_gets_each_message_back_in_its_type_over_ws_and_wss() {
    let server = serve_ws_and(&["--wss", "127.0.0.1:0", "--metrics", "127.0.0.1:0"], 2);
    assert!(
        server.ready_lines[0].starts_with("listening ws 127.0.0.1:"),
        "{:?}",
        server.ready_lines
    );
    assert!(
        server.ready_lines[1].starts_with("listening wss 127.0.0.1:"),
        "{:?}",
        server.ready_lines
    );
    let (ws, wss) = (server.addrs[0], server.addrs[1]);
    for url in [format!("ws://{ws}/any/path?q=1"), format!("wss://{wss}/")] {
        let Some(out) = run_python(&url) else { return };
        assert!(
            out.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            PYTHON_EXPECTED,
            "{url}"
        );
    }
    // Both connections have closed (the close handshake is done): four
    // messages each way per connection, payload bytes only.
    server.wait_for_log(&format!("listener=wss {wss} peer="));
    crate::support::wait_until("both closes counted", PATIENCE, || {
        scrape(server.addrs[2]).contains(&format!(
            "upecho_connections_closed_total{{listener=\"wss {wss}\",reason=\"peer\"}} 1"
        ))
    });
    let text = scrape(server.addrs[2]);
    for listener in [format!("ws {ws}"), format!("wss {wss}")] {
        let series = |name: &str| value(&text, &format!("{name}{{listener=\"{listener}\"}}"));
        assert_eq!(
            series("upecho_websocket_messages_received_total"),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            series("upecho_websocket_messages_sent_total"),
            Some(3.0),
            "{text}"
        );
        let payload = ("hello, straße".len() + 9 + 17) as f64;
        assert_eq!(
            series("upecho_bytes_received_total"),
            Some(payload),
            "{text}"
        );
        assert_eq!(series("upecho_bytes_sent_total"), Some(payload), "{text}");
    }
    let handshakes = format!("upecho_tls_handshakes_total{{listener=\"wss {wss}\",result=\"ok\"}}");
    assert_eq!(value(&text, &handshakes), Some(1.0), "{text}");
}

#[test]
fn node_ws_gets_its_text_and_binary_messages_back() {
    let script = r#"
const WebSocket = require('ws');
const ws = new WebSocket(process.env.URL);
const got = [];
ws.on('open', () => { ws.send('from node'); ws.send(Buffer.from([0x61, 0x00, 0x62])); });
ws.on('message', (data, isBinary) => {
  got.push((isBinary ? 'binary ' : 'text ') + (isBinary ? data.toString('hex') : data.toString()));
  if (got.length === 2) ws.close(1000);
});
ws.on('close', (code) => { console.log(got.join('\n')); console.log('closed ' + code); });
ws.on('error', (err) => { console.error(String(err)); process.exit(1); });
"#;
    if !std::path::Path::new("/usr/share/nodejs/ws").exists() {
        crate::support::skip("the node ws test", "node-ws is not installed");
        return;
    }
    let server = serve_ws(&[]);
    let out = Command::new("node")
        .env("NODE_PATH", "/usr/share/nodejs")
        .env("URL", format!("ws://{}/", server.addr()))
        .args(["-e", script])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "text FROM NODE\nbinary 410042\nclosed 1000\n"
    );
}

#[test]
fn a_message_in_many_fragments_with_a_ping_between_is_answered_once_whole() {
    let server = serve_ws(&[]);
    let mut ws = frames::upgrade(server.addr(), "/");
    send(&mut ws, &masked(false, TEXT, b"one "));
    send(&mut ws, &masked(false, CONTINUATION, b"two "));
    send(&mut ws, &masked(true, PING, b"ping between"));
    for part in [&b"three "[..], b"four "] {
        send(&mut ws, &masked(false, CONTINUATION, part));
    }
    send(&mut ws, &masked(true, CONTINUATION, b"five"));
    assert_eq!(read_frame(&mut ws), (true, PONG, b"ping between".to_vec()));
    assert_eq!(
        read_frame(&mut ws),
        (true, TEXT, b"ONE TWO THREE FOUR FIVE".to_vec())
    );
    // A binary message of 200,000 bytes in 1,000-byte fragments.
    let data = crate::support::random_bytes(7, 200_000);
    for (i, chunk) in data.chunks(1000).enumerate() {
        let opcode = if i == 0 { BINARY } else { CONTINUATION };
        send(&mut ws, &masked(i == 199, opcode, chunk));
    }
    assert_eq!(
        read_frame(&mut ws),
        (true, BINARY, crate::support::upper(&data))
    );
}

#[test]
fn invalid_utf8_split_across_fragments_closes_with_1007_and_is_counted() {
    let server = serve_ws_and(&["--metrics", "127.0.0.1:0"], 1);
    let mut ws = frames::upgrade(server.addr(), "/");
    // "é" is C3 A9: each fragment alone could be a prefix of valid text;
    // together C3 28 is invalid.
    send(&mut ws, &masked(false, TEXT, b"caf\xc3"));
    send(&mut ws, &masked(true, CONTINUATION, b"\x28 ok"));
    let (code, _) = read_close(&mut ws);
    assert_eq!(code, 1007);
    server.wait_for_log("end=ws_protocol: invalid UTF-8");
    let text = scrape(server.addrs[1]);
    let series = format!(
        "upecho_connections_closed_total{{listener=\"ws {}\",reason=\"ws_protocol\"}}",
        server.addr()
    );
    assert_eq!(value(&text, &series), Some(1.0), "{text}");
    // A character split across fragments is fine.
    let mut ws = frames::upgrade(server.addr(), "/");
    send(&mut ws, &masked(false, TEXT, b"caf\xc3"));
    send(&mut ws, &masked(true, CONTINUATION, b"\xa9!"));
    assert_eq!(
        read_frame(&mut ws),
        (true, TEXT, "CAFé!".as_bytes().to_vec())
    );
}

#[test]
fn an_unmasked_client_frame_closes_with_1002() {
    let server = serve_ws(&[]);
    let mut ws = frames::upgrade(server.addr(), "/");
    send(&mut ws, &frames::frame(true, TEXT, b"not masked", None));
    assert_eq!(read_close(&mut ws).0, 1002);
    server.wait_for_log("end=ws_protocol:");
}

#[test]
fn a_message_over_ws_max_message_closes_with_1009_even_in_fragments() {
    let server = serve_ws(&["--ws-max-message", "1000"]);
    let mut ws = frames::upgrade(server.addr(), "/");
    send(&mut ws, &masked(true, BINARY, &[b'a'; 1000]));
    assert_eq!(read_frame(&mut ws), (true, BINARY, vec![b'A'; 1000]));
    let mut ws = frames::upgrade(server.addr(), "/");
    send(&mut ws, &masked(false, TEXT, &[b'a'; 600]));
    send(&mut ws, &masked(true, CONTINUATION, &[b'a'; 600]));
    assert_eq!(read_close(&mut ws).0, 1009);
}

#[test]
fn a_close_with_a_code_and_reason_is_echoed_and_the_server_closes_the_socket() {
    let server = serve_ws(&[]);
    let mut ws = frames::upgrade(server.addr(), "/");
    let mut close = 4321u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye for now");
    send(&mut ws, &masked(true, CLOSE, &close));
    assert_eq!(read_close(&mut ws), (4321, "bye for now".to_string()));
    let mut rest = Vec::new();
    assert_eq!(ws.read_to_end(&mut rest).unwrap(), 0, "then EOF");
    server.wait_for_log("end=peer finished");
}

#[test]
fn http_answers_the_page_healthz_and_404_and_ws_origin_limits_upgrades() {
    let server = serve_ws(&["--ws-origin", "https://example.org"]);
    let addr = server.addr();
    let page = http(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    assert!(
        page.contains("&gt;&gt;: </label>"),
        "the >>: prompt: {page}"
    );
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "nothing external"
    );
    let health = http(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("\r\n\r\nok\n"),
        "{health}"
    );
    let missing = http(
        addr,
        "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let (_, status, _) = frames::request(addr, "/", &["Origin: https://evil.example"]);
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    let (mut ws, status, headers) = frames::request(addr, "/", &["Origin: https://example.org"]);
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert!(
        headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")),
        "{headers:?}"
    );
    send(&mut ws, &masked(true, TEXT, b"allowed"));
    assert_eq!(read_frame(&mut ws), (true, TEXT, b"ALLOWED".to_vec()));
}

/// Reads a response head off `reader`: its status line.
fn read_head(reader: &mut std::io::BufReader<TcpStream>) -> String {
    frames::response_head(reader).0
}

#[test]
fn an_upgrade_is_served_alike_in_one_write_with_a_frame_in_pieces_or_after_a_page() {
    let server = serve_ws(&[]);
    let addr = server.addr();
    // The head and the first frame in one write.
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut bytes = frames::head(addr, "/raw", &[]).into_bytes();
    bytes.extend_from_slice(&masked(true, TEXT, b"at once"));
    (&stream).write_all(&bytes).unwrap();
    let mut ws = std::io::BufReader::new(stream);
    assert_eq!(read_head(&mut ws), "HTTP/1.1 101 Switching Protocols");
    assert_eq!(read_frame(&mut ws), (true, TEXT, b"AT ONCE".to_vec()));

    // The head in two writes, apart, so that the server usually reads it in
    // two (served alike either way: the pause is not a synchronisation).
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = frames::head(addr, "/raw", &[]);
    (&stream).write_all(&head.as_bytes()[..20]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    (&stream).write_all(&head.as_bytes()[20..]).unwrap();
    let mut ws = std::io::BufReader::new(stream);
    assert_eq!(read_head(&mut ws), "HTTP/1.1 101 Switching Protocols");
    send(&mut ws, &masked(true, TEXT, b"in pieces"));
    assert_eq!(read_frame(&mut ws), (true, TEXT, b"IN PIECES".to_vec()));

    // The page, then an upgrade on the same connection (hyper's upgrade).
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    (&stream)
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut ws = std::io::BufReader::new(stream);
    assert!(read_head(&mut ws).starts_with("HTTP/1.1 200"));
    let mut body = [0u8; 3];
    ws.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"ok\n");
    ws.get_ref()
        .write_all(frames::head(addr, "/raw", &[]).as_bytes())
        .unwrap();
    assert_eq!(read_head(&mut ws), "HTTP/1.1 101 Switching Protocols");
    send(&mut ws, &masked(true, BINARY, b"after a page"));
    assert_eq!(
        read_frame(&mut ws),
        (true, BINARY, b"AFTER A PAGE".to_vec())
    );
}

#[test]
fn at_the_end_of_the_shutdown_grace_an_open_websocket_is_closed_with_1001() {
    let mut server = serve_ws(&["--shutdown-grace", "1"]);
    let mut ws = frames::upgrade(server.addr(), "/");
    send(&mut ws, &masked(true, TEXT, b"before"));
    assert_eq!(read_frame(&mut ws), (true, TEXT, b"BEFORE".to_vec()));
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(read_close(&mut ws).0, 1001);
    assert!(server.wait_exit(PATIENCE).success());
    assert!(
        server
            .stderr_so_far()
            .iter()
            .any(|l| l.contains("end=closed at shutdown"))
    );
}

#[test]
fn a_proxy_header_comes_before_http_and_names_the_peer() {
    let server = serve_ws(&["--proxy-protocol"]);
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let request = "PROXY TCP4 192.0.2.7 127.0.0.1 4242 80\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    server.wait_for_log("peer=192.0.2.7:4242");
}

#[test]
fn a_denied_source_is_closed_before_any_http() {
    let server = serve_ws(&["--deny", "127.0.0.2"]);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&server.addr().into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    server.wait_for_log("reason=denied");
    let allowed = http(
        server.addr(),
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
}

#[test]
fn an_idle_websocket_is_closed_after_the_idle_timeout() {
    let server = serve_ws(&["--idle-timeout", "1"]);
    let mut ws = frames::upgrade(server.addr(), "/");
    send(&mut ws, &masked(true, TEXT, b"then nothing"));
    assert_eq!(read_frame(&mut ws).2, b"THEN NOTHING");
    let mut rest = Vec::new();
    let _ = ws.read_to_end(&mut rest);
    server.wait_for_log("end=idle timeout");
}

#[test]
fn a_message_that_arrives_slowly_or_pings_are_not_idleness() {
    let server = serve_ws(&["--idle-timeout", "1"]);
    let mut ws = frames::upgrade(server.addr(), "/");
    // Two and a half seconds for one message, a fragment every 250 ms.
    send(&mut ws, &masked(false, TEXT, b"slow"));
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(250));
        send(&mut ws, &masked(false, CONTINUATION, b"."));
    }
    send(&mut ws, &masked(true, CONTINUATION, b"!"));
    assert_eq!(
        read_frame(&mut ws),
        (true, TEXT, b"SLOW..........!".to_vec())
    );
}

/// Writes `burst` on a new connection to `server`, never reading, up to
/// `times` times or until a write blocks for 2 s; returns how many went
/// through, once another client has been served meanwhile.
fn writes_before_the_server_stops_reading(
    server: &ServerProcess,
    burst: &[u8],
    times: usize,
) -> usize {
    let mut stalled = frames::upgrade(server.addr(), "/");
    stalled
        .get_ref()
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut sent = 0;
    while sent < times && stalled.get_mut().write_all(burst).is_ok() {
        sent += 1;
    }
    let mut other = frames::upgrade(server.addr(), "/");
    send(&mut other, &masked(true, TEXT, b"still served"));
    assert_eq!(
        read_frame(&mut other),
        (true, TEXT, b"STILL SERVED".to_vec())
    );
    sent
}

#[test]
fn a_client_that_pings_and_never_reads_is_no_longer_read_from() {
    let server = serve_ws(&[]);
    // 64 KiB of pings at a time, 500 times (32 MiB): the server sends each
    // pong before it reads on, so it stops reading once they are not taken.
    let ping = masked(true, PING, &[b'p'; 125]);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 500)
        .collect();
    let sent = writes_before_the_server_stops_reading(&server, &burst, 500);
    assert!(
        sent < 500,
        "the server kept reading pings whose pongs nobody takes"
    );
}

#[test]
fn a_client_that_stops_reading_slows_only_itself() {
    let server = serve_ws(&[]);
    // Messages of 1 MiB until our writes block: the server stops reading
    // once its replies are not taken.
    let big = masked(true, BINARY, &vec![b'x'; 1 << 20]);
    let sent = writes_before_the_server_stops_reading(&server, &big, 64);
    assert!(
        sent < 64,
        "the server kept reading from a client that never reads"
    );
}

/// `upecho connect ARGS` with `input` on stdin.
fn connect(args: &[&str], input: &[u8]) -> Output {
    let mut full = vec!["connect"];
    full.extend_from_slice(args);
    crate::support::run_with_input(crate::support::upecho(&full), input)
}

#[test]
fn connect_ws_sends_each_line_as_one_message_and_prints_each_reply_on_a_line() {
    let server = serve_ws_and(&["--metrics", "127.0.0.1:0"], 1);
    let url = format!("ws://{}/some/path", server.addr());
    // Text, text with a multi-byte character, a line that is not UTF-8 (a
    // binary message), an empty line, and a last line without its newline.
    let out = connect(
        &["--ws", &url],
        b"hello\nstra\xc3\x9fe\nbin\xff\x00\n\nlast",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"HELLO\nSTRA\xc3\x9fE\nBIN\xff\x00\n\nLAST\n");
    server.wait_for_log("end=peer finished");
    let text = scrape(server.addrs[1]);
    let received = format!(
        "upecho_websocket_messages_received_total{{listener=\"ws {}\"}}",
        server.addr()
    );
    assert_eq!(value(&text, &received), Some(5.0), "{text}");
}

#[test]
fn connect_ws_with_more_input_than_the_sockets_hold_gets_every_reply() {
    // 200,000 lines (2.4 MB) sent as fast as they come: replies must be read
    // while lines are still being sent, or both sides wait for the other.
    let server = serve_ws(&[]);
    let input: String = (0..200_000).map(|i| format!("line {i:06}\n")).collect();
    let out = connect(
        &["--ws", &format!("ws://{}/", server.addr())],
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, input.to_uppercase().as_bytes());
}

#[test]
fn connect_ws_over_wss_pins_the_logged_fingerprint_and_says_what_tls_settled() {
    let server = ServerProcess::start(&["--wss", "127.0.0.1:0"], 1);
    let logged = server.log_line("temporary certificate");
    let pin = logged.rsplit("sha256=").next().unwrap().trim();
    let url = format!("wss://{}/", server.addr());
    let out = connect(&["--ws", &url, "--tls-fingerprint", pin, "-v"], b"pinned\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"PINNED\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connected: local 127.0.0.1:"), "{stderr}");
    assert!(stderr.contains(&format!("sha256={pin}")), "{stderr}");
    // Not trusted by the system's roots: exit 1, one line.
    let out = connect(&["--ws", &url], b"refused\n");
    let expected = format!(
        "error: cannot connect to wss {}: certificate not trusted:",
        server.addr()
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(&expected),
        "{out:?}"
    );
}

#[test]
fn connect_ws_to_a_server_that_does_not_upgrade_is_one_error_line() {
    let server = ServerProcess::start(&["--tcp", "127.0.0.1:0"], 1);
    let url = format!("ws://{}/", server.addr());
    let out = connect(&["--ws", &url], b"x\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = crate::support::assert_one_error_line(&out);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot connect to ws {}: websocket handshake:",
            server.addr()
        )),
        "{stderr}"
    );
    let bad = connect(&["--ws", "http://127.0.0.1/"], b"");
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

#[test]
fn connect_ws_at_a_prompt_answers_each_line_and_says_when_the_server_closes() {
    use rexpect::session::spawn_command;
    let server = serve_ws(&["--shutdown-grace", "0.2"]);
    let mut cmd = Command::new(crate::support::bin());
    cmd.args(["connect", "--ws", &format!("ws://{}/", server.addr())])
        .env("TERM", "xterm");
    let mut p = spawn_command(cmd, Some(PATIENCE.as_millis() as u64)).expect("spawn in a pty");
    p.exp_string(">>: ").unwrap();
    p.send("hello, prompt\r").unwrap();
    p.flush().unwrap();
    p.exp_string("HELLO, PROMPT").unwrap();
    p.exp_string(">>: ").unwrap();
    // The grace ends with a close (1001): the prompt says so and exits 1.
    server.signal(nix::sys::signal::Signal::SIGTERM);
    p.exp_string("server closed the connection").unwrap();
    p.exp_eof().unwrap();
    match p.process().wait().unwrap() {
        nix::sys::wait::WaitStatus::Exited(_, code) => assert_eq!(code, 1),
        other => panic!("{other:?}"),
    }
}
