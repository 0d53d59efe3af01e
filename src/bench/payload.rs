//! The bytes a run sends and the bytes it expects back: generated once from the
//! seed, shared by every connection, and bounded in size whatever `--size` is
//! ([`MAX_PAYLOAD`]).

use super::verify::Expected;
use super::{BenchConfig, MAX_SIZE, Mode};

/// Distinct pingpong messages per run (fewer when they are large: at most
/// [`RING_MAX`] bytes of them). Connections cycle through them from different
/// starting points, so a reply to one message cannot pass for another's.
pub const MESSAGES: usize = 64;

/// Bytes of the stream-mode pattern before it repeats (or `--size`, if larger).
pub const STREAM_RING: usize = 1 << 20;

/// The most bytes of distinct pingpong payload: 64 messages of 16 MiB would be
/// 1 GiB (and as much again expected back); past this, messages overlap in one
/// ring of this length, which still gives large messages several distinct
/// contents.
pub const RING_MAX: usize = 32 << 20;

/// The most memory the payload of a run takes, in bytes: the ring, its
/// expected transform, and one `--size` more so every request is one slice.
pub const MAX_PAYLOAD: usize = 2 * RING_MAX + MAX_SIZE;

/// Bytes transformed at a time while generating the expected ring, so building
/// it needs no third copy of the payload.
const CHUNK: usize = 64 * 1024;

/// Requests and their expected replies for one run.
///
/// Offsets in `expected` equal offsets in `sent` because the transforms built so
/// far keep lengths; [`Payload::expected_len`] is the one place that assumes
/// it, and replies are checked through [`Expected`] cursors that do not.
#[derive(Debug)]
pub struct Payload {
    /// Message (pingpong) or write (stream) size.
    size: usize,
    /// Length of the repeating pattern.
    ring: usize,
    /// The pattern, followed by its first `size` bytes again, so that any
    /// message or write starting in the pattern is one contiguous slice.
    sent: Vec<u8>,
    /// The pattern after the transform: the expected replies, as a ring.
    expected: Vec<u8>,
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
    /// The bytes are the same as earlier versions generated for messages up to
    /// [`RING_MAX`] / [`MESSAGES`] bytes, so results stay comparable.
    pub fn new(config: &BenchConfig) -> Payload {
        let size = config.size.clamp(1, MAX_SIZE);
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
        Payload {
            size,
            ring,
            sent,
            expected,
        }
    }

    /// Bytes of memory this payload holds.
    pub fn memory(&self) -> usize {
        self.sent.capacity() + self.expected.capacity()
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
        let at = message % MESSAGES * self.size;
        // Only messages larger than `RING_MAX / MESSAGES` overlap in the ring.
        let at = if at < self.ring { at } else { at % self.ring };
        Message {
            request: &self.sent[at..at + self.size],
            reply: Expected::new(&self.expected, at),
            reply_len: self.size,
        }
    }

    /// Where stream connection number `index` starts in the pattern.
    pub fn stream_start(&self, index: usize) -> usize {
        index.wrapping_mul(7919) % self.ring
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
        Expected::new(&self.expected, start)
    }

    /// How many reply bytes `sent` request bytes are owed. The identity, for
    /// the length-preserving transforms built so far; a transform that may grow
    /// its output (unicode) would answer from the expected ring here.
    #[inline]
    pub fn expected_len(&self, sent: u64) -> u64 {
        sent
    }

    /// Message (pingpong) or write (stream) size.
    pub fn size(&self) -> usize {
        self.size
    }
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

    #[test]
    fn the_largest_messages_keep_the_payload_under_its_bound() {
        for mode in [Mode::PingPong, Mode::Stream] {
            let payload = Payload::new(&config(mode, MAX_SIZE));
            assert!(payload.memory() <= MAX_PAYLOAD, "{mode:?}");
        }
        // Large pingpong messages overlap in the ring but are not all the same.
        let payload = Payload::new(&config(Mode::PingPong, MAX_SIZE));
        let first = payload.message(0).request;
        assert!((1..MESSAGES).any(|m| payload.message(m).request != first));
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
