//! `upecho serve` under systemd socket activation: sockets bound by the test
//! are handed over the way systemd does it (descriptors 3, 4, 5 ... open
//! across exec, `LISTEN_FDS`, `LISTEN_PID` naming upecho itself), and
//! readiness is told on `NOTIFY_SOCKET`.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::Signal;

use crate::support::{
    PATIENCE, ServerProcess, TempDir, assert_error_line, bin, exchange, exchange_unix,
    run_with_input, upper, wait_with_deadline,
};

/// Whose pid `LISTEN_PID` names.
#[derive(Clone, Copy)]
pub(super) enum ListenPid {
    /// upecho's own, as systemd sets it.
    Own,
    /// Another process's: the variables are meant for someone else.
    Other,
}

/// How many sockets `activated` hands over at most.
const MOST_SOCKETS: usize = 8;

/// A command that runs `upecho serve ARGS` with `sockets` as descriptors 3,
/// 4, ... and `LISTEN_FDS` set: `sh` learns its pid (`$$`), sets
/// `LISTEN_PID`, and `exec`s upecho, which keeps the pid.
pub(super) fn activated(sockets: &[RawFd], pid: ListenPid, args: &[&str]) -> Command {
    activated_as(&sockets.len().to_string(), sockets, pid, args)
}

