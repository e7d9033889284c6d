//! Numerical robustness: huge, infinite, NaN and denormal inputs, weights and states; the
//! smallest shapes; a 10,000-step sequence. Every cell, both float types.
//!
//! What is asserted: in f64 the layer matches the f64 reference exactly where it is not
//! finite (NaN where it has NaN, the same infinities) and to 1e-10 elsewhere; in f32 NaN
//! appears exactly where the reference has NaN, and nothing panics. NaN in one sequence never
//! leaks into another.

use crate::common;

use common::{Case, Outcome, compare, run_ours, run_reference};
use fused_rnn::check::{check_call, check_sequence};
use fused_rnn::{
    Backward, CellKind, Config, Input, Params, Recurrent, Reserve, SeqShape, State, Workspace,
};

/// The special values, as f64 (each is also representable, or flushes, in f32).
const SPECIAL: [f64; 8] = [
    1e30,
    -1e30,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    1e-40,  // an f32 denormal
    1e-310, // an f64 denormal
    0.0,
];

fn configs() -> Vec<Config> {
    CellKind::ALL
        .iter()
        .map(|&cell| {
            Config::lstm(3, 5)
                .with_cell(cell)
                .with_layers(2)
                .with_bidirectional(true)
        })
        .collect()
}

/// Where a special value goes.
#[derive(Clone, Copy, Debug)]
enum Site {
    /// One input element (step 1, sequence 0).
    Input,
    /// Every input element.
    AllInputs,
    /// One recurrent weight of layer 0.
    RecurrentWeight,
    /// Every input weight of layer 0.
    InputWeights,
    /// One initial-state element.
    InitialState,
}

fn with_special(config: &Config, site: Site, v: f64) -> Case {
    let mut case = Case::random(config.clone(), SeqShape::new(4, 3), 11, false, false);
    let batch = case.shape.batch;
    let set = |params: &mut Params<f64>, name: &str, all: bool| {
        let t = params.get_mut(name).expect("tensor");
        let data = t.data_mut();
        let n = if all { data.len() } else { 1 };
        data[..n].fill(v);
    };
    match site {
        Site::Input => case.x[batch * config.input_size] = v,
        Site::AllInputs => case.x.fill(v),
        Site::RecurrentWeight => set(&mut case.params, "weight_hh_l0", false),
        Site::InputWeights => set(&mut case.params, "weight_ih_l0", true),
        Site::InitialState => case.h0[0] = v,
    }
    case
}

/// Every value of an outcome: outputs, states, input and state gradients, parameter gradients.
fn values(o: &Outcome) -> impl Iterator<Item = f64> + '_ {
    [&o.y, &o.h_n, &o.c_n, &o.dx, &o.dh0, &o.dc0]
        .into_iter()
        .chain(o.grads.iter().map(|(_, g)| g))
        .flatten()
        .copied()
}

fn nan_pattern(o: &Outcome) -> Vec<bool> {
    values(o).map(f64::is_nan).collect()
}

fn largest_finite(o: &Outcome) -> f64 {
    values(o)
        .filter(|v| v.is_finite())
        .fold(0.0, |m, v| m.max(v.abs()))
}

#[test]
fn special_values_match_the_reference_in_f64_and_keep_nan_in_f32() {
    let sites = [
        Site::Input,
        Site::AllInputs,
        Site::RecurrentWeight,
        Site::InputWeights,
        Site::InitialState,
    ];
    for config in configs() {
        for site in sites {
            for v in SPECIAL {
                let case = with_special(&config, site, v);
                let want = run_reference(&case);
                let what = format!("{:?} {site:?} = {v:e}", config.cell);
                if let Err(e) = compare(&run_ours::<f64>(&case), &want, (1e-12, 1e-10)) {
                    panic!("f64 {what}: {e}");
                }
                // f32 rounds differently, but NaN is NaN: a value the reference makes NaN
                // is NaN here, and no NaN appears that the reference does not have; where
                // the reference's values leave f32's range (a relu cell fed 1e30 weights
                // compounds them), f32 overflows to inf and then NaN, so only no panic.
                let got = run_ours::<f32>(&case);
                let in_f32_range = largest_finite(&want) <= 1e36;
                if (v.abs() <= 1e30 || v.is_nan()) && in_f32_range {
                    assert_eq!(
                        nan_pattern(&got),
                        nan_pattern(&want),
                        "f32 {what}: NaN where the reference has none, or the reverse"
                    );
                }
            }
        }
    }
}

#[test]
fn nan_in_one_sequence_stays_in_that_sequence_from_its_step_on() {
    for config in configs() {
        let config = config.with_bidirectional(false);
        let (t, b, i) = (6, 5, config.input_size);
        let module = Recurrent::<f32>::with_seed(config.clone(), 3).unwrap();
        let mut x: Vec<f32> = (0..t * b * i).map(|k| (k as f32 * 0.37).sin()).collect();
        let (nan_step, nan_seq) = (2, 3);
        x[(nan_step * b + nan_seq) * i + 1] = f32::NAN;
        let shape = SeqShape::new(t, b);
        let hout = config.output_size();
        let mut y = vec![0.0f32; t * b * hout];
        let mut state = module.zero_state(b);
        module
            .forward(
                Input::new(&x, shape),
                &mut state,
                &mut y,
                &mut Workspace::new(),
            )
            .unwrap();
        for step in 0..t {
            for seq in 0..b {
                let row = &y[(step * b + seq) * hout..][..hout];
                let poisoned = seq == nan_seq && step >= nan_step;
                assert_eq!(
                    row.iter().all(|v| v.is_nan()),
                    poisoned,
                    "{:?}: step {step} sequence {seq}: {row:?}",
                    config.cell
                );
                assert!(poisoned || row.iter().all(|v| v.is_finite()));
            }
        }
        // The check finds where it appeared.
        let err = check_sequence("y", &y, shape, hout, config.layout).unwrap_err();
        assert_eq!((err.step, err.index[1]), (Some(nan_step), nan_seq));
        let err = check_call(&module, &Input::new(&x, shape), &module.zero_state(b)).unwrap_err();
        assert_eq!(err.tensor, "x");
        assert_eq!(err.index, vec![nan_step, nan_seq, 1]);
    }
}

