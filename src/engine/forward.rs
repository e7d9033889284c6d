//! One direction's chunk of sequences, forward: per step the recurrent product and the fused
//! pointwise pass. The input projection of all steps is already in the tape's gates (see
//! [`super::products`]).
//!
//! The same loop serves training and inference: a training tape keeps all T+1 state
//! positions and T extra slots (see [`crate::layout`]); an inference tape keeps 2 positions
//! and 1 slot, indexed modulo their count.

use std::ops::Range;

use fused_rnn_kernels::pointwise::gru::{
    GruFwdPointwise, GruFwdPointwiseGates, GruFwdPointwiseOut, gru_fwd_pointwise_gates,
    gru_fwd_pointwise_out, gru_fwd_pointwise_units,
};
use fused_rnn_kernels::pointwise::lstm::{LstmFwdPointwise, lstm_fwd_pointwise_units};
use fused_rnn_kernels::pointwise::rnn::{RnnFwdPointwise, rnn_fwd_pointwise_units};
use fused_rnn_kernels::{Arch, CellKind, Float, MatRef, Rows, RowsMut};

use super::plan::{StepScratch, step_product, step_product_walk};
use super::{DirSpec, DirWeights, Masks, StepWeights, read_write, rows, rows_mut};
use crate::config::Parallelism;
use crate::layout::block;

/// Where a single-product step's recurrent product goes, and its beta: LSTM and RNN add it
/// to the input projection in the gates; a reset-after GRU keeps it apart in `products`
/// (r scales only its n block).
pub(super) fn product_target<'x, T: Float>(
    s: &DirSpec,
    t: usize,
    gates: &'x mut [T],
    products: &'x mut [T],
) -> (&'x mut [T], T) {
    let (b, gh) = (s.batch, s.gh());
    match s.cell {
        CellKind::Gru { .. } => (&mut products[..b * gh], T::ZERO),
        _ => (&mut gates[t * b * gh..(t + 1) * b * gh], T::ONE),
    }
}

/// Step `t`'s slot of the tape's extra activations (`[Bc][H]`), or nothing.
fn extra_slot<T>(extra: &mut [T], slots: usize, t: usize, (b, h): (usize, usize)) -> &mut [T] {
    if extra.is_empty() {
        return &mut [];
    }
    let slot = if slots > 0 { t % slots } else { 0 };
    &mut extra[block(slot, b, h)]
}

/// One chunk's saved activations (see [`crate::layout`]).
#[derive(Debug)]
pub(crate) struct Tape<'a, T> {
    /// `[T][Bc][G*H]`.
    pub gates: &'a mut [T],
    /// `[positions][Bc][Hout]`.
    pub h: &'a mut [T],
    /// `[positions][Bc][H]` (LSTM) or empty.
    pub c: &'a mut [T],
    /// `[extra_slots][Bc][H]` or empty.
    pub extra: &'a mut [T],
    pub positions: usize,
    pub extra_slots: usize,
    /// Whether backward reads this tape (see [`crate::layout::TapeLens`]).
    pub training: bool,
}

/// Everything one chunk's forward reads and writes (`spec.batch` is the chunk's size).
pub(crate) struct DirForward<'a, T> {
    pub spec: DirSpec,
    pub arch: Arch,
    pub par: Parallelism,
    pub w: DirWeights<'a, T>,
    /// The recurrent weights, packed.
    pub step: StepWeights<'a, T>,
    pub masks: Masks<'a>,
    /// `[Bc][Hout]` initial h.
    pub h0: &'a [T],
    /// `[Bc][H]` initial c (LSTM) or empty.
    pub c0: &'a [T],
    /// `[T][Bc][Hout]` this chunk's outputs.
    pub y: &'a mut [T],
    pub tape: Tape<'a, T>,
    /// GRU: `[Bc][3H]` for the recurrent products.
    pub products: &'a mut [T],
    pub scratch: StepScratch<'a, T>,
}

impl<'a, T: Float> DirForward<'a, T> {
    /// Runs all steps and returns the final (h, c) from the tape.
    pub fn run(mut self) -> (&'a [T], &'a [T]) {
        self.run_steps();
        self.finals()
    }

    /// The final (h, c) in the tape, once every step has run.
    pub(super) fn finals(self) -> (&'a [T], &'a [T]) {
        let s = self.spec;
        let last = s.last() % self.tape.positions;
        let Tape { h, c, .. } = self.tape;
        let (h, c): (&'a [T], &'a [T]) = (h, c);
        let hc = if c.is_empty() {
            &c[..0]
        } else {
            &c[block(last, s.batch, s.hidden)]
        };
        (&h[block(last, s.batch, s.hout)], hc)
    }

    /// Copies the initial state into the tape's initial position, where the steps start.
    pub(super) fn start(&mut self) {
        let s = self.spec;
        let (b, hout, h) = (s.batch, s.hout, s.hidden);
        let init = s.initial() % self.tape.positions;
        self.tape.h[block(init, b, hout)].copy_from_slice(self.h0);
        if s.cell.has_cell_state() {
            self.tape.c[block(init, b, h)].copy_from_slice(self.c0);
        }
    }

