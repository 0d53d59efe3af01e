//! Interactive mode: the tutorial's `>>: ` prompt done right. A line is read
//! with editing and history, stripped, sent with `\n`, and the reply is read up
//! to its `\n` however many reads that takes.

use std::io::{self, BufRead, BufReader, Read, Write};

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::{Finish, is_broken_pipe};
use crate::Error;

/// The prompt shown before each line, as in the tutorial.
pub const PROMPT: &str = ">>: ";

/// What the user did at the prompt.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A line of text, without its line ending.
    Line(String),
    /// End of input (Ctrl-D).
    Eof,
    /// Ctrl-C.
    Interrupted,
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
}

/// The terminal front end: rustyline's line editor with in-memory history.
pub struct Terminal {
    /// The line editor; owns the terminal's raw mode while reading.
    editor: DefaultEditor,
}

impl Terminal {
    /// Opens the line editor on the process's terminal.
    ///
    /// # Errors
    ///
    /// When the terminal cannot be set up.
    pub fn new() -> Result<Self, Error> {
        let editor = DefaultEditor::new().map_err(|err| Error::Io {
            context: "cannot set up the terminal".into(),
            cause: readline_to_io(err),
        })?;
        Ok(Terminal { editor })
    }
}

impl LineSource for Terminal {
    fn read_line(&mut self) -> io::Result<Input> {
        match self.editor.readline(PROMPT) {
            Ok(line) => Ok(Input::Line(line)),
            Err(ReadlineError::Eof) => Ok(Input::Eof),
            Err(ReadlineError::Interrupted) => Ok(Input::Interrupted),
            Err(err) => Err(readline_to_io(err)),
        }
    }

    fn remember(&mut self, line: &str) {
        // History is a convenience: failing to record a line is not worth an error.
        let _ = self.editor.add_history_entry(line);
    }
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
/// UTF-8). Bytes the server sends beyond one reply stay buffered for the next.
///
/// # Errors
///
/// [`Error::Io`] when the server closes the connection or it fails; `peer`
/// names the server in the message.
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
    let closed = || Error::Io {
        context: format!("connection to {peer} lost"),
        cause: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ),
    };
    let failed = |cause| Error::Io {
        context: format!("connection to {peer} failed"),
        cause,
    };
    let mut conn = BufReader::new(stream);
    let mut request = Vec::new();
    let mut reply = Vec::new();
    loop {
        let line = match lines.read_line() {
            Ok(Input::Line(line)) => line,
            Ok(Input::Eof) => return Ok(Finish::Done),
            Ok(Input::Interrupted) => return Ok(Finish::Interrupted),
            Err(cause) => {
                return Err(Error::Io {
                    context: "cannot read the terminal".into(),
                    cause,
                });
            }
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        lines.remember(line);

        request.clear();
        request.extend_from_slice(line.as_bytes());
        request.push(b'\n');
        match conn.get_mut().write_all(&request) {
            Ok(()) => {}
            Err(err) if is_broken_pipe(&err) => return Err(closed()),
            Err(err) => return Err(failed(err)),
        }

        reply.clear();
        conn.read_until(b'\n', &mut reply).map_err(failed)?;
        let complete = reply.last() == Some(&b'\n');
        let shown = output.write_all(&reply).and_then(|()| output.flush());
        match shown {
            Err(err) if is_broken_pipe(&err) => return Ok(Finish::Done),
            Err(cause) => {
                return Err(Error::Io {
                    context: "cannot write to stdout".into(),
                    cause,
                });
            }
            Ok(()) if !complete => return Err(closed()),
            Ok(()) => {}
        }
    }
}
