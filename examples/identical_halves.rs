//! Identical halves: is a sequence `a1 .. ak | b1 .. bk` two copies of one string? A
//! many-to-one classifier over variable-length sequences, batched without padding work:
//! each sequence carries its own length (`Input::with_lengths`), its state stops at its own
//! last step, and the readout reads it there.
//!
//! ```text
//! cargo run --release --example identical_halves [-- --steps 2000]
//! ```
//!
//! Halves of 1 to 8 symbols from a 4-letter alphabet; a non-identical pair differs in one
//! position only, so the model must compare every symbol, remembered across the separator.

#[path = "common/demo.rs"]
mod demo;

use demo::{Model, Readout, argmax_rows, cross_entropy, one_hot};
use fused_rnn::{Config, SeqShape};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SYMBOLS: usize = 4;
const SEPARATOR: usize = SYMBOLS;
const WIDTH: usize = SYMBOLS + 1;
const MAX_HALF: usize = 8;

/// A batch: one-hot `x` `[T][B][WIDTH]` padded to the longest, the lengths, the labels
/// (1: identical), and each sequence's half length.
fn batch(rng: &mut StdRng, b: usize) -> (Vec<f32>, usize, Vec<usize>, Vec<usize>, Vec<usize>) {
    let halves: Vec<usize> = (0..b).map(|_| rng.random_range(1..=MAX_HALF)).collect();
    let t = 2 * halves.iter().max().expect("a batch") + 1;
    let mut x = vec![0.0; t * b * WIDTH];
    let (mut lengths, mut labels) = (Vec::with_capacity(b), Vec::with_capacity(b));
    for (s, &k) in halves.iter().enumerate() {
        let first: Vec<usize> = (0..k).map(|_| rng.random_range(0..SYMBOLS)).collect();
        let mut second = first.clone();
        let same = rng.random_bool(0.5);
        if !same {
            let i = rng.random_range(0..k);
            second[i] = (second[i] + rng.random_range(1..SYMBOLS)) % SYMBOLS;
        }
        let seq = first.iter().chain([SEPARATOR].iter()).chain(second.iter());
        for (step, &id) in seq.enumerate() {
            one_hot(
                &mut x[(step * b + s) * WIDTH..(step * b + s + 1) * WIDTH],
                id,
            );
        }
        lengths.push(2 * k + 1);
        labels.push(usize::from(same));
    }
    (x, t, lengths, labels, halves)
}

fn main() {
    let steps: usize = std::env::args()
        .skip_while(|a| a != "--steps")
        .nth(1)
        .map_or(2000, |s| s.parse().expect("a number"));
    let batch_size = 64;
    let mut model = Model::new(Config::gru(WIDTH, 64), 2, 5e-3, 5);
    let mut rng = StdRng::seed_from_u64(6);
    let started = std::time::Instant::now();
    for step in 1..=steps {
        let (x, t, lengths, labels, _) = batch(&mut rng, batch_size);
        let shape = SeqShape::new(t, batch_size);
        let loss = model.train(
            &x,
            shape,
            Some(&lengths),
            Readout::Last(Some(&lengths)),
            |l, d| cross_entropy(l, 2, &labels, d),
        );
        if step % 400 == 0 {
            println!("step {step:>5}: loss {loss:.4} nats");
        }
    }
    // Accuracy by half length on 4000 fresh sequences.
    let mut test = StdRng::seed_from_u64(1234);
    let (x, t, lengths, labels, halves) = batch(&mut test, 4000);
    let mut state = model.rnn.zero_state(4000);
    let logits = model.predict(
        &x,
        SeqShape::new(t, 4000),
        Some(&lengths),
        Readout::Last(Some(&lengths)),
        &mut state,
    );
    let guess = argmax_rows(&logits, 2);
    println!(
        "\nGRU (64 units), {steps} steps in {:.1}s; test accuracy by half length (chance 50%):",
        started.elapsed().as_secs_f64()
    );
    let mut total = 0;
    for k in 1..=MAX_HALF {
        let idx: Vec<usize> = (0..4000).filter(|&i| halves[i] == k).collect();
        let right = idx.iter().filter(|&&i| guess[i] == labels[i]).count();
        total += right;
        println!(
            "  k = {k}: {:>5.1}%  ({} sequences)",
            100.0 * right as f64 / idx.len() as f64,
            idx.len()
        );
    }
    println!("  all:   {:>5.1}%", 100.0 * total as f64 / 4000.0);
}