    fn run_steps(&mut self) {
        let s = self.spec;
        self.start();
        if s.batch == 0 {
            return;
        }
        if let Some(units) = self.team_units() {
            self.run_steps_team(units);
            return;
        }
        for k in 0..s.steps {
            let t = s.time(k);
            let (entry, exit) = self.positions(t);
            // A step where the whole chunk is padding costs only the copy of its state.
            if !self.masks.all_inactive(t) {
                self.apply_resets(t, entry);
                self.step(t, entry, exit);
            }
            self.hold_padding(t, entry, exit);
            self.write_outputs(t, exit);
        }
    }

    /// Rows that start afresh at `t` enter it from the initial state.
    pub(super) fn apply_resets(&mut self, t: usize, entry: usize) {
        let s = self.spec;
        if self.masks.resets.is_none() {
            return;
        }
        let (hout, h) = (s.hout, s.hidden);
        for b in 0..s.batch {
            if self.masks.reset_at_entry(&s, t, b) {
                let at = (entry * s.batch + b) * hout;
                self.tape.h[at..at + hout].copy_from_slice(&self.h0[b * hout..(b + 1) * hout]);
                if s.cell.has_cell_state() {
                    let at = (entry * s.batch + b) * h;
                    self.tape.c[at..at + h].copy_from_slice(&self.c0[b * h..(b + 1) * h]);
                }
            }
        }
    }

    /// Whether a step is one recurrent product, then the pointwise pass (and for a projected
    /// LSTM the projection): all but a reset-before GRU, whose second product needs the
    /// first pass's output.
    pub(super) fn single_product(&self) -> bool {
        self.spec.cell != (CellKind::Gru { reset_after: false })
    }

    /// The (entry, exit) tape positions of step `t`.
    pub(super) fn positions(&self, t: usize) -> (usize, usize) {
        let (s, positions) = (self.spec, self.tape.positions);
        (s.entry(t) % positions, s.exit(t) % positions)
    }

    /// One step for all rows: the recurrent product(s) and the pointwise pass(es).
    fn step(&mut self, t: usize, entry: usize, exit: usize) {
        if !self.single_product() {
            self.step_reset_before(t, entry, exit);
            return;
        }
        if self.fuses_steps() {
            self.step_fused(t, entry, exit);
            return;
        }
        let s = self.spec;
        let (b, hout) = (s.batch, s.hout);
        let h_prev = &self.tape.h[block(entry, b, hout)];
        let (target, beta) = product_target(&s, t, self.tape.gates, self.products);
        let a = MatRef::row_major(h_prev, b, hout, hout);
        let backwards = t % 2 == 1;
        let run = (self.arch, self.par);
        step_product_walk(
            run,
            (a, self.step.first, backwards),
            beta,
            target,
            &mut self.scratch,
        );
        self.pointwise(t, entry, exit);
    }

    /// The pointwise pass of a single-product step (its product is in the gates or, for a
    /// GRU, in `products`), and a projected LSTM's projection.
    pub(super) fn pointwise(&mut self, t: usize, entry: usize, exit: usize) {
        self.pointwise_units(t, entry, exit, 0..self.spec.hidden);
        self.project(t, exit);
    }

    /// The pointwise pass on hidden units `units` (all of them, or one column block of a
    /// fused step; see [`super::forward_fused`]).
    pub(super) fn pointwise_units(
        &mut self,
        t: usize,
        entry: usize,
        exit: usize,
        units: Range<usize>,
    ) {
        let s = self.spec;
        let (b, h, hout, gh) = (s.batch, s.hidden, s.hout, s.gh());
        let (arch, w) = (self.arch, self.w);
        let gates = &mut self.tape.gates[t * b * gh..(t + 1) * b * gh];
        let (h_prev, h_next) = read_write(self.tape.h, b * hout, entry, exit);
        let extra = extra_slot(self.tape.extra, self.tape.extra_slots, t, (b, h));
        match s.cell {
            CellKind::Rnn(nonlinearity) => {
                let pass = RnnFwdPointwise {
                    gates: rows_mut(gates, b, gh),
                    bias: w.bias,
                    nonlinearity,
                    h: rows_mut(h_next, b, hout),
                };
                rnn_fwd_pointwise_units(arch, pass, units);
            }
            CellKind::Lstm => {
                let (c_prev, c_next) = read_write(self.tape.c, b * h, entry, exit);
                // A projected LSTM keeps o*tanh(c) in `extra` and projects it into h.
                let m: &mut [T] = if s.proj > 0 { extra } else { h_next };
                let pass = LstmFwdPointwise {
                    gates: rows_mut(gates, b, gh),
                    bias: w.bias,
                    c_prev: rows(c_prev, b, h),
                    c: rows_mut(c_next, b, h),
                    h: rows_mut(m, b, h),
                };
                lstm_fwd_pointwise_units(arch, pass, units);
            }
            CellKind::Gru { .. } => {
                let pass = GruFwdPointwise {
                    gates: rows_mut(gates, b, gh),
                    hidden_gates: rows(&self.products[..b * gh], b, gh),
                    bias: w.bias,
                    bias_hn: w.bias_hn,
                    h_prev: rows(h_prev, b, h),
                    hn: rows_mut(extra, b, h),
                    h: rows_mut(h_next, b, h),
                };
                gru_fwd_pointwise_units(arch, pass, units);
            }
        }
    }

