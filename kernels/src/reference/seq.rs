//! Whole-sequence reference for one layer and one direction: textbook loops over t, b and j
//! in f64 with plain `Vec`s, straight from PyTorch's equations.
//!
//! It covers every option the fast layers have, so every fast path has a twin here: all
//! cells, optional biases, LSTM projection (`h = W_hr (o * tanh(c))`), the reverse direction,
//! per-sequence lengths (steps past a sequence's end leave its state alone and output 0), and
//! reset marks (no state flows across a marked boundary). Tensors are time-major: `x[t][b][i]`.

use crate::cell::{CellKind, Nonlinearity};
use crate::reference::math::{relu, sigmoid};

/// The shape of one layer and direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqSpec {
    /// The cell.
    pub cell: CellKind,
    /// Features per input step (I).
    pub input_size: usize,
    /// Hidden units (H).
    pub hidden_size: usize,
    /// LSTM projection size (P), 0 for none.
    pub proj_size: usize,
    /// Steps (T).
    pub steps: usize,
    /// Sequences (B).
    pub batch: usize,
}

impl SeqSpec {
    /// Gates per unit.
    pub fn gates(&self) -> usize {
        self.cell.gates()
    }
    /// Width of h and of the output: P if projected, else H.
    pub fn out_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }
}

/// One layer's parameters in PyTorch's layout (row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct SeqParams {
    /// `[G*H, I]`.
    pub w_ih: Vec<f64>,
    /// `[G*H, Hout]`.
    pub w_hh: Vec<f64>,
    /// `[G*H]`.
    pub b_ih: Option<Vec<f64>>,
    /// `[G*H]`.
    pub b_hh: Option<Vec<f64>>,
    /// `[P, H]`, projected LSTM only.
    pub w_hr: Option<Vec<f64>>,
}

/// Sequence options: lengths, resets and direction.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqOptions<'a> {
    /// `lengths[b] <= T`: steps `t >= lengths[b]` are padding.
    pub lengths: Option<&'a [usize]>,
    /// `resets[t * B + b]`: sequence b starts afresh at step t: the forward direction enters
    /// step t from the initial state, the reverse direction enters step t-1 from it.
    pub resets: Option<&'a [bool]>,
    /// Run from t = T-1 down to 0.
    pub reverse: bool,
}

impl SeqOptions<'_> {
    fn active(&self, t: usize, b: usize) -> bool {
        self.lengths.is_none_or(|l| t < l[b])
    }
    /// Whether the state entering step `t` of sequence `b` is the initial state by a reset.
    fn reset_before(&self, t: usize, b: usize, spec: &SeqSpec) -> bool {
        let Some(resets) = self.resets else {
            return false;
        };
        if self.reverse {
            t + 1 < spec.steps && resets[(t + 1) * spec.batch + b]
        } else {
            resets[t * spec.batch + b]
        }
    }
    fn order(&self, steps: usize) -> Vec<usize> {
        if self.reverse {
            (0..steps).rev().collect()
        } else {
            (0..steps).collect()
        }
    }
}

/// What one step of one sequence computed (the tape).
#[derive(Clone, Debug, Default)]
struct StepTape {
    h_prev: Vec<f64>,
    c_prev: Vec<f64>,
    /// Activated gates `[G*H]`.
    gates: Vec<f64>,
    c: Vec<f64>,
    /// `o * tanh(c)` before projection (LSTM).
    m: Vec<f64>,
    /// GRU reset-after: `W_hn h + b_hn`; reset-before: `r * h`.
    extra: Vec<f64>,
    /// h (the state after the step, `[Hout]`).
    h: Vec<f64>,
    /// The entry state was the initial state (first step or a reset).
    from_initial: bool,
    /// The smallest |pre-activation| of a ReLU unit in this step (infinity for other cells).
    relu_margin: f64,
}

/// The result of [`seq_forward`].
#[derive(Clone, Debug)]
pub struct SeqForward {
    /// `[T][B][Hout]` outputs (0 on padding).
    pub y: Vec<f64>,
    /// `[B][Hout]` final h.
    pub h_n: Vec<f64>,
    /// `[B][H]` final c (empty unless LSTM).
    pub c_n: Vec<f64>,
    /// `tape[t][b]`, `None` on padding.
    tape: Vec<Vec<Option<StepTape>>>,
}

