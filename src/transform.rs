//! The one place the upper-casing rules live: pure and synchronous. The
//! server's connections call it between read and write (a datagram loop
//! calls [`Transform::apply`] between receive and send); nothing here knows
//! about sockets.
//!
//! `ascii` and `none` work in place, in the caller's buffer. `unicode` may
//! lengthen its input (up to 3x: `ΐ`, 2 bytes, upper-cases to the three
//! characters U+0399 U+0308 U+0301, 6 bytes), so it writes into one output
//! buffer per thread, lent to the caller as an [`Output`]; what it keeps per
//! stream is only the at most 3 bytes of a character cut off by the end of a
//! chunk. Nothing is allocated per chunk
//! once a thread's output buffer has grown to fit (a chunk over about 340 KiB
//! gets a buffer of its own, freed after use, rather than a thread keeping
//! megabytes).

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

mod case_table;
mod unicode;

use unicode::Held;

/// Which transform the service applies to every byte it echoes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transform {
    /// Exactly Python's `bytes.upper()`: `a`..=`z` become `A`..=`Z`, every other
    /// byte passes through unchanged.
    #[default]
    Ascii,
    /// Unicode full case mapping, exactly Python's
    /// `b.decode('utf-8', 'surrogateescape').upper().encode('utf-8', 'surrogateescape')`:
    /// valid UTF-8 is upper-cased (`straße` -> `STRASSE`, `ﬁ` -> `FI`), every
    /// byte that is not part of valid UTF-8 passes through unchanged. The
    /// Unicode version is the standard library's, [`char::UNICODE_VERSION`].
    Unicode,
    /// Plain echo (RFC 862).
    None,
}

impl Transform {
    /// Starts the per-stream state of this transform.
    ///
    /// ```
    /// use upecho::Transform;
    /// let mut t = Transform::Ascii.stream();
    /// let mut chunk = *b"hello, world\n";
    /// assert_eq!(&*t.process(&mut chunk), b"HELLO, WORLD\n");
    /// assert_eq!(t.finish(), b"");
    /// ```
    pub fn stream(self) -> StreamTransform {
        StreamTransform {
            kind: self,
            held: Held::default(),
        }
    }

    /// Transforms one whole message, such as a UDP datagram: the same bytes as
    /// [`process`](StreamTransform::process) followed by
    /// [`finish`](StreamTransform::finish) on a new stream, as one output.
    ///
    /// ```
    /// use upecho::Transform;
    /// // A character cut off at the end of the message passes through as it is.
    /// let mut datagram = *b"stra\xc3\x9fe \xe2\x82";
    /// let reply = Transform::Unicode.apply(&mut datagram);
    /// assert_eq!(&*reply, b"STRASSE \xe2\x82");
    /// ```
    pub fn apply(self, message: &mut [u8]) -> Output<'_> {
        self.stream().run(message, true)
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transform::Ascii => "ascii",
            Transform::Unicode => "unicode",
            Transform::None => "none",
        }
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ascii" => Ok(Transform::Ascii),
            "unicode" => Ok(Transform::Unicode),
            "none" => Ok(Transform::None),
            other => Err(format!("unknown transform '{other}'")),
        }
    }
}

/// The state of a transform over one byte stream: the rule, and the start of
/// a character whose last bytes have not arrived yet (`unicode` only; at most
/// 3 bytes). Small on purpose: a server keeps one per open connection.
///
/// `process` may hold bytes back and may return output of a different length
/// than its input; `finish` releases what was held back at end of stream.
#[derive(Clone, Debug)]
pub struct StreamTransform {
    /// The rule applied.
    kind: Transform,
    /// The incomplete character at the end of the last chunk (`unicode`).
    held: Held,
}

