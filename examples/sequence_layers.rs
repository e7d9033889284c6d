//! The sequence-layer features in one tour, each checked as it runs:
//!
//! 1. a stacked, bidirectional LSTM with projection, batch-first, on sequences of different
//!    lengths (no sorting, no packing): outputs past a sequence's end are zero and its final
//!    state is the state at its own last step;
//! 2. reset masks: an episode boundary inside the batch restarts that sequence's state;
//! 3. PyTorch weights through safetensors: save, load with the configuration inferred;
//! 4. gradient clipping by global norm and by value.
//!
//! `cargo run --release --example sequence_layers`

use fused_rnn::clip::{clip_grad_norm, clip_grad_value};
use fused_rnn::io::{load_params_file, save_params_file};
use fused_rnn::{Backward, Config, Input, Recurrent, Reserve, SeqLayout, SeqShape, Workspace};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let config = Config::lstm(5, 12)
        .with_layers(2)
        .with_bidirectional(true)
        .with_proj_size(4)
        .with_layout(SeqLayout::BatchMajor);
    let lstm = Recurrent::<f64>::with_seed(config.clone(), 1)?;
    lengths_and_batch_first(&lstm)?;
    reset_masks(&lstm)?;
    safetensors_round_trip(&lstm)?;
    clipping(&lstm)?;
    Ok(())
}

/// A deterministic input of `shape` in the module's layout.
fn input_for(config: &Config, shape: SeqShape) -> Vec<f64> {
    let n = shape.steps * shape.batch * config.input_size;
    (0..n).map(|k| (k as f64 * 0.37).sin()).collect()
}

fn lengths_and_batch_first(lstm: &Recurrent<f64>) -> Result<()> {
    let c = lstm.config();
    let (steps, batch, out) = (6, 3, c.output_size());
    let shape = SeqShape::new(steps, batch);
    // Batch-first: x is [B, T, I], y is [B, T, 2 * proj]; lengths in any order.
    let x = input_for(c, shape);
    let lengths = [4, 6, 1];
    let mut y = vec![0.0; batch * steps * out];
    let mut state = lstm.zero_state(batch);
    let input = Input::new(&x, shape).with_lengths(&lengths);
    lstm.forward(input, &mut state, &mut y, &mut Workspace::new())?;

    println!("1. lengths {lengths:?}, batch-first, 2 layers x 2 directions, projection 4:");
    for (b, &len) in lengths.iter().enumerate() {
        // Past its end, a sequence's output is zero.
        let seq = &y[b * steps * out..][..steps * out];
        assert!(seq[len * out..].iter().all(|&v| v == 0.0));
        // Run alone with exactly its own steps, it gives the same outputs and final state.
        let alone_shape = SeqShape::new(len, 1);
        let alone_x = &x[b * steps * c.input_size..][..len * c.input_size];
        let mut alone_y = vec![0.0; len * out];
        let mut alone_state = lstm.zero_state(1);
        lstm.forward(
            Input::new(alone_x, alone_shape),
            &mut alone_state,
            &mut alone_y,
            &mut Workspace::new(),
        )?;
        let diff = max_diff(&alone_y, &seq[..len * out]);
        let hout = c.state_size();
        let state_diff = (0..c.num_layers * 2)
            .map(|s| {
                let batched = &state.h[(s * batch + b) * hout..][..hout];
                max_diff(batched, &alone_state.h[s * hout..][..hout])
            })
            .fold(0.0, f64::max);
        println!(
            "   sequence {b} (length {len}): outputs past its end are 0; vs running it alone: \
             outputs differ by {diff:.1e}, final h by {state_diff:.1e}"
        );
        assert!(diff < 1e-12 && state_diff < 1e-12);
    }
    Ok(())
}

