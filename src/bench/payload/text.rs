//! The layout for `unicode`: UTF-8 text from several scripts, cut into
//! units of exactly `--size` bytes of whole characters, each transformed on
//! its own, with a table of where each unit's reply starts.

use super::{CHUNK, MESSAGES, Payload, STREAM_RING, Slot, TEXT_MAX};
use crate::bench::{BenchConfig, Mode};

impl Payload {
    /// The layout for `unicode`: units of `size` bytes of text, each
    /// transformed on its own.
    pub(super) fn text(config: &BenchConfig, size: usize) -> Payload {
        let units = match config.mode {
            Mode::PingPong | Mode::Connect => (TEXT_MAX / size).clamp(1, MESSAGES),
            Mode::Stream => (STREAM_RING / size).max(1),
        };
        let ring = units * size;
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let mut sent = Vec::with_capacity(ring);
        for _ in 0..units {
            push_text(&mut rng, &mut sent, size);
        }
        let mut transform = config.transform.stream();
        let mut expected = Vec::with_capacity(ring);
        let mut replies = Vec::with_capacity(units + 1);
        let mut scratch = vec![0u8; CHUNK.min(size)];
        for unit in sent.chunks(size) {
            replies.push(expected.len() as u32);
            for part in unit.chunks(CHUNK) {
                let scratch = &mut scratch[..part.len()];
                scratch.copy_from_slice(part);
                expected.extend_from_slice(&transform.process(scratch));
            }
        }
        // Units are whole characters: nothing is held back at their ends.
        expected.extend_from_slice(transform.finish());
        replies.push(expected.len() as u32);
        expected.shrink_to_fit();
        let messages = std::array::from_fn(|m| {
            let unit = m % units;
            let reply = replies[unit] as usize;
            Slot {
                request: unit * size,
                reply,
                reply_len: replies[unit + 1] as usize - reply,
            }
        });
        Payload {
            size,
            ring,
            transform: config.transform,
            sent,
            expected,
            messages,
            replies,
        }
    }
}

/// The scripts `unicode` payloads are written in, as (weight, first, last)
/// code point ranges. Chosen to exercise every way a character's upper case
/// can differ in length: the same (`ä`, Greek, Cyrillic, Georgian `ა` ->
/// `Ა`, Deseret), shorter (`ﬁ` -> `FI`, `ſ` -> `S`), longer (`ŉ` -> `ʼN`,
/// `և` -> `ԵՒ`, `ΐ` -> `Ϊ́`), title case (`ǅ`, `ǆ`), plus text that never
/// changes (CJK, kana, emoji) and 1- to 4-byte characters.
const SCRIPTS: [(u32, u32, u32); 14] = [
    (25, 0x20, 0x7E),      // ASCII: letters, digits, punctuation, space
    (15, 0x61, 0x7A),      // more lower-case ASCII letters, as in prose
    (8, 0xC0, 0xFF),       // Latin-1 letters: ä, ß, ÿ
    (5, 0x100, 0x17F),     // Latin Extended-A: ŉ, ſ
    (3, 0x180, 0x24F),     // Latin Extended-B: ǅ, ǆ, ǰ
    (2, 0xFB00, 0xFB06),   // Latin ligatures: ﬁ, ﬃ, ﬆ
    (6, 0x390, 0x3CE),     // Greek: ΐ, ΰ, α..ω
    (6, 0x400, 0x45F),     // Cyrillic
    (3, 0x561, 0x587),     // Armenian: և
    (3, 0x10D0, 0x10FA),   // Georgian Mkhedruli (upper case: Mtavruli)
    (8, 0x4E00, 0x9FFF),   // CJK ideographs
    (2, 0x3041, 0x3096),   // Hiragana
    (2, 0x10428, 0x1044F), // Deseret lower case (4 bytes, cased)
    (3, 0x1F600, 0x1F64F), // emoji
];

/// The sum of the weights in [`SCRIPTS`].
const SCRIPT_WEIGHTS: u32 = {
    let mut total = 0;
    let mut i = 0;
    while i < SCRIPTS.len() {
        total += SCRIPTS[i].0;
        i += 1;
    }
    total
};

/// Appends exactly `len` bytes of pseudo-random whole characters to `text`:
/// where the next character would not fit, an ASCII letter instead.
fn push_text(rng: &mut fastrand::Rng, text: &mut Vec<u8>, len: usize) {
    let end = text.len() + len;
    let mut buf = [0u8; 4];
    while text.len() < end {
        let mut c = random_char(rng);
        if c.len_utf8() > end - text.len() {
            c = char::from(rng.u8(b'a'..=b'z'));
        }
        text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
}

/// A character from [`SCRIPTS`], by weight.
fn random_char(rng: &mut fastrand::Rng) -> char {
    let mut pick = rng.u32(0..SCRIPT_WEIGHTS);
    for (weight, first, last) in SCRIPTS {
        if pick < weight {
            // The ranges hold no surrogates, so every value is a character.
            return char::from_u32(rng.u32(first..=last)).unwrap_or(' ');
        }
        pick -= weight;
    }
    ' '
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_PAYLOAD, MESSAGES, Payload, test_unicode as unicode};
    use crate::Transform;
    use crate::bench::Mode;

    /// The specification of a reply: the server's transform of a whole message.
    fn transformed(request: &[u8]) -> Vec<u8> {
        Transform::Unicode.apply(&mut request.to_vec()).to_vec()
    }

    #[test]
    fn tiny_unicode_writes_keep_the_payload_under_its_bound() {
        for size in [1, 2, 3] {
            let payload = Payload::new(&unicode(Mode::Stream, size));
            assert!(payload.memory() <= MAX_PAYLOAD, "{size}");
            assert!(std::str::from_utf8(&payload.sent).is_ok());
        }
    }

    #[test]
    fn unicode_messages_are_whole_text_of_exactly_their_size_and_replies_their_transform() {
        for size in [1, 2, 3, 4, 5, 64, 1000, 65507] {
            let payload = Payload::new(&unicode(Mode::PingPong, size));
            let mut scripts = std::collections::BTreeSet::new();
            for m in 0..MESSAGES {
                let message = payload.message(m);
                assert_eq!(message.request.len(), size);
                let text = std::str::from_utf8(message.request).expect("valid UTF-8");
                scripts.extend(text.chars().map(|c| c.len_utf8()));
                let reply = transformed(message.request);
                assert_eq!(message.reply_len, reply.len(), "{size}");
                let mut expected = message.reply;
                assert!(expected.check(&reply).is_ok(), "{size} {m}");
            }
            if size >= 64 {
                // 1- to 4-byte characters all occur.
                assert_eq!(scripts.len(), 4, "{size}");
            }
        }
        let payload = Payload::new(&unicode(Mode::PingPong, 4096));
        let all: Vec<u8> = (0..MESSAGES)
            .flat_map(|m| payload.message(m).request.to_vec())
            .collect();
        let text = String::from_utf8(all).unwrap();
        for c in ['ß', 'ǆ', 'ﬁ', 'ΐ', 'և'] {
            assert!(text.contains(c), "{c}");
        }
        assert_ne!(
            transformed(text.as_bytes()).len(),
            text.len(),
            "lengths change"
        );
    }
}
