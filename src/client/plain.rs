//! The prompt without line editing, for a terminal the line editor could not
//! wake when the server closes or Ctrl-C is pressed: `TERM` names one it
//! cannot drive (`dumb`, `cons25`, `emacs`: it then reads stdin with a read
//! that a signal does not end), or stdout is not a terminal (it then
//! installs no SIGINT handler of its own), or SIGINT is not handled.
//!
//! The terminal stays in cooked mode: it echoes and edits the line itself,
//! and Ctrl-C is a SIGINT. The line is waited for with poll(2) together with
//! wake-up descriptors (the server's close, the interrupt), so either ends
//! the wait at once.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The terminals rustyline refuses to edit on, reading plain lines instead.
const UNSUPPORTED_TERMS: [&str; 3] = ["dumb", "cons25", "emacs"];

/// Returns true if and only if the line editor edits lines on this terminal
/// with its own SIGINT handler installed while it reads, so that a SIGINT
/// sent to the reading thread wakes it: stdin and stdout are terminals and
/// `TERM` is not one it refuses.
pub fn editor_wakes_on_sigint() -> bool {
    let refused = std::env::var("TERM").is_ok_and(|term| {
        UNSUPPORTED_TERMS
            .iter()
            .any(|refused| refused.eq_ignore_ascii_case(&term))
    });
    !refused && io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// What one wait at the plain prompt gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Plain {
    /// A line, without its line ending (the last one may have none).
    Line(String),
    /// End of input (Ctrl-D at the start of a line).
    Eof,
    /// A wake-up descriptor became readable first.
    Woken,
}

/// Reads stdin line by line, keeping what it read beyond a line for the next.
#[derive(Debug)]
pub struct Lines {
    /// A duplicate of stdin, read directly (not through the standard
    /// library's buffer, which a poll of the descriptor cannot see).
    input: File,
    /// Bytes read but not yet returned.
    pending: Vec<u8>,
}

impl Lines {
    /// Reads from a duplicate of the process's stdin.
    ///
    /// # Errors
    ///
    /// When stdin cannot be duplicated.
    pub fn stdin() -> io::Result<Self> {
        let input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        Ok(Lines {
            input,
            pending: Vec::new(),
        })
    }

    /// Writes `prompt` to stdout and waits for a whole line, unless one of
    /// `wakes` becomes readable first (it is not read: a descriptor that
    /// stays readable wakes every later wait too).
    ///
    /// # Errors
    ///
    /// When stdin or stdout fails, or the wait does.
    pub fn read_line(&mut self, prompt: &str, wakes: &[BorrowedFd<'_>]) -> io::Result<Plain> {
        let mut stdout = io::stdout();
        stdout.write_all(prompt.as_bytes())?;
        stdout.flush()?;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(Plain::Line(text(&line)));
            }
            if woken_first(self.input.as_fd(), wakes)? {
                // As the line editor does, so what follows starts a line.
                stdout.write_all(b"\n")?;
                stdout.flush()?;
                return Ok(Plain::Woken);
            }
            let n = match self.input.read(&mut chunk) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if n == 0 {
                // Ctrl-D ends a line without a newline, or at its start, input.
                if self.pending.is_empty() {
                    return Ok(Plain::Eof);
                }
                let line = std::mem::take(&mut self.pending);
                return Ok(Plain::Line(text(&line)));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A line as text, without its `\n` or `\r\n` (invalid UTF-8 replaced, as
/// the line editor cannot take it either).
fn text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// Waits until `input` or one of `wakes` is readable; true if a wake-up is
/// (it wins over input ready at the same time).
fn woken_first(input: BorrowedFd<'_>, wakes: &[BorrowedFd<'_>]) -> io::Result<bool> {
    let mut fds: Vec<PollFd<'_>> = wakes
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    fds.push(PollFd::new(input, PollFlags::POLLIN));
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => break,
            Err(err) => return Err(err.into()),
        }
    }
    // Readable, hung up or failed: each ends the wait for that descriptor.
    let (wakes, _) = fds.split_at(fds.len() - 1);
    Ok(wakes
        .iter()
        .any(|fd| fd.revents().is_some_and(|r| !r.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_wake_up_ends_the_wait_and_lines_keep_what_follows() {
        let (mut typed, input) = UnixStream::pair().unwrap();
        let (mut waker, woken) = UnixStream::pair().unwrap();
        let mut lines = Lines {
            input: File::from(std::os::fd::OwnedFd::from(input)),
            pending: Vec::new(),
        };
        typed.write_all(b"one\r\ntw").unwrap();
        let wakes = [woken.as_fd()];
        let line = lines.read_line("", &wakes).unwrap();
        assert_eq!(line, Plain::Line("one".into()));
        waker.write_all(b"!").unwrap();
        assert_eq!(lines.read_line("", &wakes).unwrap(), Plain::Woken);
        typed.write_all(b"o\n").unwrap();
        assert_eq!(lines.read_line("", &[]).unwrap(), Plain::Line("two".into()));
        typed.write_all(b"last").unwrap();
        drop(typed);
        assert_eq!(
            lines.read_line("", &[]).unwrap(),
            Plain::Line("last".into())
        );
        assert_eq!(lines.read_line("", &[]).unwrap(), Plain::Eof);
    }
}
