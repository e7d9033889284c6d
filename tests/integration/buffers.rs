//! The reserve and workspace sizes are the documented formulas, calls use exactly that much,
//! inference equals training forward bit for bit, a reserve is reused without growing, and one
//! workspace serves several modules.

use crate::common;

use fused_rnn::{Backward, CellKind, Config, Input, Recurrent, Reserve, SeqShape, Workspace};
use proptest::prelude::*;

/// The reserve formula of `Recurrent::reserve_len`'s docs, written out independently.
fn documented_reserve_len(c: &Config, s: SeqShape) -> usize {
    let (t, b, h, g) = (s.steps, s.batch, c.hidden_size, c.cell.gates());
    let hout = if c.proj_size > 0 { c.proj_size } else { h };
    let d = c.directions();
    let lstm = c.cell == CellKind::Lstm;
    let extra = matches!(c.cell, CellKind::Gru { .. }) || c.proj_size > 0;
    let per_dir = t * b * g * h
        + (t + 1) * b * hout
        + if lstm { (t + 1) * b * h } else { 0 }
        + if extra { t * b * h } else { 0 };
    let between = t * b * d * hout * if c.dropout > 0.0 { 2 } else { 1 };
    c.num_layers * d * per_dir + (c.num_layers - 1) * between
}

proptest! {
    #![proptest_config(fused_rnn_kernels::testing::cases(48))]

    #[test]
    fn sizes_are_the_formulas_and_calls_use_them((config, shape) in common::config_and_shape(), dropout in any::<bool>()) {
        let config = if dropout && config.num_layers > 1 { config.with_dropout(0.3) } else { config };
        let m = Recurrent::<f32>::with_seed(config.clone(), 3).unwrap();
        prop_assert_eq!(m.reserve_len(shape).unwrap(), documented_reserve_len(&config, shape));
        let case = common::Case::random(config.clone(), shape, 5, false, false);
        let x: Vec<f32> = case.x.iter().map(|&v| v as f32).collect();
        let input = Input::new(&x, shape);
        let mut y = vec![0.0f32; shape.steps * shape.batch * config.output_size()];
        let (mut ws, mut reserve) = (Workspace::new(), Reserve::new());
        let mut state = m.zero_state(shape.batch);
        m.forward_train(input, &mut state, &mut y, &mut reserve, &mut ws).unwrap();
        prop_assert_eq!(reserve.len(), m.reserve_len(shape).unwrap());
        let mut y_infer = vec![0.0f32; y.len()];
        let mut state_infer = m.zero_state(shape.batch);
        m.forward(input, &mut state_infer, &mut y_infer, &mut ws).unwrap();
        if config.dropout == 0.0 {
            // The same arithmetic on a smaller tape: identical bits.
            prop_assert_eq!(y_infer.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), y.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            prop_assert_eq!(&state_infer, &state);
        }
        let dy = vec![1.0f32; y.len()];
        let (mut grads, mut d_state, mut dx) = (m.zero_grads(), m.zero_state(shape.batch), vec![0.0f32; x.len()]);
        m.backward(input, &dy, &mut reserve, Backward { d_state: &mut d_state, dx: Some(&mut dx), grads: &mut grads }, &mut ws).unwrap();
        prop_assert_eq!(ws.len(), m.workspace_len(shape).unwrap());
    }
}

#[test]
fn a_reserve_sized_for_a_window_serves_shorter_windows_without_growing() {
    let m = Recurrent::<f32>::with_seed(Config::lstm(4, 8).with_layers(2), 1).unwrap();
    let full = SeqShape::new(16, 3);
    let mut reserve = Reserve::for_shape(&m, full).unwrap();
    let mut ws = Workspace::with_len(m.workspace_len(full).unwrap());
    let len = reserve.len();
    let mut state = m.zero_state(3);
    for steps in [16, 16, 7] {
        let x = vec![0.1f32; steps * 3 * 4];
        let mut y = vec![0.0f32; steps * 3 * 8];
        m.forward_train(
            Input::new(&x, SeqShape::new(steps, 3)),
            &mut state,
            &mut y,
            &mut reserve,
            &mut ws,
        )
        .unwrap();
        assert_eq!(reserve.len(), len);
        assert_eq!(reserve.shape().unwrap().steps, steps);
    }
    assert_eq!(ws.len(), m.workspace_len(full).unwrap());
}

