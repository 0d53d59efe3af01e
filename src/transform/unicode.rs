//! The `unicode` transform past its ASCII fast path: finds the characters of
//! valid UTF-8 that may change, writes their upper case (from the
//! [case table](super::case_table)), passes every other byte through, and
//! holds a character cut off by the end of a chunk until the next chunk
//! completes it or shows it invalid.
//!
//! What is valid is the standard library's rule (`str::from_utf8`), which is
//! also Python's: no overlong forms, no surrogates (`ED A0..BF ..`), nothing
//! past U+10FFFF. A test checks [`decode`] against `from_utf8` for every lead
//! and second byte.
//!
//! The one idea that makes it fast: only the lead byte of a character that
//! may change needs decoding, and the table tells those from the lead and
//! the byte after it (`C3` or `D0` always may; `E2 80`, punctuation, never
//! does; `E2 93`, circled letters, may). Every other byte passes through
//! unchanged whatever surrounds it: ASCII was upper-cased in place already;
//! a byte that is invalid where it stands passes through by definition; and
//! a continuation byte either belongs to a character decoded from its lead
//! or is invalid. So CJK, kana, most Hangul, Devanagari, Arabic or Hebrew
//! text, punctuation and emoji are copied 16 bytes at a time, undecoded.

use super::case_table::{CaseTable, TABLE};

/// The most output bytes one input byte can give: `ΐ` (2 bytes) upper-cases
/// to U+0399 U+0308 U+0301 (6 bytes). Checked for every character by the
/// case table's tests.
const MAX_GROWTH: usize = 3;

/// Bytes a step of [`upper_non_ascii`] reads ahead, and writes whether it
/// keeps them or not (the next step overwrites what it did not keep).
const AHEAD: usize = 16;

/// The start of a character cut off by the end of a chunk: 1 to 3 bytes that
/// are a valid beginning of a UTF-8 sequence, or none.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Held {
    /// The bytes; only the first `len` count.
    bytes: [u8; 3],
    /// How many bytes are held.
    len: u8,
}

impl Held {
    /// Returns true if and only if nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the held bytes and forgets them.
    pub(super) fn take(&mut self) -> &[u8] {
        let len = usize::from(std::mem::take(&mut self.len));
        &self.bytes[..len]
    }

    /// Holds `bytes` (at most 3).
    fn set(&mut self, bytes: &[u8]) {
        self.bytes[..bytes.len()].copy_from_slice(bytes);
        self.len = bytes.len() as u8;
    }
}

/// How long the `out` of [`upper_non_ascii`] must be for `input` bytes after
/// `held`: the most they can grow to, plus room for the fast loop's wide
/// writes.
pub(super) fn max_output(held: &Held, input: usize) -> usize {
    (usize::from(held.len) + input) * MAX_GROWTH + AHEAD
}

/// Writes the `unicode` transform of `held` followed by `input` into `out`
/// (at least [`max_output`] long) and returns how many bytes it wrote. A
/// character cut off at the end of `input` is held for the next call, or, if
/// `at_end`, passed through unchanged like any other invalid bytes.
///
/// ASCII bytes are copied as they are: the caller has upper-cased them in
/// place already, with the SIMD loop.
pub(super) fn upper_non_ascii(
    held: &mut Held,
    input: &[u8],
    out: &mut [u8],
    at_end: bool,
) -> usize {
    let table = &*TABLE;
    let (read, written) = if held.is_empty() {
        (0, 0)
    } else {
        complete_held(table, held, input, out, at_end)
    };
    if !held.is_empty() {
        return written; // `input` was too short to complete the character
    }
    let rest = &input[read..];
    let cut = if at_end { 0 } else { cut_off_len(rest) };
    let (whole, cut) = rest.split_at(rest.len() - cut);
    held.set(cut);
    written + upper_whole(table, whole, &mut out[written..])
}

