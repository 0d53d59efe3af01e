//! `--transform unicode`: Unicode full case mapping as Python defines it
//! (`b.decode('utf-8', 'surrogateescape').upper().encode('utf-8',
//! 'surrogateescape')`), checked against vectors that Python itself computed
//! (`tests/unicode/vectors.txt`, from `tests/unicode/gen_vectors.py`), in the
//! library and over a real `upecho serve` process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use upecho::Transform;

use crate::support::{PATIENCE, ServerProcess, exchange};

/// One vector: what Python's definition makes of `input`.
struct Vector {
    name: String,
    input: Vec<u8>,
    expected: Vec<u8>,
}

const VECTORS: &str = include_str!("../unicode/vectors.txt");

fn vectors() -> Vec<Vector> {
    let vectors: Vec<Vector> = VECTORS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let mut fields = line.split('\t');
            let mut next = || fields.next().expect("name, input and expected");
            Vector {
                name: next().to_owned(),
                input: hex(next()),
                expected: hex(next()),
            }
        })
        .collect();
    assert!(vectors.len() > 150, "{} vectors", vectors.len());
    vectors
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The Unicode version the vectors were generated against, from their header.
fn vectors_rust_unicode() -> &'static str {
    let line = VECTORS
        .lines()
        .find(|line| line.contains("char::UNICODE_VERSION"))
        .expect("a version line");
    line.rsplit(' ').next().expect("a version")
}

/// Feeds `chunks` through one stream, as the server does with its reads.
fn stream<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut transform = Transform::Unicode.stream();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&transform.process(&mut chunk.to_vec()));
    }
    out.extend_from_slice(transform.finish());
    out
}

fn start_server() -> ServerProcess {
    ServerProcess::start(&["--tcp", "127.0.0.1:0", "--transform", "unicode"], 1)
}

#[test]
fn python_vectors_hold_whole_split_anywhere_and_byte_by_byte() {
    let (major, minor, update) = char::UNICODE_VERSION;
    let ours = format!("{major}.{minor}.{update}");
    let hint = format!(
        "vectors made for Unicode {} (see their header), this toolchain has {ours}: \
         if they disagree, rerun tests/unicode/gen_vectors.py",
        vectors_rust_unicode()
    );
    for v in vectors() {
        let name = &v.name;
        assert_eq!(stream([&v.input[..]]), v.expected, "{name} whole; {hint}");
        let bytes: Vec<&[u8]> = v.input.chunks(1).collect();
        assert_eq!(stream(bytes), v.expected, "{name} byte by byte; {hint}");
        for at in 0..=v.input.len() {
            let (a, b) = v.input.split_at(at);
            assert_eq!(stream([a, b]), v.expected, "{name} split at {at}; {hint}");
        }
        let mut message = v.input.clone();
        assert_eq!(
            *Transform::Unicode.apply(&mut message),
            v.expected,
            "{name} as one message"
        );
    }
}

#[test]
fn python_vectors_hold_over_tcp() {
    // A newline after each vector is ASCII, so it ends any character a
    // vector cuts short, exactly as the end of input does.
    let (mut input, mut expected) = (Vec::new(), Vec::new());
    for v in vectors() {
        input.extend_from_slice(&v.input);
        input.push(b'\n');
        expected.extend_from_slice(&v.expected);
        expected.push(b'\n');
    }
    let server = start_server();
    assert_eq!(exchange(server.addr(), &input), expected);
}

#[test]
fn full_case_mapping_expands_ligatures_and_sharp_s_over_tcp() {
    let server = start_server();
    for (from, to) in [
        ("straße", "STRASSE"),
        ("ﬁ", "FI"),
        ("ǆ", "Ǆ"),
        ("ﬁle ǆ ß", "FILE Ǆ SS"),
    ] {
        assert_eq!(
            exchange(server.addr(), from.as_bytes()),
            to.as_bytes(),
            "{from}"
        );
    }
}

#[test]
fn a_character_split_across_two_writes_comes_back_once_complete() {
    let server = start_server();
    let mut client = TcpStream::connect(server.addr()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // "aß", cut inside the ß. The "A" coming back shows the server has read
    // this write; the first byte of "ß" must not come back on its own.
    client.write_all(b"a\xc3").unwrap();
    let mut first = [0u8; 1];
    client.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"A");
    client.write_all(b"\x9f").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"SS", "the held byte waited for its partner");
}

#[test]
fn bytes_that_are_not_utf8_come_back_unchanged_over_tcp() {
    let server = start_server();
    let invalid: &[&[u8]] = &[
        b"\xff\xfe",
        b"\x80\xbf",
        b"\xc3 \xe2\x82 \xf0\x9f\x98 ",
        b"\xed\xa0\x80\xed\xbf\xbf",
        b"\xc0\xaf\xe0\x80\xaf\xf0\x80\x80\xaf",
        b"\xf4\x90\x80\x80",
    ];
    for &bytes in invalid {
        assert_eq!(exchange(server.addr(), bytes), bytes, "{bytes:02X?}");
    }
    // Around valid characters, which are still upper-cased.
    assert_eq!(
        exchange(server.addr(), b"\xffstra\xc3\x9fe\xed\xa0\x80\xc3\xa4"),
        b"\xffSTRASSE\xed\xa0\x80\xc3\x84"
    );
}

#[test]
fn a_cut_off_character_is_flushed_unchanged_at_half_close() {
    let server = start_server();
    assert_eq!(exchange(server.addr(), b"ab\xe2\x82"), b"AB\xe2\x82");
    assert_eq!(exchange(server.addr(), b"stra\xc3"), b"STRA\xc3");
}

#[test]
fn a_large_stream_of_mixed_text_comes_back_as_the_oracle_says() {
    // 4 MiB that grow on the way back (ß, ﬁ, ΐ), with invalid bytes, sent
    // while the reply is read: replies longer than the request cross the
    // server's partial-write path.
    let mut rng = fastrand::Rng::with_seed(7);
    let pieces: [&[u8]; 8] = [
        "straße ".as_bytes(),
        "ﬁ".as_bytes(),
        "ΐΰ".as_bytes(),
        "привет ".as_bytes(),
        "日本語".as_bytes(),
        b"\xff",
        b"\xe2\x82",
        b"ascii text ",
    ];
    let mut input = Vec::new();
    while input.len() < 4 << 20 {
        input.extend_from_slice(pieces[rng.usize(..pieces.len())]);
    }
    let server = start_server();
    let reply = exchange(server.addr(), &input);
    assert!(reply.len() > input.len());
    assert!(reply == oracle(&input), "reply differs from the oracle");
}

/// An oracle independent of upecho: the standard library's decoder, which
/// splits invalid bytes as Python does, and `str::to_uppercase`.
fn oracle(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in bytes.utf8_chunks() {
        out.extend_from_slice(piece.valid().to_uppercase().as_bytes());
        out.extend_from_slice(piece.invalid());
    }
    out
}
