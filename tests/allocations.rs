//! Proves with a counting global allocator that, once the buffers exist, a training loop
//! allocates nothing: no truncated-BPTT window, no `forward`, `forward_train` or `backward`,
//! sequential or on a rayon pool.
//!
//! One test function only: the counter is global, and the test harness runs the tests of a
//! binary on several threads.
//!
//! Each thread keeps its own packing buffers for the large products, allocated the first
//! time it runs one (see `fused_rnn_kernels::gemm::scratch`). Which pool thread runs which
//! part of a product is up to rayon, so the warm-up runs the workload once on every thread.

use fused_rnn::{
    Backward, Config, Input, Parallelism, Recurrent, Reserve, SeqShape, Tbptt, Truncation,
    Workspace,
};
use fused_rnn_kernels::testing::alloc::{Counting, mark};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocations made by `f`.
fn allocations(f: impl FnOnce()) -> usize {
    let m = mark();
    f();
    m.allocations()
}

/// Module configurations that take every path of the driver: one chunk and many, the column
/// split of small batches, stacked and bidirectional layers with dropout, projection.
fn cases(par: Parallelism) -> Vec<(Config, usize)> {
    vec![
        (Config::lstm(16, 32).with_layers(2).with_dropout(0.2), 3),
        (Config::gru(8, 24).with_bidirectional(true), 40),
        (Config::lstm(32, 256), 2), // small batch: the step product splits its columns
        (
            Config::lstm(8, 16)
                .with_proj_size(6)
                .with_layers(2)
                .with_bidirectional(true),
            17,
        ),
        (Config::rnn(5, 7), 1),
        // Products big enough to be split over the pool's threads.
        (Config::gru(64, 128).with_layers(2), 24),
    ]
    .into_iter()
    .map(|(c, b)| (c.with_parallelism(par), b))
    .collect()
}

fn windows_allocate_nothing(config: Config, batch: usize, truncation: Truncation) -> usize {
    let m = Recurrent::<f32>::with_seed(config.clone(), 1).unwrap();
    let mut tbptt = Tbptt::new(&m, batch, truncation).unwrap();
    let mut grads = m.zero_grads();
    let step = batch * config.input_size;
    let long: Vec<f32> = (0..50 * step).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut run = |from: usize, to: usize| {
        for w in long[from * step..to * step].chunks(truncation.k1() * step) {
            tbptt
                .step(&m, w, &mut grads, |y, dy| {
                    dy.copy_from_slice(y);
                    0.0
                })
                .unwrap();
        }
    };
    // Warm-up: the first windows prepare the weights in the workspace and size this thread's
    // packing buffers.
    run(0, 3 * truncation.k1());
    allocations(|| run(3 * truncation.k1(), 50))
}

/// [`windows_allocate_nothing`] on token input (`Tbptt::step_tokens`).
fn token_windows_allocate_nothing(config: Config, batch: usize, truncation: Truncation) -> usize {
    let m = Recurrent::<f32>::with_seed(config.clone(), 1).unwrap();
    let mut tbptt = Tbptt::new(&m, batch, truncation).unwrap();
    let mut grads = m.zero_grads();
    let vocab = 11;
    let table: Vec<f32> = (0..vocab * config.input_size)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let mut d_table = vec![0.0f32; table.len()];
    let ids: Vec<usize> = (0..50 * batch).map(|i| (i * 7) % vocab).collect();
    let mut run = |from: usize, to: usize| {
        for w in ids[from * batch..to * batch].chunks(truncation.k1() * batch) {
            tbptt
                .step_tokens(&m, (w, &table), &mut grads, &mut d_table, |y, dy| {
                    dy.copy_from_slice(y);
                    0.0
                })
                .unwrap();
        }
    };
    run(0, 3 * truncation.k1());
    allocations(|| run(3 * truncation.k1(), 50))
}

fn calls_allocate_nothing(config: Config, batch: usize) -> usize {
    let m = Recurrent::<f32>::with_seed(config.clone(), 2).unwrap();
    let shape = SeqShape::new(7, batch);
    let x: Vec<f32> = (0..7 * batch * config.input_size)
        .map(|i| (i as f32).cos())
        .collect();
    let input = Input::new(&x, shape);
    let mut y = vec![0.0f32; 7 * batch * config.output_size()];
    let mut state = m.zero_state(batch);
    let mut d_state = m.zero_state(batch);
    let mut dx = vec![0.0f32; x.len()];
    let mut grads = m.zero_grads();
    let mut reserve = Reserve::for_shape(&m, shape).unwrap();
    let mut ws = Workspace::with_len(m.workspace_len(shape).unwrap());
    let mut step = || {
        m.forward(input, &mut state, &mut y, &mut ws).unwrap();
        m.forward_train(input, &mut state, &mut y, &mut reserve, &mut ws)
            .unwrap();
        let out = Backward {
            d_state: &mut d_state,
            dx: Some(&mut dx),
            grads: &mut grads,
        };
        m.backward(input, &y, &mut reserve, out, &mut ws).unwrap();
    };
    step();
    allocations(|| {
        for _ in 0..3 {
            step()
        }
    })
}

#[test]
fn training_loops_allocate_nothing_after_their_first_step() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // Every pool thread runs every workload once on its own, sizing its packing buffers.
    pool.broadcast(|_| {
        for (config, batch) in cases(Parallelism::Sequential) {
            calls_allocate_nothing(config.clone(), batch);
            windows_allocate_nothing(config.clone(), batch, Truncation::windows(5));
            token_windows_allocate_nothing(config.clone(), batch, Truncation::windows(5));
            if !config.bidirectional {
                windows_allocate_nothing(config, batch, Truncation::new(3, 7).unwrap());
            }
        }
    });
    for par in [Parallelism::Sequential, Parallelism::Rayon] {
        for (config, batch) in cases(par) {
            let what = format!("{config:?} batch {batch}");
            pool.install(|| {
                assert_eq!(
                    calls_allocate_nothing(config.clone(), batch),
                    0,
                    "calls: {what}"
                );
                let windows = Truncation::windows(5);
                assert_eq!(
                    windows_allocate_nothing(config.clone(), batch, windows),
                    0,
                    "TBPTT(5, 5): {what}"
                );
                assert_eq!(
                    token_windows_allocate_nothing(config.clone(), batch, windows),
                    0,
                    "TBPTT(5, 5) on tokens: {what}"
                );
                if !config.bidirectional {
                    let spans = Truncation::new(3, 7).unwrap();
                    assert_eq!(
                        windows_allocate_nothing(config.clone(), batch, spans),
                        0,
                        "TBPTT(3, 7): {what}"
                    );
                }
            });
        }
    }
}
