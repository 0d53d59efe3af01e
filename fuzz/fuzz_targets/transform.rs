//! The transforms against their oracle, for any input and any split of it
//! into chunks: `ascii` is Python's `bytes.upper()` (checked byte by byte
//! against `u8::to_ascii_uppercase`), `unicode` upper-cases the valid UTF-8
//! runs as `str::to_uppercase` does and passes every other byte unchanged,
//! `none` is the identity; splitting a stream never changes what comes out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upecho::Transform;

fuzz_target!(|input: &[u8]| {
    // The first byte picks the chunk sizes, the rest is the stream.
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    for transform in [Transform::Ascii, Transform::Unicode, Transform::None] {
        let expected: Vec<u8> = match transform {
            Transform::Ascii => data.iter().map(u8::to_ascii_uppercase).collect(),
            Transform::Unicode => data
                .utf8_chunks()
                .flat_map(|chunk| {
                    let upper = chunk.valid().to_uppercase().into_bytes();
                    upper.into_iter().chain(chunk.invalid().iter().copied())
                })
                .collect(),
            _ => data.to_vec(),
        };
        let mut state = transform.stream();
        let mut out = Vec::with_capacity(data.len());
        let mut rest = data.to_vec();
        let mut step = usize::from(seed % 17) + 1;
        let mut at = 0;
        while at < rest.len() {
            let end = (at + step).min(rest.len());
            out.extend_from_slice(&state.process(&mut rest[at..end]));
            at = end;
            step = step * 7 % 61 + 1;
        }
        out.extend_from_slice(state.finish());
        assert_eq!(out, expected, "{transform} split with seed {seed}");
    }
});
