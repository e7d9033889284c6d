//! Truncated BPTT ([`Tbptt`]) against the f64 reference run span by span: TBPTT(k, k) is
//! disjoint windows from the carried, detached state; TBPTT(k1, k2) backpropagates the new
//! steps' loss through up to `k2 - k1` older steps as well.

use crate::common;

use common::{Case, run_reference};
use fused_rnn::{CellKind, Config, Error, Recurrent, SeqShape, Tbptt, Truncation};
use fused_rnn_kernels::testing::{SplitMix, check_close};
use proptest::prelude::*;

/// What the reference says one update of a span `[start, end)` with `new` loss-carrying steps
/// gives: gradients per tensor, dx of the new steps, and the final state.
struct SpanResult {
    grads: Vec<Vec<f64>>,
    dx_new: Vec<f64>,
    state: (Vec<f64>, Vec<f64>),
}

/// The reference over `[start, end)` of `x` from `at_start`, with dL/dy = `w` on the last
/// `new` steps and zero before.
fn reference_span(
    base: &Case,
    x: &[f64],
    w: &[f64],
    at_start: (Vec<f64>, Vec<f64>),
    (start, end, new): (usize, usize, usize),
) -> SpanResult {
    let (b, i, o) = (
        base.shape.batch,
        base.config.input_size,
        base.config.output_size(),
    );
    let steps = end - start;
    let mut dy = vec![0.0; steps * b * o];
    dy[(steps - new) * b * o..].copy_from_slice(&w[(end - new) * b * o..end * b * o]);
    let span = Case {
        shape: SeqShape::new(steps, b),
        x: x[start * b * i..end * b * i].to_vec(),
        h0: at_start.0,
        c0: at_start.1,
        dy,
        dh_n: vec![0.0; base.h0.len()],
        dc_n: vec![0.0; base.c0.len()],
        ..base.clone()
    };
    let out = run_reference(&span);
    SpanResult {
        grads: out.grads.into_iter().map(|(_, g)| g).collect(),
        dx_new: out.dx[(steps - new) * b * i..].to_vec(),
        state: (out.h_n, out.c_n),
    }
}

/// The reference state after the first `steps` steps of `x`, from zero.
fn state_after(base: &Case, x: &[f64], steps: usize) -> (Vec<f64>, Vec<f64>) {
    let zeros = (vec![0.0; base.h0.len()], vec![0.0; base.c0.len()]);
    if steps == 0 {
        return zeros;
    }
    let run = Case {
        shape: SeqShape::new(steps, base.shape.batch),
        x: x.to_vec(),
        h0: zeros.0,
        c0: zeros.1,
        dy: vec![0.0; steps * base.shape.batch * base.config.output_size()],
        ..base.clone()
    };
    let out = run_reference(&run);
    (out.h_n, out.c_n)
}

