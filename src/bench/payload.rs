//! The bytes a run sends and the bytes it expects back: generated once from the
//! seed, shared by every connection, and bounded in size whatever `--size` is
//! ([`MAX_PAYLOAD`]).
//!
//! Two layouts, chosen by the transform:
//! - `ascii` and `none` keep lengths: the pattern is random bytes of every
//!   value, a message or write may start anywhere in it, and a reply byte's
//!   offset in `expected` is its request byte's offset in `sent`.
//! - `unicode` may change lengths (`ß` -> `SS` keeps it, `ﬁ` -> `FI` shrinks
//!   it, `ΐ` -> `Ϊ́` triples it): the pattern is UTF-8 text from several
//!   scripts cut into *units* of exactly `--size` bytes of whole characters,
//!   so a unit's reply is the transform of the unit alone, whatever came
//!   before it. Pingpong messages are units; stream connections start at a
//!   unit and write unit after unit. A table says where each unit's reply
//!   starts in `expected`.

use super::verify::Expected;
use super::{BenchConfig, MAX_SIZE, Mode};
use crate::Transform;

/// Distinct pingpong messages per run (fewer when they are large: at most
/// [`RING_MAX`] bytes of them, [`TEXT_MAX`] for `unicode`). Connections cycle
/// through them from different starting points, so a reply to one message
/// cannot pass for another's.
pub const MESSAGES: usize = 64;

/// Bytes of the stream-mode pattern before it repeats (or `--size`, if larger;
/// for `unicode`, the whole units that fit, at least one).
pub const STREAM_RING: usize = 1 << 20;

/// The most bytes of distinct pingpong payload: 64 messages of 16 MiB would be
/// 1 GiB (and as much again expected back); past this, messages overlap in one
/// ring of this length, which still gives large messages several distinct
/// contents.
pub const RING_MAX: usize = 32 << 20;

/// The most bytes of `unicode` text a run generates: half of [`RING_MAX`],
/// because its expected transform may be up to [`MAX_GROWTH`] times as long.
/// Large messages do not overlap in text (a message must be whole
/// characters), so past this there are fewer distinct messages, at least one.
pub const TEXT_MAX: usize = RING_MAX / 2;

/// The most bytes a byte of text can become under `unicode`: `ΐ`, 2 bytes,
/// upper-cases to 6 (see [`crate::transform`]).
pub const MAX_GROWTH: usize = 3;

/// The most memory the payload of a run takes once generated, in bytes:
/// - `ascii`/`none`: the ring, its expected transform, and one `--size` more
///   so every request is one slice: `2 * RING_MAX + MAX_SIZE`;
/// - `unicode`: at most [`TEXT_MAX`] of text, at most [`MAX_GROWTH`] times
///   that expected back, and 4 bytes per unit for the reply table (at most
///   [`STREAM_RING`] units, with 1-byte writes): 68 MiB.
///
/// (While it is generated, the `unicode` expected buffer may briefly have
/// up to twice its final capacity.)
pub const MAX_PAYLOAD: usize = 2 * RING_MAX + MAX_SIZE;

const _: () = assert!(TEXT_MAX * (1 + MAX_GROWTH) + 4 * (STREAM_RING + 1) <= MAX_PAYLOAD);
const _: () = assert!(MAX_SIZE <= TEXT_MAX);

/// Bytes transformed at a time while generating the expected ring, so building
/// it needs no third copy of the payload.
const CHUNK: usize = 64 * 1024;

/// Requests and their expected replies for one run.
#[derive(Debug)]
pub struct Payload {
    /// Message (pingpong) or write (stream) size.
    size: usize,
    /// Length of the repeating pattern.
    ring: usize,
    /// The rule replies follow.
    transform: Transform,
    /// The pattern; for `ascii` and `none` followed by its first `size` bytes
    /// again, so that any message or write starting in the pattern is one
    /// contiguous slice (`unicode` units never cross the pattern's end).
    sent: Vec<u8>,
    /// The pattern after the transform: the expected replies, as a ring.
    expected: Vec<u8>,
    /// Where each pingpong message is: one table load per round trip, for
    /// both layouts.
    messages: [Slot; MESSAGES],
    /// `unicode` only: where the reply to each unit starts in `expected`, and
    /// its length at the end (units + 1 entries; `u32` since `expected` is at
    /// most 48 MiB). Empty for the transforms that keep lengths, which is how
    /// [`Payload::grows`] tells the layouts apart.
    replies: Vec<u32>,
}

