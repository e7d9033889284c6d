//! fused-rnn as a dependency of a user's debug build: every crate at opt-level 0, with
//! debug assertions. Runs every cell forward and backward, in f32 and f64, at batch 1 (the
//! single-row product), odd sizes and a few tiles' worth of rows, on a thread and a rayon
//! pool whose stacks are half of Rust's default 2 MiB: unoptimized, every inlined call keeps
//! its own stack slots, and the kernels' frames once took 1.4-4.2 MB (an abort on the
//! first product off the main thread). Exits non-zero (or aborts) on failure.
//!
//! `cd unoptimized && cargo run` (CI runs it, and again with `FUSED_RNN_FORCE_ARCH=scalar`).

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
            train_step::<f32>(&config, SeqShape::new(steps, batch))?;
            train_step::<f64>(&config, SeqShape::new(steps, batch))?;
            runs += 2;
        }
    }
    Ok(runs)
}

/// forward_train, backward and forward, checking that the outputs and gradients are finite.
fn train_step<F: Float>(config: &Config, shape: SeqShape) -> Result<(), fused_rnn::Error> {
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
    module.backward(input, &dy, &reserve, out, &mut ws)?;
    let mut state = module.zero_state(shape.batch);
    module.forward(input, &mut state, &mut y, &mut ws)?;
    let finite = y.iter().all(|v| v.to_f64().is_finite())
        && grads
            .iter()
            .all(|g| g.data().iter().all(|v| v.to_f64().is_finite()));
    if !finite {
        panic!("{config:?} {shape:?}: a non-finite output or gradient");
    }
    Ok(())
}
