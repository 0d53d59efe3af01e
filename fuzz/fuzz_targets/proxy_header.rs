//! The PROXY protocol header parser of `serve --proxy-protocol`
//! (`upecho::server::proxy::parse`), for any bytes a client may send first:
//! it never panics; a header it finds lies within the input and within the
//! protocol's bounds and is found the same without the bytes after it, with
//! every shorter prefix of it "incomplete"; "incomplete" is only ever said of
//! fewer bytes than the longest header, so the header phase's buffer stays
//! bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upecho::server::proxy::{Parsed, V1_MAX, V2_MAX, parse};

fuzz_target!(|input: &[u8]| {
    match parse(input) {
        Parsed::Header { len, source } => {
            assert!(len <= input.len() && len <= V2_MAX, "{len}");
            if input.starts_with(b"PROXY ") {
                assert!(len <= V1_MAX, "{len}");
            }
            assert_eq!(parse(&input[..len]), Parsed::Header { len, source });
            // Every shorter prefix (sampled, for long v2 headers) waits for more.
            let step = (len / 64).max(1);
            for n in (0..len).step_by(step) {
                assert_eq!(parse(&input[..n]), Parsed::Incomplete, "prefix {n} of {len}");
            }
        }
        Parsed::Incomplete => assert!(input.len() < V2_MAX),
        Parsed::Invalid(why) => assert!(!why.is_empty()),
    }
});
