//! Interactive mode: the tutorial's `>>: ` prompt done right. A line is read
//! with editing and history, stripped, sent with `\n`, and the reply is read up
//! to its `\n` however many reads that takes.
//!
//! Ctrl-C at the prompt is a key the line editor reports
//! ([`Input::Interrupted`]); Ctrl-C while waiting for a reply is a SIGINT that
//! the [`Interrupt`] turns into a shut-down connection, and the loop, asking
//! [`LineSource::interrupted`], reports it the same way.
//!
//! The server closing the connection ends the session with an error however
//! it is noticed: by the reply read, or, while the prompt waits, by a
//! watcher (the `hangup` module) that wakes the prompt ([`Input::Closed`]);
//! what the server sent beyond the last reply is shown first. Where the line
//! editor could not be woken (`TERM=dumb`, stdout not a terminal), the
//! prompt reads plain lines in cooked mode instead.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use rustyline::error::ReadlineError;
use rustyline::{
    Cmd, ConditionalEventHandler, DefaultEditor, Event, EventContext, EventHandler, KeyCode,
    KeyEvent, Modifiers, RepeatCount,
};

use super::hangup::Hangup;
use super::plain::{self, Lines, Plain};
use super::{Finish, Interrupt, Registration, is_broken_pipe};
use crate::Error;

/// The prompt shown before each line, as in the tutorial.
pub const PROMPT: &str = ">>: ";

/// The longest line the prompt lets the user type, in bytes; keys that would
/// go past it are ignored. The line editor repaints the whole line each time
/// the cursor wraps to a new terminal row, so typing n bytes writes about
/// n²/(2 × columns) bytes to the terminal: 100 KB typed wrote 68 MB. At 4096
/// bytes that stays near 100 KB.
pub const MAX_LINE: usize = 4096;

/// Refuses a typed character that would make the line longer than [`MAX_LINE`].
struct LineCap;

impl ConditionalEventHandler for LineCap {
    fn handle(&self, evt: &Event, n: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        let KeyEvent(KeyCode::Char(ch), mods) = *evt.get(0)? else {
            return None;
        };
        let typed = mods == Modifiers::NONE || mods == Modifiers::SHIFT;
        let grown = ctx.line().len() + ch.len_utf8() * usize::from(n);
        (typed && grown > MAX_LINE).then_some(Cmd::Noop)
    }
}

/// What the user did at the prompt.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A line of text, without its line ending.
    Line(String),
    /// End of input (Ctrl-D).
    Eof,
    /// Ctrl-C.
    Interrupted,
    /// The server closed the connection while the prompt waited (or before
    /// it was shown); whatever the user typed is dropped.
    Closed,
}

/// A source of user lines: the terminal, or a script in tests.
pub trait LineSource {
    /// Shows the prompt and reads one line.
    ///
    /// # Errors
    ///
    /// When the terminal cannot be read.
    fn read_line(&mut self) -> io::Result<Input>;

    /// Records a sent line so the up arrow recalls it.
    fn remember(&mut self, _line: &str) {}

    /// Returns true if and only if the user pressed Ctrl-C while no line was
    /// being read (waiting for a reply, say). The loop asks after a line and
    /// after a failed exchange, so that a connection shut down by the
    /// interrupt ends the session as interrupted, not as an error.
    fn interrupted(&self) -> bool {
        false
    }
}

/// The terminal front end: rustyline's line editor with in-memory history
/// where the editor can be woken by a signal, plain lines read by this crate
/// elsewhere (TERM=dumb, stdout not a terminal): cooked mode, waited for
/// with poll(2) beside the close and the interrupt.
pub struct Terminal {
    /// How lines are read.
    front: Front,
    /// Ctrl-C outside the editor (the terminal is in cooked mode then, so the
    /// key is a SIGINT).
    interrupt: Interrupt,
    /// The connection's close, when one is watched.
    hangup: Option<Hangup>,
}

/// The two ways of reading a line at the prompt.
enum Front {
    /// The line editor, woken by the watcher's SIGINT (handled, so one
    /// landing outside the editor cannot kill the process).
    Editor(Box<DefaultEditor>),
    /// Plain lines in cooked mode, woken by descriptors.
    Plain {
        /// The lines of stdin.
        lines: Lines,
        /// Readable once the interrupt fired.
        interrupted: UnixStream,
        /// Makes the interrupt write to `interrupted`'s other end.
        _waker: Registration,
    },
}

