//! fused-rnn as a dependency of a user's debug build: every crate at opt-level 0, with
//! debug assertions. Runs every cell forward and backward, in f32 and f64, at batch 1 (the
//! single-row product), odd sizes and a few tiles' worth of rows, then a char-rnn head
//! (linear layer and softmax cross-entropy: the general product, the vector exp), on a
//! thread and a rayon
//! pool whose stacks are half of Rust's default 2 MiB: unoptimized, every inlined call keeps
//! its own stack slots, and the kernels' frames once took 1.4-4.2 MB (an abort on the
//! first product off the main thread). Exits non-zero (or aborts) on failure.
//!
//! `cd unoptimized && cargo run` (CI runs it, and again with `FUSED_RNN_FORCE_ARCH=scalar`).

use fused_rnn::nn::{Linear, softmax_cross_entropy};
use fused_rnn::{
    Backward, CellKind, Config, Float, Input, Recurrent, Reserve, SeqShape, Workspace,
};

/// Half of the default stack of a spawned thread: room for a sanitizer's redzones.
const STACK: usize = 1 << 20;

/// (input, hidden, steps, batch): one row; odd sizes; a tile and a remainder; 17 rows.
const SHAPES: [(usize, usize, usize, usize); 4] = [
    (3, 5, 3, 1),
    (7, 33, 4, 3),
    (64, 256, 2, 8),
    (10, 100, 2, 17),
];

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .stack_size(STACK)
        .build_global()
        .expect("the global pool is built once");
    let worker = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(run_all)
        .expect("a thread");
    match worker.join() {
        Ok(Ok(runs)) => println!(
            "unoptimized build: {runs} runs on {} KiB stacks: ok",
            STACK >> 10
        ),
        Ok(Err(e)) => {
            eprintln!("unoptimized build: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("unoptimized build: the worker panicked");
            std::process::exit(1);
        }
    }
}

fn run_all() -> Result<usize, fused_rnn::Error> {
    let mut runs = 0;
    for cell in CellKind::ALL {
        for (i, &(input, hidden, steps, batch)) in SHAPES.iter().enumerate() {
            // Two layers, the last shape both ways: every product of a layer's backward.
            let config = Config::lstm(input, hidden)
                .with_cell(cell)
                .with_layers(2)
                .with_bidirectional(i == SHAPES.len() - 1);
            let shape = SeqShape::new(steps, batch);
            head_step::<f32>(&train_step::<f32>(&config, shape)?, config.output_size())?;
            head_step::<f64>(&train_step::<f64>(&config, shape)?, config.output_size())?;
            runs += 2;
        }
    }
    Ok(runs)
}

/// forward_train, backward and forward, checking that the outputs and gradients are finite;
/// returns the outputs.
fn train_step<F: Float>(config: &Config, shape: SeqShape) -> Result<Vec<F>, fused_rnn::Error> {
    let module = Recurrent::<F>::with_seed(config.clone(), 7)?;
    let x: Vec<F> = (0..shape.steps * shape.batch * config.input_size)
        .map(|i| F::from_f64((i as f64 * 0.37).sin()))
        .collect();
    let input = Input::new(&x, shape);
    let (mut reserve, mut ws) = (Reserve::for_shape(&module, shape)?, Workspace::new());
    let mut y = vec![F::from_f64(0.0); shape.steps * shape.batch * config.output_size()];
    let mut state = module.zero_state(shape.batch);
    module.forward_train(input, &mut state, &mut y, &mut reserve, &mut ws)?;
    let dy = vec![F::from_f64(0.01); y.len()];
    let (mut grads, mut d_state) = (module.zero_grads(), module.zero_state(shape.batch));
    let out = Backward {
        d_state: &mut d_state,
        dx: None,
        grads: &mut grads,
    };
    module.backward(input, &dy, &mut reserve, out, &mut ws)?;
    let mut state = module.zero_state(shape.batch);
    module.forward(input, &mut state, &mut y, &mut ws)?;
    let finite = y.iter().all(|v| v.to_f64().is_finite())
        && grads
            .iter()
            .all(|g| g.data().iter().all(|v| v.to_f64().is_finite()));
    if !finite {
        panic!("{config:?} {shape:?}: a non-finite output or gradient");
    }
    Ok(y)
}

/// A linear layer to 11 classes on `y`'s rows of `width`, softmax cross-entropy and the
/// layer's backward, checking that the loss and gradients are finite.
fn head_step<F: Float>(y: &[F], width: usize) -> Result<(), fused_rnn::Error> {
    let classes = 11;
    let head = Linear::<F>::new(width, classes, 3)?;
    let rows = y.len() / width;
    let mut logits = vec![F::from_f64(0.0); rows * classes];
    head.forward(y, &mut logits)?;
    let targets: Vec<usize> = (0..rows).map(|r| r * 7 % classes).collect();
    let mut d_logits = vec![F::from_f64(0.0); logits.len()];
    let loss = softmax_cross_entropy(&logits, classes, &targets, &mut d_logits)?;
    let (mut grads, mut dy) = (
        Linear::<F>::zeros(width, classes)?,
        vec![F::from_f64(0.0); y.len()],
    );
    head.backward(y, &d_logits, Some(&mut dy), &mut grads)?;
    if !(loss.is_finite() && dy.iter().all(|v| v.to_f64().is_finite())) {
        panic!("head of {width} x {classes} on {rows} rows: a non-finite loss or gradient");
    }
    Ok(())
}
