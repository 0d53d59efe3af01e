//! Shared helpers for the integration tests: start the real `upecho` binary,
//! wait for its readiness lines, run clients with a deadline, and clean up.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Generous bound for anything that takes milliseconds when the machine is idle.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_upecho")
}

/// A command for the binary under test.
pub fn upecho(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    cmd
}

/// The oracle for `--transform ascii`: Python's `bytes.upper()`, byte by byte.
pub fn upper(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(u8::to_ascii_uppercase).collect()
}

/// Reproducible pseudo-random bytes of every value.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes);
    bytes
}

/// A `upecho serve` process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// The addresses of its readiness lines, in order.
    pub addrs: Vec<SocketAddr>,
    /// Its readiness lines, verbatim.
    pub ready_lines: Vec<String>,
    /// stdout lines after the readiness lines (there must be none).
    stdout: Receiver<String>,
    /// Every stderr line so far, and a channel of new ones.
    stderr_lines: Arc<Mutex<Vec<String>>>,
    stderr: Receiver<String>,
}

impl ServerProcess {
    /// Starts `upecho serve ARGS` and waits for `listeners` readiness lines.
    pub fn start(args: &[&str], listeners: usize) -> ServerProcess {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        ServerProcess::spawn(upecho(&full), listeners)
    }

    /// Starts an arbitrary command that runs `upecho serve` (e.g. under `sh`).
    pub fn spawn(mut cmd: Command, listeners: usize) -> ServerProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn upecho serve");
        let stdout = lines_of(child.stdout.take().unwrap(), None);
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = lines_of(child.stderr.take().unwrap(), Some(stderr_lines.clone()));
        let mut server = ServerProcess {
            child,
            addrs: Vec::new(),
            ready_lines: Vec::new(),
            stdout,
            stderr_lines,
            stderr,
        };
        let deadline = Instant::now() + PATIENCE;
        while server.ready_lines.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.stdout.recv_timeout(left) {
                Ok(line) => {
                    let addr: Option<SocketAddr> = line.rsplit(' ').next().unwrap().parse().ok();
                    server.addrs.extend(addr);
                    server.ready_lines.push(line);
                }
                Err(_) => panic!(
                    "server printed no readiness line; stderr: {:?}",
                    server.stderr_so_far()
                ),
            }
        }
        server
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The first listener's address as `upecho connect` takes it.
    pub fn addr_arg(&self) -> String {
        self.addr().to_string()
    }

    /// The process id, for signals.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to the server process (only ever the one we started).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// Waits until a stderr line contains `needle`; panics after `PATIENCE`.
    pub fn wait_for_log(&self, needle: &str) {
        if self.stderr_so_far().iter().any(|l| l.contains(needle)) {
            return;
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line with {needle:?}; stderr: {:?}",
                    self.stderr_so_far()
                ),
            }
        }
    }

    /// Waits for the first stderr line containing `needle` and returns it.
    pub fn log_line(&self, needle: &str) -> String {
        self.wait_for_log(needle);
        self.stderr_so_far()
            .into_iter()
            .find(|line| line.contains(needle))
            .expect("seen by wait_for_log")
    }

    /// All stderr lines so far.
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr_lines.lock().unwrap().clone()
    }

    /// Waits for the process to exit within `limit`; panics otherwise.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        wait_with_deadline(&mut self.child, limit)
            .unwrap_or_else(|| panic!("server still running after {limit:?}"))
    }

    /// stdout lines printed after the readiness lines, once the process exited.
    pub fn extra_stdout(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards each line of `pipe` to a channel (and optionally a log).
fn lines_of(
    pipe: impl Read + Send + 'static,
    log: Option<Arc<Mutex<Vec<String>>>>,
) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(log) = &log {
                log.lock().unwrap().push(line.clone());
            }
            if tx.send(line).is_err() && log.is_none() {
                break;
            }
        }
    });
    rx
}