impl Terminal {
    /// Opens the line editor on the process's terminal, or reads plain lines
    /// where the editor could not be woken; `interrupt` is what Ctrl-C fires
    /// while no line is being read (at a plain prompt, always).
    ///
    /// # Errors
    ///
    /// When the terminal cannot be set up.
    pub fn new(interrupt: Interrupt) -> Result<Self, Error> {
        let cannot_set_up = |cause| Error::Io {
            context: "cannot set up the terminal".into(),
            cause,
        };
        let front = if interrupt.handles_sigint() && plain::editor_wakes_on_sigint() {
            let mut editor =
                DefaultEditor::new().map_err(|err| cannot_set_up(readline_to_io(err)))?;
            editor.bind_sequence(Event::Any, EventHandler::Conditional(Box::new(LineCap)));
            Front::Editor(Box::new(editor))
        } else {
            let (interrupted, waker) = UnixStream::pair().map_err(cannot_set_up)?;
            let _waker = interrupt.on_interrupt(move || {
                // One byte in an empty socket buffer: it cannot block.
                let _ = (&waker).write_all(b"!");
            });
            let lines = Lines::stdin().map_err(cannot_set_up)?;
            Front::Plain {
                lines,
                interrupted,
                _waker,
            }
        };
        Ok(Terminal {
            front,
            interrupt,
            hangup: None,
        })
    }

    /// Watches `conn` (a duplicate of the connection's descriptor) so that
    /// the server's close ends a wait at the prompt at once, as
    /// [`Input::Closed`].
    ///
    /// # Errors
    ///
    /// When the watching thread cannot be started.
    pub fn watch_close(&mut self, conn: std::os::fd::OwnedFd) -> io::Result<()> {
        self.hangup = Some(Hangup::watch(conn)?);
        Ok(())
    }
}

impl LineSource for Terminal {
    fn read_line(&mut self) -> io::Result<Input> {
        // A Ctrl-C between two prompts (a SIGINT: the editor was not reading).
        if self.interrupt.is_interrupted() {
            return Ok(Input::Interrupted);
        }
        let hangup = self.hangup.as_ref();
        match &mut self.front {
            Front::Editor(editor) => edited_line(editor, hangup),
            Front::Plain {
                lines, interrupted, ..
            } => plain_line(lines, interrupted, hangup, &self.interrupt),
        }
    }

    fn remember(&mut self, line: &str) {
        if let Front::Editor(editor) = &mut self.front {
            // History is a convenience: failing to record a line is not worth
            // an error.
            let _ = editor.add_history_entry(line);
        }
    }

    fn interrupted(&self) -> bool {
        self.interrupt.is_interrupted()
    }
}

/// Reads a line with the editor, which the watcher of `hangup` wakes with a
/// SIGINT when the server closes.
fn edited_line(editor: &mut DefaultEditor, hangup: Option<&Hangup>) -> io::Result<Input> {
    let closed = || hangup.is_some_and(Hangup::is_closed);
    // Taken before the close is asked, dropped after the read and before it
    // is asked again: see `Hangup::prompting`.
    let prompting = hangup.map(Hangup::prompting);
    if closed() {
        return Ok(Input::Closed);
    }
    let read = editor.readline(PROMPT);
    drop(prompting);
    if closed() {
        // The watcher's wake-up (an interruption) included.
        return Ok(Input::Closed);
    }
    match read {
        Ok(line) => Ok(Input::Line(line)),
        Err(ReadlineError::Eof) => Ok(Input::Eof),
        Err(ReadlineError::Interrupted) => Ok(Input::Interrupted),
        Err(err) => Err(readline_to_io(err)),
    }
}

