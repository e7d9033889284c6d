//! The char-rnn's building blocks outside the recurrent layers, at the shapes of one of its
//! training steps (32 streams x 64 characters, 97 classes): the softmax cross-entropy with
//! its gradient. Throughput in rows (characters).
//!
//! `cargo bench --bench blocks`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fused_rnn::nn::softmax_cross_entropy;

fn blocks(c: &mut Criterion) {
    let (rows, classes) = (32 * 64, 97);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|i| ((i * 7919) % 2000) as f32 / 200.0 - 5.0)
        .collect();
    let targets: Vec<usize> = (0..rows).map(|i| (i * 31) % classes).collect();
    let mut d = vec![0.0f32; logits.len()];
    let mut group = c.benchmark_group("blocks");
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("softmax_cross_entropy_2048x97", |b| {
        b.iter(|| softmax_cross_entropy(black_box(&logits), classes, &targets, &mut d).unwrap())
    });
    group.finish();
}

criterion_group!(benches, blocks);
criterion_main!(benches);
