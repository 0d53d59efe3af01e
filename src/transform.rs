//! The one place the upper-casing rule lives: pure, synchronous, allocation-free.
//! The server's connections call it between read and write; nothing here knows
//! about sockets.

use std::fmt;
use std::str::FromStr;

/// Which transform the service applies to every byte it echoes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transform {
    /// Exactly Python's `bytes.upper()`: `a`..=`z` become `A`..=`Z`, every other
    /// byte passes through unchanged.
    #[default]
    Ascii,
    /// Plain echo (RFC 862).
    None,
}

impl Transform {
    /// Starts the per-connection state of this transform.
    ///
    /// ```
    /// use upecho::Transform;
    /// let mut t = Transform::Ascii.stream();
    /// let mut chunk = *b"hello, world\n";
    /// assert_eq!(t.process(&mut chunk), b"HELLO, WORLD\n");
    /// assert_eq!(t.finish(), b"");
    /// ```
    pub fn stream(self) -> StreamTransform {
        StreamTransform { kind: self }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transform::Ascii => "ascii",
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
            "none" => Ok(Transform::None),
            other => Err(format!("unknown transform '{other}'")),
        }
    }
}

/// The state of a transform over one byte stream.
///
/// The interface is the one a stateful transform needs: `process` may hold back
/// bytes it cannot decide yet (an incomplete UTF-8 character, for the `unicode`
/// transform of a later version) and return output of a different length;
/// `finish` releases whatever was held back at end of stream. The ASCII and plain
/// transforms are stateless, so they work in place and `finish` is empty.
#[derive(Clone, Debug)]
pub struct StreamTransform {
    /// The rule applied; the only state the stateless transforms need.
    kind: Transform,
}

impl StreamTransform {
    /// Transforms one chunk as it arrived from the peer and returns the bytes to
    /// send back. Any split of a stream into chunks gives the same output.
    pub fn process<'a>(&'a mut self, chunk: &'a mut [u8]) -> &'a [u8] {
        match self.kind {
            Transform::Ascii => upper_ascii(chunk),
            Transform::None => {}
        }
        chunk
    }

    /// Returns what is still owed at end of stream (nothing, for ASCII and plain).
    pub fn finish(&mut self) -> &[u8] {
        &[]
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

/// [`upper_portable`] compiled for wider vector units. Each safe wrapper checks
/// the CPU first (after the first call, a load of a cached flag) and returns
/// false, touching nothing, if the CPU lacks the feature.
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

    #[target_feature(enable = "avx512bw")]
    fn avx512bw(buf: &mut [u8]) {
        super::upper_portable(buf);
    }

    #[target_feature(enable = "avx2")]
    fn avx2(buf: &mut [u8]) {
        super::upper_portable(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The independent oracle: the standard library's per-byte rule, which is the
    /// same table as Python's `bytes.upper()`.
    fn oracle(bytes: &[u8]) -> Vec<u8> {
        bytes.iter().map(u8::to_ascii_uppercase).collect()
    }

    fn run(kind: Transform, chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut t = kind.stream();
        let mut out = Vec::new();
        for chunk in chunks {
            let mut chunk = chunk.clone();
            out.extend_from_slice(t.process(&mut chunk));
        }
        out.extend_from_slice(t.finish());
        out
    }

    #[test]
    fn every_byte_value_maps_as_bytes_upper() {
        let all: Vec<u8> = (0..=255).collect();
        let mut got = all.clone();
        upper_ascii(&mut got);
        for (&from, &to) in all.iter().zip(&got) {
            let expected = if from.is_ascii_lowercase() {
                from - 32
            } else {
                from
            };
            assert_eq!(to, expected, "byte {from:#04x}");
        }
    }

    #[test]
    fn none_is_identity() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(run(Transform::None, std::slice::from_ref(&all)), all);
    }

    #[test]
    fn names_round_trip() {
        for t in [Transform::Ascii, Transform::None] {
            assert_eq!(t.name().parse::<Transform>(), Ok(t));
        }
        assert!("upper".parse::<Transform>().is_err());
    }

    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            chunks.push(bytes[start..p].to_vec());
            start = p;
        }
        chunks
    }

    /// One compiled version of the rule: false if this CPU cannot run it.
    type Width = fn(&mut [u8]) -> bool;

    /// Every compiled version of the rule, by name.
    fn widths() -> Vec<(&'static str, Width)> {
        let portable: Width = |buf| {
            upper_portable(buf);
            true
        };
        let mut all = vec![("portable", portable)];
        #[cfg(target_arch = "x86_64")]
        all.extend([
            ("avx2", wide::upper_avx2 as Width),
            ("avx512bw", wide::upper_avx512bw),
        ]);
        all
    }

    proptest! {
        #[test]
        fn every_vector_width_matches_the_oracle_at_any_length_and_offset(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            offset in 0usize..64,
        ) {
            let offset = offset.min(bytes.len());
            for (name, upper) in widths() {
                let mut got = bytes.clone();
                if upper(&mut got[offset..]) {
                    prop_assert_eq!(&got[..offset], &bytes[..offset], "{} wrote before its slice", name);
                    prop_assert_eq!(&got[offset..], &oracle(&bytes[offset..])[..], "{}", name);
                }
            }
        }

        #[test]
        fn ascii_matches_the_oracle_for_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert_eq!(run(Transform::Ascii, std::slice::from_ref(&bytes)), oracle(&bytes));
        }

        #[test]
        fn any_split_gives_the_same_output(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let chunks = split(&bytes, &cuts);
            for kind in [Transform::Ascii, Transform::None] {
                prop_assert_eq!(run(kind, &chunks), run(kind, std::slice::from_ref(&bytes)));
            }
        }
    }
}