/// Polls for the child's exit until `limit`; `None` if it is still running.
pub fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` with `input` on stdin, collects its output, and kills it if it
/// has not finished within `PATIENCE`.
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = read_in_background(stdout);
    let err = read_in_background(stderr);
    let status = match wait_with_deadline(&mut child, PATIENCE) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {PATIENCE:?}");
        }
    };
    feeder.join().unwrap();
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `upecho ARGS` with empty stdin and returns its output.
pub fn run(args: &[&str]) -> Output {
    run_with_input(upecho(args), b"")
}

/// Asserts the contract's error shape: exactly one line, `error: ...`, no panic.
pub fn assert_one_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "got {stderr:?}");
    assert!(!stderr.contains("panicked"), "got {stderr:?}");
    assert!(!stderr.contains("os error"), "got {stderr:?}");
    stderr
}

/// Asserts a runtime failure: exit status 1 and exactly `expected` as the
/// one stderr line.
pub fn assert_error_line(output: &Output, expected: &str) {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line = assert_one_error_line(output);
    assert_eq!(line.trim_end(), expected);
}

/// Sends `data` on a new connection, half-closes, and returns the whole reply.
pub fn exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    exchange_on(stream, data)
}

/// Writes `data` on `stream` from another thread (so a reply larger than the
/// socket buffers cannot deadlock), half-closes, and reads the reply to EOF.
fn exchange_on<S: upecho::client::Duplex>(mut stream: S, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let data = data.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown_write().unwrap();
    });
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read reply");
    sender.join().unwrap();
    reply
}

/// Resident memory of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS line")
}

/// Open descriptors of process `pid`.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("process descriptors")
        .count()
}

/// Polls `condition` every 10 ms until it holds; panics naming `what` after
/// `limit`. For states only visible from outside (a descriptor count), where
/// no readiness line exists.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The JSON report on stdout, parsed; it must be the only thing there.
pub fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object alone: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

/// stderr as text.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a bench run passed with no error and returns its JSON report.
pub fn assert_passes(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(out));
    assert_eq!(stderr_of(out), "", "nothing on stderr");
    let report = json(out);
    assert_eq!(report["errors"], 0, "{report}");
    report
}

/// Runs `upecho ARGS` and samples its peak resident memory (`VmHWM`) until it
/// exits; returns its output and the last sample, in KiB.
pub fn run_measuring_peak(args: &[&str]) -> (Output, u64) {
    let mut child = upecho(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn upecho");
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = read_in_background(stdout);
    let err = read_in_background(stderr);
    let status_file = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + PATIENCE;
    let mut peak = 0;
    let status = loop {
        // VmHWM only grows, so the last sample before exit is the peak, give
        // or take the last 5 ms.
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        {
            peak = kib;
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{args:?} still running");
        thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, peak)
}

/// Reads `pipe` to its end on a thread of its own, so a child never blocks
/// on a full pipe while the test waits for something else.
pub fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Waits up to `limit` for `child` to exit (killing it and panicking with
/// `stuck` if it does not), then returns its status and whole stderr.
pub fn exit_and_stderr(child: &mut Child, limit: Duration, stuck: &str) -> (ExitStatus, String) {
    let status = wait_with_deadline(child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{stuck}");
    });
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).unwrap();
    }
    (status, stderr)
}

/// Sends `data` on a new Unix socket connection, half-closes, and returns the
/// whole reply. A path starting with `@` is an abstract name.
pub fn exchange_unix(path: &str, data: &[u8]) -> Vec<u8> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
    let addr = match path.strip_prefix('@') {
        Some(name) => UnixAddr::from_abstract_name(name.as_bytes()).unwrap(),
        None => UnixAddr::from_pathname(path).unwrap(),
    };
    let stream = UnixStream::connect_addr(&addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    exchange_on(stream, data)
}

/// A fresh directory for socket files, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("upecho-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside it, as text.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Says that a test is skipped, and why, where the person running
/// `cargo test` sees it: written to the real stderr, past the test harness's
/// capture (which swallows `eprintln!` of a passing test). Under CI (`CI`
/// set, as `.ci/run` sets it) every test must run, so a skip fails instead.
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} cannot run ({why}), and under CI every test must run"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Runs `body` on a thread of its own inside a new network namespace whose
/// loopback is up, so that what it binds (a fixed port such as 8080) cannot
/// collide with anything else on the machine; processes it starts live in
/// that namespace too. `Err` (with the reason) when a namespace cannot be
/// made here (it takes root: `CAP_SYS_ADMIN`) or `ip` is missing. A panic in
/// `body` is the test's failure, passed on.
pub fn in_own_network_namespace<T: Send + 'static>(
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let worker = thread::spawn(move || {
        // Only this thread moves: namespaces belong to a thread, and the
        // children it spawns inherit its own.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|err| format!("cannot make a network namespace: {err}"))?;
        match Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
        {
            Ok(status) if status.success() => Ok(body()),
            Ok(status) => Err(format!("`ip link set lo up` failed: {status}")),
            Err(err) => Err(format!("cannot run `ip` (package iproute2): {err}")),
        }
    });
    worker
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// True if process `pid` has a file whose path ends with `name` open: how a
/// test sees that a server is at a step that leaves no other trace (waiting
/// for a lock it opened).
pub fn has_file_open(pid: i32, name: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to.ends_with(name)))
    })
}

/// A test PKI made by `tests/it/tls/pki.sh` (openssl) in a fresh directory.
pub struct Pki(TempDir);

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new();
        let status = Command::new("sh")
            .arg("-c")
            .arg(include_str!("../it/tls/pki.sh"))
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .status()
            .expect("run openssl (package openssl)");
        assert!(status.success(), "pki.sh failed: {status}");
        Pki(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.path(name)
    }

    /// Starts `serve --tls` on a free port with `chain` and `key`, and `more`.
    pub fn serve(&self, chain: &str, key: &str, more: &[&str]) -> ServerProcess {
        let (chain, key) = (self.path(chain), self.path(key));
        let mut args = vec![
            "--tls",
            "127.0.0.1:0",
            "--tls-cert",
            &chain,
            "--tls-key",
            &key,
        ];
        args.extend_from_slice(more);
        ServerProcess::start(&args, 1)
    }
}
