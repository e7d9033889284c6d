//! Running parity: a vanilla RNN reads a bit stream and says, after every bit, whether it
//! has seen an odd number of ones (many-to-many). Parity is the classic task a feed-forward
//! net of fixed width cannot do for any length, and a two-state recurrence does exactly.
//!
//! ```text
//! cargo run --release --example parity [-- --steps 1500]
//! ```
//!
//! Trained on streams of 20 bits, tested on fresh streams of 20 and of 200 bits (does it
//! learn the rule, or the lengths it saw?).

#[path = "common/demo.rs"]
mod demo;

use demo::{Model, Readout, argmax_rows, cross_entropy};
use fused_rnn::{Config, SeqShape};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `b` streams of `t` bits, `[T][B][1]` as -1/+1, and the running parity after each bit.
fn streams(rng: &mut StdRng, t: usize, b: usize) -> (Vec<f32>, Vec<usize>) {
    let mut x = vec![0.0; t * b];
    let mut parity = vec![0; t * b];
    let mut state = vec![0usize; b];
    for step in 0..t {
        for s in 0..b {
            let bit = rng.random_range(0..2usize);
            state[s] ^= bit;
            x[step * b + s] = if bit == 1 { 1.0 } else { -1.0 };
            parity[step * b + s] = state[s];
        }
    }
    (x, parity)
}

fn accuracy(model: &mut Model, rng: &mut StdRng, t: usize) -> f64 {
    let b = 200;
    let (x, parity) = streams(rng, t, b);
    let mut state = model.rnn.zero_state(b);
    let logits = model.predict(&x, SeqShape::new(t, b), None, Readout::Every, &mut state);
    let guess = argmax_rows(&logits, 2);
    guess.iter().zip(&parity).filter(|(g, p)| g == p).count() as f64 / parity.len() as f64
}

fn main() {
    let steps: usize = std::env::args()
        .skip_while(|a| a != "--steps")
        .nth(1)
        .map_or(1500, |s| s.parse().expect("a number"));
    let (t, batch) = (20, 64);
    let mut model = Model::new(Config::rnn(1, 24), 2, 1e-2, 3);
    let mut rng = StdRng::seed_from_u64(4);
    let started = std::time::Instant::now();
    let mut last = f64::NAN;
    for step in 1..=steps {
        let (x, parity) = streams(&mut rng, t, batch);
        last = model.train(&x, SeqShape::new(t, batch), None, Readout::Every, |l, d| {
            cross_entropy(l, 2, &parity, d)
        });
        if step % 300 == 0 {
            println!("step {step:>5}: loss {last:.4} nats");
        }
    }
    let mut test = StdRng::seed_from_u64(77);
    let (a20, a200) = (
        accuracy(&mut model, &mut test, 20),
        accuracy(&mut model, &mut test, 200),
    );
    println!(
        "\nvanilla RNN (tanh, 24 units), {steps} steps in {:.1}s, final loss {last:.4}:",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  accuracy on fresh 20-bit streams:  {:.1}% (chance 50%)",
        100.0 * a20
    );
    println!("  accuracy on fresh 200-bit streams: {:.1}%", 100.0 * a200);
}