/// How many bytes at the end of `bytes` are a character cut off: a valid
/// start of one that is not complete (0 to 3).
fn cut_off_len(bytes: &[u8]) -> usize {
    // The last byte that is not a continuation byte starts the last
    // character, which is at most 4 bytes long.
    for back in 1..=bytes.len().min(3) {
        let start = bytes.len() - back;
        if bytes[start] & 0xC0 != 0x80 {
            return if decode(&bytes[start..]) == Next::Incomplete {
                back
            } else {
                0
            };
        }
    }
    0
}

/// Writes the transform of `input` into `out` (at least [`max_output`] long)
/// and returns how many bytes it wrote. Nothing is held: the end of `input`
/// is the end of the stream, or the start of a character, so a character it
/// cuts off is invalid.
fn upper_whole(table: &CaseTable, input: &[u8], out: &mut [u8]) -> usize {
    let (mut read, mut written) = (0, 0);
    // `written` stays within MAX_GROWTH * read, so every write below, up to
    // AHEAD bytes from `written`, fits in `out`.
    while let Some(ahead) = input.get(read..read + AHEAD) {
        let ahead = ahead.first_chunk().expect("AHEAD bytes");
        let out = out[written..]
            .first_chunk_mut()
            .expect("room for AHEAD bytes");
        let (used, kept) = step(table, ahead, out);
        read += used;
        written += kept;
    }
    // The last few bytes, padded with zeros so that the same steps can read
    // ahead. A zero is ASCII, never a continuation byte, so a character cut
    // off by the padding is invalid, as it is by the end of `input`.
    let rest = &input[read..];
    let mut padded = [0u8; 2 * AHEAD];
    padded[..rest.len()].copy_from_slice(rest);
    let mut at = 0;
    while at < rest.len() {
        let ahead = padded[at..].first_chunk().expect("AHEAD bytes");
        let out = out[written..]
            .first_chunk_mut()
            .expect("room for AHEAD bytes");
        let (used, kept) = step(table, ahead, out);
        if used > rest.len() - at {
            // Only a run of passing bytes reaches into the padding: all the
            // rest passes through.
            return written + (rest.len() - at);
        }
        at += used;
        written += kept;
    }
    written
}

/// One step over the input: transforms what starts `ahead`, a run of passing
/// bytes or one character that may change, into the start of `out`, writing
/// all of `out` but keeping only its start. Returns how many bytes it used
/// and kept.
///
/// Why this shape: mixed-script text costs a few nanoseconds per character,
/// spent on mispredicted branches (how long, cased or not) and on loads whose
/// address depends on the load before. So a step reads and writes whole
/// words rather than branching on lengths: passing bytes are copied 16 at a
/// time, an upper case is one 8-byte store chosen without a branch; and it
/// tests the next byte with a branch (cheap when predicted, as within a word)
/// before computing how far a run goes. Measured on `tests/unicode/mixed.txt`
/// (`cargo bench --bench unicode`, 64 KiB): decoding every character and
/// branching on its length and case ran at 0.2-0.5 GB/s; these steps, at
/// 0.77 GB/s (Python's definition of the transform: 0.13 GB/s; the standard
/// library's `str::to_uppercase`, on valid text only: 0.18 GB/s).
#[inline(always)]
fn step(table: &CaseTable, ahead: &[u8; AHEAD], out: &mut [u8; AHEAD]) -> (usize, usize) {
    if table.may_change(ahead[0], ahead[1]) {
        let next = ahead.first_chunk().expect("8 of AHEAD bytes");
        let out = out.first_chunk_mut().expect("8 of AHEAD bytes");
        return upper_one(table, next, out);
    }
    out.copy_from_slice(ahead);
    // One byte between words (a space) is common enough to test for first.
    let run = if table.may_change(ahead[1], ahead[2]) {
        1
    } else {
        passing_prefix(table, ahead)
    };
    (run, run)
}

