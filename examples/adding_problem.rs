//! The adding problem (Hochreiter and Schmidhuber, 1997): a long-memory test that a vanilla
//! RNN fails and gated cells pass.
//!
//! ```text
//! cargo run --release --example adding_problem [-- --steps 1500]
//! ```
//!
//! Each input is 100 steps of (value, marker): values uniform in [0, 1), exactly two
//! markers, one in each half. The target, read after the last step, is the sum of the two
//! marked values. Always answering 1 (the mean) scores a mean squared error of 1/6 = 0.167;
//! a model that remembers the marked values across up to 100 steps scores near 0. The LSTM
//! starts with its forget gates' bias at +1 (the usual initialization; see
//! `examples/gradient_flow.rs` for why).

#[path = "common/demo.rs"]
mod demo;

use demo::{Model, Readout, mse};
use fused_rnn::{Config, SeqShape};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const T: usize = 100;
const BATCH: usize = 64;

/// A batch of problems: `x` `[T][B][2]` and the targets.
fn batch(rng: &mut StdRng, b: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = vec![0.0f32; T * b * 2];
    let mut targets = vec![0.0f32; b];
    for s in 0..b {
        let (first, second) = (rng.random_range(0..T / 2), rng.random_range(T / 2..T));
        for t in 0..T {
            let v: f32 = rng.random();
            x[(t * b + s) * 2] = v;
            if t == first || t == second {
                x[(t * b + s) * 2 + 1] = 1.0;
                targets[s] += v;
            }
        }
    }
    (x, targets)
}

fn main() {
    let steps: usize = std::env::args()
        .skip_while(|a| a != "--steps")
        .nth(1)
        .map_or(1500, |s| s.parse().expect("a number"));
    println!(
        "adding problem, T = {T}: {steps} Adam steps of {BATCH} sequences per cell (baseline MSE 0.167)\n"
    );
    println!(
        "{:<12} {:>12} {:>12} {:>10}",
        "cell", "test MSE", "vs baseline", "time"
    );
    let mut rows = Vec::new();
    for (name, config) in [
        ("RNN (tanh)", Config::rnn(2, 64)),
        ("LSTM", Config::lstm(2, 64)),
        ("GRU", Config::gru(2, 64)),
    ] {
        let started = std::time::Instant::now();
        let lstm = config.cell == fused_rnn::CellKind::Lstm;
        let mut model = Model::new(config, 1, 1e-2, 1);
        if lstm {
            model = model.with_forget_bias(1.0);
        }
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..steps {
            let (x, targets) = batch(&mut rng, BATCH);
            model.train(
                &x,
                SeqShape::new(T, BATCH),
                None,
                Readout::Last(None),
                |p, d| mse(p, &targets, d),
            );
        }
        // A fresh test set of 1000 problems.
        let mut test_rng = StdRng::seed_from_u64(99);
        let (x, targets) = batch(&mut test_rng, 1000);
        let mut state = model.rnn.zero_state(1000);
        let pred = model.predict(
            &x,
            SeqShape::new(T, 1000),
            None,
            Readout::Last(None),
            &mut state,
        );
        let test = mse(&pred, &targets, &mut vec![0.0; pred.len()]);
        println!(
            "{name:<12} {test:>12.4} {:>11.1}x {:>9.1}s",
            (1.0 / 6.0) / test,
            started.elapsed().as_secs_f64()
        );
        rows.push((name, test));
    }
    let solved: Vec<&str> = rows.iter().filter(|r| r.1 < 0.01).map(|r| r.0).collect();
    println!(
        "\nsolved (test MSE < 0.01): {}",
        if solved.is_empty() {
            "none".to_string()
        } else {
            solved.join(", ")
        }
    );
}
