//! The forward time loop of a small LSTM batch on several threads, by unit blocks: each
//! piece of a step owns a range of hidden units with all four of their gates (the weights
//! laid out by [`super::unit_blocks`]), computes their product and runs their pointwise
//! pass; the thread that completes a step's last piece only copies the pieces' new states
//! into the tape.
//!
//! With pieces that are column ranges of the product ([`super::forward_team`]) that thread
//! also gathers every gate and runs the whole pointwise pass while the others wait: measured
//! on Zen 4 (2 threads, batch 1, H = 256) 2.8 us of a 13.7 us step (the gather 1.0: half of
//! it is the other core's cache lines; the pass 1.8). Measured end to end (2 threads,
//! inference, min of 7 alternating runs): H = 256 batch 1 3.4% faster, H = 1024 batch 4
//! 7.1%, H = 512 batch 1 the same. The pieces' arithmetic is that of the one-thread loop
//! column by column and unit by unit, so the results are bitwise the same.

use std::sync::{Mutex, PoisonError};

use arrayvec::ArrayVec;
use fused_rnn_kernels::gemm::packed::{PackedRef, gemm_packed, panel_width};
use fused_rnn_kernels::pointwise::lstm::{LstmFwdPointwise, lstm_fwd_pointwise};
use fused_rnn_kernels::{Float, MatMut, MatRef, Rows, RowsMut};

use super::forward::DirForward;
use super::team::MAX_UNITS;
use super::unit_blocks::unit_block;
use crate::layout::block;

/// Which unit blocks a piece owns, and where its values lie in its part of the staging:
/// `[rows][blocks * 4U]` gates (block by block, each i, f, g, o), then `[rows][blocks * U]`
/// c, then the same for h.
#[derive(Clone, Copy, Debug)]
struct Piece {
    /// The first block.
    first: usize,
    /// Blocks.
    blocks: usize,
    /// Units per block.
    unit: usize,
    rows: usize,
}

impl Piece {
    fn new(u: usize, per: usize, total: usize, unit: usize, rows: usize) -> Self {
        let first = u * per;
        Piece {
            first,
            blocks: per.min(total - first),
            unit,
            rows,
        }
    }
    /// Elements of a gates row.
    fn width(&self) -> usize {
        4 * self.unit * self.blocks
    }
    /// Units, and hence elements of a c or h row.
    fn units(&self) -> usize {
        self.unit * self.blocks
    }
    /// The piece's first hidden unit.
    fn unit0(&self) -> usize {
        self.first * self.unit
    }
    /// Elements of a piece's part of the staging.
    fn len(&self) -> usize {
        self.rows * (self.width() + 2 * self.units())
    }
}

