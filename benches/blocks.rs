//! The char-rnn's building blocks outside the recurrent layers, at the shapes of one of its
//! training steps (32 streams x 64 characters, 97 classes): the softmax cross-entropy with
//! its gradient; and its embedding into the first LSTM layer (64 -> 256), a training step
//! (forward, backward, the embedding's gradient) looked up then fed as rows, against token
//! input (`Input::tokens`). Throughput in rows (characters). And Adam's update of the
//! char-rnn's 0.89 M parameters on one thread: the kernel against its element-by-element
//! reference (what the update was before it had a kernel). Throughput in parameters. And
//! the sums of a step's gate gradients by token id (the embedding's gradient), a row at a
//! time into its id's sums against each id's rows together (`add_rows_of`).
//!
//! `cargo bench --bench blocks`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fused_rnn::nn::{Embedding, softmax_cross_entropy};
use fused_rnn::{Backward, Config, Input, Parallelism, Recurrent, Reserve, SeqShape, Workspace};
use fused_rnn_kernels::Rows;
use fused_rnn_kernels::optim::{AdamStep, AdamUpdate, adam_update};
use fused_rnn_kernels::reference::optim as naive;
use fused_rnn_kernels::reference::sums as naive_sums;
use fused_rnn_kernels::sums::{AddRows, AddRowsOf, add_rows, add_rows_of, add_slice};

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

/// One training step of the char-rnn's first layer on `input`, the embedding's gradient
/// into `d_table` (by `Embedding::backward` from dx for rows, from `backward` for tokens).
struct FirstLayer {
    lstm: Recurrent<f32>,
    embed: Embedding<f32>,
    ids: Vec<usize>,
    shape: SeqShape,
}

impl FirstLayer {
    fn step(&self, tokens: bool, bufs: &mut (Vec<f32>, Vec<f32>, Reserve<f32>, Workspace<f32>)) {
        let (x, y, reserve, ws) = bufs;
        let lstm = &self.lstm;
        let input = if tokens {
            Input::tokens(&self.ids, &self.embed.weight, self.shape)
        } else {
            self.embed.forward(&self.ids, x).unwrap();
            Input::new(x, self.shape)
        };
        let mut state = lstm.zero_state(self.shape.batch);
        lstm.forward_train(input, &mut state, y, reserve, ws)
            .unwrap();
        let (mut grads, mut d_state) = (lstm.zero_grads(), lstm.zero_state(self.shape.batch));
        let mut d_table = Embedding::zeros(self.embed.vocab(), self.embed.dim()).unwrap();
        // Allocated either way, so both variants pay the same allocations.
        let mut dx = vec![0.0f32; x.len()];
        let out = Backward {
            d_state: &mut d_state,
            dx: Some(if tokens { &mut d_table.weight } else { &mut dx }),
            grads: &mut grads,
        };
        lstm.backward(input, y, reserve, out, ws).unwrap();
        if !tokens {
            self.embed.backward(&self.ids, &dx, &mut d_table).unwrap();
        }
        black_box((&grads, &d_table, &d_state));
    }
}

fn embedding_into_lstm(c: &mut Criterion) {
    let (steps, batch, vocab, dim, hidden) = (64, 32, 97, 64, 256);
    let config = Config::lstm(dim, hidden).with_parallelism(Parallelism::Sequential);
    let layer = FirstLayer {
        lstm: Recurrent::with_seed(config, 1).unwrap(),
        embed: Embedding::new(vocab, dim, 2).unwrap(),
        ids: (0..steps * batch).map(|i| (i * 31) % vocab).collect(),
        shape: SeqShape::new(steps, batch),
    };
    let rows = steps * batch;
    let mut bufs = (
        vec![0.0f32; rows * dim],
        vec![0.0f32; rows * hidden],
        Reserve::new(),
        Workspace::new(),
    );
    let mut group = c.benchmark_group("blocks");
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("embedding_into_lstm_64x32_rows", |b| {
        b.iter(|| layer.step(false, &mut bufs))
    });
    group.bench_function("embedding_into_lstm_64x32_tokens", |b| {
        b.iter(|| layer.step(true, &mut bufs))
    });
    group.finish();
}

