//! `connect --hex`: the replies as a hex dump in `hexdump -C`'s layout: an
//! offset counting the whole reply stream, 16 bytes in hex in two groups of
//! 8, the printable ones as text, a line identical to the one before shown
//! as `*`, and the stream's length on the last line.
//!
//! In pipe mode the dump is exactly what `hexdump -C` prints for the same
//! bytes: a line is written once it has its 16 bytes, the last one at the
//! end. At a prompt each reply is shown at once (`eager`): a flush writes
//! the part of a line there is, and the next line goes on from that offset.

use std::io::{self, Write};

/// Bytes per line.
const WIDTH: usize = 16;

/// A writer that dumps what is written to it into `out`.
#[derive(Debug)]
pub(crate) struct HexDump<W: Write> {
    /// Where the dump goes.
    out: W,
    /// Offset of the first byte of `line` in the stream.
    offset: u64,
    /// The line being filled.
    line: Vec<u8>,
    /// The last whole line written, for `*`.
    previous: Option<Vec<u8>>,
    /// A `*` stands for the lines since `previous`.
    squeezing: bool,
    /// Flushing writes a partial line too.
    eager: bool,
}

impl<W: Write> HexDump<W> {
    /// A dump into `out`; `eager` at a prompt.
    pub(crate) fn new(out: W, eager: bool) -> HexDump<W> {
        HexDump {
            out,
            offset: 0,
            line: Vec::with_capacity(WIDTH),
            previous: None,
            squeezing: false,
            eager,
        }
    }

    /// Writes what is left of the last line and the stream's length (for
    /// an empty stream nothing, as `hexdump -C`).
    ///
    /// # Errors
    ///
    /// When `out` cannot be written.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.write_line()?;
        if self.offset > 0 {
            writeln!(self.out, "{:08x}", self.offset)?;
        }
        self.out.flush()
    }

    /// Writes `line` (whole or not) and moves the offset past it.
    fn write_line(&mut self) -> io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        let whole = self.line.len() == WIDTH;
        if whole && self.previous.as_deref() == Some(&self.line[..]) {
            if !self.squeezing {
                self.out.write_all(b"*\n")?;
                self.squeezing = true;
            }
        } else {
            self.out
                .write_all(format_line(self.offset, &self.line).as_bytes())?;
            self.squeezing = false;
        }
        self.offset += self.line.len() as u64;
        self.previous = whole.then(|| self.line.clone());
        self.line.clear();
        Ok(())
    }
}

impl<W: Write> Write for HexDump<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &byte in buf {
            self.line.push(byte);
            if self.line.len() == WIDTH {
                self.write_line()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.eager {
            self.write_line()?;
        }
        self.out.flush()
    }
}

/// One line of `hexdump -C`: `00000010  68 65 ... 6f  |hello...|`.
fn format_line(offset: u64, bytes: &[u8]) -> String {
    let mut text = format!("{offset:08x} ");
    for at in 0..WIDTH {
        if at % 8 == 0 {
            text.push(' ');
        }
        match bytes.get(at) {
            Some(byte) => text.push_str(&format!("{byte:02x} ")),
            None => text.push_str("   "),
        }
    }
    text.push_str(" |");
    text.extend(bytes.iter().map(|&byte| {
        if (0x20..0x7f).contains(&byte) {
            char::from(byte)
        } else {
            '.'
        }
    }));
    text.push_str("|\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `hexdump -C` prints for `bytes` written in `chunks`-sized parts.
    fn dump(bytes: &[u8], chunks: usize, eager: bool) -> String {
        let mut out = Vec::new();
        let mut hex = HexDump::new(&mut out, eager);
        for part in bytes.chunks(chunks.max(1)) {
            hex.write_all(part).unwrap();
            hex.flush().unwrap();
        }
        hex.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    /// `hexdump -C` itself, the reference; `None` where it is not
    /// installed (Debian `bsdextrautils`; `.ci/run` installs it, and under
    /// CI its absence fails the test).
    fn reference(bytes: &[u8]) -> Option<String> {
        let spawned = std::process::Command::new("hexdump")
            .arg("-C")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = spawned else {
            assert!(
                std::env::var_os("CI").is_none(),
                "hexdump is missing under CI"
            );
            let _ = writeln!(
                io::stderr(),
                "SKIPPED hex dump against hexdump -C: no hexdump"
            );
            return None;
        };
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        Some(String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn the_dump_is_what_hexdump_c_prints_however_the_bytes_are_split() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut samples: Vec<Vec<u8>> = vec![
            b"HELLO\n".to_vec(),
            Vec::new(),
            vec![b'A'; 100],
            (0..=255u8).collect(),
            b"0123456789abcdef".to_vec(),
        ];
        samples.push((0..1000).map(|_| rng.u8(..)).collect());
        let mut repeated = vec![0u8; 64];
        repeated.extend_from_slice(b"tail");
        repeated.extend(vec![0u8; 48]);
        samples.push(repeated);
        for sample in &samples {
            let Some(expected) = reference(sample) else {
                return;
            };
            for chunks in [1, 7, 16, 1000] {
                assert_eq!(
                    dump(sample, chunks, false),
                    expected,
                    "{sample:?} in {chunks}"
                );
            }
        }
    }

    #[test]
    fn at_a_prompt_each_reply_is_shown_at_once_and_offsets_go_on() {
        let mut out = Vec::new();
        let mut hex = HexDump::new(&mut out, true);
        for reply in [&b"HI\n"[..], b"THERE\n"] {
            hex.write_all(reply).unwrap();
            hex.flush().unwrap();
        }
        hex.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "00000000  48 49 0a                                          |HI.|\n\
             00000003  54 48 45 52 45 0a                                 |THERE.|\n\
             00000009\n"
        );
    }
}