#[test]
fn the_check_names_a_non_finite_parameter() {
    let mut module = Recurrent::<f64>::with_seed(Config::gru(2, 3), 1).unwrap();
    let mut params = module.params().clone();
    params.get_mut("bias_hh_l0").unwrap().data_mut()[4] = f64::INFINITY;
    module = Recurrent::new(module.config().clone(), params).unwrap();
    let x = vec![0.0; 2];
    let err = check_call(
        &module,
        &Input::new(&x, SeqShape::new(1, 1)),
        &module.zero_state(1),
    );
    assert_eq!(err.unwrap_err().to_string(), "bias_hh_l0[4] = inf");
}

#[test]
fn smallest_shapes_match_the_reference() {
    for config in CellKind::ALL.map(|cell| Config::lstm(1, 1).with_cell(cell)) {
        for (t, b) in [(0, 1), (1, 1), (3, 1), (0, 3)] {
            let case = Case::random(config.clone(), SeqShape::new(t, b), 5, false, false);
            let want = run_reference(&case);
            compare(&run_ours::<f64>(&case), &want, (1e-12, 1e-10)).unwrap();
            compare(&run_ours::<f32>(&case), &want, (2e-5, 1e-4)).unwrap();
            if t == 0 {
                // No steps: the final state is the initial one, its gradient passes through.
                assert_eq!(want.h_n, case.h0);
                assert_eq!(want.dh0, case.dh_n);
            }
        }
    }
}

#[test]
fn ten_thousand_steps_stay_bounded_with_finite_gradients() {
    let (t, b) = (10_000, 2);
    for config in CellKind::ALL.map(|cell| Config::lstm(4, 8).with_cell(cell)) {
        let module = Recurrent::<f32>::with_seed(config.clone(), 9).unwrap();
        let x: Vec<f32> = (0..t * b * 4).map(|k| (k as f32 * 0.618).sin()).collect();
        let shape = SeqShape::new(t, b);
        let input = Input::new(&x, shape);
        let mut y = vec![0.0f32; t * b * 8];
        let mut state = module.zero_state(b);
        let (mut reserve, mut ws) = (Reserve::new(), Workspace::new());
        module
            .forward_train(input, &mut state, &mut y, &mut reserve, &mut ws)
            .unwrap();
        let cell = config.cell;
        // h is a tanh, a convex mix of tanhs, or a relu of bounded inputs: all finite, and
        // within [-1, 1] for the squashing cells.
        assert!(
            y.iter().all(|v| v.is_finite()),
            "{cell:?}: non-finite output"
        );
        if !matches!(cell, CellKind::Rnn(fused_rnn::Nonlinearity::Relu)) {
            assert!(y.iter().all(|v| v.abs() <= 1.0), "{cell:?}: |h| > 1");
        }
        // The LSTM cell state can grow at most by 1 per step.
        assert!(state.c.iter().all(|v| v.is_finite() && v.abs() <= t as f32));
        let dy = vec![1e-3f32; y.len()];
        let (mut grads, mut d_state) = (module.zero_grads(), module.zero_state(b));
        let out = Backward {
            d_state: &mut d_state,
            dx: None,
            grads: &mut grads,
        };
        module
            .backward(input, &dy, &mut reserve, out, &mut ws)
            .unwrap();
        if !matches!(cell, CellKind::Rnn(fused_rnn::Nonlinearity::Relu)) {
            for g in grads.iter() {
                assert!(
                    g.data().iter().all(|v| v.is_finite()),
                    "{cell:?}: {} has a non-finite gradient after 10,000 steps",
                    g.name()
                );
            }
            assert!(d_state.h.iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn saturated_gates_give_limits_not_nan() {
    // Pre-activations of +-1e30 (f32 holds them): every sigmoid is 0 or 1, every tanh +-1.
    for config in CellKind::ALL.map(|cell| Config::lstm(2, 3).with_cell(cell)) {
        for sign in [1.0f32, -1.0] {
            let module = Recurrent::<f32>::with_seed(config.clone(), 2).unwrap();
            let x = vec![sign * 1e30; 2 * 2];
            let mut y = vec![0.0f32; 2 * 3];
            let mut state = State {
                h: vec![0.5; 3],
                c: module.zero_state(1).c,
            };
            let input = Input::new(&x, SeqShape::new(2, 1));
            module
                .forward(input, &mut state, &mut y, &mut Workspace::new())
                .unwrap();
            assert!(
                y.iter().all(|v| v.is_finite()),
                "{:?} x = {sign}e30: {y:?}",
                config.cell
            );
        }
    }
}