/// Adam's update of 0.89 M parameters (the char-rnn's count), kernel and reference.
fn adam(c: &mut Criterion) {
    let n = 888_289;
    let grads: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 2000) as f32 / 2e5 - 5e-3)
        .collect();
    let (mut p, mut m, mut v) = (vec![0.1f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let step = AdamStep {
        beta2: 0.999,
        one_minus_beta1: 0.1,
        one_minus_beta2: 1e-3,
        step_size: 2e-3,
        bias_correction2_sqrt: 0.0447,
        eps: 1e-8,
    };
    let mut group = c.benchmark_group("blocks");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("adam_0.89M/kernel", |b| {
        b.iter(|| {
            let op = AdamUpdate {
                params: &mut p,
                grads: black_box(&grads),
                m: &mut m,
                v: &mut v,
                step,
            };
            adam_update(fused_rnn_kernels::arch(), op)
        })
    });
    group.bench_function("adam_0.89M/reference", |b| {
        b.iter(|| naive::adam_update(&mut p, black_box(&grads), &mut m, &mut v, step))
    });
    group.finish();
}

/// One char-rnn step's bias sums of a layer: 32 rows of 4H = 1024 gate gradients into the
/// sums, 64 times (the steps of a window), kernel and reference.
fn bias_sums(c: &mut Criterion) {
    let (rows, width, steps) = (32, 1024, 64);
    let dg: Vec<f32> = (0..rows * width)
        .map(|i| ((i * 7919) % 2000) as f32 / 2e5 - 5e-3)
        .collect();
    let view = Rows::contiguous(&dg, rows, width);
    let mut sums = vec![0.0f32; width];
    let mut group = c.benchmark_group("blocks");
    group.throughput(Throughput::Elements((rows * width * steps) as u64));
    group.bench_function("bias_sums_64x32x1024/kernel", |b| {
        b.iter(|| {
            for _ in 0..steps {
                let op = AddRows {
                    acc: &mut sums,
                    rows: black_box(view),
                };
                add_rows(fused_rnn_kernels::arch(), op);
            }
        })
    });
    group.bench_function("bias_sums_64x32x1024/reference", |b| {
        b.iter(|| {
            for _ in 0..steps {
                naive_sums::add_rows(&mut sums, black_box(view));
            }
        })
    });
    group.finish();
}

/// One char-rnn step's gate gradients (2048 rows of 1024) summed by token id (97, skewed as
/// characters are): each row added into its id's sums as it comes, against each id's rows
/// taken together, the sums held in registers across them (what `sum_by_id` does).
fn sums_by_id(c: &mut Criterion) {
    let (rows, width, vocab) = (2048, 1024, 97);
    let dg: Vec<f32> = (0..rows * width)
        .map(|i| ((i * 7919) % 2000) as f32 / 2e5 - 5e-3)
        .collect();
    // id = floor(97 u^3), u spread evenly: a few ids take most rows, as spaces and `e` do.
    let ids: Vec<usize> = (0..rows)
        .map(|r| {
            let u = ((r * 1237) % rows) as f64 / rows as f64;
            (vocab as f64 * u * u * u) as usize
        })
        .collect();
    let mut by_id = vec![Vec::new(); vocab];
    for (r, &id) in ids.iter().enumerate() {
        by_id[id].push(r);
    }
    let view = Rows::contiguous(&dg, rows, width);
    let mut sums = vec![0.0f32; vocab * width];
    let arch = fused_rnn_kernels::arch();
    let mut group = c.benchmark_group("blocks");
    group.throughput(Throughput::Elements((rows * width) as u64));
    group.bench_function("sums_by_id_2048x1024/row_by_row", |b| {
        b.iter(|| {
            for (r, &id) in ids.iter().enumerate() {
                let row = black_box(view).row(r);
                add_slice(arch, &mut sums[id * width..(id + 1) * width], row);
            }
        })
    });
    group.bench_function("sums_by_id_2048x1024/by_id", |b| {
        b.iter(|| {
            for (acc, order) in sums.chunks_exact_mut(width).zip(&by_id) {
                let rows = black_box(view);
                add_rows_of(arch, AddRowsOf { acc, rows, order });
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    blocks,
    embedding_into_lstm,
    adam,
    bias_sums,
    sums_by_id
);
criterion_main!(benches);
