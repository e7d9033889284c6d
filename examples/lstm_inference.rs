//! Streaming inference with an LSTM: feed a long sequence in chunks, carrying the state, and
//! check that the result is the same (up to f32 rounding) as one call over the whole
//! sequence.
//!
//! `cargo run --release --example lstm_inference`

use fused_rnn::{Config, Input, Recurrent, SeqShape, Workspace};

fn main() -> Result<(), fused_rnn::Error> {
    let (input_size, hidden, batch, steps) = (16, 64, 2, 100);
    let lstm = Recurrent::<f32>::with_seed(Config::lstm(input_size, hidden).with_layers(2), 42)?;
    let x: Vec<f32> = (0..steps * batch * input_size)
        .map(|i| (i as f32 * 0.01).sin())
        .collect();
    let mut ws = Workspace::new();

    // One call over all 100 steps.
    let mut state = lstm.zero_state(batch);
    let mut y_all = vec![0.0; steps * batch * hidden];
    lstm.forward(
        Input::new(&x, SeqShape::new(steps, batch)),
        &mut state,
        &mut y_all,
        &mut ws,
    )?;

    // The same in chunks of 7 steps (time-major, so a chunk is a contiguous slice).
    let mut chunked = lstm.zero_state(batch);
    let mut y_chunks = Vec::with_capacity(y_all.len());
    for start in (0..steps).step_by(7) {
        let len = 7.min(steps - start);
        let xs = &x[start * batch * input_size..(start + len) * batch * input_size];
        let mut ys = vec![0.0; len * batch * hidden];
        lstm.forward(
            Input::new(xs, SeqShape::new(len, batch)),
            &mut chunked,
            &mut ys,
            &mut ws,
        )?;
        y_chunks.extend_from_slice(&ys);
    }
    let max_diff = y_all
        .iter()
        .zip(&y_chunks)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "{steps} steps x {batch} sequences, 2 layers of {hidden}: last output {:.6}",
        y_all[y_all.len() - 1]
    );
    println!("chunked (7 steps at a time) vs whole: max |difference| = {max_diff:e}");
    // Equal up to f32 rounding, not bitwise: a product over 200 rows and one over 14 are
    // blocked differently (small row counts use several accumulators along K).
    let state_diff = state
        .h
        .iter()
        .chain(&state.c)
        .zip(chunked.h.iter().chain(&chunked.c))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("final state: max |difference| = {state_diff:e}");
    assert!(
        max_diff < 1e-5 && state_diff < 1e-5,
        "carrying the state makes chunks equal to the whole"
    );
    Ok(())
}
