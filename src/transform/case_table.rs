//! The standard library's upper-case mapping (`char::to_uppercase`: full case
//! mapping, Unicode [`char::UNICODE_VERSION`]) as a two-level table, built
//! from it once per process at first use, for the `unicode` transform's
//! per-character lookups.
//!
//! Why a table: `to_uppercase` searches the standard library's case data for
//! every character; `str::to_uppercase`, built on it, upper-cases
//! `tests/unicode/mixed.txt` at 0.18 GB/s (`cargo bench --bench unicode`),
//! hardly faster than Python (0.13 GB/s). Here a lookup is one or two loads.
//! Built from `to_uppercase` itself, the table cannot disagree with it, and
//! it follows the toolchain's Unicode version with no generated source to
//! keep in step (a test compares the two for every code point).

use std::collections::HashMap;
use std::sync::LazyLock;

/// The table, built at the first `unicode` chunk of the process: about 2 ms
/// in a release build, 45 KiB (`builds_quickly_enough_to_build_lazily`
/// prints both).
pub(super) static TABLE: LazyLock<CaseTable> = LazyLock::new(CaseTable::build);

/// Code points below this are looked up in the table: planes 0 and 1, which
/// hold every cased script. The rest (CJK extensions, private use; nothing
/// with a case mapping as of Unicode 17) ask the standard library directly.
const LIMIT: u32 = 0x2_0000;

/// The code points below this take at most 2 bytes in UTF-8.
const TWO_BYTE_END: u32 = 0x800;

/// log2 of the code points per block of the table.
const BLOCK_BITS: u32 = 6;

/// Code points per block: 64, so that most blocks are all zeroes and shared.
const BLOCK: usize = 1 << BLOCK_BITS;

/// The most bytes a [`Packed`] upper case holds. Every upper case takes at
/// most 6 (`ΐ` -> U+0399 U+0308 U+0301); a test checks every character.
pub(super) const MAX_PACKED: usize = 7;

/// The UTF-8 of an upper case, packed in a `u64` so that writing it is one
/// 8-byte store and no branch: its bytes in the low [`MAX_PACKED`] bytes
/// (little-endian, so the first byte is the lowest), its length in the top
/// byte. 0 means "the character is its own upper case".
pub(super) type Packed = u64;

/// The upper-case mapping of code points below [`LIMIT`].
#[derive(Debug)]
pub(super) struct CaseTable {
    /// For each block of [`BLOCK`] code points, which block of `entries`
    /// describes it. Blocks with the same entries (above all, the blocks
    /// with no case mappings at all) are stored once.
    index: Box<[u16]>,
    /// Per code point, its [`Packed`] upper case.
    entries: Box<[Packed]>,
    /// Per lead byte, which second bytes (bit `second & 0x3F`) may start a
    /// character that has an upper case other than itself: all of them for a
    /// cased 2-byte lead (`C3`, `D0`...), a bit per block of 64 code points
    /// for a 3-byte lead (`E2 80..81`, punctuation, is caseless, `E2 93`,
    /// circled letters, is not), per block of 4096 for a 4-byte lead; none
    /// for ASCII, continuation bytes and bytes never valid. Any byte that
    /// does not start such a character passes through the `unicode`
    /// transform unchanged, wherever it is.
    may_change: [u64; 256],
}

impl CaseTable {
    /// The upper case of `code`, a Unicode scalar value, packed.
    #[inline(always)]
    pub(super) fn lookup(&self, code: u32) -> Packed {
        if code >= LIMIT {
            return packed_upper_std(code);
        }
        let block = usize::from(self.index[(code >> BLOCK_BITS) as usize]);
        self.entries[(block << BLOCK_BITS) | (code as usize & (BLOCK - 1))]
    }

    /// The upper case of `code`, a code point of a 2-byte character
    /// (U+0080..U+07FF: Latin, Greek, Cyrillic, Armenian...), packed: one
    /// load, where [`lookup`](Self::lookup) needs two.
    #[inline(always)]
    pub(super) fn lookup_two_byte(&self, code: u32) -> Packed {
        debug_assert!(code < TWO_BYTE_END);
        self.entries[code as usize]
    }

    /// Returns true if a character that starts with `lead` and `second` may
    /// have an upper case other than itself (`second` need not be a
    /// continuation byte: then the answer does not matter); false if it
    /// certainly has not, or if `lead` is ASCII.
    #[inline(always)]
    pub(super) fn may_change(&self, lead: u8, second: u8) -> bool {
        self.may_change[usize::from(lead)] >> (second & 0x3F) & 1 != 0
    }

    /// Returns true if some non-ASCII character that starts with `lead` may
    /// have an upper case other than itself: [`may_change`](Self::may_change)
    /// when the second byte is not known yet.
    #[inline(always)]
    pub(super) fn may_change_any(&self, lead: u8) -> bool {
        self.may_change[usize::from(lead)] != 0
    }

