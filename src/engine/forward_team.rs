//! The forward time loop of a small batch on several threads, split as the design says:
//! each step is cut into pieces that each own a range of hidden units with all their gates,
//! so a piece's pointwise pass needs no other piece's columns. A [`team`](super::team) of
//! the pool's threads claims the pieces; a piece computes its units' columns of the
//! recurrent product into its own staging, adds the input projection there and runs the
//! pointwise pass on them while they are in its core's cache. The thread that completes a
//! step's last piece only copies the pieces' results into the tape and opens the next step.
//!
//! Every column of the product is computed with the arithmetic of the whole product and
//! the pass works unit by unit, so the results are bitwise those of the one-thread loop.

use std::ops::Range;
use std::sync::{Mutex, PoisonError, RwLock};

use arrayvec::ArrayVec;
use fused_rnn_kernels::gemm::packed::{gemm_packed, panel_width};
use fused_rnn_kernels::pointwise::gru::{GruFwdPointwise, gru_fwd_pointwise};
use fused_rnn_kernels::pointwise::lstm::{LstmFwdPointwise, lstm_fwd_pointwise};
use fused_rnn_kernels::pointwise::rnn::{RnnFwdPointwise, rnn_fwd_pointwise};
use fused_rnn_kernels::{CellKind, Float, MatMut, MatRef, Rows};

use super::forward::{DirForward, extra_slot};
use super::plan::{columns_view, pool_threads, splits_step};
use super::rows_mut;
use super::team::{MAX_UNITS, run_team};
use crate::layout::{Carver, block};

/// One piece's staging: its units' gates, state and output, `[rows][...]` packed with the
/// piece's width `nu` in place of H (sized by [`crate::layout::team_staging_len`]).
struct Piece<'a, T> {
    units: Range<usize>,
    /// `[rows][G*nu]`: the input projection plus (LSTM, RNN) the product, then the
    /// activated gates.
    gates: &'a mut [T],
    /// GRU: `[rows][3*nu]` the recurrent product, kept apart (r scales only its n block).
    products: &'a mut [T],
    /// `[rows][nu]`: c (LSTM), `h W_hn^T + b_hn` (GRU) or nothing (RNN).
    state: &'a mut [T],
    /// `[rows][nu]`: h, or `o * tanh(c)` for a projected LSTM.
    out: &'a mut [T],
    /// `[G*nu]`: the units' biases, gate by gate.
    bias: &'a mut [T],
}