/// How many bytes at the start of `block` pass through unchanged: the bytes
/// before the first lead of a character that may change.
#[inline(always)]
fn passing_prefix(table: &CaseTable, block: &[u8; AHEAD]) -> usize {
    const HIGH_BITS: u128 = u128::from_ne_bytes([0x80; AHEAD]);
    let word = u128::from_le_bytes(*block);
    // Lead bytes of multi-byte characters are C0..FF, the bytes with both
    // top bits set: bit 7 of each byte of `word << 1` is that byte's bit 6.
    let mut leads = word & (word << 1) & HIGH_BITS;
    while leads != 0 {
        let at = (leads.trailing_zeros() / 8) as usize;
        let may_change = match block.get(at + 1) {
            Some(&second) => table.may_change(block[at], second),
            None => table.may_change_any(block[at]),
        };
        if may_change {
            return at;
        }
        leads &= leads - 1;
    }
    AHEAD
}

/// Upper-cases the character that starts `next`, whose first byte is a lead
/// byte (C2..F4), into the start of `out`, writing all 8 bytes of `out` but
/// keeping only its start. Returns how many bytes it used and kept. (Bytes
/// after the input's end, if `next` reaches past it, must not be continuation
/// bytes.)
#[inline(always)]
fn upper_one(table: &CaseTable, next: &[u8; 8], out: &mut [u8; 8]) -> (usize, usize) {
    debug_assert!((0xC2..=0xF4).contains(&next[0]), "{:02X}", next[0]);
    let (packed, len) = if next[0] < 0xE0 && next[1] & 0xC0 == 0x80 {
        // A 2-byte character (lead C2..DF): most cased scripts, so they
        // skip the general decoder and the table's index.
        let code = u32::from(next[0] & 0x1F) << 6 | u32::from(next[1] & 0x3F);
        (table.lookup_two_byte(code), 2)
    } else {
        match decode(&next[..4]) {
            Next::Char { code, len } => (table.lookup(code), len),
            // Only the lead byte: any continuation bytes after it are
            // invalid as leads too, so they pass through on their own.
            // (4 bytes always decide, so nothing is incomplete here.)
            Next::Invalid | Next::Incomplete => {
                out[0] = next[0];
                return (1, 1);
            }
        }
    };
    // Branch-free: whether a character that may change does is as good as
    // random in mixed text.
    let own = u64::from_le_bytes(*next);
    let same = u64::from(packed == 0).wrapping_neg();
    let bytes = (own & same) | (packed & !same);
    let kept = (len & same as usize) | ((packed >> 56) as usize & !same as usize);
    *out = bytes.to_le_bytes();
    (len, kept)
}

/// Decides the character that starts with the `held` bytes, using the first
/// bytes of `input`; writes its upper case (or, if invalid, the held bytes as
/// they are) to `out`. Returns how many bytes of `input` it used and how many
/// it wrote.
fn complete_held(
    table: &CaseTable,
    held: &mut Held,
    input: &[u8],
    out: &mut [u8],
    at_end: bool,
) -> (usize, usize) {
    // A character is at most 4 bytes, so 4 always decide it; zeros after
    // them are never continuation bytes.
    let mut joined = [0u8; 8];
    let held_bytes = held.take();
    let kept = held_bytes.len();
    joined[..kept].copy_from_slice(held_bytes);
    let used = input.len().min(4 - kept);
    joined[kept..kept + used].copy_from_slice(&input[..used]);
    let known = kept + used;
    match decode(&joined[..known]) {
        Next::Char { len, .. } => {
            let out = out.first_chunk_mut().expect("room for 8 bytes");
            let (_, written) = upper_one(table, &joined, out);
            (len - kept, written)
        }
        Next::Invalid => {
            // The held bytes were a valid start, so the sequence broke at a
            // byte of `input`, which is decoded afresh from there.
            out[..kept].copy_from_slice(&joined[..kept]);
            (0, kept)
        }
        Next::Incomplete if at_end => {
            out[..known].copy_from_slice(&joined[..known]);
            (used, known)
        }
        Next::Incomplete => {
            // Still cut off: `input` was shorter than what was missing.
            held.set(&joined[..known]);
            (used, 0)
        }
    }
}

