//! A few training steps of a GRU on a toy regression (predict the running mean of the input),
//! with plain gradient descent: forward_train, backward, update, and the loss going down.
//!
//! `cargo run --release --example gru_train_step`

use fused_rnn::{Backward, Config, Input, Recurrent, Reserve, SeqShape, Workspace};

fn main() -> Result<(), fused_rnn::Error> {
    let (steps, batch, hidden) = (20, 8, 16);
    let mut gru = Recurrent::<f32>::with_seed(Config::gru(1, hidden), 1)?;
    let shape = SeqShape::new(steps, batch);
    let x: Vec<f32> = (0..steps * batch)
        .map(|i| ((i * 37 % 17) as f32 / 8.5) - 1.0)
        .collect();
    // Target: the running mean of each sequence, read from unit 0 of h.
    let mut target = vec![0.0f32; steps * batch];
    for b in 0..batch {
        let mut sum = 0.0;
        for t in 0..steps {
            sum += x[t * batch + b];
            target[t * batch + b] = sum / (t + 1) as f32;
        }
    }
    let (mut reserve, mut ws) = (Reserve::for_shape(&gru, shape)?, Workspace::new());
    let mut y = vec![0.0f32; steps * batch * hidden];
    let mut first = None;
    for step in 0..200 {
        let mut state = gru.zero_state(batch);
        gru.forward_train(
            Input::new(&x, shape),
            &mut state,
            &mut y,
            &mut reserve,
            &mut ws,
        )?;
        let mut dy = vec![0.0f32; y.len()];
        let mut loss = 0.0;
        for (tb, &want) in target.iter().enumerate() {
            let err = y[tb * hidden] - want;
            loss += err * err / target.len() as f32;
            dy[tb * hidden] = 2.0 * err / target.len() as f32;
        }
        first.get_or_insert(loss);
        let (mut grads, mut d_state) = (gru.zero_grads(), gru.zero_state(batch));
        let out = Backward {
            d_state: &mut d_state,
            dx: None,
            grads: &mut grads,
        };
        gru.backward(Input::new(&x, shape), &dy, &mut reserve, out, &mut ws)?;
        for (p, g) in gru.tensors_mut().zip(grads.iter()) {
            for (w, &dw) in p.data_mut().iter_mut().zip(g.data()) {
                *w -= 0.5 * dw;
            }
        }
        if step % 50 == 0 || step == 199 {
            println!("step {step:3}: mean squared error {loss:.5}");
        }
    }
    let first = first.unwrap_or_default();
    println!("loss fell from {first:.5}");
    Ok(())
}