impl StreamTransform {
    /// Transforms one chunk as it arrived from the peer and returns the bytes to
    /// send back. Any split of a stream into chunks gives the same output, once
    /// [`finish`](Self::finish) has added what was held back.
    ///
    /// The chunk is used as scratch: ASCII letters in it are upper-cased in
    /// place, and when nothing else changes (`ascii`, `none`, and `unicode` on
    /// ASCII-only text) the output is the chunk itself. Otherwise the output
    /// is this thread's output buffer, lent until the [`Output`] is dropped.
    ///
    /// ```
    /// use upecho::Transform;
    /// let mut t = Transform::Unicode.stream();
    /// // "straße", cut inside the two bytes of "ß": they wait for each other.
    /// let mut first = *b"stra\xc3";
    /// assert_eq!(&*t.process(&mut first), b"STRA");
    /// let mut second = *b"\x9fe";
    /// assert_eq!(&*t.process(&mut second), b"SSE");
    /// assert_eq!(t.finish(), b"");
    /// ```
    pub fn process<'a>(&mut self, chunk: &'a mut [u8]) -> Output<'a> {
        self.run(chunk, false)
    }

    /// Returns what is still owed at end of stream: the bytes of an incomplete
    /// character held back by `unicode`, unchanged (nothing, for `ascii` and
    /// `none`).
    ///
    /// ```
    /// use upecho::Transform;
    /// let mut t = Transform::Unicode.stream();
    /// let mut chunk = *b"ab\xe2\x82";
    /// assert_eq!(&*t.process(&mut chunk), b"AB");
    /// assert_eq!(t.finish(), b"\xe2\x82");
    /// ```
    pub fn finish(&mut self) -> &[u8] {
        self.held.take()
    }

    /// [`process`](Self::process), or with `at_end` a whole message, whose
    /// incomplete last character is passed through rather than held.
    fn run<'a>(&mut self, chunk: &'a mut [u8], at_end: bool) -> Output<'a> {
        match self.kind {
            Transform::Ascii => upper_ascii(chunk),
            Transform::Unicode => {
                // Every ASCII byte is a character of its own in UTF-8, so the
                // SIMD loop upper-cases them correctly whatever surrounds them;
                // only the rest needs decoding.
                if upper_ascii_is_ascii(chunk) && self.held.is_empty() {
                    return Output::in_place(chunk);
                }
                let held = &mut self.held;
                let bound = unicode::max_output(held, chunk.len());
                return Output::from_scratch(bound, |out| {
                    unicode::upper_non_ascii(held, chunk, out, at_end)
                });
            }
            Transform::None => {}
        }
        Output::in_place(chunk)
    }
}

thread_local! {
    /// This thread's output buffer for `unicode`, whose output can be longer
    /// than its input. One per thread rather than one per connection, for the
    /// same reason as the server's read buffer: it is used only between a
    /// read and the write that follows.
    static OUTPUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest output buffer a thread keeps for the next chunk: enough for
/// any 64 KiB read (192 KiB and a little), so a server never allocates one
/// again; a buffer grown past it for a larger chunk is freed after use.
const MAX_KEPT_OUTPUT: usize = 1 << 20;

/// The bytes a transform produced, ready to send: either the caller's chunk,
/// transformed in place, or this thread's output buffer, which is given back
/// when the `Output` is dropped. Dereferences to `[u8]`.
///
/// Drop it before the next read, as the server does (no `.await` in between):
/// while one is alive, a second `unicode` chunk on the same thread cannot
/// reuse the buffer and allocates one of its own.
pub struct Output<'a> {
    /// Where the bytes are.
    bytes: Bytes<'a>,
}

/// Where an [`Output`]'s bytes are.
enum Bytes<'a> {
    /// In the caller's chunk.
    InPlace(&'a [u8]),
    /// The first `len` bytes of this thread's output buffer, taken out of
    /// [`OUTPUT`] and put back on drop.
    Scratch { buf: Vec<u8>, len: usize },
}

impl<'a> Output<'a> {
    /// The chunk itself, transformed in place.
    fn in_place(chunk: &'a [u8]) -> Output<'a> {
        Output {
            bytes: Bytes::InPlace(chunk),
        }
    }

    /// This thread's output buffer, at least `capacity` bytes long, with its
    /// first `fill(buffer)` bytes as the output.
    fn from_scratch(capacity: usize, fill: impl FnOnce(&mut [u8]) -> usize) -> Output<'a> {
        let mut buf = if capacity <= MAX_KEPT_OUTPUT {
            OUTPUT.try_with(Cell::take).unwrap_or_default()
        } else {
            Vec::new() // one of its own, freed when dropped
        };
        if buf.len() < capacity {
            // Only grows: zeroed once per thread, then reused as it is.
            buf.resize(capacity, 0);
        }
        let len = fill(&mut buf);
        Output {
            bytes: Bytes::Scratch { buf, len },
        }
    }
}

impl Deref for Output<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.bytes {
            Bytes::InPlace(bytes) => bytes,
            Bytes::Scratch { buf, len } => &buf[..*len],
        }
    }
}

impl AsRef<[u8]> for Output<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Output<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Output").field(&&**self).finish()
    }
}

impl Drop for Output<'_> {
    fn drop(&mut self) {
        if let Bytes::Scratch { buf, .. } = &mut self.bytes {
            let buf = std::mem::take(buf);
            if buf.capacity() > MAX_KEPT_OUTPUT {
                return;
            }
            // If another output was taken meanwhile (nested use), keep the
            // larger buffer. If the thread is exiting, `buf` is just freed.
            let _ = OUTPUT.try_with(|slot| {
                let other = slot.take();
                slot.set(if other.capacity() > buf.capacity() {
                    other
                } else {
                    buf
                });
            });
        }
    }
}

