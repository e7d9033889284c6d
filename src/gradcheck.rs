//! Finite-difference gradient checking in f64.
//!
//! [`gradcheck`] compares analytic gradients with a fourth-order central difference
//!
//! ```text
//! dL/dv ≈ (-L(v+2h) + 8 L(v+h) - 8 L(v-h) + L(v-2h)) / (12 h)
//! ```
//!
//! whose truncation error is O(h^4), so with the default `h = 1e-4` the difference is good
//! to about 1e-11 relative in f64, well below the 1e-6 the tests ask for. The error of an
//! element is `|analytic - numeric| / max(|analytic|, |numeric|, floor)`; the report gives the
//! worst one and where it is.
//!
//! A finite difference means nothing where the loss has a kink inside the stencil (relu at 0,
//! for one). Such points are detected, not guessed: for a smooth loss the central
//! differences over `h` and over `2h` agree to O(h^2); where they disagree by more than
//! `GradCheck::kink_tolerance` the element is counted in `GradReport::nonsmooth` and left out
//! of the error.
//!
//! [`check_recurrent`] runs it on a whole [`Recurrent`] module: the loss is
//! `sum(y * R) + sum(h_n * R_h) + sum(c_n * R_c)` with seeded random `R`, and every
//! parameter, input and initial-state element is checked (or a seeded sample of each).
//!
//! # Checking your own composition
//!
//! Put every tensor you want checked in a [`Variable`] with its analytic gradient (from your
//! backward pass), and give [`gradcheck`] a closure that computes the loss from the variables'
//! current values: it perturbs one element at a time and calls the closure.
//!
//! ```
//! use fused_rnn::gradcheck::{GradCheck, Variable, gradcheck};
//!
//! // L(a, b) = sum(a_i * b_i^2): dL/da = b^2, dL/db = 2 a b.
//! let (a, b) = (vec![0.3, -1.2], vec![0.7, 0.4]);
//! let mut vars = vec![
//!     Variable::new("a", a.clone(), b.iter().map(|b| b * b).collect()),
//!     Variable::new("b", b.clone(), a.iter().zip(&b).map(|(a, b)| 2.0 * a * b).collect()),
//! ];
//! let report = gradcheck(&mut vars, |v| {
//!     v[0].value.iter().zip(&v[1].value).map(|(a, b)| a * b * b).sum()
//! }, &GradCheck::default());
//! assert!(report.max_rel_error < 1e-8, "{report}");
//! ```

use std::fmt;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

use crate::buffers::{Reserve, Workspace};
use crate::error::Error;
use crate::input::{Input, Tokens};
use crate::recurrent::{Backward, Recurrent};
use crate::state::State;

/// A tensor to check: its values (perturbed in place during the check) and the analytic
/// gradient of the loss with respect to them.
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    /// A name for the report.
    pub name: String,
    /// The point at which gradients are checked.
    pub value: Vec<f64>,
    /// dL/dvalue, as your backward computed it.
    pub grad: Vec<f64>,
}

impl Variable {
    /// A variable; `grad` must be as long as `value`.
    pub fn new(name: impl Into<String>, value: Vec<f64>, grad: Vec<f64>) -> Self {
        Variable {
            name: name.into(),
            value,
            grad,
        }
    }
}

/// Options of a check.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheck {
    /// The finite-difference step h.
    pub step: f64,
    /// Gradients below this magnitude are compared against it instead (an absolute error of
    /// `floor * tolerance`), so round-off on tiny gradients does not count as error.
    pub floor: f64,
    /// Check at most this many elements per variable, chosen at random from `seed`; `None`
    /// checks all.
    pub max_per_variable: Option<usize>,
    /// Seeds the sample and, in [`check_recurrent`], the loss weights.
    pub seed: u64,
    /// How far (relative) the `h` and `2h` central differences may disagree before the point
    /// counts as a kink (see the module docs).
    pub kink_tolerance: f64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            step: 1e-4,
            floor: 1e-5,
            max_per_variable: None,
            seed: 0,
            kink_tolerance: 1e-4,
        }
    }
}

/// The worst element found.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The variable.
    pub name: String,
    /// The element's index in it.
    pub index: usize,
    /// The gradient given.
    pub analytic: f64,
    /// The finite-difference estimate.
    pub numeric: f64,
    /// Their relative error.
    pub rel_error: f64,
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradReport {
    /// Elements checked.
    pub checked: usize,
    /// The largest relative error (0 if nothing was checked).
    pub max_rel_error: f64,
    /// Where it occurred.
    pub worst: Option<Mismatch>,
    /// Elements left out because the loss is not smooth within the stencil there.
    pub nonsmooth: usize,
}

impl fmt::Display for GradReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} elements checked, max relative error {:.3e}",
            self.checked, self.max_rel_error
        )?;
        if let Some(w) = &self.worst {
            write!(
                f,
                " at {}[{}] (analytic {:e}, numeric {:e})",
                w.name, w.index, w.analytic, w.numeric
            )?;
        }
        Ok(())
    }
}

