//! Notices that the server closed the connection while nobody reads it: the
//! prompt of [`repl`](super::repl) is waiting for the user. A thread polls a
//! duplicate of the socket for the peer's close (`POLLRDHUP`, which unread
//! reply bytes do not trigger) and, while the prompt is up, wakes the line
//! editor out of its wait, so the session ends at once saying so.
//!
//! A prompt that reads plain lines ([`plain`](super::plain)) waits for the
//! line and for [`Hangup::closed_fd`] at once, and needs no signal.
//!
//! The line editor (rustyline) can be woken only by a SIGINT that interrupts
//! its blocked read, which it turns into
//! [`ReadlineError::Interrupted`](rustyline::error::ReadlineError) while its
//! own handler is installed (during a read, on a terminal). So the watcher
//! sends SIGINT to the prompt's thread after recording that the server
//! closed, and the prompt asks [`Hangup::is_closed`] before it believes any
//! interruption. A signal that lands just outside the editor's read is caught
//! by the client's Ctrl-C handler ([`Interrupt`](super::Interrupt)) instead,
//! harmlessly (it shuts down a connection the server closed already, and the
//! prompt reports the close before any interruption), and is sent again
//! until the prompt returns.
//!
//! The signal goes only to a thread that is inside the prompt: the prompt
//! thread registers itself ([`Hangup::prompting`]) and unregisters before it
//! leaves, under a lock the watcher holds while it sends. Dropping the
//! [`Hangup`] joins the watcher, so no signal is sent after the session.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::pthread::{Pthread, pthread_kill, pthread_self};
use nix::sys::signal::Signal;

/// The watcher sends SIGINT again while the prompt stays up after the close:
/// the first can land in the instant before the editor's handler is
/// installed (or after it is removed, the editor returning anyway). The
/// thread is running then, not blocked, so a later signal finds it in the
/// read or it leaves the prompt on its own; on a loaded machine that instant
/// can last long, so the watcher keeps trying, pausing from `WAKE_PAUSE`
/// doubled up to `WAKE_PAUSE_MAX`, until the thread leaves the prompt (it
/// is told at once) or `WAKE_LIMIT` has passed. After that, a prompt that
/// no signal wakes sees the close at its next line or Ctrl-D.
const WAKE_PAUSE: Duration = Duration::from_millis(5);
const WAKE_PAUSE_MAX: Duration = Duration::from_millis(100);
const WAKE_LIMIT: Duration = Duration::from_secs(10);

/// Watches one connection for the server's close, from a thread of its own
/// that ends, and is joined, when this is dropped (closing its duplicate of
/// the socket).
#[derive(Debug)]
pub struct Hangup {
    /// Shared with the watching thread.
    shared: Arc<Shared>,
    /// Dropping it wakes the watching thread's poll, which then ends.
    stop: Option<UnixStream>,
    /// The watching thread, joined on drop.
    watcher: Option<JoinHandle<()>>,
    /// Readable once the close is seen.
    notified: UnixStream,
}

#[derive(Debug)]
struct Shared {
    /// True once the server closed (or the connection failed); never reset.
    closed: AtomicBool,
    /// The thread waiting in the prompt, while it waits there. The watcher
    /// signals it only while holding this lock, and the thread clears it
    /// (under the lock) before it leaves the prompt: a signal cannot reach
    /// a thread that moved on or ended.
    prompt: Mutex<Option<Pthread>>,
    /// Signalled when the thread leaves the prompt.
    left: Condvar,
    /// Written to once the close is seen, so the other end, [`Hangup::closed_fd`],
    /// becomes readable. Kept until the `Hangup` and the watcher are gone,
    /// so that end never reads as closed by mistake.
    notify: UnixStream,
}

impl Shared {
    /// The slot holds a plain value, consistent even if a holder panicked.
    fn prompt(&self) -> MutexGuard<'_, Option<Pthread>> {
        self.prompt.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The calling thread's stay in the prompt (see [`Hangup::prompting`]); it
/// ends when this is dropped.
#[must_use = "the thread leaves the prompt when this is dropped"]
#[derive(Debug)]
pub struct Prompting<'a> {
    /// Whose slot to clear.
    shared: &'a Shared,
}

impl Drop for Prompting<'_> {
    fn drop(&mut self) {
        *self.shared.prompt() = None;
        self.shared.left.notify_all();
    }
}

