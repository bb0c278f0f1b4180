//! Unmasking throughput: the word-at-a-time `apply_mask` against the byte loop of RFC 6455
//! §5.3 (`apply_mask_bytewise`) and, as a ceiling, a plain copy of the same buffer.
//!
//! Run: `cargo bench -p pushwire-benches --bench unmask -- --warm-up-time 1 --measurement-time 2`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pushwire::proto::ws::{apply_mask, apply_mask_bytewise};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in [16usize, 1024, 64 * 1024] {
        let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut buf = src.clone();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("apply_mask", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), black_box(1)))
        });
        group.bench_with_input(
            BenchmarkId::new("apply_mask_bytewise", size),
            &size,
            |b, _| {
                b.iter(|| apply_mask_bytewise(black_box(&mut buf), black_box(KEY), black_box(1)))
            },
        );
        group.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, _| {
            b.iter(|| black_box(&mut buf).copy_from_slice(black_box(&src)))
        });
    }
    group.finish();
}

criterion_group!(benches, unmask);
criterion_main!(benches);
