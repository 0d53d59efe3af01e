//! The library API: an in-process server on port 0, and the client loops fed
//! in memory.

use std::io::{Cursor, Read, Write};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upecho::client::repl::{Input, LineSource, repl};
use upecho::{Server, ServerConfig, Transform};

#[tokio::test]
async fn in_process_server_serves_and_shuts_down_gracefully() {
    let mut config = ServerConfig::tcp("127.0.0.1:0".parse().unwrap());
    config.transform = Transform::None;
    let running = Server::bind(config).unwrap().spawn();
    let mut client = tokio::net::TcpStream::connect(running.local_addr())
        .await
        .unwrap();
    client.write_all(b"plain echo").await.unwrap();
    client.shutdown().await.unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"plain echo");
    tokio::time::timeout(Duration::from_secs(30), running.shutdown())
        .await
        .expect("shutdown finishes")
        .expect("the server stopped without error");
}

#[tokio::test]
async fn shutdown_cuts_off_a_client_that_never_closes_after_the_grace() {
    let mut config = ServerConfig::tcp("127.0.0.1:0".parse().unwrap());
    config.shutdown_grace = Duration::from_millis(200);
    let running = Server::bind(config).unwrap().spawn();
    let mut client = tokio::net::TcpStream::connect(running.local_addr())
        .await
        .unwrap();
    client.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    client.read_exact(&mut one).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), running.shutdown())
        .await
        .expect("grace bounds the shutdown")
        .expect("the server stopped without error");
    let mut rest = Vec::new();
    let closed = client.read_to_end(&mut rest).await;
    assert!(closed.is_ok_and(|n| n == 0) || rest.is_empty());
}

#[test]
fn binding_a_used_address_names_it() {
    let first = Server::bind(ServerConfig::tcp("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = first.local_addrs()[0];
    let err = Server::bind(ServerConfig::tcp(addr.into())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on tcp {addr}: address already in use")
    );
}

/// Lines typed by a script, then EOF.
struct Script(std::vec::IntoIter<&'static str>);

impl LineSource for Script {
    fn read_line(&mut self) -> std::io::Result<Input> {
        Ok(self.0.next().map_or(Input::Eof, |l| Input::Line(l.into())))
    }
}

/// A server stand-in: canned replies to read, and a record of what was written.
struct Canned {
    replies: Cursor<Vec<u8>>,
    sent: Vec<u8>,
}

impl Read for Canned {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte at a time: a reply is never assumed to arrive in one read.
        let one = buf.len().min(1);
        Read::read(&mut self.replies, &mut buf[..one])
    }
}

impl Write for Canned {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Write::write(&mut self.sent, buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn repl_prints_a_non_utf8_reply_byte_for_byte_however_it_is_split() {
    let mut server = Canned {
        replies: Cursor::new(b"\xff\xfe ABC\nSECOND\n".to_vec()),
        sent: Vec::new(),
    };
    let mut out = Vec::new();
    let mut lines = Script(vec!["abc", "", "second"].into_iter());
    let finish = repl(&mut lines, &mut server, &mut out, "tcp test").unwrap();
    assert_eq!(finish, upecho::client::Finish::Done);
    assert_eq!(out, b"\xff\xfe ABC\nSECOND\n");
    assert_eq!(server.sent, b"abc\nsecond\n");
}

#[test]
fn a_server_without_listeners_is_refused() {
    let mut config = ServerConfig::tcp("127.0.0.1:0".parse().unwrap());
    config.listen.clear();
    let err = Server::bind(config).unwrap_err();
    assert!(err.to_string().contains("nothing to listen on"), "{err}");
}

/// A server on this test's runtime with the given idle timeout.
fn idle_server(idle: Duration) -> upecho::RunningServer {
    let mut config = ServerConfig::tcp("127.0.0.1:0".parse().unwrap());
    config.idle_timeout = Some(idle);
    Server::bind(config).unwrap().spawn()
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_once_the_idle_timeout_has_passed() {
    let running = idle_server(Duration::from_secs(300));
    let mut client = tokio::net::TcpStream::connect(running.local_addr())
        .await
        .unwrap();
    client.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    client.read_exact(&mut one).await.unwrap();
    let quiet_from = tokio::time::Instant::now();
    // The clock is paused: it jumps to each timer while nothing else can run.
    assert_eq!(
        client.read(&mut one).await.unwrap(),
        0,
        "closed by the server"
    );
    let waited = quiet_from.elapsed();
    assert!(
        waited >= Duration::from_secs(300) && waited <= Duration::from_secs(302),
        "closed after {waited:?} of silence"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_moving_bytes_outlives_the_idle_timeout() {
    let running = idle_server(Duration::from_millis(500));
    let mut client = tokio::net::TcpStream::connect(running.local_addr())
        .await
        .unwrap();
    let mut one = [0u8; 1];
    // Ten idle timeouts long, a byte every 100 ms.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"k").await.unwrap();
        client.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"K");
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_begins_when_called_before_its_future_is_polled() {
    let running = Server::bind(ServerConfig::tcp("127.0.0.1:0".parse().unwrap()))
        .unwrap()
        .spawn();
    let addr = running.local_addr();
    let stopping = running.shutdown();
    // Not polled: still the listener closes (the server runs on this runtime,
    // so give it turns until then).
    tokio::time::timeout(Duration::from_secs(30), async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener closes without the shutdown future being polled");
    stopping.await.unwrap();
}

#[tokio::test]
async fn dropping_a_running_server_stops_it_and_closes_its_connections() {
    let mut config = ServerConfig::tcp("127.0.0.1:0".parse().unwrap());
    config.shutdown_grace = Duration::from_secs(600);
    let running = Server::bind(config).unwrap().spawn();
    let addr = running.local_addr();
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    client.read_exact(&mut one).await.unwrap();
    drop(running);
    // No grace for a dropped server: the connection closes at once.
    let closed = tokio::time::timeout(Duration::from_secs(30), client.read(&mut one))
        .await
        .expect("the connection is closed, not left open for the grace");
    assert!(matches!(closed, Ok(0) | Err(_)));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
