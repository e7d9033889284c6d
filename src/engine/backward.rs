//! One layer and direction, backward through time: per step (last to first) the pointwise
//! pass gives the gate gradients and a GEMM carries dL/dh to the step before; after the
//! loop, the weight gradients and dL/dx are single GEMMs over all steps.
//!
//! Scratch (see [`crate::layout::BwdScratchLens`]): `dg` holds every step's gate gradients
//! (the recurrent side for a reset-after GRU, whose input side of n is `d_an`); `dh` and `dc`
//! are two buffers each, the gradient arriving at a step and the one it passes back.

use fused_rnn_kernels::pointwise::gru::{
    GruBwdPointwise, GruBwdPointwiseGates, GruBwdPointwiseOut, gru_bwd_pointwise,
    gru_bwd_pointwise_gates, gru_bwd_pointwise_out,
};
use fused_rnn_kernels::pointwise::lstm::{LstmBwdPointwise, lstm_bwd_pointwise};
use fused_rnn_kernels::pointwise::rnn::{RnnBwdPointwise, rnn_bwd_pointwise};
use fused_rnn_kernels::{Arch, CellKind, Float, MatMut, MatRef, Rows, gemm};

use super::{DirSpec, DirWeights, Masks, SeqView, StepWeights, mat, mat_mut, rows, rows_mut};
use crate::params::LayerParamsMut;
use fused_rnn_kernels::gemm::packed::gemm_packed;

/// The saved activations of one direction (a training tape, read-only).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TapeRef<'a, T> {
    pub gates: &'a [T],
    pub h: &'a [T],
    pub c: &'a [T],
    pub extra: &'a [T],
}

/// One direction's backward scratch.
#[derive(Debug)]
pub(crate) struct BwdScratch<'a, T> {
    pub dg: &'a mut [T],
    pub d_an: &'a mut [T],
    pub dh: &'a mut [T],
    pub dc: &'a mut [T],
    pub step: &'a mut [T],
    pub dh_all: &'a mut [T],
    /// `gemm_packed`'s scratch for row-major left operands.
    pub gemm_a: &'a mut [T],
}

/// Everything one direction's backward reads and writes.
pub(crate) struct DirBackward<'a, T> {
    pub spec: DirSpec,
    pub arch: Arch,
    pub w: DirWeights<'a, T>,
    /// The recurrent weights, packed for dL/dh = dG W.
    pub step: StepWeights<'a, T>,
    /// `[T*B, I]`, the forward input.
    pub x: MatRef<'a, T>,
    pub masks: Masks<'a>,
    pub tape: TapeRef<'a, T>,
    /// dL/d(this direction's outputs).
    pub dy: SeqView<'a, T>,
    /// `[B][Hout]` in: dL/d(final h); out: dL/d(initial h).
    pub d_h: &'a mut [T],
    /// `[B][H]` the same for c (LSTM), else empty.
    pub d_c: &'a mut [T],
    /// Gradients, accumulated into.
    pub grads: LayerParamsMut<'a, T>,
    /// `[T*B, I]` dL/dx, and whether to add to it (the second direction) or overwrite.
    pub dx: Option<(MatMut<'a, T>, bool)>,
    pub scratch: BwdScratch<'a, T>,
}