impl SeqForward {
    /// The smallest |pre-activation| of a ReLU unit over all steps run (infinity for other
    /// cells). Where it is within a lower precision's rounding of 0, that precision may
    /// take the other side of the kink, and its gradient then differs by a step, not by
    /// rounding.
    pub fn relu_margin(&self) -> f64 {
        self.tape
            .iter()
            .flatten()
            .flatten()
            .map(|t| t.relu_margin)
            .fold(f64::INFINITY, f64::min)
    }
}

/// Gradients from [`seq_backward`], shaped like their tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqGrads {
    /// dL/dW_ih.
    pub w_ih: Vec<f64>,
    /// dL/dW_hh.
    pub w_hh: Vec<f64>,
    /// dL/db_ih (present when the layer has biases).
    pub b_ih: Option<Vec<f64>>,
    /// dL/db_hh.
    pub b_hh: Option<Vec<f64>>,
    /// dL/dW_hr (projected LSTM).
    pub w_hr: Option<Vec<f64>>,
    /// dL/dx `[T][B][I]`.
    pub dx: Vec<f64>,
    /// dL/dh0 `[B][Hout]`.
    pub dh0: Vec<f64>,
    /// dL/dc0 `[B][H]` (empty unless LSTM).
    pub dc0: Vec<f64>,
}

/// `sum_k w[row, k] * v[k]` for a row-major matrix with `v.len()` columns.
fn dot_row(w: &[f64], row: usize, v: &[f64]) -> f64 {
    let n = v.len();
    w[row * n..(row + 1) * n]
        .iter()
        .zip(v)
        .map(|(a, b)| a * b)
        .sum()
}

/// `W v` for a row-major `[rows, v.len()]` matrix.
fn matvec(w: &[f64], rows: usize, v: &[f64]) -> Vec<f64> {
    (0..rows).map(|r| dot_row(w, r, v)).collect()
}

/// `W^T u` for a row-major `[u.len(), cols]` matrix.
fn matvec_t(w: &[f64], cols: usize, u: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; cols];
    for (r, &ur) in u.iter().enumerate() {
        for (c, o) in out.iter_mut().enumerate() {
            *o += w[r * cols + c] * ur;
        }
    }
    out
}

/// `G += u v^T` for a row-major `[u.len(), v.len()]` matrix.
fn add_outer(g: &mut [f64], u: &[f64], v: &[f64]) {
    let n = v.len();
    for (r, &ur) in u.iter().enumerate() {
        for (c, &vc) in v.iter().enumerate() {
            g[r * n + c] += ur * vc;
        }
    }
}

