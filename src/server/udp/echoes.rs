//! The echo rule, which makes a loop between two echo services die: a
//! datagram whose payload is exactly the reply last sent to its source is an
//! echo of our own reply (upper-casing is idempotent, so a peer echo server
//! returns it unchanged); after [`ECHOES_ANSWERED`] of them in a row from one
//! source, further ones are dropped (reason `loop`) until that source sends
//! something else. A client repeating a message is answered up to that many
//! times in a row.
//!
//! Per source the table keeps a fingerprint (length and 64-bit hash) of the
//! reply last sent and a counter: 64 bytes with the address, no copy of the
//! payload, no allocation per datagram. It is bounded: two generations of
//! [`GENERATION`] sources each; when the current one is full it becomes the
//! previous one and the oldest is forgotten, so at most 2 x 2048 sources are
//! remembered, in two tables allocated once (4096 slots each, about 0.5 MiB
//! of address space per UDP socket, resident only as sources appear). Why
//! 2048 a generation: a source seen again is carried into the current
//! generation, so a looping peer, seen every round trip (tens of
//! microseconds on loopback), is only forgotten if 2048 other sources speak
//! between two of its datagrams; a quiet client that is forgotten loses
//! nothing (its count restarts at 0); keeping a loop alive would take 2048
//! datagrams from fresh sources in every round trip of it.

use std::net::SocketAddr;

use crate::generations::Generations;

/// Echoes in a row from one source that are still answered; the next one
/// is dropped.
pub(super) const ECHOES_ANSWERED: u32 = 64;

/// Sources per generation of the table.
const GENERATION: usize = 2048;

/// What identifies a payload for the rule: its length and a hash of its
/// bytes. A collision can only make a source's own datagrams look like
/// echoes, so it needs no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    /// The payload's length.
    len: usize,
    /// [`hash`] of its bytes.
    hash: u64,
}

impl Fingerprint {
    /// A placeholder, before a datagram has been looked at.
    pub(super) const EMPTY: Fingerprint = Fingerprint { len: 0, hash: 0 };

    /// The fingerprint of `bytes`.
    pub(super) fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint {
            len: bytes.len(),
            hash: hash(bytes),
        }
    }
}

/// What the table knows of one source.
#[derive(Clone, Copy, Debug, Default)]
struct Last {
    /// The reply last sent to it, if any.
    reply: Option<Fingerprint>,
    /// Echoes of that reply in a row since.
    echoes: u32,
}

/// The per-source table of one UDP socket, shared by every thread's copy
/// of it, so "in a row" means in the order the socket's datagrams are
/// answered.
#[derive(Debug)]
pub(super) struct Echoes {
    /// What is known of each source lately seen.
    sources: Generations<SocketAddr, Last>,
}

impl Default for Echoes {
    fn default() -> Echoes {
        Echoes {
            sources: Generations::new(GENERATION),
        }
    }
}

impl Echoes {
    /// Judges a datagram from `source` whose payload has the fingerprint
    /// `payload` (none: it cannot be one of our replies) and whose reply would
    /// be `reply`: returns true if and only if it must be dropped as an echo
    /// too many; otherwise `reply` is remembered as the last sent.
    pub(super) fn is_loop(
        &mut self,
        source: SocketAddr,
        payload: Option<Fingerprint>,
        reply: Fingerprint,
    ) -> bool {
        self.sources.update(source, Last::default, |last| {
            last.echoes = if payload.is_some() && last.reply == payload {
                last.echoes.saturating_add(1)
            } else {
                0
            };
            let drop = last.echoes > ECHOES_ANSWERED;
            if !drop {
                last.reply = Some(reply);
            }
            drop
        })
    }
}

