//! Load generation: opens the connections with a gentle ramp, drives each in
//! pingpong or stream mode, and checks every reply byte against the expected
//! transform. Runs on one thread; per-message work is a `memcmp` and a
//! histogram increment, so the generator stays cheaper than the server.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::stats::{self, latency_histogram};
use super::{BenchConfig, Mode};

/// Connections being opened at once: a burst of hundreds of SYNs overflows
/// small backlogs (the tutorial's `listen(5)`), which measures the kernel's
/// SYN retry timer instead of the server.
const RAMP: usize = 8;

/// How long, after the window, a connection may take to return what it still
/// owes once we half-close; past it the connection is abandoned (not an error:
/// a server may legitimately still be busy with others).
const DRAIN: Duration = Duration::from_secs(2);

/// Distinct pingpong messages per run; connections cycle through them from
/// different offsets so replies cannot be confused across messages.
const MESSAGES: usize = 64;

/// Bytes of the stream-mode pattern before it repeats.
const PATTERN: usize = 1 << 20;

/// What the whole run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Connections that were established.
    pub connected: usize,
    /// The first connect failure, if any.
    pub connect_error: Option<io::Error>,
    /// Complete, verified replies (pingpong) or writes (stream) in the window.
    pub requests: u64,
    /// Verified reply bytes received in the window.
    pub bytes: u64,
    /// Wrong, missing or extra bytes found (counted once per reply or read).
    pub errors: u64,
    /// A description of the first error, for the report.
    pub first_error: Option<String>,
    /// Connections that got no reply in the window.
    pub starved: usize,
    /// Round-trip (pingpong) or write-to-echo (stream) latency.
    pub latency: Histogram<u64>,
    /// The measured window's real length.
    pub window: Duration,
    /// CPU time this process used during the window.
    pub cpu: Option<Duration>,
}

/// The measurement window: replies count only if the request was sent at or
/// after `from` and the reply complete by `to`.
#[derive(Clone, Copy, Debug)]
struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn contains(&self, sent: Instant, done: Instant) -> bool {
        sent >= self.from && done <= self.to
    }
}

/// Pre-generated requests and their expected replies, shared by all connections.
struct Payload {
    /// Pingpong: `MESSAGES` messages back to back. Stream: the repeating
    /// pattern, extended by one write size so every write is one slice.
    sent: Vec<u8>,
    /// `sent` after the transform.
    expected: Vec<u8>,
    /// Length of the part before the extension (stream) or of all messages.
    period: usize,
}

impl Payload {
    fn new(config: &BenchConfig) -> Payload {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let period = match config.mode {
            Mode::PingPong => MESSAGES * config.size,
            Mode::Stream => PATTERN.max(config.size),
        };
        let mut sent = vec![0u8; period];
        rng.fill(&mut sent);
        if config.mode == Mode::Stream {
            sent.extend_from_within(..config.size.min(period));
        }
        let mut expected = sent.clone();
        let mut transform = config.transform.stream();
        let out = transform.process(&mut expected).to_vec();
        debug_assert!(transform.finish().is_empty());
        Payload {
            sent,
            expected: out,
            period,
        }
    }
}

/// What a connection driver needs to know besides its socket.
#[derive(Clone, Copy)]
struct Job<'a> {
    /// The connection's number; picks where in the payload it starts.
    index: usize,
    /// Message or write size.
    size: usize,
    /// Requests and expected replies.
    payload: &'a Payload,
    /// When replies count.
    window: Window,
}

/// What one connection measured.
struct ConnectionResult {
    connected: bool,
    connect_error: Option<io::Error>,
    requests: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    replied_in_window: bool,
    latency: Histogram<u64>,
}

impl ConnectionResult {
    fn new() -> Self {
        ConnectionResult {
            connected: false,
            connect_error: None,
            requests: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
            replied_in_window: false,
            latency: latency_histogram(),
        }
    }

    fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }
}

