//! One direction's chunk of sequences, backward through time: per step (last to first) the
//! pointwise pass gives the gate gradients and a GEMM carries dL/dh to the step before. The
//! weight gradients and dL/dx are products over all steps (see [`super::products`]).
//!
//! Buffers: `dg` holds every step's gate gradients (the recurrent side for a reset-after
//! GRU, whose input side of n is `d_an`); `dh` and `dc` are two buffers each, the gradient
//! arriving at a step and the one it passes back.

use fused_rnn_kernels::pointwise::gru::{
    GruBwdPointwiseGates, GruBwdPointwiseInPlace, GruBwdPointwiseOut, gru_bwd_pointwise_gates,
    gru_bwd_pointwise_in_place, gru_bwd_pointwise_out,
};
use fused_rnn_kernels::pointwise::lstm::{LstmBwdPointwiseInPlace, lstm_bwd_pointwise_in_place};
use fused_rnn_kernels::pointwise::rnn::{RnnBwdPointwise, rnn_bwd_pointwise};
use fused_rnn_kernels::sums::{AddRows, add_rows, add_slice};
use fused_rnn_kernels::{Arch, CellKind, Float, MatRef, Rows};

use super::plan::{StepScratch, step_product};
use super::{DirSpec, Masks, StepRows, StepWeights, mat, rows, rows_mut};
use crate::config::Parallelism;

/// The saved activations of one direction (a training tape, read-only).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TapeRef<'a, T> {
    /// Empty for an LSTM and a reset-after GRU, whose gates are in [`BwdScratch::dg`] (their
    /// gradients go over them).
    pub gates: &'a [T],
    pub h: &'a [T],
    pub c: &'a [T],
    pub extra: &'a [T],
}

/// One chunk's backward scratch and outputs.
#[derive(Debug)]
pub(crate) struct BwdScratch<'a, T> {
    /// `[T][Bc][G*H]` out: the gate gradients; in, for an LSTM and a reset-after GRU: the
    /// saved gates.
    pub dg: &'a mut [T],
    /// `[T][Bc][H]` out: reset-after GRU's input side of n (else empty).
    pub d_an: &'a mut [T],
    /// `[T][Bc][P]` out: dL/dh of a projected LSTM (else empty).
    pub dh_all: &'a mut [T],
    /// `2*[Bc][Hout]`: the dL/dh carries.
    pub dh: &'a mut [T],
    /// `2*[Bc][H]`: the dL/dc carries (LSTM).
    pub dc: &'a mut [T],
    /// `[Bc][H]`: `d(r*h)` (reset-before GRU) or dL/d(o tanh c) (projected LSTM).
    pub step: &'a mut [T],
    /// Out: the column sums of this chunk's gate gradients over all its steps, `[G*H]`, then
    /// of `d_an` (`[H]`, reset-after GRU), for the bias gradients (empty without biases; see
    /// [`crate::layout::bias_sums_width`]). Summed as each step's rows are written, while
    /// they are in cache: a pass over all of dG afterwards reads it back from L3 or memory.
    pub bias_sums: &'a mut [T],
    pub product: StepScratch<'a, T>,
}

/// Everything one chunk's backward reads and writes (`spec.batch` is the chunk's size).
pub(crate) struct DirBackward<'a, T> {
    pub spec: DirSpec,
    pub arch: Arch,
    pub par: Parallelism,
    /// The recurrent weights, packed for dL/dh = dG W.
    pub step: StepWeights<'a, T>,
    pub masks: Masks<'a>,
    pub tape: TapeRef<'a, T>,
    /// dL/d(this chunk's outputs), step by step.
    pub dy: StepRows<'a, T>,
    /// `[Bc][Hout]` in: dL/d(final h); out: dL/d(initial h).
    pub d_h: &'a mut [T],
    /// `[Bc][H]` the same for c (LSTM), else empty.
    pub d_c: &'a mut [T],
    pub scratch: BwdScratch<'a, T>,
}

impl<'a, T: Float> DirBackward<'a, T> {
    pub fn run(mut self) {
        let mut bufs = self.start();
        for k in (0..self.spec.steps).rev() {
            let t = self.spec.time(k);
            if self.masks.all_inactive(t) {
                self.skip(t, &mut bufs);
            } else {
                let (cols, beta) = self.step_pointwise(t, &mut bufs);
                let (run, w) = ((self.arch, self.par), self.step.first);
                let (dg, dh_out, sc) = self.product_operands(t, cols, &mut bufs);
                step_product(run, dg, w, beta, dh_out, sc);
                self.step_end(t, &mut bufs);
            }
            bufs.cur ^= 1;
        }
        self.finish(bufs);
    }

