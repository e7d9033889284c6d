//! Finite-difference gradient checks in f64 (relative error <= 1e-6), on every cell, through
//! the crate's own layers (the fast path, run in f64) and through the naive reference.

use crate::common;

use fused_rnn::gradcheck::{GradCheck, Variable, check_recurrent, gradcheck};
use fused_rnn::{CellKind, Config, Input, Nonlinearity, Recurrent, SeqShape, State};
use fused_rnn_kernels::reference::seq::{
    SeqOptions, SeqParams, SeqSpec, seq_backward, seq_forward,
};
use fused_rnn_kernels::testing::SplitMix;

const TOLERANCE: f64 = 1e-6;

/// Checks one module configuration at a random point drawn from `seed`.
fn check(config: Config, shape: SeqShape, seed: u64, lengths: bool, resets: bool) {
    check_with(
        config,
        shape,
        lengths,
        resets,
        GradCheck {
            seed,
            ..GradCheck::default()
        },
    );
}

fn check_with(config: Config, shape: SeqShape, lengths: bool, resets: bool, opts: GradCheck) {
    let seed = opts.seed;
    let case = common::Case::random(config.clone(), shape, seed, lengths, resets);
    let module = Recurrent::new(config.clone(), case.params.clone()).expect("valid");
    let mut input = Input::new(&case.x, shape);
    if let Some(l) = &case.lengths {
        input = input.with_lengths(l);
    }
    if let Some(r) = &case.resets {
        input = input.with_resets(r);
    }
    let state = State {
        h: case.h0.clone(),
        c: case.c0.clone(),
    };
    let report = check_recurrent(&module, input, &state, &opts).expect("runs");
    let n_params = case.params.num_elements();
    assert!(
        report.checked + report.nonsmooth >= n_params + case.x.len(),
        "{report}"
    );
    // Only relu has kinks; a smooth cell must never be reported non-smooth.
    let relu = matches!(config.cell, CellKind::Rnn(Nonlinearity::Relu));
    // One pre-activation near 0 flags every weight and input that feeds it.
    let kinks_allowed = if relu { report.checked / 10 } else { 0 };
    assert!(report.nonsmooth <= kinks_allowed, "{report}");
    assert!(
        report.max_rel_error <= TOLERANCE,
        "{} {config:?}: {report}",
        config.cell.name()
    );
}

#[test]
fn every_cell_single_layer() {
    for (i, cell) in CellKind::ALL.into_iter().enumerate() {
        check(
            Config::lstm(5, 7).with_cell(cell),
            SeqShape::new(6, 3),
            100 + i as u64,
            false,
            false,
        );
    }
}

#[test]
fn every_cell_without_bias() {
    for (i, cell) in CellKind::ALL.into_iter().enumerate() {
        check(
            Config::lstm(3, 4).with_cell(cell).with_bias(false),
            SeqShape::new(4, 2),
            200 + i as u64,
            false,
            false,
        );
    }
}

#[test]
fn every_cell_stacked_bidirectional() {
    for (i, cell) in CellKind::ALL.into_iter().enumerate() {
        let config = Config::lstm(3, 4)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(true);
        check(config, SeqShape::new(4, 2), 300 + i as u64, false, false);
    }
}

#[test]
fn every_cell_with_lengths_and_resets() {
    for (i, cell) in CellKind::ALL.into_iter().enumerate() {
        let config = Config::lstm(3, 4).with_cell(cell).with_bidirectional(true);
        check(config, SeqShape::new(5, 3), 400 + i as u64, true, true);
    }
}

#[test]
fn projected_lstm() {
    let config = Config::lstm(4, 6)
        .with_proj_size(3)
        .with_layers(2)
        .with_bidirectional(true);
    check(config, SeqShape::new(4, 2), 500, true, false);
}

#[test]
fn batch_major_with_dropout() {
    // Dropout masks are replayed by seed, so the loss stays a smooth function.
    let config = Config::gru(3, 5)
        .with_layers(3)
        .with_dropout(0.4)
        .with_layout(fused_rnn::SeqLayout::BatchMajor);
    check(config, SeqShape::new(4, 2), 600, false, false);
}

#[test]
fn report_finds_a_wrong_gradient() {
    let mut vars = vec![Variable::new("w", vec![0.5, 2.0], vec![1.0, 3.9])];
    // L = w0 + w1^2: dL/dw1 = 4, not 3.9.
    let report = gradcheck(
        &mut vars,
        |v| v[0].value[0] + v[0].value[1].powi(2),
        &GradCheck::default(),
    );
    let worst = report.worst.clone().expect("checked");
    assert_eq!((worst.name.as_str(), worst.index), ("w", 1));
    assert!((report.max_rel_error - 0.025).abs() < 1e-9, "{report}");
}