/// Runs the whole benchmark: warm-up, window, drain.
pub async fn drive(
    config: &BenchConfig,
    target: SocketAddr,
    mut progress: impl FnMut(f64),
) -> Outcome {
    let start = Instant::now();
    let window = Window {
        from: start + config.warmup,
        to: start + config.warmup + config.duration,
    };
    let payload = Arc::new(Payload::new(config));
    let ramp = Arc::new(Semaphore::new(RAMP));
    let mut tasks = JoinSet::new();
    for index in 0..config.connections {
        let payload = Arc::clone(&payload);
        let ramp = Arc::clone(&ramp);
        let (mode, size) = (config.mode, config.size);
        tasks.spawn(async move {
            let mut result = ConnectionResult::new();
            let Some(stream) = open(target, &ramp, window, &mut result).await else {
                return result;
            };
            let job = Job {
                index,
                size,
                payload: &payload,
                window,
            };
            match mode {
                Mode::PingPong => pingpong(stream, job, &mut result).await,
                Mode::Stream => stream_mode(stream, job, &mut result).await,
            }
            result
        });
    }

    // Keep time: report progress, sample CPU at the window's edges.
    let total = (window.to - start).as_secs_f64().max(1e-9);
    let mut cpu_from = None;
    loop {
        let now = Instant::now();
        if now >= window.to {
            break;
        }
        if cpu_from.is_none() && now >= window.from {
            cpu_from = stats::process_cpu_time();
        }
        progress((now - start).as_secs_f64() / total);
        let next = if cpu_from.is_none() {
            window.from
        } else {
            window.to
        };
        sleep_until(next.min(now + Duration::from_millis(100))).await;
    }
    let cpu_to = stats::process_cpu_time();
    let measured = Instant::now().saturating_duration_since(window.from);
    progress(1.0);

    let mut outcome = Outcome {
        connected: 0,
        connect_error: None,
        requests: 0,
        bytes: 0,
        errors: 0,
        first_error: None,
        starved: 0,
        latency: latency_histogram(),
        window: measured.min(config.duration).max(Duration::from_nanos(1)),
        cpu: cpu_from
            .zip(cpu_to)
            .map(|(from, to)| to.saturating_sub(from)),
    };
    while let Some(joined) = tasks.join_next().await {
        let Ok(result) = joined else { continue };
        outcome.connected += usize::from(result.connected);
        if outcome.connect_error.is_none() {
            outcome.connect_error = result.connect_error;
        }
        outcome.requests += result.requests;
        outcome.bytes += result.bytes;
        outcome.errors += result.errors;
        if outcome.first_error.is_none() {
            outcome.first_error = result.first_error;
        }
        outcome.starved += usize::from(!result.replied_in_window);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = outcome.latency.add(&result.latency);
    }
    outcome
}

/// Connects, at most `RAMP` at a time, giving up when the window ends.
async fn open(
    target: SocketAddr,
    ramp: &Semaphore,
    window: Window,
    result: &mut ConnectionResult,
) -> Option<TcpStream> {
    let _permit = ramp.acquire().await.ok()?;
    let connected = tokio::select! {
        connected = TcpStream::connect(target) => connected,
        () = sleep_until(window.to) => return None, // starved: never got in
    };
    match connected {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            result.connected = true;
            Some(stream)
        }
        Err(err) => {
            result.error(|| format!("cannot connect to {target}: {}", crate::error::plain(&err)));
            result.connect_error = Some(err);
            None
        }
    }
}

/// Closed loop: send one message, read its whole reply, check it, repeat.
async fn pingpong(mut stream: TcpStream, job: Job<'_>, result: &mut ConnectionResult) {
    let Job {
        size,
        payload,
        window,
        ..
    } = job;
    // One byte of room past the reply: a read that fills its buffer leaves Tokio
    // unsure whether more is queued, so the next round trip's first read would
    // be a syscall that only says "would block" (one per round trip, seen with
    // strace). A spare byte also catches a server that answers too much.
    let mut reply = vec![0u8; size + 1];
    let mut message = job.index % MESSAGES;
    // One timer for the whole window: a new one per message would cost a timer
    // wheel insert and remove per round trip (measured: a fifth of the
    // generator's instructions).
    let deadline = sleep_until(window.to);
    tokio::pin!(deadline);
    let (mut written, mut read);
    'messages: loop {
        (written, read) = (0usize, 0usize);
        let sent_at = Instant::now();
        if sent_at >= window.to {
            break;
        }
        let at = message * size;
        let request = &payload.sent[at..at + size];
        let expected = &payload.expected[at..at + size];
        // Most requests fit the socket buffer: one non-blocking write, with no
        // future to poll, sends them whole.
        match stream.try_write(request) {
            Ok(n) => written = n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => {
                result.error(|| format!("cannot send: {}", crate::error::plain(&err)));
                return;
            }
        }
        // Write the rest and read at once: a large reply must not wait for the
        // request to be fully written, or both sides' buffers fill and deadlock.
        let (mut rx, mut tx) = stream.split();
        while read < size {
            tokio::select! {
                biased;
                n = rx.read(&mut reply[read..]) => match n {
                    Ok(0) | Err(_) => {
                        result.error(|| format!("reply ended after {read} of {size} bytes (server closed)"));
                        return;
                    }
                    Ok(n) if read + n > size => {
                        result.error(|| format!("{} more bytes than were sent", read + n - size));
                        return;
                    }
                    Ok(n) => read += n,
                },
                n = tx.write(&request[written..]), if written < size => match n {
                    Ok(n) => written += n,
                    Err(err) => {
                        result.error(|| format!("cannot send: {}", crate::error::plain(&err)));
                        return;
                    }
                },
                () = &mut deadline => break 'messages,
            }
        }
        let done = Instant::now();
        let reply = &reply[..size];
        if reply != expected {
            let at = reply
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            result.error(|| {
                format!(
                    "wrong reply: byte {at} is {:#04x}, expected {:#04x}",
                    reply[at], expected[at]
                )
            });
        } else if window.contains(sent_at, done) {
            result.requests += 1;
            result.bytes += size as u64;
            result.replied_in_window = true;
            stats::record(&mut result.latency, done - sent_at);
        }
        message = (message + 1) % MESSAGES;
    }
    // The message in flight: its reply so far must be right, and after our
    // half-close exactly the rest must come, then EOF.
    let at = message * size;
    let owed = &payload.expected[at + read..at + written];
    if reply[..read] != payload.expected[at..at + read] {
        result.error(|| "wrong bytes in the reply in flight".to_string());
    }
    drain(stream, owed, result).await;
}