/// Runs `total` steps through `Tbptt` in windows of `k1` and checks every update, the dx of
/// its new steps and the carried state against the reference.
///
/// TBPTT(k, k) chains the windows: each starts from the state the previous one ended with
/// (for a reverse direction that is its state at the previous window's first step, as a
/// PyTorch loop passing `(h, c)` along does). TBPTT(k1, k2) is unidirectional, so the state
/// at a span's start is the prefix's final state.
fn check_tbptt(
    config: Config,
    batch: usize,
    total: usize,
    k1: usize,
    k2: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let base = Case::random(
        config.clone(),
        SeqShape::new(total, batch),
        seed,
        false,
        false,
    );
    let (i, o) = (config.input_size, config.output_size());
    let w = SplitMix::new(seed ^ 0xABCD).vec(total * batch * o, 1.0);
    let module = Recurrent::new(config, base.params.clone()).unwrap();
    let mut tbptt = Tbptt::new(&module, batch, Truncation::new(k1, k2).unwrap()).unwrap();
    let mut want = vec![Vec::new(); module.params().iter().count()];
    let mut grads = module.zero_grads();
    let mut end = 0usize;
    let mut chained = state_after(&base, &[], 0);
    for window in base.x.chunks(k1 * batch * i) {
        let new = window.len() / (batch * i);
        let start = end.saturating_sub(k2 - k1);
        end += new;
        let loss = tbptt
            .step(&module, window, &mut grads, |y, dy| {
                dy.copy_from_slice(&w[(end - new) * batch * o..end * batch * o]);
                y.iter().zip(dy.iter()).map(|(a, b)| a * b).sum::<f64>()
            })
            .unwrap();
        prop_assert!(loss.is_finite());
        // The span `Tbptt` used: up to `k2 - k1` older steps before the new ones.
        let at_start = if k1 == k2 {
            chained.clone()
        } else {
            state_after(&base, &base.x[..start * batch * i], start)
        };
        let span = reference_span(&base, &base.x, &w, at_start, (start, end, new));
        for (acc, g) in want.iter_mut().zip(&span.grads) {
            if acc.is_empty() {
                *acc = vec![0.0; g.len()];
            }
            acc.iter_mut().zip(g).for_each(|(a, b)| *a += b);
        }
        check_close("dx", tbptt.dx(), &span.dx_new, (1e-10, 1e-9))?;
        // The carried state is where the span that follows starts.
        let carried = if k1 == k2 {
            span.state.clone()
        } else {
            let next_start = end.saturating_sub(k2 - k1);
            state_after(&base, &base.x[..next_start * batch * i], next_start)
        };
        chained = span.state;
        check_close("state.h", &tbptt.state().h, &carried.0, (1e-12, 1e-10))?;
        check_close("state.c", &tbptt.state().c, &carried.1, (1e-12, 1e-10))?;
    }
    for (t, acc) in grads.iter().zip(&want) {
        check_close(t.name(), t.data(), acc, (1e-10, 1e-9))?;
    }
    Ok(())
}

fn cell() -> impl Strategy<Value = CellKind> {
    prop::sample::select(CellKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(fused_rnn_kernels::testing::cases(12))]

    #[test]
    fn disjoint_windows_match_the_reference(
        cell in cell(), layers in 1usize..3, bidir in any::<bool>(),
        batch in 1usize..5, (total, k) in (1usize..14).prop_flat_map(|t| (Just(t), 1..=t)), seed in any::<u64>(),
    ) {
        let config = Config::lstm(3, 5).with_cell(cell).with_layers(layers).with_bidirectional(bidir);
        check_tbptt(config, batch, total, k, k, seed)?;
    }

    #[test]
    fn k1_k2_spans_match_the_reference(
        cell in cell(), layers in 1usize..3, proj in any::<bool>(),
        batch in 1usize..4, total in 1usize..16, k1 in 1usize..5, extra in 1usize..6, seed in any::<u64>(),
    ) {
        let proj = if proj && cell == CellKind::Lstm { 2 } else { 0 };
        let config = Config::lstm(2, 4).with_cell(cell).with_layers(layers).with_proj_size(proj);
        check_tbptt(config, batch, total, k1, k1 + extra, seed)?;
    }
}

#[test]
fn bad_windows_are_errors_and_change_nothing() {
    let m = Recurrent::<f32>::with_seed(Config::gru(2, 3), 0).unwrap();
    assert!(matches!(Truncation::new(0, 3), Err(Error::ZeroDim { .. })));
    assert!(matches!(
        Truncation::new(4, 3),
        Err(Error::InvalidArgument { .. })
    ));
    let bidir = Recurrent::<f32>::with_seed(Config::gru(2, 3).with_bidirectional(true), 0).unwrap();
    assert!(Tbptt::new(&bidir, 2, Truncation::new(2, 4).unwrap()).is_err());
    let mut t = Tbptt::new(&m, 2, Truncation::windows(3)).unwrap();
    let mut grads = m.zero_grads();
    let never = |_: &[f32], _: &mut [f32]| panic!("loss must not run on bad input");
    // Not a whole number of steps, too many steps, no steps.
    assert!(matches!(
        t.step(&m, &[0.0; 5], &mut grads, never),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(t.step(&m, &[0.0; 16], &mut grads, never).is_err());
    assert!(t.step(&m, &[], &mut grads, never).is_err());
    // Another module's shape.
    let other = Recurrent::<f32>::with_seed(Config::lstm(2, 3), 0).unwrap();
    assert!(t.step(&other, &[0.0; 4], &mut grads, never).is_err());
    assert!(grads.iter().all(|g| g.data().iter().all(|&v| v == 0.0)));
    assert!(t.state().h.iter().all(|&v| v == 0.0));
}