/// The reference backward (`fused_rnn_kernels::reference::seq`) against finite differences of
/// the reference forward: the two references check each other, independently of the layers.
#[test]
fn reference_backward_matches_finite_differences() {
    for (i, cell) in CellKind::ALL.into_iter().enumerate() {
        for reverse in [false, true] {
            let proj = if cell == CellKind::Lstm { 2 } else { 0 };
            let spec = SeqSpec {
                cell,
                input_size: 3,
                hidden_size: 4,
                proj_size: proj,
                steps: 5,
                batch: 2,
            };
            let (g, h, ho) = (cell.gates(), 4, spec.out_size());
            let mut rng = SplitMix::new(700 + i as u64);
            let params = SeqParams {
                w_ih: rng.vec(g * h * 3, 0.6),
                w_hh: rng.vec(g * h * ho, 0.6),
                b_ih: Some(rng.vec(g * h, 0.6)),
                b_hh: Some(rng.vec(g * h, 0.6)),
                w_hr: (proj > 0).then(|| rng.vec(proj * h, 0.6)),
            };
            let x = rng.vec(5 * 2 * 3, 1.0);
            let h0 = rng.vec(2 * ho, 0.5);
            let c0 = if cell.has_cell_state() {
                rng.vec(2 * h, 0.5)
            } else {
                vec![]
            };
            let (r_y, r_h, r_c) = (
                rng.vec(5 * 2 * ho, 1.0),
                rng.vec(2 * ho, 1.0),
                rng.vec(c0.len(), 1.0),
            );
            let lengths = [5, 3];
            let resets: Vec<bool> = (0..10).map(|k| k == 4).collect();
            let opts = SeqOptions {
                lengths: Some(&lengths),
                resets: Some(&resets),
                reverse,
            };
            let fwd = seq_forward(&spec, &params, &x, &h0, &c0, opts);
            let gr = seq_backward(&spec, &params, &x, &fwd, &r_y, &r_h, &r_c, opts);
            let mut vars = vec![
                Variable::new("w_ih", params.w_ih.clone(), gr.w_ih.clone()),
                Variable::new("w_hh", params.w_hh.clone(), gr.w_hh.clone()),
                Variable::new(
                    "b_ih",
                    params.b_ih.clone().unwrap(),
                    gr.b_ih.clone().unwrap(),
                ),
                Variable::new(
                    "b_hh",
                    params.b_hh.clone().unwrap(),
                    gr.b_hh.clone().unwrap(),
                ),
                Variable::new("x", x.clone(), gr.dx.clone()),
                Variable::new("h0", h0.clone(), gr.dh0.clone()),
                Variable::new("c0", c0.clone(), gr.dc0.clone()),
            ];
            if let (Some(w), Some(gw)) = (&params.w_hr, &gr.w_hr) {
                vars.push(Variable::new("w_hr", w.clone(), gw.clone()));
            }
            let dot = |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
            let report = gradcheck(
                &mut vars,
                |v| {
                    let p = SeqParams {
                        w_ih: v[0].value.clone(),
                        w_hh: v[1].value.clone(),
                        b_ih: Some(v[2].value.clone()),
                        b_hh: Some(v[3].value.clone()),
                        w_hr: v.get(7).map(|w| w.value.clone()),
                    };
                    let f = seq_forward(&spec, &p, &v[4].value, &v[5].value, &v[6].value, opts);
                    dot(&f.y, &r_y) + dot(&f.h_n, &r_h) + dot(&f.c_n, &r_c)
                },
                &GradCheck::default(),
            );
            assert!(
                report.max_rel_error <= TOLERANCE,
                "{} reverse={reverse}: {report}",
                cell.name()
            );
        }
    }
}

/// relu is not differentiable at 0: where a pre-activation's zero falls inside the stencil
/// the checker reports a kink and leaves the element out (`check_with` allows up to 10%).
#[test]
fn relu_rnn_many_layers() {
    for seed in [800, 801, 802] {
        let config = Config::rnn(4, 6)
            .with_nonlinearity(Nonlinearity::Relu)
            .with_layers(3);
        check(config, SeqShape::new(5, 2), seed, false, false);
    }
}

#[test]
fn kinks_are_detected_not_counted_as_errors() {
    // L = |w0| + |w1| at w0 = 1e-5: the stencil (+-2e-4) straddles the kink at 0.
    let mut vars = vec![Variable::new("w", vec![1e-5, 0.5], vec![1.0, 1.0])];
    let report = gradcheck(
        &mut vars,
        |v| v[0].value.iter().map(|w| w.abs()).sum(),
        &GradCheck::default(),
    );
    assert_eq!((report.nonsmooth, report.checked), (1, 1), "{report}");
    assert!(report.max_rel_error < 1e-9, "{report}");
}