/// Reads a plain line, unless the interrupt fires (`interrupted` becomes
/// readable) or the server closes first. Ctrl-C is a SIGINT here, and the
/// interrupt shuts the connection down, which the watcher sees as a close:
/// so the interrupt is asked first.
fn plain_line(
    lines: &mut Lines,
    interrupted: &UnixStream,
    hangup: Option<&Hangup>,
    interrupt: &Interrupt,
) -> io::Result<Input> {
    let closed = || hangup.is_some_and(Hangup::is_closed);
    if closed() {
        return Ok(Input::Closed);
    }
    let mut wakes = vec![interrupted.as_fd()];
    wakes.extend(hangup.map(Hangup::closed_fd));
    let read = lines.read_line(PROMPT, &wakes)?;
    if interrupt.is_interrupted() {
        return Ok(Input::Interrupted);
    }
    if closed() {
        return Ok(Input::Closed);
    }
    Ok(match read {
        Plain::Line(line) => Input::Line(line),
        Plain::Eof => Input::Eof,
        // Only the interrupt and the close wake it, and neither happened: a
        // wake-up descriptor failed, which ends the input.
        Plain::Woken => Input::Eof,
    })
}

fn readline_to_io(err: ReadlineError) -> io::Error {
    match err {
        ReadlineError::Io(err) => err,
        other => io::Error::other(other.to_string()),
    }
}

/// Runs the prompt loop over `stream` until input ends.
///
/// Each non-empty stripped line is sent with `\n`; the reply is read up to and
/// including its `\n` and written to `output` byte for byte (it need not be
/// UTF-8). Bytes the server sends beyond one reply stay buffered for the next;
/// when the server closed, they are written out, up to the connection's end,
/// before the error.
/// Returns [`Finish::Interrupted`] on Ctrl-C at the prompt, or when
/// [`LineSource::interrupted`] says so after a line or a failed exchange.
///
/// # Errors
///
/// [`Error::Io`] when the server closes the connection (noticed at a reply
/// or as [`Input::Closed`]: `connection to tcp ADDR lost: the server closed
/// the connection`) or it fails; `peer` names the server in the message.
///
/// ```
/// use upecho::client::repl::{Input, LineSource, repl};
/// struct Script(Vec<&'static str>);
/// impl LineSource for Script {
///     fn read_line(&mut self) -> std::io::Result<Input> {
///         Ok(match self.0.pop() { Some(l) => Input::Line(l.into()), None => Input::Eof })
///     }
/// }
/// // An in-memory "server" that already holds the reply.
/// struct Canned(std::io::Cursor<Vec<u8>>, Vec<u8>);
/// impl std::io::Read for Canned {
///     fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> { self.0.read(b) }
/// }
/// impl std::io::Write for Canned {
///     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.1.write(b) }
///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// }
/// let mut out = Vec::new();
/// let server = Canned(std::io::Cursor::new(b"HI\n".to_vec()), Vec::new());
/// repl(&mut Script(vec!["  hi ", "   "]), server, &mut out, "tcp test").unwrap();
/// assert_eq!(out, b"HI\n");
/// ```
pub fn repl<L, S, O>(lines: &mut L, stream: S, output: &mut O, peer: &str) -> Result<Finish, Error>
where
    L: LineSource,
    S: Read + Write,
    O: Write,
{
    let mut exchange = Exchange {
        conn: BufReader::new(stream),
        request: Vec::new(),
        reply: Vec::new(),
        peer,
    };
    loop {
        let line = match next_line(lines) {
            Ok(Input::Line(line)) => line,
            Ok(Input::Eof) => return Ok(Finish::Done),
            Ok(Input::Interrupted) => return Ok(Finish::Interrupted),
            Ok(Input::Closed) => {
                return if exchange.drain(output)? {
                    Err(exchange.closed())
                } else {
                    Ok(Finish::Done)
                };
            }
            Err(cause) => {
                return Err(Error::Io {
                    context: "cannot read the terminal".into(),
                    cause,
                });
            }
        };
        let complete = match exchange.round_trip(&line) {
            Ok(complete) => complete,
            Err(_) if lines.interrupted() => return Ok(Finish::Interrupted),
            Err(err) => return Err(err),
        };
        if !complete && lines.interrupted() {
            return Ok(Finish::Interrupted);
        }
        if !show(output, &exchange.reply)? {
            return Ok(Finish::Done);
        }
        if !complete {
            return Err(exchange.closed());
        }
    }
}

