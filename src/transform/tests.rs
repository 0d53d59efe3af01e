//! The transforms against independent oracles, whole and split into chunks.

use super::*;
use proptest::prelude::*;

/// The independent oracle for `ascii`: the standard library's per-byte rule,
/// which is the same table as Python's `bytes.upper()`.
fn oracle(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(u8::to_ascii_uppercase).collect()
}

/// The independent oracle for `unicode`: the standard library's UTF-8 decoder
/// (`utf8_chunks`, which splits invalid bytes as Python's decoder does) and
/// `str::to_uppercase`, with invalid bytes passed through.
fn unicode_oracle(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in bytes.utf8_chunks() {
        out.extend_from_slice(piece.valid().to_uppercase().as_bytes());
        out.extend_from_slice(piece.invalid());
    }
    out
}

fn run(kind: Transform, chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut t = kind.stream();
    let mut out = Vec::new();
    for chunk in chunks {
        let mut chunk = chunk.clone();
        out.extend_from_slice(&t.process(&mut chunk));
    }
    out.extend_from_slice(t.finish());
    out
}

fn whole(kind: Transform, bytes: &[u8]) -> Vec<u8> {
    run(kind, &[bytes.to_vec()])
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
    assert_eq!(whole(Transform::None, &all), all);
}

#[test]
fn names_round_trip() {
    for t in [Transform::Ascii, Transform::Unicode, Transform::None] {
        assert_eq!(t.name().parse::<Transform>(), Ok(t));
    }
    assert!("upper".parse::<Transform>().is_err());
}

#[test]
fn the_per_stream_state_stays_a_few_bytes() {
    assert!(size_of::<StreamTransform>() <= 8);
}

#[test]
fn unicode_upper_cases_by_full_case_mapping() {
    for (from, to) in [
        ("straße", "STRASSE"),
        ("ﬁ", "FI"),
        ("ǆ", "Ǆ"),
        ("ΐ", "\u{399}\u{308}\u{301}"),
        ("ὒ ᾳ", "\u{3a5}\u{313}\u{300} \u{391}\u{399}"),
        ("ς σ", "Σ Σ"),
        ("привет", "ПРИВЕТ"),
        ("ﬓ", "ՄՆ"),
        ("ꭰ", "Ꭰ"),
        ("𐐨", "𐐀"),
        ("日本語 😀", "日本語 😀"),
        ("e\u{301}", "E\u{301}"),
    ] {
        assert_eq!(
            whole(Transform::Unicode, from.as_bytes()),
            to.as_bytes(),
            "{from}"
        );
    }
}

#[test]
fn unicode_passes_every_invalid_byte_through() {
    for bytes in [
        &b"\xff"[..],
        b"\x80\xbf",
        b"a\xc3b",
        b"\xe2\x82 x",
        b"\xed\xa0\x80",
        b"\xed\xbf\xbf",
        b"\xc0\x80\xc1\xbf",
        b"\xe0\x80\x80\xe0\x9f\xbf",
        b"\xf0\x80\x80\x80\xf0\x8f\xbf\xbf",
        b"\xf4\x90\x80\x80\xf5\x80\x80\x80",
        b"\xf8\x88\x80\x80\x80",
    ] {
        assert_eq!(
            whole(Transform::Unicode, bytes),
            oracle(bytes),
            "{bytes:02X?}"
        );
    }
    // Invalid bytes around valid characters do not hide them.
    assert_eq!(
        whole(Transform::Unicode, b"\xf0\xc3\x9f\xe2\x82\xc3\xa9\x80"),
        b"\xf0SS\xe2\x82\xc3\x89\x80"
    );
}

#[test]
fn unicode_holds_a_split_character_until_its_last_byte() {
    let mut t = Transform::Unicode.stream();
    assert_eq!(&*t.process(&mut [0xc3]), b"");
    assert_eq!(&*t.process(&mut [0x9f]), b"SS");
    let mut t = Transform::Unicode.stream();
    assert_eq!(&*t.process(&mut [0xf0]), b"");
    assert_eq!(&*t.process(&mut [0x90]), b"");
    assert_eq!(&*t.process(&mut [0x90]), b"");
    assert_eq!(&*t.process(&mut [0xa8, b'a']), "𐐀A".as_bytes());
    assert_eq!(t.finish(), b"");
}

#[test]
fn unicode_passes_held_bytes_through_when_the_next_byte_breaks_them() {
    let mut t = Transform::Unicode.stream();
    assert_eq!(&*t.process(&mut b"a\xe2\x82".to_vec()), b"A");
    assert_eq!(&*t.process(&mut b"b".to_vec()), b"\xe2\x82B");
    assert_eq!(&*t.process(&mut b"\xf0\x9f".to_vec()), b"");
    assert_eq!(&*t.process(&mut b"\xc3\xa9".to_vec()), b"\xf0\x9f\xc3\x89");
}

#[test]
fn unicode_flushes_held_bytes_unchanged_at_end_of_stream() {
    let mut t = Transform::Unicode.stream();
    assert_eq!(&*t.process(&mut b"ab\xe2\x82".to_vec()), b"AB");
    assert_eq!(t.finish(), b"\xe2\x82");
    assert_eq!(t.finish(), b"", "released once");
}

#[test]
fn apply_transforms_a_whole_message_as_process_then_finish() {
    for message in [&b"stra\xc3\x9fe"[..], b"ab\xe2\x82", b"\xf0", b"plain", b""] {
        let mut bytes = message.to_vec();
        let applied = Transform::Unicode.apply(&mut bytes).to_vec();
        assert_eq!(
            applied,
            whole(Transform::Unicode, message),
            "{message:02X?}"
        );
    }
    let mut ascii = *b"abc\xc3";
    assert_eq!(&*Transform::Ascii.apply(&mut ascii), b"ABC\xc3");
}

