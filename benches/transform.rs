//! Micro-benchmark of the hot path's pure part: the ASCII transform on random
//! bytes, in GB/s, beside a branchy loop (what a naive implementation does)
//! and the standard library's `make_ascii_uppercase`.
//!
//! `cargo bench --bench transform`; the target is >= 8 GB/s on one core, so
//! that the transform is never the bottleneck of a 64 KiB stream.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The obvious loop with a branch per byte; on random text the branch is
/// unpredictable. Written out on purpose: it is the form being measured.
#[allow(clippy::manual_is_ascii_check)]
fn upper_branchy(buf: &mut [u8]) {
    for byte in buf {
        if (b'a'..=b'z').contains(byte) {
            *byte -= 32;
        }
    }
}

fn transform(c: &mut Criterion) {
    let mut group = c.benchmark_group("ascii upper");
    for size in [64usize, 4096, 65536] {
        let mut rng = fastrand::Rng::with_seed(size as u64);
        let mut input = vec![0u8; size];
        rng.fill(&mut input);
        // Random *text*: letters of both cases and punctuation, where a branchy
        // loop mispredicts most.
        let text: Vec<u8> = (0..size).map(|_| rng.u8(b' '..=b'~')).collect();
        group.throughput(Throughput::Bytes(size as u64));
        for (name, data) in [("bytes", &input), ("text", &text)] {
            let mut buf = data.clone();
            group.bench_with_input(
                BenchmarkId::new(format!("upecho/{name}"), size),
                &size,
                |b, _| b.iter(|| upecho::upper_ascii(black_box(&mut buf))),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("branchy/{name}"), size),
                &size,
                |b, _| {
                    b.iter(|| {
                        buf.copy_from_slice(data);
                        upper_branchy(black_box(&mut buf))
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("std/{name}"), size),
                &size,
                |b, _| b.iter(|| black_box(&mut buf).make_ascii_uppercase()),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, transform);
criterion_main!(benches);