impl<T: Float> DirBackward<'_, T> {
    pub fn run(mut self) {
        let s = self.spec;
        let (b, h, hout) = (s.batch, s.hidden, s.hout);
        // The carries leave `self.scratch` so the steps can borrow `self` beside them.
        let (dh_cur, dh_next) = std::mem::take(&mut self.scratch.dh).split_at_mut(b * hout);
        dh_cur.copy_from_slice(self.d_h);
        self.d_h.fill(T::ZERO);
        let dc_len = if s.cell.has_cell_state() { b * h } else { 0 };
        let (dc_cur, dc_next) = std::mem::take(&mut self.scratch.dc).split_at_mut(dc_len);
        dc_cur.copy_from_slice(self.d_c);
        self.d_c.fill(T::ZERO);
        // `cur` holds the gradient arriving at the step; the step writes `next`; swap.
        let mut bufs = Carries {
            dh: [dh_cur, dh_next],
            dc: [dc_cur, dc_next],
            cur: 0,
        };
        for k in (0..s.steps).rev() {
            let t = s.time(k);
            self.step(t, &mut bufs);
            self.route_resets(t, &mut bufs);
            bufs.cur ^= 1;
        }
        // What reaches the initial position is the initial state's gradient.
        add_into(self.d_h, bufs.dh[bufs.cur]);
        add_into(self.d_c, bufs.dc[bufs.cur]);
        if s.steps > 0 && b > 0 {
            self.weight_gradients();
        } else if let Some((dx, false)) = self.dx.take() {
            zero(dx);
        }
    }

    fn step(&mut self, t: usize, c: &mut Carries<'_, T>) {
        let s = self.spec;
        let (b, h, hout, gh) = (s.batch, s.hidden, s.hout, s.gh());
        let (arch, step) = (self.arch, self.step);
        let cur = c.cur;
        let gates = rows(&self.tape.gates[t * b * gh..(t + 1) * b * gh], b, gh);
        let entry = s.entry(t);
        let h_prev = &self.tape.h[entry * b * hout..(entry + 1) * b * hout];
        let dg = &mut self.scratch.dg[t * b * gh..(t + 1) * b * gh];
        let dy = self.dy.rows(t);
        let [dh_a, dh_b] = &mut c.dh;
        let (dh_in, dh_out) = if cur == 0 {
            (&**dh_a, &mut **dh_b)
        } else {
            (&**dh_b, &mut **dh_a)
        };
        let extra_t: &[T] = if self.tape.extra.is_empty() {
            &[]
        } else {
            &self.tape.extra[t * b * h..(t + 1) * b * h]
        };
        match s.cell {
            CellKind::Rnn(nonlinearity) => {
                let d_gates = rows_mut(dg, b, gh);
                rnn_bwd_pointwise(
                    arch,
                    RnnBwdPointwise {
                        gates,
                        dh: rows(dh_in, b, h),
                        dy: Some(dy),
                        nonlinearity,
                        d_gates,
                    },
                );
                zero_padding(&self.masks, t, dg, gh);
                gemm_packed(
                    arch,
                    mat(dg, b, gh),
                    step.first,
                    T::ZERO,
                    mat_mut(dh_out, b, hout),
                    self.scratch.gemm_a,
                );
            }
            CellKind::Lstm => {
                let c_prev = &self.tape.c[entry * b * h..(entry + 1) * b * h];
                let [dc_a, dc_b] = &mut c.dc;
                let (dc_in, dc_out) = if cur == 0 {
                    (&**dc_a, &mut **dc_b)
                } else {
                    (&**dc_b, &mut **dc_a)
                };
                let (dm, dy_rows): (&[T], Option<Rows<'_, T>>) = match step.second {
                    // Projected: dL/dh (plus dy) is kept for dW_hr, then taken back through W_hr.
                    Some(w_hr) => {
                        let dh_t = &mut self.scratch.dh_all[t * b * hout..(t + 1) * b * hout];
                        for (r, dst) in dh_t.chunks_exact_mut(hout).enumerate() {
                            for ((d, &x), &y) in dst
                                .iter_mut()
                                .zip(&dh_in[r * hout..(r + 1) * hout])
                                .zip(dy.row(r))
                            {
                                *d = x + y;
                            }
                        }
                        zero_padding(&self.masks, t, dh_t, hout);
                        let dm = &mut self.scratch.step[..b * h];
                        gemm_packed(
                            arch,
                            mat(dh_t, b, hout),
                            w_hr,
                            T::ZERO,
                            mat_mut(dm, b, h),
                            self.scratch.gemm_a,
                        );
                        (dm, None)
                    }
                    None => (dh_in, Some(dy)),
                };
                let pass = LstmBwdPointwise {
                    gates,
                    c_prev: rows(c_prev, b, h),
                    dh: rows(dm, b, h),
                    dy: dy_rows,
                    dc: rows(dc_in, b, h),
                    dc_prev: rows_mut(dc_out, b, h),
                    d_gates: rows_mut(dg, b, gh),
                };
                lstm_bwd_pointwise(arch, pass);
                zero_padding(&self.masks, t, dg, gh);
                pass_padding(&self.masks, t, dc_in, dc_out, h);
                gemm_packed(
                    arch,
                    mat(dg, b, gh),
                    step.first,
                    T::ZERO,
                    mat_mut(dh_out, b, hout),
                    self.scratch.gemm_a,
                );
            }
            CellKind::Gru { reset_after: true } => {
                let d_an = &mut self.scratch.d_an[t * b * h..(t + 1) * b * h];
                let pass = GruBwdPointwise {
                    gates,
                    hn: rows(extra_t, b, h),
                    h_prev: rows(h_prev, b, h),
                    dh: rows(dh_in, b, h),
                    dy: Some(dy),
                    d_gates: rows_mut(dg, b, gh),
                    d_an: rows_mut(d_an, b, h),
                    dh_prev: rows_mut(dh_out, b, h),
                };
                gru_bwd_pointwise(arch, pass);
                zero_padding(&self.masks, t, dg, gh);
                zero_padding(&self.masks, t, d_an, h);
                gemm_packed(
                    arch,
                    mat(dg, b, gh),
                    step.first,
                    T::ONE,
                    mat_mut(dh_out, b, h),
                    self.scratch.gemm_a,
                );
            }
            CellKind::Gru { reset_after: false } => {
                let pass = GruBwdPointwiseOut {
                    gates,
                    h_prev: rows(h_prev, b, h),
                    dh: rows(dh_in, b, h),
                    dy: Some(dy),
                    d_gates: rows_mut(dg, b, gh),
                    dh_prev: rows_mut(dh_out, b, h),
                };
                gru_bwd_pointwise_out(arch, pass);
                zero_padding(&self.masks, t, dg, gh);
                let d_rh = &mut self.scratch.step[..b * h];
                let dan = mat(dg, b, gh).cols_range(2 * h, h);
                let w_hn = step.second.expect("packed for a reset-before GRU");
                gemm_packed(
                    arch,
                    dan,
                    w_hn,
                    T::ZERO,
                    mat_mut(d_rh, b, h),
                    self.scratch.gemm_a,
                );
                let pass = GruBwdPointwiseGates {
                    gates,
                    h_prev: rows(h_prev, b, h),
                    d_rh: rows(d_rh, b, h),
                    d_gates: rows_mut(dg, b, gh),
                    dh_prev: rows_mut(dh_out, b, h),
                };
                gru_bwd_pointwise_gates(arch, pass);
                zero_padding(&self.masks, t, dg, gh);
                gemm_packed(
                    arch,
                    mat(dg, b, gh).cols_range(0, 2 * h),
                    step.first,
                    T::ONE,
                    mat_mut(dh_out, b, h),
                    self.scratch.gemm_a,
                );
            }
        }
        pass_padding(&self.masks, t, dh_in, dh_out, hout);
    }

    /// The gradient leaving a step that entered from the initial state (by a reset) goes to
    /// the initial state, not to the step before.
    fn route_resets(&mut self, t: usize, c: &mut Carries<'_, T>) {
        let s = self.spec;
        if self.masks.resets.is_none() {
            return;
        }
        let (h, hout, nxt) = (s.hidden, s.hout, c.cur ^ 1);
        for b in (0..s.batch).filter(|&b| self.masks.reset_at_entry(&s, t, b)) {
            let dh = &mut c.dh[nxt][b * hout..(b + 1) * hout];
            add_into(&mut self.d_h[b * hout..(b + 1) * hout], dh);
            dh.fill(T::ZERO);
            if s.cell.has_cell_state() {
                let dc = &mut c.dc[nxt][b * h..(b + 1) * h];
                add_into(&mut self.d_c[b * h..(b + 1) * h], dc);
                dc.fill(T::ZERO);
            }
        }
    }

    /// dW_ih, dW_hh, db, dW_hr and dx as GEMMs over all T*B rows (the weight gradients
    /// contract over the rows: `dW = dG^T X`).
    fn weight_gradients(&mut self) {
        let s = self.spec;
        let (b, h, hout, gh, input) = (s.batch, s.hidden, s.hout, s.gh(), s.input);
        let n = s.steps * b;
        let dg = mat(&*self.scratch.dg, n, gh);
        let first = s.entry(0).min(s.entry(s.steps - 1));
        let h_prev = MatRef::row_major(&self.tape.h[first * b * hout..], n, hout, hout);
        let g = &mut self.grads;
        // `out += lhs^T rhs`.
        let acc_t = |lhs: MatRef<'_, T>, rhs: MatRef<'_, T>, out: &mut [T]| {
            let (rows, cols) = (lhs.cols(), rhs.cols());
            gemm(
                T::ONE,
                lhs.t(),
                rhs,
                T::ONE,
                MatMut::row_major(out, rows, cols, cols),
            );
        };
        // The input side's gate gradients: dg, except a reset-after GRU's n block (d_an).
        let (x_side, x_side_n) = match s.cell {
            CellKind::Gru { reset_after: true } => (
                dg.cols_range(0, 2 * h),
                Some(mat(&*self.scratch.d_an, n, h)),
            ),
            _ => (dg, None),
        };
        let split = x_side.cols();
        acc_t(x_side, self.x, &mut g.w_ih[..split * input]);
        if let Some(dan) = x_side_n {
            acc_t(dan, self.x, &mut g.w_ih[split * input..]);
        }
        match s.cell {
            CellKind::Gru { reset_after: false } => {
                acc_t(dg.cols_range(0, 2 * h), h_prev, &mut g.w_hh[..2 * h * h]);
                acc_t(
                    dg.cols_range(2 * h, h),
                    mat(self.tape.extra, n, h),
                    &mut g.w_hh[2 * h * h..],
                );
            }
            _ => acc_t(dg, h_prev, g.w_hh),
        }
        if let (Some(dw_hr), true) = (g.w_hr.as_deref_mut(), s.proj > 0) {
            acc_t(
                mat(&*self.scratch.dh_all, n, hout),
                mat(self.tape.extra, n, h),
                dw_hr,
            );
        }
        if let (Some(db_ih), Some(db_hh)) = (g.b_ih.as_deref_mut(), g.b_hh.as_deref_mut()) {
            column_sums(x_side, &mut db_ih[..split]);
            if let Some(dan) = x_side_n {
                column_sums(dan, &mut db_ih[split..]);
            }
            column_sums(dg, db_hh);
        }
        if let Some((mut dx, add)) = self.dx.take() {
            let beta = if add { T::ONE } else { T::ZERO };
            gemm(
                T::ONE,
                x_side,
                self.w.w_ih_rows(&s, 0..split / h),
                beta,
                dx.reborrow(),
            );
            if let Some(dan) = x_side_n {
                gemm(T::ONE, dan, self.w.w_ih_rows(&s, 2..3), T::ONE, dx);
            }
        }
    }
}

