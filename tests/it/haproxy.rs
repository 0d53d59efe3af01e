//! The deployment the operations issue names: a real HAProxy in TCP mode,
//! sending PROXY protocol v2, balancing two upecho instances on loopback, with
//! the configuration shipped in `contrib/haproxy/upecho.cfg` (the one
//! docs/SCALING.md shows). The client connects from 127.0.0.2, so the test can
//! tell the real client address (in both instances' logs) from HAProxy's own
//! 127.0.0.1.
//!
//! Needs the `haproxy` binary (Debian package `haproxy`, installed by
//! `.ci/run`). Where it is missing the test says so and passes, except under
//! CI (`CI` set, as `.ci/run` sets it), where it fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::support::{PATIENCE, ServerProcess, wait_until};

/// The shipped configuration.
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/haproxy/upecho.cfg");

/// Connections sent through the balancer: several per instance.
const CONNECTIONS: usize = 8;

/// A HAProxy process, killed when dropped.
struct HaProxy(Child);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Returns whether `haproxy` can be run; panics if it cannot but must.
fn haproxy_available() -> bool {
    let found = Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        crate::support::skip("the HAProxy deployment test", "haproxy is not installed");
    }
    found
}

/// A free loopback port for HAProxy's frontend (HAProxy cannot bind port 0).
/// Another process could take it before HAProxy binds; that would fail the
/// wait below clearly rather than pass wrongly.
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// Starts HAProxy with the shipped configuration in front of `a` and `b`,
/// and waits until its frontend accepts (HAProxy prints no readiness line).
fn start_haproxy(frontend: SocketAddr, a: SocketAddr, b: SocketAddr) -> HaProxy {
    let child = Command::new("haproxy")
        .args(["-db", "-f", CONFIG])
        .env("UPECHO_FRONTEND", frontend.to_string())
        .env("UPECHO_A", a.to_string())
        .env("UPECHO_B", b.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy starts");
    let mut haproxy = HaProxy(child);
    wait_until("haproxy's frontend", PATIENCE, || {
        assert!(
            haproxy.0.try_wait().unwrap().is_none(),
            "haproxy exited (port {} taken?)",
            frontend.port()
        );
        TcpStream::connect_timeout(&frontend, Duration::from_millis(200)).is_ok()
    });
    haproxy
}

/// Sends `message` from 127.0.0.2 through `frontend`, half-closes, and
/// returns the whole reply.
fn exchange_from_127_0_0_2(frontend: SocketAddr, message: &[u8]) -> Vec<u8> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let client: SocketAddr = "127.0.0.2:0".parse().unwrap();
    socket.bind(&client.into()).unwrap();
    socket.connect_timeout(&frontend.into(), PATIENCE).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(message).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    reply
}

/// The "connection closed" log lines of `server` that carried bytes.
fn served_peers(server: &ServerProcess) -> Vec<String> {
    server
        .stderr_so_far()
        .into_iter()
        .filter(|line| line.contains("connection closed") && !line.contains("bytes_in=0"))
        .collect()
}

#[test]
fn haproxy_with_proxy_v2_balances_two_instances_that_log_the_real_client() {
    if !haproxy_available() {
        return;
    }
    let args = ["--tcp", "127.0.0.1:0", "--proxy-protocol", "-v"];
    let a = ServerProcess::start(&args, 1);
    let b = ServerProcess::start(&args, 1);
    let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _haproxy = start_haproxy(frontend, a.addr(), b.addr());

    for n in 0..CONNECTIONS {
        let message = format!("hello through the balancer, number {n}\n");
        let reply = exchange_from_127_0_0_2(frontend, message.as_bytes());
        assert_eq!(reply, message.to_uppercase().into_bytes(), "connection {n}");
    }

    // Every connection logged once, by one instance or the other; both got
    // some; and each logged 127.0.0.2, the client, not 127.0.0.1, HAProxy.
    wait_until("every connection to be logged", PATIENCE, || {
        served_peers(&a).len() + served_peers(&b).len() == CONNECTIONS
    });
    for (name, server) in [("a", &a), ("b", &b)] {
        let lines = served_peers(server);
        assert!(!lines.is_empty(), "instance {name} got no connection");
        for line in lines {
            assert!(line.contains("peer=127.0.0.2:"), "instance {name}: {line}");
        }
    }
}