/// As [`activated`], with `LISTEN_FDS` set to `listen_fds` whatever the
/// number of sockets.
fn activated_as(listen_fds: &str, sockets: &[RawFd], pid: ListenPid, args: &[&str]) -> Command {
    let listen_pid = match pid {
        ListenPid::Own => "$$",
        ListenPid::Other => "1",
    };
    let script =
        format!(r#"export LISTEN_PID={listen_pid} LISTEN_FDS="$1"; shift; exec "$0" serve "$@""#);
    assert!(
        sockets.len() <= MOST_SOCKETS,
        "at most {MOST_SOCKETS} sockets"
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(bin())
        .arg(listen_fds)
        .args(args);
    let sockets = sockets.to_vec();
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: `hand_over` makes only
    // fcntl(2) and dup2(2) calls and allocates nothing (the Vec was made
    // before the fork). The descriptors stay open in the parent until
    // `spawn` returns, since the caller owns them.
    unsafe {
        cmd.pre_exec(move || hand_over(&sockets));
    }
    cmd
}

/// In the child: puts `sockets` at descriptors 3, 4, ... in order, open
/// across exec. First every socket is copied to 64 and up, so that moving
/// one to its place never overwrites another not moved yet.
fn hand_over(sockets: &[RawFd]) -> std::io::Result<()> {
    let mut high = [0; MOST_SOCKETS];
    for (copy, &fd) in high.iter_mut().zip(sockets) {
        // SAFETY: plain integer arguments; a bad descriptor is an error
        // return, not undefined behaviour.
        *copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
        if *copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (target, &copy) in (3..).zip(&high[..sockets.len()]) {
        // dup2's new descriptor has FD_CLOEXEC cleared: it survives exec,
        // while the copies at 64 and up close there.
        // SAFETY: plain integer arguments, as above.
        if unsafe { libc::dup2(copy, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The three kinds of socket systemd can hand over, bound by the test.
struct Sockets {
    tcp: TcpListener,
    udp: UdpSocket,
    unix: UnixListener,
    /// The Unix socket's path.
    path: String,
    /// Holds the socket file; removed at the end of the test.
    _dir: TempDir,
}

impl Sockets {
    fn bind() -> Sockets {
        let dir = TempDir::new();
        let path = dir.path("activated.sock");
        Sockets {
            tcp: TcpListener::bind("127.0.0.1:0").unwrap(),
            udp: UdpSocket::bind("127.0.0.1:0").unwrap(),
            unix: UnixListener::bind(&path).unwrap(),
            path,
            _dir: dir,
        }
    }

    /// The descriptors in the order handed over: TCP, UDP, Unix.
    fn fds(&self) -> [RawFd; 3] {
        [
            self.tcp.as_raw_fd(),
            self.udp.as_raw_fd(),
            self.unix.as_raw_fd(),
        ]
    }

    /// The readiness lines upecho prints for them, in that order.
    fn ready_lines(&self) -> Vec<String> {
        vec![
            format!("listening tcp {}", self.tcp.local_addr().unwrap()),
            format!("listening udp {}", self.udp.local_addr().unwrap()),
            format!("listening unix {}", self.path),
        ]
    }
}

/// Sends one datagram to `server` and returns the reply.
fn datagram(server: SocketAddr, data: &[u8]) -> Vec<u8> {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(data, server).unwrap();
    let mut reply = [0u8; 1024];
    let (len, from) = client.recv_from(&mut reply).expect("a reply datagram");
    assert_eq!(from, server);
    reply[..len].to_vec()
}

#[test]
fn inherited_sockets_are_served_first_in_the_order_inherited() {
    let sockets = Sockets::bind();
    let cmd = activated(&sockets.fds(), ListenPid::Own, &[]);
    let server = ServerProcess::spawn(cmd, 3);
    assert_eq!(server.ready_lines, sockets.ready_lines());

    let tcp = sockets.tcp.local_addr().unwrap();
    assert_eq!(exchange(tcp, b"over tcp"), b"OVER TCP");
    let udp = sockets.udp.local_addr().unwrap();
    assert_eq!(datagram(udp, b"over udp"), b"OVER UDP");
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(exchange_unix(&sockets.path, &all), upper(&all));
}

#[test]
fn a_listener_flag_is_served_after_the_inherited_sockets_and_no_default_is_added() {
    let sockets = Sockets::bind();
    let cmd = activated(&sockets.fds(), ListenPid::Own, &["--tcp", "127.0.0.1:0"]);
    let mut server = ServerProcess::spawn(cmd, 4);
    assert_eq!(server.ready_lines[..3], sockets.ready_lines()[..]);
    let line = &server.ready_lines[3];
    assert!(line.starts_with("listening tcp 127.0.0.1:"), "{line}");
    let flagged: SocketAddr = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_ne!(flagged.port(), 8080);
    assert_eq!(exchange(flagged, b"flag"), b"FLAG");

    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    // No fifth listener (the default 127.0.0.1:8080) was announced.
    assert_eq!(server.extra_stdout(), Vec::<String>::new());
}

#[test]
fn at_exit_the_inherited_socket_file_stays_and_a_flag_bound_one_goes() {
    let sockets = Sockets::bind();
    let dir = TempDir::new();
    let own = dir.path("flag.sock");
    let cmd = activated(
        &[sockets.unix.as_raw_fd()],
        ListenPid::Own,
        &["--unix", &own],
    );
    let mut server = ServerProcess::spawn(cmd, 2);
    assert_eq!(
        server.ready_lines,
        vec![
            format!("listening unix {}", sockets.path),
            format!("listening unix {own}"),
        ]
    );
    assert_eq!(exchange_unix(&own, b"bound by flag"), b"BOUND BY FLAG");

    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    assert!(
        Path::new(&sockets.path).exists(),
        "the inherited socket file belongs to systemd and must stay"
    );
    assert!(
        !Path::new(&own).exists(),
        "the flag's socket file left behind"
    );
}

#[test]
fn listen_pid_of_another_process_is_ignored() {
    let sockets = Sockets::bind();
    let cmd = activated(&sockets.fds(), ListenPid::Other, &["--tcp", "127.0.0.1:0"]);
    let mut server = ServerProcess::spawn(cmd, 1);
    let flagged = server.addr();
    assert_eq!(server.ready_lines, vec![format!("listening tcp {flagged}")]);
    assert_ne!(flagged, sockets.tcp.local_addr().unwrap());
    assert_eq!(exchange(flagged, b"flags only"), b"FLAGS ONLY");

    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    assert_eq!(server.extra_stdout(), Vec::<String>::new());
}

/// A child process, killed and reaped if the test ends before it exits.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ready_is_notified_after_the_listening_lines() {
    let sockets = Sockets::bind();
    let dir = TempDir::new();
    let notify_path = dir.path("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(PATIENCE)).unwrap();
    // A file, not a pipe: what upecho wrote is there the moment it wrote it.
    let stdout_path = dir.path("stdout");
    let mut cmd = activated(&[sockets.tcp.as_raw_fd()], ListenPid::Own, &[]);
    cmd.env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(Stdio::null());
    let mut server = Reaped(cmd.spawn().expect("spawn upecho serve"));

    let mut message = [0u8; 4096];
    let len = notify.recv(&mut message).expect("a notification");
    let message = String::from_utf8_lossy(&message[..len]);
    assert!(message.lines().any(|l| l == "READY=1"), "{message:?}");
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    assert_eq!(
        stdout,
        format!("listening tcp {}\n", sockets.tcp.local_addr().unwrap()),
        "the readiness line comes before READY=1"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.0.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_with_deadline(&mut server.0, PATIENCE).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn an_inherited_descriptor_that_is_not_a_listener_is_an_error_naming_it() {
    let dir = TempDir::new();
    let file = File::create(dir.path("not-a-socket")).unwrap();
    let datagrams = UnixDatagram::bind(dir.path("datagram.sock")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let connected = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let bound = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    bound
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let unbound = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    let cases = [
        (file.as_raw_fd(), "not a socket"),
        (
            datagrams.as_raw_fd(),
            "not a tcp, udp or unix stream socket",
        ),
        (
            connected.as_raw_fd(),
            "a connected socket, not a listening one (Accept=yes is not supported)",
        ),
        (bound.as_raw_fd(), "a bound socket that is not listening"),
        (
            unbound.as_raw_fd(),
            "an unbound socket, not a listening one",
        ),
    ];
    for (fd, cause) in cases {
        let cmd = activated(&[fd], ListenPid::Own, &["--tcp", "127.0.0.1:0"]);
        let out = run_with_input(cmd, b"");
        assert_error_line(
            &out,
            &format!("error: cannot serve inherited socket 3: {cause}"),
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }
}

#[test]
fn ready_is_notified_on_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    // sd_notify(3): a leading `@` names a socket in the abstract namespace.
    let name = format!("upecho-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let notify = UnixDatagram::bind_addr(&addr).unwrap();
    notify.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut cmd = crate::support::upecho(&["serve", "--tcp", "127.0.0.1:0"]);
    cmd.env("NOTIFY_SOCKET", format!("@{name}"));
    let server = ServerProcess::spawn(cmd, 1);

    let mut message = [0u8; 4096];
    let len = notify.recv(&mut message).unwrap_or_else(|err| {
        panic!(
            "no notification ({err}); stderr: {:?}",
            server.stderr_so_far()
        )
    });
    let message = String::from_utf8_lossy(&message[..len]);
    assert!(message.lines().any(|l| l == "READY=1"), "{message:?}");
    let warned = server.stderr_so_far();
    assert!(
        !warned.iter().any(|l| l.contains("cannot notify")),
        "{warned:?}"
    );
}

#[test]
fn a_bad_listen_fds_for_us_is_an_error_naming_it_before_anything_is_bound() {
    // Before, each of these was ignored, and the server listened on
    // whatever the flags (or the default 127.0.0.1:8080) said.
    let positive = "expected a positive number of descriptors";
    let cases = [
        ("0", format!("names no socket, {positive}")),
        ("-1", positive.to_string()),
        ("abc", positive.to_string()),
        ("99999999999", positive.to_string()),
        ("", positive.to_string()),
        ("3\n", positive.to_string()),
    ];
    for (value, cause) in cases {
        let cmd = activated_as(value, &[], ListenPid::Own, &["--tcp", "127.0.0.1:0"]);
        let out = run_with_input(cmd, b"");
        let shown = upecho::escape::control(value);
        assert_error_line(
            &out,
            &format!("error: invalid LISTEN_FDS '{shown}': {cause}"),
        );
        assert!(out.stdout.is_empty(), "{value:?} bound something: {out:?}");
    }
}

#[test]
fn a_listen_fds_beyond_the_descriptor_limit_is_an_error_naming_it() {
    // Two thousand million would be 8 GB of descriptor numbers to hold.
    let cmd = activated_as("2000000000", &[], ListenPid::Own, &["--tcp", "127.0.0.1:0"]);
    let out = run_with_input(cmd, b"");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = crate::support::assert_one_error_line(&out);
    assert!(
        line.starts_with(
            "error: invalid LISTEN_FDS '2000000000': more descriptors than a process may have open"
        ),
        "{line}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn a_bad_listen_fds_for_another_process_is_ignored() {
    let cmd = activated_as("-1", &[], ListenPid::Other, &["--tcp", "127.0.0.1:0"]);
    let server = ServerProcess::spawn(cmd, 1);
    assert_eq!(exchange(server.addr(), b"not for us"), b"NOT FOR US");
}

#[test]
fn a_tcp_socket_named_tls_in_listen_fdnames_is_served_with_tls() {
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = activated(&[plain.as_raw_fd(), tls.as_raw_fd()], ListenPid::Own, &[]);
    cmd.env("LISTEN_FDNAMES", "echo:tls");
    let server = ServerProcess::spawn(cmd, 2);
    let (plain, tls) = (plain.local_addr().unwrap(), tls.local_addr().unwrap());
    assert_eq!(
        server.ready_lines,
        [
            format!("listening tcp {plain}"),
            format!("listening tls {tls}")
        ]
    );
    assert_eq!(exchange(plain, b"named echo"), b"NAMED ECHO");
    let addr = tls.to_string();
    let cmd = crate::support::upecho(&["connect", &addr, "--tls", "--insecure"]);
    let out = run_with_input(cmd, b"named tls\n");
    assert_eq!(out.stdout, b"NAMED TLS\n", "{out:?}");
}

#[test]
fn a_name_that_cannot_be_served_as_named_is_an_error_naming_the_socket() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (fd, name, cause) in [
        (udp.as_raw_fd(), "tls", "named tls: not a tcp socket"),
        (udp.as_raw_fd(), "ws", "named ws: not a tcp socket"),
        (udp.as_raw_fd(), "wss", "named wss: not a tcp socket"),
    ] {
        let mut cmd = activated(&[fd], ListenPid::Own, &[]);
        cmd.env("LISTEN_FDNAMES", name);
        let out = run_with_input(cmd, b"");
        assert_error_line(
            &out,
            &format!("error: cannot serve inherited socket 3: {cause}"),
        );
    }
}