    /// Takes the dL/dh and dL/dc carries out of the scratch, starting from the final
    /// state's gradients (which then collect the initial state's).
    pub(super) fn start(&mut self) -> Carries<'a, T> {
        let s = self.spec;
        let (b, h, hout) = (s.batch, s.hidden, s.hout);
        let (dh_cur, dh_next) = std::mem::take(&mut self.scratch.dh).split_at_mut(b * hout);
        dh_cur.copy_from_slice(self.d_h);
        self.d_h.fill(T::ZERO);
        let dc_len = if s.cell.has_cell_state() { b * h } else { 0 };
        let (dc_cur, dc_next) = std::mem::take(&mut self.scratch.dc).split_at_mut(dc_len);
        dc_cur.copy_from_slice(self.d_c);
        self.d_c.fill(T::ZERO);
        self.scratch.bias_sums.fill(T::ZERO);
        // `cur` holds the gradient arriving at the step; the step writes `next`; swap.
        Carries {
            dh: [dh_cur, dh_next],
            dc: [dc_cur, dc_next],
            cur: 0,
        }
    }

    /// What reaches the initial position is the initial state's gradient.
    pub(super) fn finish(self, bufs: Carries<'_, T>) {
        add_slice(self.arch, self.d_h, bufs.dh[bufs.cur]);
        add_slice(self.arch, self.d_c, bufs.dc[bufs.cur]);
    }

    /// The operands of step `t`'s last product, `dh_out (+)= dG[:, ..cols] W_hh[..cols]`:
    /// the step's gate gradients, the carry it writes and the product's scratch.
    pub(super) fn product_operands<'s>(
        &'s mut self,
        t: usize,
        cols: usize,
        c: &'s mut Carries<'_, T>,
    ) -> (MatRef<'s, T>, &'s mut [T], &'s mut StepScratch<'a, T>) {
        let (b, gh) = (self.spec.batch, self.spec.gh());
        let dg = mat(&self.scratch.dg[t * b * gh..(t + 1) * b * gh], b, gh).cols_range(0, cols);
        (dg, c.dh_pair().1, &mut self.scratch.product)
    }

    /// After step `t`'s last product: padding passes dL/dh through; resets route it.
    pub(super) fn step_end(&mut self, t: usize, c: &mut Carries<'_, T>) {
        let hout = self.spec.hout;
        let (dh_in, dh_out) = c.dh_pair();
        pass_padding(&self.masks, t, dh_in, dh_out, hout);
        self.route_resets(t, c);
    }

    /// A step where the whole chunk is padding (forward skipped it): no gate gradients, and
    /// the state's gradient passes through unchanged.
    pub(super) fn skip(&mut self, t: usize, c: &mut Carries<'_, T>) {
        let s = self.spec;
        let (b, h, hout, gh) = (s.batch, s.hidden, s.hout, s.gh());
        self.scratch.dg[t * b * gh..(t + 1) * b * gh].fill(T::ZERO);
        if !self.scratch.d_an.is_empty() {
            self.scratch.d_an[t * b * h..(t + 1) * b * h].fill(T::ZERO);
        }
        if !self.scratch.dh_all.is_empty() {
            self.scratch.dh_all[t * b * hout..(t + 1) * b * hout].fill(T::ZERO);
        }
        let cur = c.cur;
        for carry in [&mut c.dh, &mut c.dc] {
            let [a, b] = carry;
            if cur == 0 {
                b.copy_from_slice(a);
            } else {
                a.copy_from_slice(b);
            }
        }
    }

    /// Step `t` up to its last product: the pointwise pass(es) into the gate gradients (and
    /// a projected LSTM's or reset-before GRU's inner product). Returns the columns of dG
    /// and the beta of the last product, `dh_out (+)= dG[:, ..cols] W_hh[..cols]` (see
    /// [`Self::product_operands`]), which the caller runs alone or grouped.
    pub(super) fn step_pointwise(&mut self, t: usize, c: &mut Carries<'_, T>) -> (usize, T) {
        let last_product = self.step_gate_gradients(t, c);
        self.add_bias_sums(t);
        last_product
    }

    /// Adds step `t`'s gate gradient rows (and `d_an`'s) to the chunk's bias sums, in row
    /// order (padding rows are zero); nothing without biases (no sums).
    fn add_bias_sums(&mut self, t: usize) {
        if self.scratch.bias_sums.is_empty() {
            return;
        }
        let s = self.spec;
        let (b, gh, h) = (s.batch, s.gh(), s.hidden);
        let (dg_sums, an_sums) = self.scratch.bias_sums.split_at_mut(gh);
        let dg = rows(&self.scratch.dg[t * b * gh..(t + 1) * b * gh], b, gh);
        add_rows(
            self.arch,
            AddRows {
                acc: dg_sums,
                rows: dg,
            },
        );
        if !an_sums.is_empty() {
            let d_an = rows(&self.scratch.d_an[t * b * h..(t + 1) * b * h], b, h);
            add_rows(
                self.arch,
                AddRows {
                    acc: an_sums,
                    rows: d_an,
                },
            );
        }
    }

    /// [`Self::step_pointwise`] but the bias sums.
    fn step_gate_gradients(&mut self, t: usize, c: &mut Carries<'_, T>) -> (usize, T) {
        let s = self.spec;
        let (b, h, hout, gh) = (s.batch, s.hidden, s.hout, s.gh());
        let (arch, step) = (self.arch, self.step);
        let run = (arch, self.par);
        let gates = || rows(&self.tape.gates[t * b * gh..(t + 1) * b * gh], b, gh);
        let entry = s.entry(t);
        let h_prev = &self.tape.h[entry * b * hout..(entry + 1) * b * hout];
        let dg = &mut self.scratch.dg[t * b * gh..(t + 1) * b * gh];
        let dy = self.dy.at(t);
        let ((dh_in, dh_out), (dc_in, dc_out)) = c.pairs();
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
                        gates: gates(),
                        dh: rows(dh_in, b, h),
                        dy: Some(dy),
                        nonlinearity,
                        d_gates,
                    },
                );
                zero_padding(&self.masks, t, dg, gh);
                (gh, T::ZERO)
            }
            CellKind::Lstm => {
                let c_prev = &self.tape.c[entry * b * h..(entry + 1) * b * h];
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
                        step_product(
                            run,
                            mat(dh_t, b, hout),
                            w_hr,
                            T::ZERO,
                            dm,
                            &mut self.scratch.product,
                        );
                        (dm, None)
                    }
                    None => (dh_in, Some(dy)),
                };
                let pass = LstmBwdPointwiseInPlace {
                    gates: rows_mut(dg, b, gh),
                    c_prev: rows(c_prev, b, h),
                    dh: rows(dm, b, h),
                    dy: dy_rows,
                    dc: rows(dc_in, b, h),
                    dc_prev: rows_mut(dc_out, b, h),
                };
                lstm_bwd_pointwise_in_place(arch, pass);
                zero_padding(&self.masks, t, dg, gh);
                pass_padding(&self.masks, t, dc_in, dc_out, h);
                (gh, T::ZERO)
            }
            CellKind::Gru { reset_after: true } => {
                let d_an = &mut self.scratch.d_an[t * b * h..(t + 1) * b * h];
                let pass = GruBwdPointwiseInPlace {
                    gates: rows_mut(dg, b, gh),
                    hn: rows(extra_t, b, h),
                    h_prev: rows(h_prev, b, h),
                    dh: rows(dh_in, b, h),
                    dy: Some(dy),
                    d_an: rows_mut(d_an, b, h),
                    dh_prev: rows_mut(dh_out, b, h),
                };
                gru_bwd_pointwise_in_place(arch, pass);
                zero_padding(&self.masks, t, dg, gh);
                zero_padding(&self.masks, t, d_an, h);
                (gh, T::ONE)
            }
            CellKind::Gru { reset_after: false } => {
                let pass = GruBwdPointwiseOut {
                    gates: gates(),
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
                step_product(run, dan, w_hn, T::ZERO, d_rh, &mut self.scratch.product);
                let pass = GruBwdPointwiseGates {
                    gates: gates(),
                    h_prev: rows(h_prev, b, h),
                    d_rh: rows(d_rh, b, h),
                    d_gates: rows_mut(dg, b, gh),
                    dh_prev: rows_mut(dh_out, b, h),
                };
                gru_bwd_pointwise_gates(arch, pass);
                zero_padding(&self.masks, t, dg, gh);
                (2 * h, T::ONE)
            }
        }
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
            add_slice(self.arch, &mut self.d_h[b * hout..(b + 1) * hout], dh);
            dh.fill(T::ZERO);
            if s.cell.has_cell_state() {
                let dc = &mut c.dc[nxt][b * h..(b + 1) * h];
                add_slice(self.arch, &mut self.d_c[b * h..(b + 1) * h], dc);
                dc.fill(T::ZERO);
            }
        }
    }
}

/// The two dh and dc buffers and which one holds the gradient arriving at the current step.
pub(super) struct Carries<'a, T> {
    dh: [&'a mut [T]; 2],
    dc: [&'a mut [T]; 2],
    pub cur: usize,
}

impl<T> Carries<'_, T> {
    /// dL/dh arriving at the current step, and the buffer for what it passes back.
    fn dh_pair(&mut self) -> (&[T], &mut [T]) {
        let [a, b] = &mut self.dh;
        if self.cur == 0 { (a, b) } else { (b, a) }
    }
    /// [`Self::dh_pair`], and the same for dL/dc.
    #[allow(clippy::type_complexity)]
    fn pairs(&mut self) -> ((&[T], &mut [T]), (&[T], &mut [T])) {
        let ([h0, h1], [c0, c1]) = (&mut self.dh, &mut self.dc);
        if self.cur == 0 {
            ((h0, h1), (c0, c1))
        } else {
            ((h1, h0), (c1, c0))
        }
    }
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
