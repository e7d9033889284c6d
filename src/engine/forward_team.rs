//! The forward time loop of a small batch on several threads: each step's recurrent product
//! is cut into column pieces that a [`team`](super::team) of the pool's threads computes,
//! and the thread that completes a step's last piece gathers them and runs the pointwise
//! pass. The pieces, the gathering and the pass are the computations of the one-thread loop
//! ([`super::plan::step_product`]'s split), so the results are bitwise the same.
//!
//! The design suggests pieces that own hidden units with all their gates, each running its
//! units' pointwise pass, so that no pass is sequential. With the weights in PyTorch's gate
//! order a piece's gates are G separate weight streams and products, and that cost more
//! than the sequential pass saves (measured on Zen 4, 2 threads, batch 1: H = 256 8%
//! slower). An LSTM whose hidden size is a multiple of the unit block gets such pieces from
//! a second packing of its weights, by unit blocks ([`super::forward_blocks`]); the other
//! cells and sizes keep the column ranges here.

use std::sync::{Mutex, PoisonError, RwLock};

use arrayvec::ArrayVec;
use fused_rnn_kernels::gemm::packed::panel_width;
use fused_rnn_kernels::{CellKind, Float, MatRef};

use super::forward::{DirForward, product_target};
use super::plan::{columns_view, gather_parts, part_of, part_product, pool_threads, splits_step};
use super::team::{MAX_UNITS, run_team};
use crate::layout::block;

impl<T: Float> DirForward<'_, T> {
    /// The pieces per step when a team runs this loop: a single-product step whose product
    /// is split by columns, and more than one thread to share it. Two pieces per thread let
    /// an early thread take some of a late one's share.
    pub(super) fn team_units(&self) -> Option<usize> {
        let (w, threads) = (self.step.first, pool_threads(self.par));
        (self.single_product() && splits_step(self.spec.batch, w, self.par))
            .then(|| (2 * threads).min(w.panel_count()).min(MAX_UNITS))
    }

    /// All steps, each product in `units` column pieces (see the module docs).
    pub(super) fn run_steps_team(&mut self, units: usize) {
        if let Some(blocks) = self.step.blocks {
            return self.run_steps_blocks(units, blocks);
        }
        let s = self.spec;
        let w = self.step.first;
        let (rows, n) = (s.batch, w.n());
        let per = w.panel_count().div_ceil(units);
        let staging = std::mem::take(&mut self.scratch.staging);
        let parts: ArrayVec<Mutex<&mut [T]>, MAX_UNITS> = staging[..rows * n]
            .chunks_mut(rows * per * panel_width::<T>())
            .map(Mutex::new)
            .collect();
        self.run_parts(
            &parts,
            |me, k, u, out| me.piece(k, u, per, out),
            |me, k, parts| me.close_step(k, parts),
        );
    }

    /// All steps on a team whose pieces write `parts` (one each): `piece(me, k, u, out)`
    /// computes piece `u` of step `k` into its part, `close(me, k, parts)` the rest of step
    /// `k` once all its pieces are done; then the next step opens.
    pub(super) fn run_parts(
        &mut self,
        parts: &[Mutex<&mut [T]>],
        piece: impl Fn(&Self, usize, usize, &mut [T]) + Sync,
        close: impl Fn(&mut Self, usize, &[Mutex<&mut [T]>]) + Sync,
    ) {
        let first = self.open_step(0);
        let threads = pool_threads(self.par);
        let me = RwLock::new(self);
        run_team(
            threads,
            first,
            parts.len(),
            |k, u| {
                let me = me.read().unwrap_or_else(PoisonError::into_inner);
                let mut out = parts[u].lock().unwrap_or_else(PoisonError::into_inner);
                piece(&me, k, u, &mut out);
            },
            |k| {
                let mut me = me.write().unwrap_or_else(PoisonError::into_inner);
                close(&mut me, k, parts);
                me.open_step(k + 1)
            },
        );
    }

    /// Runs steps `from..` up to the next one with work: a step that is padding for every
    /// row only holds the state. Then applies that step's resets and, for several rows,
    /// lays out its A column by column for the pieces. Returns that step, if any.
    pub(super) fn open_step(&mut self, from: usize) -> Option<usize> {
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

    /// Piece `u` of step `k`'s product (panels `u * per..` of the weights) into `out`, the
    /// piece's `[rows][cols]` of the staging. Where the product adds onto the input
    /// projection (LSTM, RNN), the piece starts from a copy of its columns of it, as
    /// [`super::plan::step_product`]'s parts do.
    fn piece(&self, k: usize, u: usize, per: usize, out: &mut [T]) {
        let s = self.spec;
        let t = s.time(k);
        let (rows, hout, gh) = (s.batch, s.hout, s.gh());
        let a_cm = if rows == 1 {
            let (entry, _) = self.positions(t);
            MatRef::row_major(&self.tape.h[block(entry, 1, hout)], 1, hout, hout)
        } else {
            MatRef::new(&self.scratch.a[..rows * hout], rows, hout, 1, rows)
        };
        let w = self.step.first;
        let beta = match s.cell {
            CellKind::Gru { .. } => T::ZERO,
            _ => {
                let gates = &self.tape.gates[t * rows * gh..(t + 1) * rows * gh];
                part_of(gates, (rows, w.n()), u * per * panel_width::<T>(), out);
                T::ONE
            }
        };
        part_product(self.arch, a_cm, w, (per, u), beta, out);
    }

    /// Gathers step `k`'s pieces into the product's target and runs the rest of the step.
    fn close_step(&mut self, k: usize, parts: &[Mutex<&mut [T]>]) {
        let s = self.spec;
        let t = s.time(k);
        let (entry, exit) = self.positions(t);
        let (target, _) = product_target(&s, t, self.tape.gates, self.products);
        let pieces: ArrayVec<_, MAX_UNITS> = parts
            .iter()
            .map(|p| p.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let n = self.step.first.n();
        gather_parts(pieces.iter().map(|p| &***p), (s.batch, n), target);
        self.pointwise(t, entry, exit);
        self.hold_padding(t, entry, exit);
        self.write_outputs(t, exit);
    }
}