fn add_into(acc: &mut [f64], v: &[f64]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

fn bias_or_zero(b: &Option<Vec<f64>>, n: usize) -> Vec<f64> {
    b.clone().unwrap_or_else(|| vec![0.0; n])
}

/// One step of one sequence: entry state and input to the tape of the step.
fn step(spec: &SeqSpec, p: &SeqParams, x: &[f64], h_prev: &[f64], c_prev: &[f64]) -> StepTape {
    let (h, g) = (spec.hidden_size, spec.gates());
    let b_ih = bias_or_zero(&p.b_ih, g * h);
    let b_hh = bias_or_zero(&p.b_hh, g * h);
    let wx: Vec<f64> = matvec(&p.w_ih, g * h, x)
        .iter()
        .zip(&b_ih)
        .map(|(a, b)| a + b)
        .collect();
    let mut t = StepTape {
        h_prev: h_prev.to_vec(),
        c_prev: c_prev.to_vec(),
        relu_margin: f64::INFINITY,
        ..Default::default()
    };
    match spec.cell {
        CellKind::Rnn(act) => {
            let wh = matvec(&p.w_hh, h, h_prev);
            t.h = (0..h)
                .map(|j| {
                    let a = wx[j] + wh[j] + b_hh[j];
                    match act {
                        Nonlinearity::Tanh => a.tanh(),
                        Nonlinearity::Relu => {
                            t.relu_margin = t.relu_margin.min(a.abs());
                            relu(a)
                        }
                    }
                })
                .collect();
            t.gates = t.h.clone();
        }
        CellKind::Lstm => {
            let wh = matvec(&p.w_hh, 4 * h, h_prev);
            let a: Vec<f64> = (0..4 * h).map(|k| wx[k] + wh[k] + b_hh[k]).collect();
            t.gates = (0..4 * h)
                .map(|k| {
                    if k / h == 2 {
                        a[k].tanh()
                    } else {
                        sigmoid(a[k])
                    }
                })
                .collect();
            let gate = |k: usize, j: usize| t.gates[k * h + j];
            t.c = (0..h)
                .map(|j| gate(1, j) * c_prev[j] + gate(0, j) * gate(2, j))
                .collect();
            t.m = (0..h).map(|j| gate(3, j) * t.c[j].tanh()).collect();
            t.h = match &p.w_hr {
                Some(w_hr) => matvec(w_hr, spec.proj_size, &t.m),
                None => t.m.clone(),
            };
        }
        CellKind::Gru { reset_after } => {
            let w_h = |k: usize, v: &[f64]| -> Vec<f64> {
                (0..h)
                    .map(|j| dot_row(&p.w_hh, k * h + j, v) + b_hh[k * h + j])
                    .collect()
            };
            let (hr, hz) = (w_h(0, h_prev), w_h(1, h_prev));
            let r: Vec<f64> = (0..h).map(|j| sigmoid(wx[j] + hr[j])).collect();
            let z: Vec<f64> = (0..h).map(|j| sigmoid(wx[h + j] + hz[j])).collect();
            let n: Vec<f64> = if reset_after {
                t.extra = w_h(2, h_prev);
                (0..h)
                    .map(|j| (wx[2 * h + j] + r[j] * t.extra[j]).tanh())
                    .collect()
            } else {
                t.extra = (0..h).map(|j| r[j] * h_prev[j]).collect();
                let hn = w_h(2, &t.extra);
                (0..h).map(|j| (wx[2 * h + j] + hn[j]).tanh()).collect()
            };
            t.h = (0..h)
                .map(|j| (1.0 - z[j]) * n[j] + z[j] * h_prev[j])
                .collect();
            t.gates = [r, z, n].concat();
        }
    }
    t
}

/// Runs one layer and direction over a batch of sequences.
///
/// `x` is `[T][B][I]`, `h0` is `[B][Hout]`, `c0` is `[B][H]` (ignored unless LSTM).
///
/// # Panics
/// If a buffer has the wrong length.
pub fn seq_forward(
    spec: &SeqSpec,
    p: &SeqParams,
    x: &[f64],
    h0: &[f64],
    c0: &[f64],
    opts: SeqOptions<'_>,
) -> SeqForward {
    let (steps, batch, inp, h, ho) = (
        spec.steps,
        spec.batch,
        spec.input_size,
        spec.hidden_size,
        spec.out_size(),
    );
    let lstm = spec.cell.has_cell_state();
    assert_eq!(x.len(), steps * batch * inp, "reference: x");
    assert_eq!(h0.len(), batch * ho, "reference: h0");
    if lstm {
        assert_eq!(c0.len(), batch * h, "reference: c0");
    }
    let mut y = vec![0.0; steps * batch * ho];
    let mut tape = vec![vec![None; batch]; steps];
    let mut h_n = h0.to_vec();
    let mut c_n = if lstm { c0.to_vec() } else { Vec::new() };
    for b in 0..batch {
        let init_h = &h0[b * ho..(b + 1) * ho];
        let init_c = if lstm {
            &c0[b * h..(b + 1) * h]
        } else {
            &[][..]
        };
        let (mut hs, mut cs) = (init_h.to_vec(), init_c.to_vec());
        let mut first = true;
        for t in opts.order(steps) {
            if !opts.active(t, b) {
                continue;
            }
            let from_initial = first || opts.reset_before(t, b, spec);
            if from_initial {
                hs = init_h.to_vec();
                cs = init_c.to_vec();
            }
            first = false;
            let xt = &x[(t * batch + b) * inp..(t * batch + b + 1) * inp];
            let mut rec = step(spec, p, xt, &hs, &cs);
            rec.from_initial = from_initial;
            hs = rec.h.clone();
            cs = rec.c.clone();
            y[(t * batch + b) * ho..(t * batch + b + 1) * ho].copy_from_slice(&rec.h);
            tape[t][b] = Some(rec);
        }
        h_n[b * ho..(b + 1) * ho].copy_from_slice(&hs);
        if lstm {
            c_n[b * h..(b + 1) * h].copy_from_slice(&cs);
        }
    }
    SeqForward { y, h_n, c_n, tape }
}

/// Backpropagates through [`seq_forward`]: `dy` is `[T][B][Hout]`, `dh_n` `[B][Hout]`, `dc_n`
/// `[B][H]` (ignored unless LSTM). Returns fresh gradients (not accumulated).
///
/// # Panics
/// If a buffer has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn seq_backward(
    spec: &SeqSpec,
    p: &SeqParams,
    x: &[f64],
    fwd: &SeqForward,
    dy: &[f64],
    dh_n: &[f64],
    dc_n: &[f64],
    opts: SeqOptions<'_>,
) -> SeqGrads {
    let (steps, batch, inp, h, ho, g) = (
        spec.steps,
        spec.batch,
        spec.input_size,
        spec.hidden_size,
        spec.out_size(),
        spec.gates(),
    );
    let lstm = spec.cell.has_cell_state();
    assert_eq!(dy.len(), steps * batch * ho, "reference: dy");
    assert_eq!(dh_n.len(), batch * ho, "reference: dh_n");
    let mut gr = SeqGrads {
        w_ih: vec![0.0; p.w_ih.len()],
        w_hh: vec![0.0; p.w_hh.len()],
        b_ih: p.b_ih.as_ref().map(|b| vec![0.0; b.len()]),
        b_hh: p.b_hh.as_ref().map(|b| vec![0.0; b.len()]),
        w_hr: p.w_hr.as_ref().map(|w| vec![0.0; w.len()]),
        dx: vec![0.0; x.len()],
        dh0: vec![0.0; batch * ho],
        dc0: if lstm {
            vec![0.0; batch * h]
        } else {
            Vec::new()
        },
    };
    for b in 0..batch {
        let mut dh = dh_n[b * ho..(b + 1) * ho].to_vec();
        let mut dc = if lstm {
            dc_n[b * h..(b + 1) * h].to_vec()
        } else {
            Vec::new()
        };
        for t in opts.order(steps).into_iter().rev() {
            let Some(rec) = &fwd.tape[t][b] else { continue };
            add_into(&mut dh, &dy[(t * batch + b) * ho..(t * batch + b + 1) * ho]);
            let xt = &x[(t * batch + b) * inp..(t * batch + b + 1) * inp];
            // Gradients of the input-side and recurrent-side pre-activations.
            let (da_x, da_h, dh_prev, dc_prev) = step_backward(spec, p, rec, &dh, &dc, &mut gr);
            add_outer(&mut gr.w_ih, &da_x, xt);
            if let Some(db) = &mut gr.b_ih {
                add_into(db, &da_x);
            }
            if let Some(db) = &mut gr.b_hh {
                add_into(db, &da_h);
            }
            let dxt = matvec_t(&p.w_ih, inp, &da_x);
            add_into(
                &mut gr.dx[(t * batch + b) * inp..(t * batch + b + 1) * inp],
                &dxt,
            );
            debug_assert_eq!(da_x.len(), g * h);
            if rec.from_initial {
                add_into(&mut gr.dh0[b * ho..(b + 1) * ho], &dh_prev);
                dh = vec![0.0; ho];
                if lstm {
                    add_into(&mut gr.dc0[b * h..(b + 1) * h], &dc_prev);
                    dc = vec![0.0; h];
                }
            } else {
                dh = dh_prev;
                dc = dc_prev;
            }
        }
        add_into(&mut gr.dh0[b * ho..(b + 1) * ho], &dh);
        if lstm {
            add_into(&mut gr.dc0[b * h..(b + 1) * h], &dc);
        }
    }
    gr
}