/// A fast 64-bit hash of `bytes`: four independent multiply-rotate lanes
/// over 32-byte blocks (about a byte per cycle per lane, so a 64 KiB reply
/// costs microseconds, a small one nanoseconds), then a final mix.
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let step = |state: u64, word: &[u8]| {
        let mut padded = [0u8; 8];
        padded[..word.len()].copy_from_slice(word);
        (state ^ u64::from_le_bytes(padded))
            .wrapping_mul(K)
            .rotate_left(31)
    };
    let mut lanes = [K, K.rotate_left(16), K.rotate_left(32), K.rotate_left(48)];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = step(*lane, word);
        }
    }
    let mut state = lanes[0] ^ lanes[1].rotate_left(17) ^ lanes[2].rotate_left(34) ^ lanes[3];
    for word in blocks.remainder().chunks(8) {
        state = step(state, word);
    }
    mix(state ^ bytes.len() as u64)
}

/// MurmurHash3's finaliser: every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Judges `payload` from `from` under the ascii transform.
    fn judge(echoes: &mut Echoes, from: SocketAddr, payload: &[u8]) -> bool {
        let reply = payload.to_ascii_uppercase();
        echoes.is_loop(
            from,
            Some(Fingerprint::of(payload)),
            Fingerprint::of(&reply),
        )
    }

    #[test]
    fn sixty_four_echoes_in_a_row_are_answered_and_the_next_dropped_until_something_else() {
        let mut echoes = Echoes::default();
        let peer = source(9000);
        assert!(!judge(&mut echoes, peer, b"ping"));
        for n in 1..=ECHOES_ANSWERED {
            assert!(!judge(&mut echoes, peer, b"PING"), "echo {n}");
        }
        assert!(judge(&mut echoes, peer, b"PING"));
        assert!(judge(&mut echoes, peer, b"PING"));
        assert!(!judge(&mut echoes, peer, b"pong"));
        assert!(!judge(&mut echoes, peer, b"PONG"));
    }

    #[test]
    fn each_source_has_its_own_count_and_other_messages_never_count() {
        let mut echoes = Echoes::default();
        let (one, two) = (source(9000), source(9001));
        assert!(!judge(&mut echoes, one, b"X"));
        for _ in 0..ECHOES_ANSWERED {
            assert!(!judge(&mut echoes, one, b"X"));
        }
        assert!(!judge(&mut echoes, two, b"X"), "another source starts at 0");
        assert!(judge(&mut echoes, one, b"X"));
        for _ in 0..1000 {
            assert!(!judge(&mut echoes, two, b"x"), "x is not our reply X");
        }
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_a_source_seen_in_the_last_generation() {
        let mut echoes = Echoes::default();
        let peer = source(1);
        assert!(!judge(&mut echoes, peer, b"ping"));
        for _ in 0..ECHOES_ANSWERED {
            assert!(!judge(&mut echoes, peer, b"PING"));
        }
        // Fewer than a generation of others: the peer is carried along.
        for port in 2..(GENERATION as u16) {
            judge(&mut echoes, source(port), b"x");
        }
        assert!(judge(&mut echoes, peer, b"PING"), "still known");
        for port in 10_000..(10_000 + 3 * GENERATION as u16) {
            judge(&mut echoes, source(port), b"x");
        }
        assert!(echoes.sources.len() <= 2 * GENERATION);
        assert!(echoes.sources.capacity() < 8 * GENERATION);
        // Forgotten: it starts again at 0.
        assert!(!judge(&mut echoes, peer, b"PING"));
    }

    #[test]
    fn the_hash_tells_apart_what_the_rule_must() {
        let base: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut seen = std::collections::HashSet::new();
        for len in 0..base.len() {
            assert!(seen.insert(hash(&base[..len])), "prefix {len}");
        }
        for at in 0..base.len() {
            let mut flipped = base.clone();
            flipped[at] ^= 1;
            assert!(seen.insert(hash(&flipped)), "bit flipped at {at}");
        }
        assert_eq!(hash(b"HELLO"), hash(b"HELLO"));
    }
}