impl<T: Float> DirForward<'_, T> {
    /// All steps, each in `units` pieces of unit blocks (see the module docs), with the
    /// weights and biases laid out by [`super::unit_blocks`].
    pub(super) fn run_steps_blocks(&mut self, units: usize, blocks: (PackedRef<'_, T>, &[T])) {
        let s = self.spec;
        let unit = unit_block::<T>();
        let total = s.hidden / unit;
        let per = total.div_ceil(units.min(total));
        let count = total.div_ceil(per);
        let staging = std::mem::take(&mut self.scratch.staging);
        let mut parts = ArrayVec::<Mutex<&mut [T]>, MAX_UNITS>::new();
        let mut rest = &mut staging[..];
        for u in 0..count {
            let len = Piece::new(u, per, total, unit, s.batch).len();
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(len);
            parts.push(Mutex::new(part));
            rest = tail;
        }
        self.run_parts(
            &parts,
            |me, k, u, out| {
                let piece = Piece::new(u, per, total, unit, s.batch);
                me.block_piece(k, piece, blocks, out);
            },
            |me, k, parts| me.close_blocks(k, (per, total, unit), parts),
        );
    }

    /// A piece of step `k`: the input projection of its units, the recurrent product added
    /// onto it, and the pointwise pass, into `out` (its part of the staging).
    fn block_piece(&self, k: usize, p: Piece, (w, bias): (PackedRef<'_, T>, &[T]), out: &mut [T]) {
        let s = self.spec;
        let t = s.time(k);
        let (rows, h, gh, u) = (s.batch, s.hidden, s.gh(), p.unit);
        let width = p.width();
        let (gates, rest) = out.split_at_mut(rows * width);
        let (c, h_out) = rest.split_at_mut(rows * p.units());
        // The input projection (in the tape's gates, PyTorch's order), block by block.
        let projection = &self.tape.gates[t * rows * gh..(t + 1) * rows * gh];
        for r in 0..rows {
            for b in 0..p.blocks {
                for g in 0..4 {
                    let from = r * gh + g * h + (p.first + b) * u;
                    let to = r * width + (4 * b + g) * u;
                    gates[to..to + u].copy_from_slice(&projection[from..from + u]);
                }
            }
        }
        let (entry, _) = self.positions(t);
        let a = if rows == 1 {
            MatRef::row_major(&self.tape.h[block(entry, 1, s.hout)], 1, s.hout, s.hout)
        } else {
            MatRef::new(&self.scratch.a[..rows * s.hout], rows, s.hout, 1, rows)
        };
        let panels = |b: usize| b * 4 * u / panel_width::<T>();
        gemm_packed(
            self.arch,
            a,
            w.panels(panels(p.first)..panels(p.first + p.blocks)),
            T::ONE,
            MatMut::row_major(gates, rows, width, width),
            &mut [],
        );
        let c_prev = &self.tape.c[block(entry, rows, h)];
        let units = p.units();
        for b in 0..p.blocks {
            let unit0 = (p.first + b) * u;
            let pass = LstmFwdPointwise {
                gates: RowsMut::new(&mut gates[4 * b * u..], rows, 4 * u, width),
                bias: &bias[4 * unit0..4 * (unit0 + u)],
                c_prev: Rows::new(&c_prev[unit0..], rows, u, h),
                c: RowsMut::new(&mut c[b * u..], rows, u, units),
                h: RowsMut::new(&mut h_out[b * u..], rows, u, units),
            };
            lstm_fwd_pointwise(self.arch, pass);
        }
    }

    /// Copies step `k`'s pieces into the tape (the new c and h, and for training the
    /// activated gates in PyTorch's order), then runs the rest of the step.
    fn close_blocks(
        &mut self,
        k: usize,
        (per, total, unit): (usize, usize, usize),
        parts: &[Mutex<&mut [T]>],
    ) {
        let s = self.spec;
        let t = s.time(k);
        let (entry, exit) = self.positions(t);
        let (rows, h, gh) = (s.batch, s.hidden, s.gh());
        for (i, part) in parts.iter().enumerate() {
            let part = part.lock().unwrap_or_else(PoisonError::into_inner);
            let p = Piece::new(i, per, total, unit, rows);
            let (width, units, u0) = (p.width(), p.units(), p.unit0());
            let (gates, rest) = part.split_at(rows * width);
            let (c, h_new) = rest.split_at(rows * units);
            let c_next = &mut self.tape.c[block(exit, rows, h)];
            for r in 0..rows {
                c_next[r * h + u0..r * h + u0 + units]
                    .copy_from_slice(&c[r * units..(r + 1) * units]);
            }
            let h_next = &mut self.tape.h[block(exit, rows, h)];
            for r in 0..rows {
                h_next[r * h + u0..r * h + u0 + units]
                    .copy_from_slice(&h_new[r * units..(r + 1) * units]);
            }
            if self.tape.training {
                let saved = &mut self.tape.gates[t * rows * gh..(t + 1) * rows * gh];
                for r in 0..rows {
                    for b in 0..p.blocks {
                        for g in 0..4 {
                            let to = r * gh + g * h + u0 + b * unit;
                            let from = r * width + (4 * b + g) * unit;
                            saved[to..to + unit].copy_from_slice(&gates[from..from + unit]);
                        }
                    }
                }
            }
        }
        self.hold_padding(t, entry, exit);
        self.write_outputs(t, exit);
    }
}
