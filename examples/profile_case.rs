//! Runs one benchmark shape in a loop, for profiling and quick timing:
//!
//! ```text
//! cargo run --release --example profile_case -- lstm 512 16 25 train 50 2
//! ```
//!
//! Arguments: cell (lstm, gru, rnn), hidden (= input) size, batch, steps, mode (train or
//! infer), iterations, threads (0: `Parallelism::Sequential`, else a rayon pool of that size),
//! and optionally the input size (default: the hidden size).
//!
//! Built with `--features phase-timers`, it also prints each phase's median time over the
//! iterations (`fused_rnn::phases`): where a call's time goes.

use std::collections::BTreeMap;

use fused_rnn::phases::Phase;
use fused_rnn::{
    Backward, CellKind, Config, Input, Nonlinearity, Parallelism, Recurrent, Reserve, SeqShape,
    Workspace,
};

/// One case: cell, (hidden, batch, steps), training or not, iterations.
struct Case {
    cell: CellKind,
    hidden: usize,
    batch: usize,
    steps: usize,
    train: bool,
    iters: usize,
    /// Input size (default: the hidden size).
    input: Option<usize>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let n = |i: usize, d: &str| arg(i, d).parse::<usize>().expect("a number");
    let cell = match arg(0, "lstm").as_str() {
        "gru" => CellKind::Gru { reset_after: true },
        "rnn" => CellKind::Rnn(Nonlinearity::Tanh),
        _ => CellKind::Lstm,
    };
    let case = Case {
        cell,
        hidden: n(1, "512"),
        batch: n(2, "16"),
        steps: n(3, "25"),
        train: arg(4, "train") == "train",
        iters: n(5, "20"),
        input: args.get(7).map(|v| v.parse().expect("a number")),
    };
    match n(6, "1") {
        0 => run(&case, Parallelism::Sequential),
        threads => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool")
            .install(|| run(&case, Parallelism::Rayon)),
    }
}

fn run(c: &Case, par: Parallelism) {
    let (h, b, t) = (c.hidden, c.batch, c.steps);
    let i = c.input.unwrap_or(h);
    let config = Config::lstm(i, h).with_cell(c.cell).with_parallelism(par);
    let m = Recurrent::<f32>::with_seed(config, 0).unwrap();
    let shape = SeqShape::new(t, b);
    let x = vec![0.1f32; t * b * i];
    let mut y = vec![0.0f32; t * b * h];
    let mut ws = Workspace::with_len(m.workspace_len(shape).unwrap());
    let mut reserve = Reserve::for_shape(&m, shape).unwrap();
    let (mut grads, mut dx, dy) = (
        m.zero_grads(),
        vec![0.0f32; x.len()],
        vec![0.01f32; y.len()],
    );
    let mut start = std::time::Instant::now();
    // Per phase, its time in each timed iteration (summed over the layers).
    let mut phases: BTreeMap<Phase, Vec<f64>> = BTreeMap::new();
    // One untimed call first: it builds the prepared weights (once per parameter update).
    for i in 0..=c.iters {
        if i == 1 {
            start = std::time::Instant::now();
        }
        let mut state = m.zero_state(b);
        if c.train {
            m.forward_train(
                Input::new(&x, shape),
                &mut state,
                &mut y,
                &mut reserve,
                &mut ws,
            )
            .unwrap();
            let mut d_state = m.zero_state(b);
            let out = Backward {
                d_state: &mut d_state,
                dx: Some(&mut dx),
                grads: &mut grads,
            };
            m.backward(Input::new(&x, shape), &dy, &mut reserve, out, &mut ws)
                .unwrap();
        } else {
            m.forward(Input::new(&x, shape), &mut state, &mut y, &mut ws)
                .unwrap();
        }
        let mut this_call: BTreeMap<Phase, f64> = BTreeMap::new();
        for (phase, took) in fused_rnn::phases::take() {
            *this_call.entry(phase).or_default() += took.as_secs_f64();
        }
        if i > 0 {
            for (phase, secs) in this_call {
                phases.entry(phase).or_default().push(secs);
            }
        }
    }
    let per = start.elapsed().as_secs_f64() / c.iters as f64;
    let flops =
        2.0 * (t * b * (i + h) * c.cell.gates() * h) as f64 * if c.train { 3.0 } else { 1.0 };
    println!(
        "{:.3} ms per iteration, {:.1} GFLOP/s",
        per * 1e3,
        flops / per / 1e9
    );
    for (phase, mut secs) in phases {
        secs.sort_by(f64::total_cmp);
        println!("  {phase:?}: {:.3} ms (median)", secs[secs.len() / 2] * 1e3);
    }
}