#[test]
fn outputs_alive_at_once_on_one_thread_do_not_share_bytes() {
    let mut first = "ä".as_bytes().to_vec();
    let mut second = "ö".as_bytes().to_vec();
    let a = Transform::Unicode.apply(&mut first);
    let b = Transform::Unicode.apply(&mut second);
    assert_eq!((&*a, &*b), ("Ä".as_bytes(), "Ö".as_bytes()));
}

/// The capacity of this thread's output buffer.
fn kept_output() -> usize {
    OUTPUT.with(|slot| {
        let buf = slot.take();
        let capacity = buf.capacity();
        slot.set(buf);
        capacity
    })
}

#[test]
fn a_thread_keeps_its_output_buffer_for_server_sized_chunks_only() {
    let mut chunk = "ж".repeat(32 * 1024).into_bytes(); // 64 KiB
    drop(Transform::Unicode.apply(&mut chunk));
    let kept = kept_output();
    assert!(
        kept >= 3 * chunk.len(),
        "kept {kept} bytes for the next chunk"
    );
    drop(Transform::Unicode.apply(&mut chunk));
    assert_eq!(kept_output(), kept, "reused, not grown");
    let mut huge = "ж".repeat(MAX_KEPT_OUTPUT).into_bytes();
    drop(Transform::Unicode.apply(&mut huge));
    assert_eq!(kept_output(), kept, "a huge buffer is not kept");
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

/// One compiled version of the fused rule: `None` if this CPU cannot run it.
type FusedWidth = fn(&mut [u8]) -> Option<bool>;

/// Every compiled version of the fused rule, by name.
fn fused_widths() -> Vec<(&'static str, FusedWidth)> {
    let portable: FusedWidth = |buf| Some(upper_portable_is_ascii(buf));
    let mut all = vec![("portable", portable)];
    #[cfg(target_arch = "x86_64")]
    all.extend([
        ("avx2", wide::upper_is_ascii_avx2 as FusedWidth),
        ("avx512bw", wide::upper_is_ascii_avx512bw),
    ]);
    all
}

/// Text from many scripts, with now and then a byte that is not UTF-8 or a
/// character cut short: what the `unicode` transform must get right.
fn mixed_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
        4 => proptest::sample::select(&[
            "straße", "ﬁ", "ǆ", "ΐ", "ᾳ", "σς", "ёж", "և", "ა", "ꭰ", "𐐨", "😀", " ", "a",
        ][..]).prop_map(|s| s.as_bytes().to_vec()),
        2 => any::<u8>().prop_map(|b| vec![b]),
        1 => any::<char>().prop_flat_map(|c| {
            let bytes = c.to_string().into_bytes();
            let len = bytes.len();
            (Just(bytes), 0..len).prop_map(|(bytes, cut)| bytes[..cut].to_vec())
        }),
    ];
    proptest::collection::vec(piece, 0..200).prop_map(|pieces| pieces.concat())
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
        for (name, upper) in fused_widths() {
            let mut got = bytes.clone();
            if let Some(is_ascii) = upper(&mut got[offset..]) {
                prop_assert_eq!(&got[..offset], &bytes[..offset], "{} wrote before its slice", name);
                prop_assert_eq!(&got[offset..], &oracle(&bytes[offset..])[..], "{}", name);
                prop_assert_eq!(is_ascii, bytes[offset..].is_ascii(), "{}", name);
            }
        }
    }

    #[test]
    fn ascii_matches_the_oracle_for_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert_eq!(whole(Transform::Ascii, &bytes), oracle(&bytes));
    }

    #[test]
    fn any_split_gives_the_same_output(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let chunks = split(&bytes, &cuts);
        for kind in [Transform::Ascii, Transform::Unicode, Transform::None] {
            prop_assert_eq!(run(kind, &chunks), whole(kind, &bytes));
        }
    }

    #[test]
    fn unicode_matches_the_oracle_for_mixed_text(bytes in mixed_bytes()) {
        prop_assert_eq!(whole(Transform::Unicode, &bytes), unicode_oracle(&bytes));
    }

    #[test]
    fn unicode_matches_the_oracle_for_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(whole(Transform::Unicode, &bytes), unicode_oracle(&bytes));
    }

    #[test]
    fn unicode_gives_the_same_output_for_any_split_of_mixed_text(
        bytes in mixed_bytes(),
        cuts in proptest::collection::vec(any::<usize>(), 0..32),
    ) {
        prop_assert_eq!(run(Transform::Unicode, &split(&bytes, &cuts)), whole(Transform::Unicode, &bytes));
    }

    #[test]
    fn unicode_is_ascii_on_ascii_only_input(
        bytes in proptest::collection::vec(0u8..0x80, 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let chunks = split(&bytes, &cuts);
        prop_assert_eq!(run(Transform::Unicode, &chunks), run(Transform::Ascii, &chunks));
    }
}

#[test]
fn every_vector_width_handles_every_short_length() {
    // Shrunk from a proptest failure of an earlier version: `[0, 0, 97]`.
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len).map(|i| [0, 0, b'a', b'z', 0xff][i % 5]).collect();
        for (name, upper) in widths() {
            let mut got = bytes.clone();
            if upper(&mut got) {
                assert_eq!(got, oracle(&bytes), "{name}, length {len}");
            }
        }
    }
}