/// Checks every variable's gradient (or a sample) against finite differences of `loss`; see
/// the module docs.
///
/// # Panics
/// If a variable's `grad` and `value` differ in length.
pub fn gradcheck(
    vars: &mut [Variable],
    mut loss: impl FnMut(&[Variable]) -> f64,
    opts: &GradCheck,
) -> GradReport {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut report = GradReport::default();
    let h = opts.step;
    for vi in 0..vars.len() {
        assert_eq!(
            vars[vi].value.len(),
            vars[vi].grad.len(),
            "{}: value and grad lengths differ",
            vars[vi].name
        );
        let n = vars[vi].value.len();
        let indices: Vec<usize> = match opts.max_per_variable {
            Some(k) if k < n => sample(&mut rng, n, k).into_vec(),
            _ => (0..n).collect(),
        };
        for j in indices {
            let x0 = vars[vi].value[j];
            let mut at = |delta: f64, vars: &mut [Variable]| {
                vars[vi].value[j] = x0 + delta;
                loss(vars)
            };
            let (f2, f1) = (at(2.0 * h, vars), at(h, vars));
            let (m1, m2) = (at(-h, vars), at(-2.0 * h, vars));
            vars[vi].value[j] = x0;
            let numeric = (-f2 + 8.0 * f1 - 8.0 * m1 + m2) / (12.0 * h);
            let (near, far) = ((f1 - m1) / (2.0 * h), (f2 - m2) / (4.0 * h));
            let spread = near.abs().max(far.abs()).max(opts.floor);
            if (near - far).abs() > opts.kink_tolerance * spread {
                report.nonsmooth += 1;
                continue;
            }
            let analytic = vars[vi].grad[j];
            let scale = analytic.abs().max(numeric.abs()).max(opts.floor);
            let rel = if analytic.is_finite() && numeric.is_finite() {
                (analytic - numeric).abs() / scale
            } else {
                f64::INFINITY
            };
            report.checked += 1;
            if rel > report.max_rel_error || report.worst.is_none() {
                report.max_rel_error = report.max_rel_error.max(rel);
                report.worst = Some(Mismatch {
                    name: vars[vi].name.clone(),
                    index: j,
                    analytic,
                    numeric,
                    rel_error: rel,
                });
            }
        }
    }
    report
}

/// Checks a whole module's gradients at `input` and `initial` (see the module docs): every
/// parameter tensor by its PyTorch name, `x` (or `table` for [`Input::tokens`]), `h0` and
/// `c0`.
///
/// # Errors
/// If the input or state does not fit the module.
pub fn check_recurrent(
    module: &Recurrent<f64>,
    input: Input<'_, f64>,
    initial: &State<f64>,
    opts: &GradCheck,
) -> Result<GradReport, Error> {
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x5EED);
    let out_len = input.shape.steps * input.shape.batch * module.config().output_size();
    let mut weights =
        |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let (r_y, r_h, r_c) = (
        weights(out_len),
        weights(initial.h.len()),
        weights(initial.c.len()),
    );
    let dot = |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| x * y).sum() };

    // Analytic gradients. The loss below replays the same dropout masks (same seed).
    let dropout_seed = opts.seed;
    let (mut ws, mut reserve) = (
        Workspace::new(),
        Reserve::new().with_dropout_seed(dropout_seed),
    );
    let mut state = initial.clone();
    let mut y = vec![0.0; out_len];
    module.forward_train(input, &mut state, &mut y, &mut reserve, &mut ws)?;
    let mut d_state = State {
        h: r_h.clone(),
        c: r_c.clone(),
    };
    let mut grads = module.zero_grads();
    // x, or the table of a token input.
    let (x_name, x_value) = match input.tokens {
        Some(tokens) => ("table", tokens.table),
        None => ("x", input.x),
    };
    let mut dx = vec![0.0; x_value.len()];
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    module.backward(input, &r_y, &mut reserve, out, &mut ws)?;

    let mut vars: Vec<Variable> = module
        .params()
        .iter()
        .zip(grads.iter())
        .map(|(p, g)| Variable::new(p.name(), p.data().to_vec(), g.data().to_vec()))
        .collect();
    let n_params = vars.len();
    vars.push(Variable::new(x_name, x_value.to_vec(), dx));
    vars.push(Variable::new("h0", initial.h.clone(), d_state.h));
    if !initial.c.is_empty() {
        vars.push(Variable::new("c0", initial.c.clone(), d_state.c));
    }

    let mut probe = module.clone();
    let report = gradcheck(
        &mut vars,
        |v| {
            for (t, var) in probe.tensors_mut().zip(&v[..n_params]) {
                t.data_mut().copy_from_slice(&var.value);
            }
            let x = &v[n_params].value;
            let mut state = State {
                h: v[n_params + 1].value.clone(),
                c: v.get(n_params + 2)
                    .map(|c| c.value.clone())
                    .unwrap_or_default(),
            };
            let mut y = vec![0.0; out_len];
            let at = match input.tokens {
                Some(tokens) => Input {
                    tokens: Some(Tokens { table: x, ..tokens }),
                    ..input
                },
                None => Input { x, ..input },
            };
            reserve.dropout_seed = dropout_seed;
            probe
                .forward_train(at, &mut state, &mut y, &mut reserve, &mut ws)
                .expect("checked above");
            dot(&y, &r_y) + dot(&state.h, &r_h) + dot(&state.c, &r_c)
        },
        opts,
    );
    Ok(report)
}