impl<T: Float> DirForward<'_, T> {
    /// The pieces per step when a team runs this loop: a single-product step whose product
    /// is split across threads, with gate blocks that start on panel boundaries (so that a
    /// piece's columns are whole panels). Two pieces per thread let an early thread take
    /// some of a late one's share.
    pub(super) fn team_units(&self) -> Option<usize> {
        let s = self.spec;
        let groups = s.hidden / panel_width::<T>();
        let aligned = s.hidden.is_multiple_of(panel_width::<T>()) && groups >= 2;
        let split = splits_step(s.batch, self.step.first, self.par);
        (self.single_product() && split && aligned)
            .then(|| (2 * pool_threads(self.par)).min(groups).min(MAX_UNITS))
    }

    /// All steps, each in `units` pieces (see the module docs).
    pub(super) fn run_steps_team(&mut self, units: usize) {
        let s = self.spec;
        let (g, nr) = (s.cell.gates(), panel_width::<T>());
        let per = (s.hidden / nr).div_ceil(units) * nr;
        let staging = std::mem::take(&mut self.scratch.staging);
        let mut carve = Carver::new(staging);
        let pieces: ArrayVec<Mutex<Piece<'_, T>>, MAX_UNITS> = (0..s.hidden)
            .step_by(per)
            .map(|u0| {
                let units = u0..(u0 + per).min(s.hidden);
                let nu = units.len();
                let gru = matches!(s.cell, CellKind::Gru { .. });
                let has_state = !matches!(s.cell, CellKind::Rnn(_));
                let mut piece = Piece {
                    gates: carve.take(s.batch * g * nu),
                    products: carve.take(if gru { s.batch * g * nu } else { 0 }),
                    state: carve.take(if has_state { s.batch * nu } else { 0 }),
                    out: carve.take(s.batch * nu),
                    bias: carve.take(g * nu),
                    units,
                };
                self.gather_bias(&mut piece);
                Mutex::new(piece)
            })
            .collect();
        let first = self.open_step(0);
        let threads = pool_threads(self.par);
        let me = RwLock::new(self);
        run_team(
            threads,
            first,
            pieces.len(),
            |k, u| {
                let me = me.read().unwrap_or_else(PoisonError::into_inner);
                let mut piece = pieces[u].lock().unwrap_or_else(PoisonError::into_inner);
                me.piece(k, &mut piece);
            },
            |k| {
                let mut me = me.write().unwrap_or_else(PoisonError::into_inner);
                me.close_step(k, &pieces);
                me.open_step(k + 1)
            },
        );
    }

    /// Copies a piece's units' biases out of the gate blocks of the layer's.
    fn gather_bias(&self, piece: &mut Piece<'_, T>) {
        let (h, nu) = (self.spec.hidden, piece.units.len());
        for (q, dst) in piece.bias.chunks_exact_mut(nu).enumerate() {
            dst.copy_from_slice(&self.w.bias[q * h + piece.units.start..][..nu]);
        }
    }

    /// Runs steps `from..` up to the next one with work: a step that is padding for every
    /// row only holds the state. Then applies that step's resets and, for several rows,
    /// lays out its A column by column for the pieces. Returns that step, if any.
    fn open_step(&mut self, from: usize) -> Option<usize> {
        let s = self.spec;
        for k in from..s.steps {
            let t = s.time(k);
            let (entry, exit) = self.positions(t);
            if self.masks.all_inactive(t) {
                self.hold_padding(t, entry, exit);
                self.write_outputs(t, exit);
                continue;
            }
            self.apply_resets(t, entry);
            if s.batch > 1 {
                let h_prev = &self.tape.h[block(entry, s.batch, s.hout)];
                let a = MatRef::row_major(h_prev, s.batch, s.hout, s.hout);
                columns_view(a, self.scratch.a);
            }
            return Some(k);
        }
        None
    }

    /// A piece of step `k`: its units' product columns and pointwise pass, in its staging.
    fn piece(&self, k: usize, piece: &mut Piece<'_, T>) {
        let s = self.spec;
        let t = s.time(k);
        let (entry, _) = self.positions(t);
        let (rows, hout, h, g, gh) = (s.batch, s.hout, s.hidden, s.cell.gates(), s.gh());
        let (units, nu, nr) = (piece.units.clone(), piece.units.len(), panel_width::<T>());
        let a = if rows == 1 {
            MatRef::row_major(&self.tape.h[block(entry, 1, hout)], 1, hout, hout)
        } else {
            MatRef::new(&self.scratch.a[..rows * hout], rows, hout, 1, rows)
        };
        // The input projection of the piece's units, gate by gate.
        let x = &self.tape.gates[t * rows * gh..(t + 1) * rows * gh];
        for (r, row) in piece.gates.chunks_exact_mut(g * nu).enumerate() {
            for (q, dst) in row.chunks_exact_mut(nu).enumerate() {
                dst.copy_from_slice(&x[r * gh + q * h + units.start..][..nu]);
            }
        }
        let (target, beta) = match s.cell {
            CellKind::Gru { .. } => (&mut *piece.products, T::ZERO),
            _ => (&mut *piece.gates, T::ONE),
        };
        for q in 0..g {
            let col0 = q * h + units.start;
            let panels = col0 / nr..(col0 + nu).div_ceil(nr);
            let c = MatMut::new(&mut target[q * nu..], rows, nu, g * nu, 1);
            gemm_packed(
                self.arch,
                a,
                self.step.first.panels(panels),
                beta,
                c,
                &mut [],
            );
        }
        self.piece_pointwise(entry, piece);
    }

    /// The pointwise pass on a piece's staging; the previous state is read from the tape.
    fn piece_pointwise(&self, entry: usize, piece: &mut Piece<'_, T>) {
        let s = self.spec;
        let (rows, hout, h) = (s.batch, s.hout, s.hidden);
        let (u0, nu) = (piece.units.start, piece.units.len());
        let gates = rows_mut(piece.gates, rows, s.cell.gates() * nu);
        let out = rows_mut(piece.out, rows, nu);
        match s.cell {
            CellKind::Rnn(nonlinearity) => {
                let pass = RnnFwdPointwise {
                    gates,
                    bias: piece.bias,
                    nonlinearity,
                    h: out,
                };
                rnn_fwd_pointwise(self.arch, pass);
            }
            CellKind::Lstm => {
                let c_prev = &self.tape.c[block(entry, rows, h)][u0..];
                let pass = LstmFwdPointwise {
                    gates,
                    bias: piece.bias,
                    c_prev: Rows::new(c_prev, rows, nu, h),
                    c: rows_mut(piece.state, rows, nu),
                    h: out,
                };
                lstm_fwd_pointwise(self.arch, pass);
            }
            CellKind::Gru { .. } => {
                let h_prev = &self.tape.h[block(entry, rows, hout)][u0..];
                let pass = GruFwdPointwise {
                    gates,
                    hidden_gates: Rows::contiguous(piece.products, rows, 3 * nu),
                    bias: piece.bias,
                    bias_hn: &self.w.bias_hn[u0..u0 + nu],
                    h_prev: Rows::new(h_prev, rows, nu, hout),
                    hn: rows_mut(piece.state, rows, nu),
                    h: out,
                };
                gru_fwd_pointwise(self.arch, pass);
            }
        }
    }

    /// Copies step `k`'s pieces into the tape and runs the rest of the step.
    fn close_step(&mut self, k: usize, pieces: &[Mutex<Piece<'_, T>>]) {
        let s = self.spec;
        let t = s.time(k);
        let (entry, exit) = self.positions(t);
        let (rows, hout, h, g, gh) = (s.batch, s.hout, s.hidden, s.cell.gates(), s.gh());
        for piece in pieces {
            let piece = piece.lock().unwrap_or_else(PoisonError::into_inner);
            let (u0, nu) = (piece.units.start, piece.units.len());
            let gates = &mut self.tape.gates[t * rows * gh..(t + 1) * rows * gh];
            for q in 0..g {
                scatter(
                    piece.gates,
                    (rows, nu, g * nu, q * nu),
                    gates,
                    gh,
                    q * h + u0,
                );
            }
            let extra = extra_slot(self.tape.extra, self.tape.extra_slots, t, (rows, h));
            let (state, out): (&mut [T], &mut [T]) = match s.cell {
                CellKind::Lstm if s.proj > 0 => (&mut self.tape.c[block(exit, rows, h)], extra),
                CellKind::Lstm => (
                    &mut self.tape.c[block(exit, rows, h)],
                    &mut self.tape.h[block(exit, rows, hout)],
                ),
                CellKind::Gru { .. } => (extra, &mut self.tape.h[block(exit, rows, hout)]),
                CellKind::Rnn(_) => (&mut [], &mut self.tape.h[block(exit, rows, hout)]),
            };
            if !piece.state.is_empty() {
                scatter(piece.state, (rows, nu, nu, 0), state, h, u0);
            }
            scatter(piece.out, (rows, nu, nu, 0), out, h, u0);
        }
        self.project(t, exit);
        self.hold_padding(t, entry, exit);
        self.write_outputs(t, exit);
    }
}

/// Copies columns `col0..col0 + cols` of each of `rows` rows of `src` (rows `stride` apart)
/// to columns `at..` of the rows of `dst` (rows `ld` apart).
fn scatter<T: Copy>(
    src: &[T],
    (rows, cols, stride, col0): (usize, usize, usize, usize),
    dst: &mut [T],
    ld: usize,
    at: usize,
) {
    for r in 0..rows {
        dst[r * ld + at..][..cols].copy_from_slice(&src[r * stride + col0..][..cols]);
    }
}