/// The backward of one step: returns (input-side gate gradients, recurrent-side gate
/// gradients, dL/dh_prev, dL/dc_prev) and accumulates the recurrent weight gradients.
fn step_backward(
    spec: &SeqSpec,
    p: &SeqParams,
    rec: &StepTape,
    dh: &[f64],
    dc: &[f64],
    gr: &mut SeqGrads,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let h = spec.hidden_size;
    let ho = spec.out_size();
    let gate = |k: usize, j: usize| rec.gates[k * h + j];
    match spec.cell {
        CellKind::Rnn(act) => {
            let da: Vec<f64> = (0..h)
                .map(|j| match act {
                    Nonlinearity::Tanh => dh[j] * (1.0 - rec.h[j] * rec.h[j]),
                    Nonlinearity::Relu if rec.h[j] <= 0.0 => 0.0,
                    Nonlinearity::Relu => dh[j],
                })
                .collect();
            add_outer(&mut gr.w_hh, &da, &rec.h_prev);
            let dh_prev = matvec_t(&p.w_hh, ho, &da);
            (da.clone(), da, dh_prev, Vec::new())
        }
        CellKind::Lstm => {
            let dm = match (&p.w_hr, &mut gr.w_hr) {
                (Some(w_hr), Some(dw_hr)) => {
                    add_outer(dw_hr, dh, &rec.m);
                    matvec_t(w_hr, h, dh)
                }
                _ => dh.to_vec(),
            };
            let mut da = vec![0.0; 4 * h];
            let mut dc_prev = vec![0.0; h];
            for j in 0..h {
                let (i, f, g, o) = (gate(0, j), gate(1, j), gate(2, j), gate(3, j));
                let tc = rec.c[j].tanh();
                let dct = dc[j] + dm[j] * o * (1.0 - tc * tc);
                da[j] = dct * g * i * (1.0 - i);
                da[h + j] = dct * rec.c_prev[j] * f * (1.0 - f);
                da[2 * h + j] = dct * i * (1.0 - g * g);
                da[3 * h + j] = dm[j] * tc * o * (1.0 - o);
                dc_prev[j] = dct * f;
            }
            add_outer(&mut gr.w_hh, &da, &rec.h_prev);
            let dh_prev = matvec_t(&p.w_hh, ho, &da);
            (da.clone(), da, dh_prev, dc_prev)
        }
        CellKind::Gru { reset_after } => {
            let mut da_x = vec![0.0; 3 * h];
            let mut da_h = vec![0.0; 3 * h];
            let mut dh_prev: Vec<f64> = (0..h).map(|j| dh[j] * gate(1, j)).collect();
            let dan: Vec<f64> = (0..h)
                .map(|j| dh[j] * (1.0 - gate(1, j)) * (1.0 - gate(2, j) * gate(2, j)))
                .collect();
            for j in 0..h {
                let (z, n) = (gate(1, j), gate(2, j));
                let daz = dh[j] * (rec.h_prev[j] - n) * z * (1.0 - z);
                da_x[h + j] = daz;
                da_h[h + j] = daz;
                da_x[2 * h + j] = dan[j];
            }
            if reset_after {
                for j in 0..h {
                    let r = gate(0, j);
                    let dar = dan[j] * rec.extra[j] * r * (1.0 - r);
                    da_x[j] = dar;
                    da_h[j] = dar;
                    da_h[2 * h + j] = dan[j] * r;
                }
                add_outer(&mut gr.w_hh, &da_h, &rec.h_prev);
                add_into(&mut dh_prev, &matvec_t(&p.w_hh, h, &da_h));
            } else {
                // n's recurrent product reads r*h: d(r*h) = W_hn^T dan.
                let w_hn = &p.w_hh[2 * h * h..];
                let d_rh = matvec_t(w_hn, h, &dan);
                for j in 0..h {
                    let r = gate(0, j);
                    let dar = d_rh[j] * rec.h_prev[j] * r * (1.0 - r);
                    da_x[j] = dar;
                    da_h[j] = dar;
                    da_h[2 * h + j] = dan[j];
                    dh_prev[j] += d_rh[j] * r;
                }
                add_outer(&mut gr.w_hh[..2 * h * h], &da_h[..2 * h], &rec.h_prev);
                add_outer(&mut gr.w_hh[2 * h * h..], &dan, &rec.extra);
                add_into(
                    &mut dh_prev,
                    &matvec_t(&p.w_hh[..2 * h * h], h, &da_h[..2 * h]),
                );
            }
            (da_x, da_h, dh_prev, Vec::new())
        }
    }
}