/// The next line to send from the prompt, for a stream ([`repl`]) and for
/// UDP alike: shows the prompt until the user gives a line that is not empty
/// once stripped, and returns it stripped and remembered for the up arrow;
/// or how the input ended. A line read while [`LineSource::interrupted`]
/// says so (Ctrl-C meanwhile) counts as [`Input::Interrupted`].
///
/// # Errors
///
/// When the terminal cannot be read.
pub fn next_line<L: LineSource>(lines: &mut L) -> io::Result<Input> {
    loop {
        let line = match lines.read_line()? {
            Input::Line(line) => line,
            other => return Ok(other),
        };
        if lines.interrupted() {
            return Ok(Input::Interrupted);
        }
        let line = line.trim();
        if !line.is_empty() {
            lines.remember(line);
            return Ok(Input::Line(line.to_owned()));
        }
    }
}

/// One request and its reply over the connection, with reused buffers.
struct Exchange<'a, S> {
    /// The connection; its buffer keeps bytes beyond one reply for the next.
    conn: BufReader<S>,
    /// The line being sent, with its `\n`.
    request: Vec<u8>,
    /// The last reply, with its `\n` unless the server closed first.
    reply: Vec<u8>,
    /// Names the server in errors.
    peer: &'a str,
}

impl<S: Read + Write> Exchange<'_, S> {
    /// Sends `line` plus `\n` and reads the reply into `self.reply`; returns
    /// true if and only if the reply is complete (ends with `\n`).
    fn round_trip(&mut self, line: &str) -> Result<bool, Error> {
        self.request.clear();
        self.request.extend_from_slice(line.as_bytes());
        self.request.push(b'\n');
        match self.conn.get_mut().write_all(&self.request) {
            Ok(()) => {}
            Err(err) if is_broken_pipe(&err) => return Err(self.closed()),
            Err(err) => return Err(self.failed(err)),
        }
        self.reply.clear();
        self.conn
            .read_until(b'\n', &mut self.reply)
            .map_err(|err| self.failed(err))?;
        Ok(self.reply.last() == Some(&b'\n'))
    }

    /// Writes to `output` what the server sent and no reply took (the bytes
    /// buffered beyond the last reply, then the socket's up to its end,
    /// which the server's close bounds); returns false if and only if the
    /// reader of our output went away.
    fn drain<O: Write>(&mut self, output: &mut O) -> Result<bool, Error> {
        loop {
            let rest = match self.conn.fill_buf() {
                Ok([]) => return Ok(true),
                Ok(rest) => rest,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // A reset: what came before it is all there is.
                Err(_) => return Ok(true),
            };
            let n = rest.len();
            if !show(output, rest)? {
                return Ok(false);
            }
            self.conn.consume(n);
        }
    }

    fn closed(&self) -> Error {
        Error::Io {
            context: format!("connection to {} lost", self.peer),
            cause: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ),
        }
    }

    fn failed(&self, cause: io::Error) -> Error {
        Error::Io {
            context: format!("connection to {} failed", self.peer),
            cause,
        }
    }
}

/// Writes a reply to the user and flushes; returns false if and only if the
/// reader of our output went away, which ends the session quietly.
fn show<O: Write>(output: &mut O, reply: &[u8]) -> Result<bool, Error> {
    match output.write_all(reply).and_then(|()| output.flush()) {
        Ok(()) => Ok(true),
        Err(err) if is_broken_pipe(&err) => Ok(false),
        Err(cause) => Err(Error::Io {
            context: "cannot write to stdout".into(),
            cause,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines to hand out in order, then `Input::Closed`.
    struct Script(std::vec::IntoIter<&'static str>);

    impl LineSource for Script {
        fn read_line(&mut self) -> io::Result<Input> {
            Ok(self
                .0
                .next()
                .map_or(Input::Closed, |l| Input::Line(l.into())))
        }
    }

    /// A "server" that already sent `replies` and closed.
    struct Closed(io::Cursor<Vec<u8>>);

    impl Read for Closed {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Closed {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn at_a_close_the_bytes_beyond_the_last_reply_are_shown_before_the_error() {
        let server = Closed(io::Cursor::new(b"A\nMORE\nPART".to_vec()));
        let mut out = Vec::new();
        let mut lines = Script(vec!["a"].into_iter());
        let err = repl(&mut lines, server, &mut out, "tcp test").expect_err("closed");
        assert_eq!(out, b"A\nMORE\nPART");
        assert_eq!(
            err.to_string(),
            "connection to tcp test lost: the server closed the connection"
        );
    }
}