/// Upper-cases ASCII letters in place, leaving every other byte as it is:
/// Python's `bytes.upper()`.
///
/// Why this shape: the loop body ([`upper_portable`]) has no branch, so random
/// text cannot cause mispredictions, and LLVM turns it into SIMD compares and
/// subtracts. A release build may only assume SSE2 (16 bytes per step, about
/// 30 GiB/s here), so on x86-64 the same loop is also compiled for AVX2 and
/// AVX-512BW and the widest one the CPU has is picked at run time: 91 and
/// 130-155 GiB/s on 4-64 KiB (`cargo bench --bench transform`), which takes the
/// transform from about 9% of a streaming server's CPU to about 2%.
///
/// ```
/// let mut text = *b"abc xyz \xff\x00 AZ{`";
/// upecho::upper_ascii(&mut text);
/// assert_eq!(&text, b"ABC XYZ \xff\x00 AZ{`");
/// ```
#[inline]
pub fn upper_ascii(buf: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if wide::upper_avx512bw(buf) || wide::upper_avx2(buf) {
        return;
    }
    upper_portable(buf);
}

/// [`upper_ascii`], and returns true if and only if every byte of `buf` is
/// ASCII: the `unicode` transform's fast path, one pass over the bytes.
///
/// Why fused: the OR of all bytes rides along in the same vector loop almost
/// for free. With a second pass (`<[u8]>::is_ascii`) instead, `unicode` on
/// 64 KiB of ASCII text took 1.65x `ascii`'s time; fused, 1.04-1.16x
/// (`cargo bench --bench unicode`, on an AVX2 machine).
#[inline]
fn upper_ascii_is_ascii(buf: &mut [u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Some(is_ascii) =
        wide::upper_is_ascii_avx512bw(buf).or_else(|| wide::upper_is_ascii_avx2(buf))
    {
        return is_ascii;
    }
    upper_portable_is_ascii(buf)
}

/// The rule itself, for any CPU; [`upper_ascii`] runs it compiled for the
/// widest vectors available.
#[inline(always)]
fn upper_portable(buf: &mut [u8]) {
    for byte in buf {
        // `b - b'a' < 26` only for b'a'..=b'z'; the flag shifted to 0x20 is the
        // distance from lower to upper case.
        let is_lower = byte.wrapping_sub(b'a') < 26;
        *byte -= u8::from(is_lower) << 5;
    }
}

/// [`upper_portable`], also OR-ing every byte together to tell whether any
/// has its high bit set.
#[inline(always)]
fn upper_portable_is_ascii(buf: &mut [u8]) -> bool {
    let mut all = 0u8;
    for byte in buf {
        all |= *byte;
        let is_lower = byte.wrapping_sub(b'a') < 26;
        *byte -= u8::from(is_lower) << 5;
    }
    all.is_ascii()
}

/// [`upper_portable`] and [`upper_portable_is_ascii`] compiled for wider
/// vector units. Each safe wrapper checks the CPU first (after the first call,
/// a load of a cached flag) and, touching nothing, returns false or `None` if
/// the CPU lacks the feature.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod wide {
    use std::arch::is_x86_feature_detected;

    /// AVX-512BW: 64 bytes per step.
    pub(super) fn upper_avx512bw(buf: &mut [u8]) -> bool {
        if !is_x86_feature_detected!("avx512bw") {
            return false;
        }
        // SAFETY: a `target_feature` function may run only on a CPU with that
        // feature, and this CPU was just seen to have AVX-512BW.
        unsafe { avx512bw(buf) };
        true
    }

    /// AVX2: 32 bytes per step.
    pub(super) fn upper_avx2(buf: &mut [u8]) -> bool {
        if !is_x86_feature_detected!("avx2") {
            return false;
        }
        // SAFETY: as above; this CPU was just seen to have AVX2.
        unsafe { avx2(buf) };
        true
    }

    /// AVX-512BW, also telling whether every byte is ASCII.
    pub(super) fn upper_is_ascii_avx512bw(buf: &mut [u8]) -> Option<bool> {
        if !is_x86_feature_detected!("avx512bw") {
            return None;
        }
        // SAFETY: as above; this CPU was just seen to have AVX-512BW.
        Some(unsafe { is_ascii_avx512bw(buf) })
    }

    /// AVX2, also telling whether every byte is ASCII.
    pub(super) fn upper_is_ascii_avx2(buf: &mut [u8]) -> Option<bool> {
        if !is_x86_feature_detected!("avx2") {
            return None;
        }
        // SAFETY: as above; this CPU was just seen to have AVX2.
        Some(unsafe { is_ascii_avx2(buf) })
    }

    #[target_feature(enable = "avx512bw")]
    fn avx512bw(buf: &mut [u8]) {
        super::upper_portable(buf);
    }

    #[target_feature(enable = "avx2")]
    fn avx2(buf: &mut [u8]) {
        super::upper_portable(buf);
    }

    #[target_feature(enable = "avx512bw")]
    fn is_ascii_avx512bw(buf: &mut [u8]) -> bool {
        super::upper_portable_is_ascii(buf)
    }

    #[target_feature(enable = "avx2")]
    fn is_ascii_avx2(buf: &mut [u8]) -> bool {
        super::upper_portable_is_ascii(buf)
    }
}

#[cfg(test)]
mod tests;