fn reset_masks(lstm: &Recurrent<f64>) -> Result<()> {
    // Reverse directions read the future, so episode resets make sense for a causal
    // (unidirectional) layer: take one layer of the same shape.
    let c = lstm
        .config()
        .clone()
        .with_bidirectional(false)
        .with_layers(1);
    let causal = Recurrent::<f64>::with_seed(c.clone(), 2)?;
    let (steps, batch, out) = (8, 2, c.output_size());
    let shape = SeqShape::new(steps, batch);
    let x = input_for(&c, shape);
    // Sequence 1 starts a new episode at step 5: its state is reset to the initial state
    // before that step (resets are [T, B], time-major whatever the layout).
    let mut resets = vec![false; steps * batch];
    resets[5 * batch + 1] = true;
    let mut y = vec![0.0; batch * steps * out];
    let mut state = causal.zero_state(batch);
    let input = Input::new(&x, shape).with_resets(&resets);
    causal.forward(input, &mut state, &mut y, &mut Workspace::new())?;

    // The new episode alone: steps 5..8 of sequence 1 from the initial (zero) state.
    let tail = &x[(steps + 5) * c.input_size..][..3 * c.input_size];
    let mut tail_y = vec![0.0; 3 * out];
    let mut tail_state = causal.zero_state(1);
    causal.forward(
        Input::new(tail, SeqShape::new(3, 1)),
        &mut tail_state,
        &mut tail_y,
        &mut Workspace::new(),
    )?;
    let diff = max_diff(&tail_y, &y[(steps + 5) * out..][..3 * out]);
    println!("2. a reset at step 5 of sequence 1 = a fresh episode: outputs differ by {diff:.1e}");
    assert!(diff < 1e-12);
    Ok(())
}

fn safetensors_round_trip(lstm: &Recurrent<f64>) -> Result<()> {
    // A PyTorch state_dict saved with safetensors.torch.save_file loads the same way.
    let path = std::env::temp_dir().join(format!(
        "fused-rnn-example-{}.safetensors",
        std::process::id()
    ));
    save_params_file(&path, lstm.params(), lstm.config())?;
    let (config, params) = load_params_file::<f64>(&path, None)?;
    std::fs::remove_file(&path)?;
    let names: Vec<&str> = params.iter().map(|t| t.name()).collect();
    println!(
        "3. safetensors: {} tensors ({}, ...), configuration inferred: {} layers, \
         bidirectional {}, projection {}",
        names.len(),
        names[..3].join(", "),
        config.num_layers,
        config.bidirectional,
        config.proj_size
    );
    assert!(params == *lstm.params());
    Ok(())
}

fn clipping(lstm: &Recurrent<f64>) -> Result<()> {
    let c = lstm.config();
    let shape = SeqShape::new(6, 3);
    let x = input_for(c, shape);
    let mut y = vec![0.0; 6 * 3 * c.output_size()];
    let (mut state, mut reserve, mut ws) = (lstm.zero_state(3), Reserve::new(), Workspace::new());
    lstm.forward_train(
        Input::new(&x, shape),
        &mut state,
        &mut y,
        &mut reserve,
        &mut ws,
    )?;
    // A deliberately large loss: L = 100 * sum(y).
    let dy = vec![100.0; y.len()];
    let (mut grads, mut d_state) = (lstm.zero_grads(), lstm.zero_state(3));
    let out = Backward {
        d_state: &mut d_state,
        dx: None,
        grads: &mut grads,
    };
    lstm.backward(Input::new(&x, shape), &dy, &mut reserve, out, &mut ws)?;
    let mut slices: Vec<&mut [f64]> = grads.iter_mut().map(|t| t.data_mut()).collect();
    let before = clip_grad_norm(&mut slices, 5.0);
    let after = fused_rnn::clip::global_norm(&slices);
    clip_grad_value(&mut slices, 0.1);
    let largest = slices
        .iter()
        .flat_map(|s| s.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    println!(
        "4. clipping: global norm {before:.1} -> {after:.3} (max 5), then by value: \
         largest |g| {largest:.3} (max 0.1)"
    );
    assert!((after - 5.0).abs() < 1e-5 && largest <= 0.1);
    Ok(())
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
