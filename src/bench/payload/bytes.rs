//! The layout for transforms that keep lengths (`ascii`, `none`): a ring of
//! random bytes of every value, its transform beside it, and pingpong
//! messages at fixed offsets of it.

use super::{CHUNK, MESSAGES, Payload, RING_MAX, STREAM_RING, Slot};
use crate::bench::{BenchConfig, Mode};

impl Payload {
    /// The layout for transforms that keep lengths: random bytes.
    pub(super) fn bytes(config: &BenchConfig, size: usize) -> Payload {
        let ring = match config.mode {
            Mode::PingPong | Mode::Connect => (MESSAGES * size).min(RING_MAX).max(size),
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
}

#[cfg(test)]
mod tests {
    use super::super::{MESSAGES, Payload, STREAM_RING, test_config as config};
    use crate::bench::Mode;

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
