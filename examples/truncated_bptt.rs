//! Truncated BPTT on an endless stream, with the window driver [`fused_rnn::Tbptt`].
//!
//! The task: echo the bit the stream carried `DELAY` steps ago. The gradient must reach at
//! least `DELAY` steps back to connect a target to its cause, and that is exactly what the
//! truncation decides:
//!
//! - TBPTT(3, 3): windows of 3 steps; no gradient spans 6 steps: it cannot learn (MSE ~ 1);
//! - TBPTT(3, 12): every 3 steps, backpropagate 12: it learns;
//! - TBPTT(12, 12): windows of 12: the targets late in a window reach their cause: it learns.
//!
//! The loop is the driver's whole API: `step(module, new steps, grads, loss)`, where `loss`
//! sees the new steps' outputs and writes their dL/dy; the state is carried (detached)
//! across windows for you, and nothing is allocated per window.
//!
//! `cargo run --release --example truncated_bptt [-- --updates N]`

use fused_rnn::nn::Linear;
use fused_rnn::optim::{Adam, Optimizer};
use fused_rnn::{Config, Recurrent, Tbptt, Truncation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DELAY: usize = 6;
const BATCH: usize = 16;
const HIDDEN: usize = 24;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let updates = std::env::args()
        .skip_while(|a| a != "--updates")
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1500);
    println!(
        "echo the bit from {DELAY} steps ago; LSTM {HIDDEN}, {BATCH} streams, {updates} updates"
    );
    println!(
        "{:<14} {:>12} {:>12}",
        "truncation", "first MSE", "final MSE"
    );
    for (k1, k2) in [(3, 3), (3, 12), (12, 12)] {
        let (first, last) = train(Truncation::new(k1, k2)?, updates)?;
        println!(
            "{:<14} {first:>12.3} {last:>12.3}",
            format!("TBPTT({k1}, {k2})")
        );
    }
    println!("(an MSE near 1 is chance: the bits are +-1)");
    Ok(())
}

/// Trains from scratch with `truncation`; returns the mean loss of the first and last 10% of
/// the updates.
fn train(truncation: Truncation, updates: usize) -> Result<(f32, f32)> {
    let mut lstm = Recurrent::<f32>::with_seed(Config::lstm(1, HIDDEN), 1)?;
    let mut head = Linear::<f32>::new(HIDDEN, 1, 2)?;
    let (mut rnn_opt, mut head_opt) = (Adam::new(1e-2), Adam::new(1e-2));
    let mut tbptt = Tbptt::new(&lstm, BATCH, truncation)?;
    let mut rng = StdRng::seed_from_u64(3);
    // The last DELAY bits of every stream, oldest first.
    let mut history: Vec<Vec<f32>> = vec![vec![0.0; DELAY]; BATCH];
    let k1 = truncation.k1();
    let mut losses = Vec::with_capacity(updates);
    for _ in 0..updates {
        // The next k1 steps of every stream ([k1][B][1]) and their targets.
        let mut x = vec![0.0f32; k1 * BATCH];
        let mut target = vec![0.0f32; k1 * BATCH];
        for t in 0..k1 {
            for (b, past) in history.iter_mut().enumerate() {
                let bit = if rng.random::<bool>() { 1.0 } else { -1.0 };
                x[t * BATCH + b] = bit;
                target[t * BATCH + b] = past.remove(0);
                past.push(bit);
            }
        }
        let mut grads = lstm.zero_grads();
        let mut head_grads = Linear::<f32>::zeros(HIDDEN, 1)?;
        let loss = tbptt.step(&lstm, &x, &mut grads, |y, dy| {
            // Readout and mean squared error over the new steps.
            let mut pred = vec![0.0f32; k1 * BATCH];
            head.forward(y, &mut pred)?;
            let n = pred.len() as f32;
            let d_pred: Vec<f32> = pred
                .iter()
                .zip(&target)
                .map(|(p, t)| 2.0 * (p - t) / n)
                .collect();
            head.backward(y, &d_pred, Some(dy), &mut head_grads)?;
            let loss = pred
                .iter()
                .zip(&target)
                .map(|(p, t)| (p - t) * (p - t))
                .sum::<f32>()
                / n;
            Ok::<_, fused_rnn::Error>(loss)
        })??;
        losses.push(loss);
        let grad_slices: Vec<&[f32]> = grads.iter().map(|t| t.data()).collect();
        let mut params: Vec<&mut [f32]> = lstm.tensors_mut().map(|t| t.data_mut()).collect();
        rnn_opt.step(&mut params, &grad_slices)?;
        head_opt.step(
            &mut [&mut head.weight, &mut head.bias],
            &[&head_grads.weight, &head_grads.bias],
        )?;
    }
    let tenth = (updates / 10).max(1);
    let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
    Ok((mean(&losses[..tenth]), mean(&losses[updates - tenth..])))
}