impl Hangup {
    /// Starts watching `conn` (a duplicate of the connection's descriptor).
    ///
    /// # Errors
    ///
    /// When the thread or its wake-up pipe cannot be created.
    pub fn watch(conn: OwnedFd) -> io::Result<Self> {
        let (stop, stopped) = UnixStream::pair()?;
        let (notify, notified) = UnixStream::pair()?;
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            prompt: Mutex::new(None),
            left: Condvar::new(),
            notify,
        });
        let watching = Arc::clone(&shared);
        let watcher = thread::Builder::new()
            .name("upecho-hangup".into())
            .spawn(move || {
                if wait_for_close(&conn, &stopped) {
                    watching.closed.store(true, Ordering::SeqCst);
                    // One byte in an empty socket buffer: it cannot block.
                    let _ = (&watching.notify).write_all(b"!");
                    wake_prompt(&watching);
                }
            })?;
        Ok(Hangup {
            shared,
            stop: Some(stop),
            watcher: Some(watcher),
            notified,
        })
    }

    /// Returns true if and only if the server closed the connection (or it
    /// failed) since the watch began.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// A descriptor that becomes readable once [`is_closed`](Self::is_closed)
    /// is true (and stays so): for a prompt that waits with poll(2) rather
    /// than for a signal. Reading it is not needed, nor wanted.
    pub fn closed_fd(&self) -> BorrowedFd<'_> {
        self.notified.as_fd()
    }

    /// Records that the calling thread waits in the prompt until the returned
    /// guard is dropped: meanwhile the watcher, seeing the close, sends it
    /// SIGINT to wake the line editor. Call it only when SIGINT is handled
    /// (see [`Interrupt::handles_sigint`](super::Interrupt::handles_sigint)),
    /// or a signal outside the editor would kill the process.
    ///
    /// Take it before asking [`is_closed`](Self::is_closed) and reading, drop
    /// it after reading and before asking again: then either the prompt sees
    /// the close or the watcher sees the prompt up and wakes it.
    pub fn prompting(&self) -> Prompting<'_> {
        *self.shared.prompt() = Some(pthread_self());
        Prompting {
            shared: &self.shared,
        }
    }
}

impl Drop for Hangup {
    fn drop(&mut self) {
        // Wakes the watcher's poll if it still waits; a watcher that saw the
        // close is past its wake-up, as no thread is in the prompt now (the
        // guard borrows this `Hangup`).
        drop(self.stop.take());
        if let Some(watcher) = self.watcher.take() {
            // It cannot panic; if it did, there is nothing to add here.
            let _ = watcher.join();
        }
    }
}

/// Blocks until the peer closes `conn` (true) or `stopped`'s other end is
/// dropped or polling fails (false).
fn wait_for_close(conn: &OwnedFd, stopped: &UnixStream) -> bool {
    let mut fds = [
        PollFd::new(conn.as_fd(), PollFlags::from_bits_retain(libc::POLLRDHUP)),
        PollFd::new(stopped.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => break,
            Err(_) => return false,
        }
    }
    // Unless it is the stop, something happened to `conn`, and it can only be
    // the end: the peer's close (POLLRDHUP, which nix's flags do not know), a
    // hang-up or an error (always reported).
    fds[1].any() == Some(false)
}

/// Sends SIGINT to the thread in the prompt until it leaves the prompt (or
/// [`WAKE_LIMIT`] passed): to that thread, since only there does it
/// interrupt the editor's read. The lock is held while sending, so that
/// thread is still inside the prompt (it clears the slot under the lock
/// before leaving), and released while pausing.
fn wake_prompt(shared: &Shared) {
    let give_up = Instant::now() + WAKE_LIMIT;
    let mut pause = WAKE_PAUSE;
    let mut prompt = shared.prompt();
    while let Some(thread) = *prompt {
        let now = Instant::now();
        if now >= give_up {
            return;
        }
        // A failed send leaves the prompt as it was: the close is seen at
        // the next line or Ctrl-D.
        let _ = pthread_kill(thread, Signal::SIGINT);
        let wait = pause.min(give_up - now);
        prompt = shared
            .left
            .wait_timeout(prompt, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        pause = (pause * 2).min(WAKE_PAUSE_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    #[test]
    fn sees_the_peer_close_but_not_unread_data() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let hangup = Hangup::watch(client.try_clone().unwrap().into()).unwrap();
        io::Write::write_all(&mut server, b"unread\n").unwrap();
        // An absence can only be checked over some time; the close, below,
        // is seen within microseconds.
        thread::sleep(Duration::from_millis(50));
        assert!(!hangup.is_closed());
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !hangup.is_closed() {
            assert!(Instant::now() < deadline, "the close was not seen");
            thread::sleep(Duration::from_millis(5));
        }
    }
}