/// Where one pingpong message and its reply are.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Offset of the request in `sent`.
    request: usize,
    /// Offset of the reply in `expected`.
    reply: usize,
    /// Length of the reply.
    reply_len: usize,
}

/// One pingpong request and how its reply is checked.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The bytes to send.
    pub request: &'a [u8],
    /// Where the reply starts in the expected ring.
    pub reply: Expected<'a>,
    /// How many bytes the whole reply has.
    pub reply_len: usize,
}

/// Where a `unicode` stream connection stands in the units it writes and
/// receives: what the unit being written owes so far, and whose reply is
/// arriving. Left at its default (and unused) for `ascii` and `none`, whose
/// owed bytes are simply the bytes written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Units {
    /// Offset, in the unit being written, of its first character not yet
    /// owed back: the one the socket took only part of, or the end of what
    /// was written.
    owed_from: usize,
    /// Reply bytes owed so far for the unit being written.
    owed: u64,
    /// The unit (index in the pattern) whose reply is being received.
    echoing: usize,
    /// Offset in the connection's reply stream where that reply ends.
    echo_end: u64,
}

impl Payload {
    /// Generates the payload of `config` (its mode, size, transform and seed).
    ///
    /// For `ascii` and `none` the bytes are the same as earlier versions
    /// generated for messages up to [`RING_MAX`] / [`MESSAGES`] bytes, so
    /// results stay comparable.
    pub fn new(config: &BenchConfig) -> Payload {
        let size = config.size.clamp(1, MAX_SIZE);
        match config.transform {
            Transform::Unicode => Payload::text(config, size),
            Transform::Ascii | Transform::None => Payload::bytes(config, size),
        }
    }

    /// The layout for transforms that keep lengths: random bytes.
    fn bytes(config: &BenchConfig, size: usize) -> Payload {
        let ring = match config.mode {
            Mode::PingPong => (MESSAGES * size).min(RING_MAX).max(size),
            Mode::Stream => STREAM_RING.max(size),
        };
        let mut sent = vec![0u8; ring + size];
        fastrand::Rng::with_seed(config.seed).fill(&mut sent[..ring]);
        sent.copy_within(..size, ring);
        let mut transform = config.transform.stream();
        let mut expected = Vec::with_capacity(ring);
        let mut scratch = vec![0u8; CHUNK.min(ring)];
        for part in sent[..ring].chunks(CHUNK) {
            let scratch = &mut scratch[..part.len()];
            scratch.copy_from_slice(part);
            expected.extend_from_slice(&transform.process(scratch));
        }
        expected.extend_from_slice(transform.finish());
        let messages = std::array::from_fn(|m| {
            let at = m * size;
            // Only messages larger than `RING_MAX / MESSAGES` overlap in the ring.
            let at = if at < ring { at } else { at % ring };
            Slot {
                request: at,
                reply: at,
                reply_len: size,
            }
        });
        Payload {
            size,
            ring,
            transform: config.transform,
            sent,
            expected,
            messages,
            replies: Vec::new(),
        }
    }