/// Continuous writes while reading back; every byte is checked at its offset.
async fn stream_mode(mut stream: TcpStream, job: Job<'_>, result: &mut ConnectionResult) {
    let Job {
        size,
        payload,
        window,
        ..
    } = job;
    let period = payload.period;
    let start = (job.index * 7919) % period;
    let (mut written, mut read) = (0u64, 0u64);
    // End offsets of writes not yet echoed, with when they were written.
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(64);
    let mut buf = vec![0u8; size.max(64 * 1024)];
    let (mut rx, mut tx) = stream.split();
    let deadline = sleep_until(window.to);
    tokio::pin!(deadline);
    loop {
        let wpos = (start + (written % period as u64) as usize) % period;
        tokio::select! {
            biased;
            () = &mut deadline => break,
            n = rx.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    result.error(|| format!("stream ended after {read} of {written} bytes (server closed)"));
                    return;
                }
                Ok(n) => {
                    if read + n as u64 > written {
                        result.error(|| format!("{} more bytes than were sent", read + n as u64 - written));
                        return;
                    }
                    if !matches_at(payload, start, read, &buf[..n]) {
                        result.error(|| format!("wrong bytes at stream offset {read}"));
                    }
                    read += n as u64;
                    let now = Instant::now();
                    while let Some(&(end, sent)) = in_flight.front() {
                        if end > read {
                            break;
                        }
                        in_flight.pop_front();
                        if window.contains(sent, now) {
                            result.requests += 1;
                            stats::record(&mut result.latency, now - sent);
                        }
                    }
                    if now >= window.from {
                        result.bytes += n as u64;
                        result.replied_in_window = true;
                    }
                }
            },
            n = tx.write(&payload.sent[wpos..wpos + size]) => match n {
                Ok(n) => {
                    written += n as u64;
                    in_flight.push_back((written, Instant::now()));
                }
                Err(err) => {
                    result.error(|| format!("cannot send: {}", crate::error::plain(&err)));
                    return;
                }
            },
        }
    }
    // Whatever was written and not yet read is owed; read it all, checking.
    let owed_from = read;
    let mut tail = Vec::with_capacity((written - read) as usize);
    let mut pos = owed_from;
    while pos < written {
        let off = (start + (pos % period as u64) as usize) % period;
        let take = ((written - pos) as usize).min(period - off);
        tail.extend_from_slice(&payload.expected[off..off + take]);
        pos += take as u64;
    }
    drain(stream, &tail, result).await;
}

/// Returns true if and only if `got` equals the expected stream at `offset`.
fn matches_at(payload: &Payload, start: usize, offset: u64, mut got: &[u8]) -> bool {
    let period = payload.period;
    let mut pos = (start + (offset % period as u64) as usize) % period;
    while !got.is_empty() {
        let take = got.len().min(period - pos);
        if got[..take] != payload.expected[pos..pos + take] {
            return false;
        }
        got = &got[take..];
        pos = 0;
    }
    true
}

/// Half-closes and reads what is still owed: exactly `owed`, then EOF.
async fn drain(mut stream: TcpStream, owed: &[u8], result: &mut ConnectionResult) {
    let _ = stream.shutdown().await;
    let mut rest = Vec::with_capacity(owed.len());
    let read = tokio::time::timeout(DRAIN, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return true,
                Ok(n) => {
                    rest.extend_from_slice(&buf[..n]);
                    if rest.len() > owed.len() {
                        return true; // extra bytes: no need to read on
                    }
                }
                Err(_) => return true,
            }
        }
    })
    .await;
    if read.is_err() {
        return; // the server is still busy; we cannot tell
    }
    if rest.len() > owed.len() {
        result.error(|| format!("{} bytes more than were sent", rest.len() - owed.len()));
    } else if rest.len() < owed.len() {
        result.error(|| format!("{} bytes missing at the end", owed.len() - rest.len()));
    } else if rest != owed {
        result.error(|| "wrong bytes at the end of the stream".to_string());
    }
}