/// The two dh and dc buffers and which one holds the gradient arriving at the current step.
struct Carries<'a, T> {
    dh: [&'a mut [T]; 2],
    dc: [&'a mut [T]; 2],
    cur: usize,
}

/// Zeroes the rows of sequences at padding at step `t` (their gates had no effect).
fn zero_padding<T: Float>(masks: &Masks<'_>, t: usize, buf: &mut [T], width: usize) {
    if !masks.any_inactive(t) {
        return;
    }
    for (b, row) in buf.chunks_exact_mut(width).enumerate() {
        if !masks.active(t, b) {
            row.fill(T::ZERO);
        }
    }
}

/// At padding the state passed through unchanged, so does its gradient.
fn pass_padding<T: Float>(masks: &Masks<'_>, t: usize, from: &[T], to: &mut [T], width: usize) {
    if !masks.any_inactive(t) {
        return;
    }
    for (b, (dst, src)) in to
        .chunks_exact_mut(width)
        .zip(from.chunks_exact(width))
        .enumerate()
    {
        if !masks.active(t, b) {
            dst.copy_from_slice(src);
        }
    }
}

/// `out += sum over rows of m` in row order (a fixed order: deterministic).
fn column_sums<T: Float>(m: MatRef<'_, T>, out: &mut [T]) {
    for i in 0..m.rows() {
        for (o, &v) in out.iter_mut().zip(m.row(i)) {
            *o += v;
        }
    }
}

fn add_into<T: Float>(acc: &mut [T], v: &[T]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

fn zero<T: Float>(mut m: MatMut<'_, T>) {
    for i in 0..m.rows() {
        for j in 0..m.cols() {
            *m.at_mut(i, j) = T::ZERO;
        }
    }
}