    /// The layout for `unicode`: units of `size` bytes of text, each
    /// transformed on its own.
    fn text(config: &BenchConfig, size: usize) -> Payload {
        let units = match config.mode {
            Mode::PingPong => (TEXT_MAX / size).clamp(1, MESSAGES),
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

    /// Bytes of memory this payload holds.
    pub fn memory(&self) -> usize {
        self.sent.capacity()
            + self.expected.capacity()
            + self.replies.capacity() * std::mem::size_of::<u32>()
    }

    /// Returns true if and only if a reply may differ in length from its
    /// request (`unicode`), so owed bytes must be looked up, not counted.
    #[inline]
    pub fn grows(&self) -> bool {
        !self.replies.is_empty()
    }

    /// The message a connection starts with: connections start at different
    /// messages so their replies differ.
    pub fn first_message(index: usize) -> usize {
        index % MESSAGES
    }

    /// The message after `message`.
    pub fn next_message(message: usize) -> usize {
        (message + 1) % MESSAGES
    }

    /// Message number `message` (taken modulo [`MESSAGES`]).
    #[inline]
    pub fn message(&self, message: usize) -> Message<'_> {
        let slot = self.messages[message % MESSAGES];
        Message {
            request: &self.sent[slot.request..slot.request + self.size],
            reply: Expected::new(&self.expected, slot.reply),
            reply_len: slot.reply_len,
        }
    }

    /// The longest reply to any pingpong message.
    pub fn max_reply_len(&self) -> usize {
        self.messages
            .iter()
            .map(|slot| slot.reply_len)
            .max()
            .unwrap_or(0)
    }

    /// What the first `written` bytes of `request` (a message's) are owed
    /// once the stream ends: the reply bytes of its whole characters, and the
    /// bytes of a character it cuts, which the server returns unchanged at
    /// the end of the stream. For `ascii` and `none`, `written` bytes and
    /// nothing cut.
    pub fn partial_reply<'a>(&self, request: &'a [u8], written: usize) -> (u64, &'a [u8]) {
        if !self.grows() {
            return (written as u64, &[]);
        }
        let (reply, whole) = self.reply_of_whole_chars(&request[..written]);
        (reply as u64, &request[whole..written])
    }

    /// Where stream connection number `index` starts in the pattern (for
    /// `unicode`, at the start of a unit).
    pub fn stream_start(&self, index: usize) -> usize {
        if self.grows() {
            index.wrapping_mul(7919) % self.units() * self.size
        } else {
            index.wrapping_mul(7919) % self.ring
        }
    }

    /// The rest of the current write of a stream that started at `start` and
    /// has sent `written` bytes: writes are `size` bytes, and one cut short by a
    /// full socket buffer is finished by the next, so "writes echoed" counts
    /// whole `size`-byte units.
    #[inline]
    pub fn stream_write(&self, start: usize, written: u64) -> &[u8] {
        let at = (start + (written % self.ring as u64) as usize) % self.ring;
        let left = self.size - (written % self.size as u64) as usize;
        &self.sent[at..at + left]
    }

