//! Micro-benchmark of the `unicode` transform against `ascii`, in GB/s of
//! input: on ASCII-only text (the fast path, where `unicode` should cost
//! about what `ascii` does) and on mixed-script text (`tests/unicode/mixed.txt`,
//! about 30% ASCII bytes, repeated to 64 KiB), beside the standard library's
//! `str::to_uppercase` on the same text.
//!
//! `cargo bench --bench unicode`; compare the mixed-text figure with Python on
//! the same bytes: `python3 tests/unicode/python_speed.py`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use upecho::Transform;

/// The size of a server's read: one thread scratch buffer.
const CHUNK: usize = 64 * 1024;

/// `tests/unicode/mixed.txt` repeated and cut to at most [`CHUNK`] bytes at a
/// character boundary; `python_speed.py` builds the same bytes.
fn mixed_text() -> String {
    let sample = include_str!("../tests/unicode/mixed.txt");
    let mut text = sample.repeat(CHUNK.div_ceil(sample.len()));
    let mut end = CHUNK;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// Printable ASCII, letters of both cases: the transform bench's "text".
fn ascii_text(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(len as u64);
    (0..len).map(|_| rng.u8(b' '..=b'~')).collect()
}

/// One chunk through a stream of `transform`, as the server does it.
fn process(transform: Transform, chunk: &mut [u8]) -> usize {
    let mut stream = transform.stream();
    let out = stream.process(chunk);
    black_box(&*out).len()
}

fn ascii_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("ascii-only text");
    for size in [4096, CHUNK] {
        let mut chunk = ascii_text(size);
        group.throughput(Throughput::BytesDecimal(size as u64));
        for transform in [Transform::Ascii, Transform::Unicode] {
            group.bench_with_input(BenchmarkId::new(transform.name(), size), &size, |b, _| {
                b.iter(|| process(transform, black_box(&mut chunk)))
            });
        }
    }
    group.finish();
}

fn mixed(c: &mut Criterion) {
    let text = mixed_text();
    let mut group = c.benchmark_group("mixed-script text");
    group.throughput(Throughput::BytesDecimal(text.len() as u64));
    // Upper-casing its ASCII letters in place does not change the work of
    // later iterations: the ASCII pass is branch-free, and the rest is not
    // touched in place.
    let mut chunk = text.clone().into_bytes();
    group.bench_function(BenchmarkId::new("unicode", text.len()), |b| {
        b.iter(|| process(Transform::Unicode, black_box(&mut chunk)))
    });
    group.bench_function(BenchmarkId::new("std to_uppercase", text.len()), |b| {
        b.iter(|| black_box(black_box(&text).to_uppercase()).len())
    });
    group.finish();
}

criterion_group!(benches, ascii_only, mixed);
criterion_main!(benches);