    /// Asks the standard library for the upper case of every code point below
    /// [`LIMIT`].
    fn build() -> CaseTable {
        let mut index = Vec::with_capacity(LIMIT as usize / BLOCK);
        let mut entries = Vec::new();
        let mut seen: HashMap<[Packed; BLOCK], u16> = HashMap::new();
        let mut may_change = [0u64; 256];
        // Code points past the table are asked about one by one, so they
        // all count as changing.
        for code in (LIMIT..=char::MAX as u32).step_by(1 << 12) {
            mark_may_change(&mut may_change, code);
        }
        for first in (0..LIMIT).step_by(BLOCK) {
            let mut block = [0; BLOCK];
            for (code, entry) in (first..).zip(&mut block) {
                *entry = packed_upper_std(code);
                if *entry != 0 && code >= 0x80 {
                    mark_may_change(&mut may_change, code);
                }
            }
            // The blocks of 2-byte characters are stored first, in order and
            // unshared, so that `lookup_two_byte` needs no index.
            let id = if first < TWO_BYTE_END {
                entries.extend_from_slice(&block);
                let id = (first / BLOCK as u32) as u16;
                seen.entry(block).or_insert(id);
                id
            } else {
                *seen.entry(block).or_insert_with(|| {
                    entries.extend_from_slice(&block);
                    u16::try_from(entries.len() / BLOCK - 1)
                        .expect("fewer than 65536 distinct blocks")
                })
            };
            index.push(id);
        }
        CaseTable {
            index: index.into(),
            entries: entries.into(),
            may_change,
        }
    }
}

/// Records in `may_change` (see [`CaseTable::may_change`]) that the
/// character `code` may change.
fn mark_may_change(may_change: &mut [u64; 256], code: u32) {
    let c = char::from_u32(code).expect("a scalar value");
    let utf8 = c.encode_utf8(&mut [0; 4]).as_bytes().to_owned();
    may_change[usize::from(utf8[0])] |= match utf8.len() {
        2 => u64::MAX,
        _ => 1 << (utf8[1] & 0x3F),
    };
}

/// The upper case of `code`, packed, straight from the standard library: to
/// build the table, and for code points past it.
#[cold]
fn packed_upper_std(code: u32) -> Packed {
    let Some(c) = char::from_u32(code) else {
        return 0; // a surrogate: never decoded from valid UTF-8
    };
    let mut upper = c.to_uppercase();
    if upper.len() == 1 && upper.clone().next() == Some(c) {
        return 0;
    }
    let mut bytes = [0u8; 8];
    let mut len = 0;
    for u in &mut upper {
        len += u.encode_utf8(&mut bytes[len..]).len();
    }
    assert!(
        len <= MAX_PACKED,
        "the upper case of U+{code:04X} takes {len} bytes"
    );
    bytes[7] = len as u8;
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard library's upper case of `c`, as UTF-8.
    fn std_upper(c: char) -> Vec<u8> {
        c.to_uppercase().collect::<String>().into_bytes()
    }

    /// The table's upper case of `c`, as UTF-8.
    fn table_upper(c: char) -> Vec<u8> {
        match TABLE.lookup(c as u32) {
            0 => c.to_string().into_bytes(),
            packed => packed.to_le_bytes()[..(packed >> 56) as usize].to_vec(),
        }
    }

    #[test]
    fn agrees_with_the_standard_library_for_every_character() {
        for c in (0..=char::MAX as u32).filter_map(char::from_u32) {
            assert_eq!(table_upper(c), std_upper(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn no_character_grows_more_than_threefold() {
        // The bound `unicode::max_output` relies on.
        for c in (0..=char::MAX as u32).filter_map(char::from_u32) {
            let grown = std_upper(c).len();
            assert!(
                grown <= 3 * c.len_utf8(),
                "U+{:04X}: {grown} bytes",
                c as u32
            );
        }
    }

    #[test]
    fn every_non_ascii_character_with_an_upper_case_may_change() {
        for c in (0x80..=char::MAX as u32).filter_map(char::from_u32) {
            if std_upper(c) != c.to_string().as_bytes() {
                let utf8 = c.encode_utf8(&mut [0; 4]).as_bytes().to_owned();
                assert!(TABLE.may_change(utf8[0], utf8[1]), "U+{:04X}", c as u32);
                assert!(TABLE.may_change_any(utf8[0]), "U+{:04X}", c as u32);
            }
        }
        let leads: Vec<String> = (0..=255u8)
            .filter(|&b| TABLE.may_change_any(b))
            .map(|b| format!("{b:02X}"))
            .collect();
        eprintln!("leads of characters that may change: {}", leads.join(" "));
        for byte in (0..0x80).chain(0x80..0xC0).chain(0xF5..=0xFF) {
            assert!(!TABLE.may_change_any(byte), "{byte:02X} never starts one");
        }
    }

    #[test]
    fn common_caseless_characters_are_known_not_to_change() {
        // The point of looking at the second byte: punctuation, CJK, emoji
        // and most Hangul pass through without being decoded.
        for c in ['’', '—', '…', '€', '中', 'の', '한', '😀', '🎉'] {
            let utf8 = c.encode_utf8(&mut [0; 4]).as_bytes().to_owned();
            assert!(!TABLE.may_change(utf8[0], utf8[1]), "{c}");
        }
    }

    #[test]
    fn nothing_past_the_table_has_a_case_mapping_today() {
        // Not needed for correctness (those ask the standard library), but if
        // a future Unicode adds cased letters there, LIMIT should move.
        let cased: Vec<u32> = (LIMIT..=char::MAX as u32)
            .filter_map(char::from_u32)
            .filter(|&c| std_upper(c) != c.to_string().as_bytes())
            .map(|c| c as u32)
            .collect();
        assert_eq!(cased, Vec::<u32>::new());
    }

    #[test]
    fn builds_quickly_enough_to_build_lazily() {
        let start = std::time::Instant::now();
        let table = CaseTable::build();
        let took = start.elapsed();
        let bytes = table.index.len() * size_of::<u16>()
            + table.entries.len() * size_of::<Packed>()
            + size_of_val(&table.may_change);
        eprintln!(
            "case table: {} distinct blocks, {bytes} bytes, built in {took:?}",
            table.entries.len() / BLOCK,
        );
        assert!(bytes < 64 * 1024, "{bytes} bytes");
    }
}