    /// The expected bytes of a stream that started at `start`.
    pub fn stream_expected(&self, start: usize) -> Expected<'_> {
        let at = if self.grows() {
            self.replies[start / self.size] as usize
        } else {
            start
        };
        Expected::new(&self.expected, at)
    }

    /// The unit bookkeeping of a `unicode` stream that starts at `start`.
    pub fn stream_units(&self, start: usize) -> Units {
        if !self.grows() {
            return Units::default();
        }
        let unit = start / self.size;
        Units {
            echoing: unit,
            echo_end: self.unit_reply_len(unit) as u64,
            ..Units::default()
        }
    }

    /// `unicode` streams: the reply bytes newly owed now that a stream that
    /// started at `start` has written `written` bytes, the last write among
    /// them. A write never crosses a unit's end, so it belongs to the unit of
    /// its last byte. Once a unit is whole its reply is owed, from the table;
    /// before, the reply to its whole characters so far: the server holds
    /// back a character cut by the end of what it read.
    ///
    /// Cost: a table load per whole write; a write cut short also transforms
    /// the bytes from the last character not yet owed to the cut, so every
    /// byte of a unit is counted at most once more (plus 3 of a cut
    /// character) however the socket splits it.
    pub fn text_owed(&self, start: usize, written: u64, units: &mut Units) -> u64 {
        let in_unit = (written % self.size as u64) as usize;
        let unit = self.unit_at(start, written - 1);
        if in_unit == 0 {
            let owed = self.unit_reply_len(unit) as u64 - units.owed;
            units.owed = 0;
            units.owed_from = 0;
            return owed;
        }
        let base = unit * self.size;
        let (reply, whole) =
            self.reply_of_whole_chars(&self.sent[base + units.owed_from..base + in_unit]);
        units.owed_from += whole;
        units.owed += reply as u64;
        reply as u64
    }

    /// `unicode` streams: the bytes of a character the writes so far cut,
    /// which the server holds and returns unchanged at the end of the stream
    /// (empty if they end on a character boundary).
    pub fn text_cut(&self, start: usize, written: u64, units: &Units) -> &[u8] {
        let in_unit = (written % self.size as u64) as usize;
        if !self.grows() || in_unit == 0 {
            return &[];
        }
        let base = self.unit_at(start, written - 1) * self.size;
        &self.sent[base + units.owed_from..base + in_unit]
    }

    /// `unicode` streams: how many units' replies are now whole, `got` reply
    /// bytes having arrived.
    pub fn text_echoed(&self, got: u64, units: &mut Units) -> u64 {
        let mut whole = 0;
        // Every unit's reply has at least one byte, so this ends.
        while got >= units.echo_end {
            whole += 1;
            units.echoing = (units.echoing + 1) % self.units();
            units.echo_end += self.unit_reply_len(units.echoing) as u64;
        }
        whole
    }

    /// Message (pingpong) or write (stream) size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// `unicode`: units in the pattern.
    fn units(&self) -> usize {
        self.replies.len() - 1
    }

    /// `unicode`: the length of the reply to unit `unit`.
    fn unit_reply_len(&self, unit: usize) -> usize {
        (self.replies[unit + 1] - self.replies[unit]) as usize
    }

    /// `unicode`: the unit holding byte `offset` of a stream that started at
    /// `start` (a unit's start).
    fn unit_at(&self, start: usize, offset: u64) -> usize {
        let size = self.size as u64;
        ((start as u64 / size + offset / size) % self.units() as u64) as usize
    }

    /// The length of the transform of the whole characters of `text`, and
    /// how many bytes they are (the rest is a character cut off at the end).
    /// The server's own code decides both, in pieces on the stack.
    fn reply_of_whole_chars(&self, text: &[u8]) -> (usize, usize) {
        let mut transform = self.transform.stream();
        let mut scratch = [0u8; 4096];
        let mut reply = 0;
        for part in text.chunks(scratch.len()) {
            let scratch = &mut scratch[..part.len()];
            scratch.copy_from_slice(part);
            reply += transform.process(scratch).len();
        }
        let cut = transform.finish().len();
        (reply, text.len() - cut)
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
    use super::*;

    fn config(mode: Mode, size: usize) -> BenchConfig {
        BenchConfig {
            mode,
            size,
            ..BenchConfig::default()
        }
    }

    fn unicode(mode: Mode, size: usize) -> BenchConfig {
        BenchConfig {
            transform: Transform::Unicode,
            seed: 7,
            ..config(mode, size)
        }
    }

    /// The specification of a reply: the server's transform of a whole message.
    fn transformed(request: &[u8]) -> Vec<u8> {
        Transform::Unicode.apply(&mut request.to_vec()).to_vec()
    }

    #[test]
    fn the_largest_messages_keep_the_payload_under_its_bound() {
        for mode in [Mode::PingPong, Mode::Stream] {
            let payload = Payload::new(&config(mode, MAX_SIZE));
            assert!(payload.memory() <= MAX_PAYLOAD, "{mode:?}");
            let payload = Payload::new(&unicode(mode, MAX_SIZE));
            assert!(payload.memory() <= MAX_PAYLOAD, "unicode {mode:?}");
        }
        // Large pingpong messages overlap in the ring but are not all the same.
        let payload = Payload::new(&config(Mode::PingPong, MAX_SIZE));
        let first = payload.message(0).request;
        assert!((1..MESSAGES).any(|m| payload.message(m).request != first));
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
    fn small_messages_are_distinct_and_replies_are_their_transform() {
        let payload = Payload::new(&config(Mode::PingPong, 64));
        assert_eq!(payload.memory(), 2 * MESSAGES * 64 + 64);
        for m in 0..MESSAGES {
            let message = payload.message(m);
            let mut reply = message.reply;
            assert_eq!(message.reply_len, 64);
            assert!(reply.check(&message.request.to_ascii_uppercase()).is_ok());
        }
    }

    #[test]
    fn ascii_payloads_are_the_bytes_earlier_versions_sent() {
        // The first bytes of seed 1, as the generator has always made them.
        let payload = Payload::new(&config(Mode::PingPong, 64));
        let mut old = vec![0u8; MESSAGES * 64];
        fastrand::Rng::with_seed(1).fill(&mut old);
        for m in 0..MESSAGES {
            assert_eq!(payload.message(m).request, &old[m * 64..m * 64 + 64]);
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

    #[test]
    fn unicode_pingpong_owes_the_whole_characters_of_a_cut_request_and_returns_the_cut_one() {
        let payload = Payload::new(&unicode(Mode::PingPong, 256));
        let message = payload.message(3);
        let reply = &payload.expected[payload.messages[3].reply..];
        for written in 0..=256 {
            let (due, cut) = payload.partial_reply(message.request, written);
            // What a server returns for the cut request followed by the end
            // of the stream.
            let returned = transformed(&message.request[..written]);
            assert_eq!(
                returned,
                [&reply[..due as usize], cut].concat(),
                "{written}"
            );
            assert!(cut.len() <= 3);
        }
    }

    #[test]
    fn unicode_stream_owes_the_transform_of_the_whole_characters_at_every_cut() {
        let size = 100;
        let payload = Payload::new(&unicode(Mode::Stream, size));
        for index in [0, 5] {
            let start = payload.stream_start(index);
            assert_eq!(start % size, 0);
            let mut units = payload.stream_units(start);
            // The server's side: one stream transform over every byte sent.
            let mut server = Transform::Unicode.stream();
            let mut replied = Vec::new();
            let mut written = 0u64;
            let mut owed = 0u64;
            let mut echoed = 0u64;
            let mut rng = fastrand::Rng::with_seed(index as u64);
            // Across the pattern's end, with writes cut at random bytes.
            while written < 2 * payload.ring as u64 + 3 * size as u64 {
                let write = payload.stream_write(start, written);
                let n = rng.usize(1..=write.len());
                replied.extend_from_slice(&server.process(&mut write[..n].to_vec()));
                written += n as u64;
                owed += payload.text_owed(start, written, &mut units);
                assert_eq!(owed, replied.len() as u64, "owed after {written} bytes");
                let cut = payload.text_cut(start, written, &units);
                assert_eq!(cut, server.clone().finish(), "cut after {written} bytes");
                echoed += payload.text_echoed(owed, &mut units);
                assert_eq!(echoed, written / size as u64);
            }
            let mut expected = payload.stream_expected(start);
            assert!(expected.check(&replied).is_ok());
        }
    }

    #[test]
    fn stream_writes_are_whole_units_across_the_pattern_end() {
        let payload = Payload::new(&config(Mode::Stream, 1000));
        let start = payload.stream_start(3);
        let mut expected = payload.stream_expected(start);
        let mut written = 0u64;
        while written < 3 * STREAM_RING as u64 {
            let write = payload.stream_write(start, written);
            assert!(!write.is_empty() && write.len() <= 1000);
            // Cut some writes short, as a full socket buffer would.
            let n = if written.is_multiple_of(7) {
                write.len() / 2 + 1
            } else {
                write.len()
            };
            assert!(expected.check(&write[..n].to_ascii_uppercase()).is_ok());
            written += n as u64;
            if n == write.len() {
                assert_eq!(written % 1000, 0);
            }
        }
    }
}
