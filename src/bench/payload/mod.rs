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
//!
//! Where each part lives: `bytes` generates the `ascii`/`none` layout,
//! `text` the `unicode` text, and `units` models what a `unicode` reply
//! owes when a write or a request is cut mid-character.

mod bytes;
mod text;
mod units;

pub use units::Units;

use super::verify::Expected;
use super::{BenchConfig, MAX_SIZE};
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

    /// Message (pingpong) or write (stream) size.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// A test configuration: `mode`, `size`, the rest the defaults.
#[cfg(test)]
fn test_config(mode: super::Mode, size: usize) -> BenchConfig {
    BenchConfig {
        mode,
        size,
        ..BenchConfig::default()
    }
}

/// A `unicode` test configuration, seed 7.
#[cfg(test)]
fn test_unicode(mode: super::Mode, size: usize) -> BenchConfig {
    BenchConfig {
        transform: Transform::Unicode,
        seed: 7,
        ..test_config(mode, size)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_PAYLOAD, MESSAGES, Payload, test_config as config, test_unicode as unicode};
    use crate::bench::{MAX_SIZE, Mode};

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
}