/// What the bytes at the start of a slice are.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// A valid character: its code point and UTF-8 length.
    Char { code: u32, len: usize },
    /// The first byte does not start a valid character.
    Invalid,
    /// A valid start of a character that the slice cuts off.
    Incomplete,
}

/// Decodes the character at the start of `bytes`, whose first byte is not
/// ASCII, by the rule of `str::from_utf8` (Unicode's Table 3-7, "well-formed
/// UTF-8 byte sequences").
#[inline(always)]
fn decode(bytes: &[u8]) -> Next {
    let lead = bytes[0];
    // The sequence length and the range the second byte must be in, which
    // excludes overlong forms (E0, F0), surrogates (ED) and code points past
    // U+10FFFF (F4).
    let (len, second) = match lead {
        0xC2..=0xDF => (2, 0x80..=0xBF),
        0xE0 => (3, 0xA0..=0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80..=0xBF),
        0xED => (3, 0x80..=0x9F),
        0xF0 => (4, 0x90..=0xBF),
        0xF1..=0xF3 => (4, 0x80..=0xBF),
        0xF4 => (4, 0x80..=0x8F),
        _ => return Next::Invalid, // continuation bytes, C0, C1, F5..FF
    };
    let Some(&byte) = bytes.get(1) else {
        return Next::Incomplete;
    };
    if !second.contains(&byte) {
        return Next::Invalid;
    }
    let mut code = (u32::from(lead) & (0x7F >> len)) << 6 | u32::from(byte & 0x3F);
    for i in 2..len {
        let Some(&byte) = bytes.get(i) else {
            return Next::Incomplete;
        };
        if byte & 0xC0 != 0x80 {
            return Next::Invalid;
        }
        code = code << 6 | u32::from(byte & 0x3F);
    }
    Next::Char { code, len }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `str::from_utf8` says of the character at the start of `bytes`.
    fn std_next(bytes: &[u8]) -> Next {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                let c = text.chars().next().unwrap();
                Next::Char {
                    code: c as u32,
                    len: c.len_utf8(),
                }
            }
            Err(err) if err.valid_up_to() > 0 => {
                let text = std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap();
                let c = text.chars().next().unwrap();
                Next::Char {
                    code: c as u32,
                    len: c.len_utf8(),
                }
            }
            Err(err) if err.error_len().is_none() => Next::Incomplete,
            Err(_) => Next::Invalid,
        }
    }

    #[test]
    fn decodes_like_from_utf8_for_every_lead_and_second_byte() {
        // Third and fourth bytes from each side of every range boundary.
        let later = [
            0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xF4, 0xFF,
        ];
        for lead in 0x80..=0xFFu8 {
            assert_eq!(decode(&[lead]), std_next(&[lead]), "{lead:02X}");
            for second in 0..=0xFFu8 {
                let two = [lead, second];
                assert_eq!(decode(&two), std_next(&two), "{two:02X?}");
                for &third in &later {
                    let three = [lead, second, third];
                    assert_eq!(decode(&three), std_next(&three), "{three:02X?}");
                    for &fourth in &later {
                        let four = [lead, second, third, fourth];
                        assert_eq!(decode(&four), std_next(&four), "{four:02X?}");
                    }
                }
            }
        }
    }

    #[test]
    fn passing_prefix_stops_at_the_first_character_that_may_change() {
        // "ü" (C3 BC) may change; "中" (E4 B8 AD) does not.
        let mut block = [b'A'; AHEAD];
        assert_eq!(passing_prefix(&TABLE, &block), AHEAD);
        block[..6].copy_from_slice("中中".as_bytes());
        assert_eq!(passing_prefix(&TABLE, &block), AHEAD);
        for at in 0..AHEAD - 1 {
            let mut block = block;
            block[at..at + 2].copy_from_slice("ü".as_bytes());
            assert_eq!(passing_prefix(&TABLE, &block), at, "ü at {at}");
        }
    }
}