#[test]
fn zero_steps_pass_the_state_through() {
    for cell in CellKind::ALL {
        let m = Recurrent::<f64>::with_seed(
            Config::lstm(2, 3).with_cell(cell).with_bidirectional(true),
            4,
        )
        .unwrap();
        let mut state = m.zero_state(2);
        state
            .h
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as f64);
        let before = state.clone();
        let (mut reserve, mut ws) = (Reserve::new(), Workspace::new());
        m.forward_train(
            Input::new(&[], SeqShape::new(0, 2)),
            &mut state,
            &mut [],
            &mut reserve,
            &mut ws,
        )
        .unwrap();
        assert_eq!(state, before);
        let mut d_state = before.clone();
        let mut grads = m.zero_grads();
        let out = Backward {
            d_state: &mut d_state,
            dx: Some(&mut []),
            grads: &mut grads,
        };
        m.backward(
            Input::new(&[], SeqShape::new(0, 2)),
            &[],
            &mut reserve,
            out,
            &mut ws,
        )
        .unwrap();
        assert_eq!(d_state, before, "with no steps dL/d(initial) = dL/d(final)");
        assert!(grads.iter().all(|t| t.data().iter().all(|&g| g == 0.0)));
    }
}

/// One workspace serving several modules in turn (each call repacks for its module) gives
/// each the bits of a fresh workspace, including after a module whose small batches on two
/// threads packed its LSTM weights by unit blocks and a next one that cannot use them.
#[test]
fn a_workspace_shared_by_modules_gives_each_its_own_results() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let shape = SeqShape::new(3, 1);
    let configs = [
        Config::lstm(16, 192),
        Config::lstm(16, 192).with_proj_size(64),
        Config::gru(16, 192),
        Config::lstm(16, 256),
        Config::lstm(16, 192),
    ];
    let run = |m: &Recurrent<f32>, ws: &mut Workspace<f32>| {
        let x: Vec<f32> = (0..3 * 16).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut y = vec![0.0f32; 3 * m.config().output_size()];
        let mut state = m.zero_state(1);
        m.forward(Input::new(&x, shape), &mut state, &mut y, ws)
            .unwrap();
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    pool.install(|| {
        let mut shared = Workspace::new();
        for (i, config) in configs.into_iter().enumerate() {
            let m = Recurrent::<f32>::with_seed(config, i as u64).unwrap();
            let fresh = run(&m, &mut Workspace::new());
            assert!(run(&m, &mut shared) == fresh, "module {i}");
        }
    });
}

/// A batch of no sequences trains and backpropagates through nothing: no rows, no tapes
/// (the fuzzer found backward splitting empty tapes into directions).
#[test]
fn an_empty_batch_runs_through_and_changes_nothing() {
    for cell in CellKind::ALL {
        let m = Recurrent::<f64>::with_seed(
            Config::lstm(2, 3)
                .with_cell(cell)
                .with_layers(2)
                .with_bidirectional(true),
            4,
        )
        .unwrap();
        let shape = SeqShape::new(5, 0);
        let (mut reserve, mut ws) = (Reserve::new(), Workspace::new());
        let mut state = m.zero_state(0);
        m.forward_train(
            Input::new(&[], shape),
            &mut state,
            &mut [],
            &mut reserve,
            &mut ws,
        )
        .unwrap();
        let mut d_state = m.zero_state(0);
        let mut grads = m.zero_grads();
        let out = Backward {
            d_state: &mut d_state,
            dx: Some(&mut []),
            grads: &mut grads,
        };
        m.backward(Input::new(&[], shape), &[], &mut reserve, out, &mut ws)
            .unwrap();
        assert!(grads.iter().all(|t| t.data().iter().all(|&g| g == 0.0)));
    }
}
