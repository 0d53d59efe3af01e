//! Where log lines and the final `error:` line go: stderr, written by a
//! thread of its own, so that logging can never block or panic the service.
//!
//! Why not write stderr directly: a stderr nobody reads (a full pipe) blocks
//! the writing thread, and with it every connection and the signal handler on
//! that thread; a stderr that fails (`2>/dev/full`, a closed pipe) made the
//! formatter's own error report panic. Here a line that cannot be queued
//! (the writer is stuck and 4096 lines wait) is dropped, and write errors are
//! ignored: the service goes on either way.

mod fields;

use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 4096;

/// What the writer thread is sent.
enum Message {
    /// One formatted log line (or several, from one event).
    Line(Vec<u8>),
    /// Answer on this channel once every earlier line was written.
    Flush(SyncSender<()>),
}

/// The queue to the writer thread, once logging is set up.
static QUEUE_TX: OnceLock<SyncSender<Message>> = OnceLock::new();

/// How each log line is written (`serve --log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: `TIMESTAMP LEVEL message key=value ...`, coloured on a
    /// terminal.
    #[default]
    Text,
    /// For log collectors: one JSON object per line, with `timestamp` (RFC
    /// 3339, UTC), `level`, `message` and the event's fields at the top level.
    Json,
}

/// Installs the global log subscriber at `level`, writing `format` lines
/// through the queue.
pub fn init(level: tracing::Level, format: LogFormat) {
    let tx = QUEUE_TX.get_or_init(start_writer).clone();
    let writer = move || Line {
        tx: tx.clone(),
        bytes: Vec::new(),
    };
    // The temporary certificate's line is shown whatever -q says:
    // its fingerprint is what a client pins.
    let filter = Targets::new().with_default(level).with_target(
        upecho::tls::CERTIFICATE_TARGET,
        tracing::Level::INFO.max(level),
    );
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(tracing::Level::TRACE)
        .with_target(false)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(io::stderr().is_terminal())
            .fmt_fields(fields::EscapedFields)
            .finish()
            .with(filter)
            .try_init(),
        // Fields at the top level, not under "fields", so that a collector
        // finds `peer` or `bytes_in` where the contract says; no spans (the
        // service opens none). The target, a module path, is left out as in
        // the text lines: it names code, not anything a user can act on.
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish()
            .with(filter)
            .try_init(),
    };
}

/// Writes one line (the fatal `error:` line) the same way, as it is: never
/// JSON, whatever the log format, as the contract asks. Then waits up to
/// `patience` for everything queued to reach stderr. The line waits for room
/// in the queue rather than being dropped; if the writer thread is gone, it
/// goes to stderr directly.
pub fn emit(line: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    let message = Message::Line(format!("{line}\n").into_bytes());
    let queued = match QUEUE_TX.get() {
        Some(tx) => send_within(tx, message, deadline),
        None => Err(()),
    };
    match queued {
        Ok(()) => flush(deadline.saturating_duration_since(Instant::now())),
        Err(()) => {
            let _ = writeln!(io::stderr(), "{line}");
        }
    }
}

/// Waits up to `patience` for the lines queued so far to be written.
pub fn flush(patience: Duration) {
    let Some(tx) = QUEUE_TX.get() else { return };
    let deadline = Instant::now() + patience;
    let (ack_tx, ack_rx) = mpsc::sync_channel(1);
    if send_within(tx, Message::Flush(ack_tx), deadline).is_ok() {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = ack_rx.recv_timeout(left);
    }
}

/// Queues `message`, waiting for room until `deadline`. `Err` if and only if
/// the writer thread is gone (nothing will ever write it); a message still
/// not queued at the deadline is dropped, `Ok`.
fn send_within(
    tx: &SyncSender<Message>,
    mut message: Message,
    deadline: Instant,
) -> Result<(), ()> {
    loop {
        match tx.try_send(message) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                message = back;
                thread::sleep(Duration::from_millis(5));
            }
            Err(TrySendError::Full(_)) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => return Err(()),
        }
    }
}

/// Starts the thread that owns stderr.
fn start_writer() -> SyncSender<Message> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    // Without a thread the receiver is gone and every line is dropped.
    let _ = thread::Builder::new()
        .name("upecho-log".into())
        .spawn(move || write_lines(&rx));
    tx
}

/// The writer thread's loop: write each line, ignore failures.
fn write_lines(rx: &Receiver<Message>) {
    let mut stderr = io::stderr();
    for message in rx {
        match message {
            Message::Line(bytes) => {
                let _ = stderr.write_all(&bytes);
            }
            Message::Flush(ack) => {
                let _ = ack.try_send(());
            }
        }
    }
}

/// One event's text on its way to the queue: tracing-subscriber formats an
/// event into one `write_all`, and the line is queued when this is dropped.
struct Line {
    /// The queue.
    tx: SyncSender<Message>,
    /// The event's text so far.
    bytes: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.bytes.is_empty() {
            // Full (the writer is stuck) or gone: the line is dropped.
            let _ = self
                .tx
                .try_send(Message::Line(std::mem::take(&mut self.bytes)));
        }
    }
}
