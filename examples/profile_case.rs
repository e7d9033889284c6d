//! Runs one benchmark shape in a loop for profiling: `cargo run --release --example
//! profile_case -- lstm 512 16 25 train 50` (cell, hidden = input, batch, steps, mode, iters).

use fused_rnn::{
    Backward, CellKind, Config, Input, Nonlinearity, Recurrent, Reserve, SeqShape, Workspace,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let cell = match arg(0, "lstm").as_str() {
        "gru" => CellKind::Gru { reset_after: true },
        "rnn" => CellKind::Rnn(Nonlinearity::Tanh),
        _ => CellKind::Lstm,
    };
    let n = |i: usize, d: &str| arg(i, d).parse::<usize>().expect("a number");
    let (h, b, t, train, iters) = (
        n(1, "512"),
        n(2, "16"),
        n(3, "25"),
        arg(4, "train") == "train",
        n(5, "20"),
    );
    let m = Recurrent::<f32>::with_seed(Config::lstm(h, h).with_cell(cell), 0).unwrap();
    let shape = SeqShape::new(t, b);
    let x = vec![0.1f32; t * b * h];
    let mut y = vec![0.0f32; t * b * h];
    let mut ws = Workspace::with_len(m.workspace_len(shape).unwrap());
    let mut reserve = Reserve::for_shape(&m, shape).unwrap();
    let (mut grads, mut dx, dy) = (
        m.zero_grads(),
        vec![0.0f32; x.len()],
        vec![0.01f32; y.len()],
    );
    let mut start = std::time::Instant::now();
    // One untimed call first: it builds the prepared weights (once per parameter update).
    for i in 0..=iters {
        if i == 1 {
            start = std::time::Instant::now();
        }
        let mut state = m.zero_state(b);
        if train {
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
            m.backward(Input::new(&x, shape), &dy, &reserve, out, &mut ws)
                .unwrap();
        } else {
            m.forward(Input::new(&x, shape), &mut state, &mut y, &mut ws)
                .unwrap();
        }
    }
    let per = start.elapsed().as_secs_f64() / iters as f64;
    let flops = 2.0 * (t * b * 2 * h * cell.gates() * h) as f64 * if train { 3.0 } else { 1.0 };
    println!(
        "{:.3} ms per iteration, {:.1} GFLOP/s",
        per * 1e3,
        flops / per / 1e9
    );
}