    /// A projected LSTM's `h_t = (o * tanh(c_t)) W_hr^T`, after the pointwise pass.
    pub(super) fn project(&mut self, t: usize, exit: usize) {
        let s = self.spec;
        let (CellKind::Lstm, true, Some(w_hr)) = (s.cell, s.proj > 0, self.step.second) else {
            return;
        };
        let (b, h, hout) = (s.batch, s.hidden, s.hout);
        let extra = extra_slot(self.tape.extra, self.tape.extra_slots, t, (b, h));
        step_product(
            (self.arch, self.par),
            MatRef::row_major(&*extra, b, h, h),
            w_hr,
            T::ZERO,
            &mut self.tape.h[block(exit, b, hout)],
            &mut self.scratch,
        );
    }

    /// A reset-before GRU's step: the r, z product and pass, then `(r*h) W_hn^T` and the
    /// output pass.
    fn step_reset_before(&mut self, t: usize, entry: usize, exit: usize) {
        let s = self.spec;
        let (b, h, hout, gh) = (s.batch, s.hidden, s.hout, s.gh());
        let (arch, w, step) = (self.arch, self.w, self.step);
        let run = (arch, self.par);
        let sc = &mut self.scratch;
        let gates = &mut self.tape.gates[t * b * gh..(t + 1) * b * gh];
        let (h_prev, h_next) = read_write(self.tape.h, b * hout, entry, exit);
        let extra = extra_slot(self.tape.extra, self.tape.extra_slots, t, (b, h));
        let h_prev_m = MatRef::row_major(h_prev, b, hout, hout);
        let (hidden_rz, rest) = self.products.split_at_mut(b * 2 * h);
        let hidden_n = &mut rest[..b * h];
        step_product(run, h_prev_m, step.first, T::ZERO, hidden_rz, sc);
        let pass = GruFwdPointwiseGates {
            gates: rows_mut(gates, b, gh),
            hidden_gates: rows(hidden_rz, b, 2 * h),
            bias: w.bias,
            h_prev: rows(h_prev, b, h),
            rh: rows_mut(extra, b, h),
        };
        gru_fwd_pointwise_gates(arch, pass);
        let w_hn = step.second.expect("packed for a reset-before GRU");
        step_product(
            run,
            MatRef::row_major(&*extra, b, h, h),
            w_hn,
            T::ZERO,
            hidden_n,
            sc,
        );
        let pass = GruFwdPointwiseOut {
            gates: rows_mut(gates, b, gh),
            hidden_n: rows(hidden_n, b, h),
            bias: w.bias,
            bias_hn: w.bias_hn,
            h_prev: rows(h_prev, b, h),
            h: rows_mut(h_next, b, h),
        };
        gru_fwd_pointwise_out(arch, pass);
    }

    /// Padding steps leave a sequence's state as it was.
    pub(super) fn hold_padding(&mut self, t: usize, entry: usize, exit: usize) {
        let s = self.spec;
        if !self.masks.any_inactive(t) {
            return;
        }
        let (b, hout, h) = (s.batch, s.hout, s.hidden);
        let (h_prev, h_next) = read_write(self.tape.h, b * hout, entry, exit);
        let (mut h_next, h_prev) = (
            RowsMut::contiguous(h_next, b, hout),
            Rows::contiguous(h_prev, b, hout),
        );
        for r in (0..b).filter(|&r| !self.masks.active(t, r)) {
            h_next.row_mut(r).copy_from_slice(h_prev.row(r));
        }
        if s.cell.has_cell_state() {
            let (c_prev, c_next) = read_write(self.tape.c, b * h, entry, exit);
            for r in (0..b).filter(|&r| !self.masks.active(t, r)) {
                c_next[r * h..(r + 1) * h].copy_from_slice(&c_prev[r * h..(r + 1) * h]);
            }
        }
    }

    /// Step `t`'s outputs: the new h, or zeros at padding.
    pub(super) fn write_outputs(&mut self, t: usize, exit: usize) {
        let (b, hout) = (self.spec.batch, self.spec.hout);
        let h_next = &self.tape.h[block(exit, b, hout)];
        let y = &mut self.y[block(t, b, hout)];
        y.copy_from_slice(h_next);
        if self.masks.any_inactive(t) {
            for (r, row) in y.chunks_exact_mut(hout).enumerate() {
                if !self.masks.active(t, r) {
                    row.fill(T::ZERO);
                }
            }
        }
    }
}
