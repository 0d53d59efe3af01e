//! bench's reply verifier (`Expected`) against a plain oracle: for any ring,
//! start offset, received bytes and split into chunks, it finds exactly the
//! mismatches that a byte-by-byte comparison with the ring repeated finds, at
//! the same positions, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upecho::bench::verify::Expected;

fuzz_target!(|input: &[u8]| {
    // Layout: [ring length][start][chunk step] ring... received...
    let [ring_len, start, step, rest @ ..] = input else {
        return;
    };
    let ring_len = usize::from(*ring_len).max(1);
    if rest.len() < ring_len {
        return;
    }
    let (ring, received) = rest.split_at(ring_len);
    let start = usize::from(*start);
    let mut cursor = Expected::new(ring, start);
    let mut at = 0;
    let mut step = usize::from(*step % 13) + 1;
    while at < received.len() {
        let end = (at + step).min(received.len());
        let chunk = &received[at..end];
        let oracle = chunk
            .iter()
            .enumerate()
            .find(|&(i, &b)| b != ring[(start + at + i) % ring.len()])
            .map(|(i, &b)| (i, b, ring[(start + at + i) % ring.len()]));
        let found = cursor
            .check(chunk)
            .err()
            .map(|m| (m.index, m.got, m.expected));
        assert_eq!(found, oracle, "chunk {at}..{end}");
        at = end;
        step = step * 5 % 29 + 1;
    }
});
