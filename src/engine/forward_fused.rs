//! The fused step: the recurrent product computed one column block at a time, each block
//! holding the gates of the same hidden units (i, f, g, o for an LSTM), and the pointwise
//! pass run on the block right after it is computed, while it is still in L1. The product
//! never makes the round trip to L2 and back that a whole product followed by a whole pass
//! makes (oneDNN's "postgemm" on blocks).
//!
//! The weights stay packed in PyTorch's gate order: a block's gates are `G` separate panel
//! ranges of the same packing, one per gate. Every column is computed by the same
//! arithmetic as in the whole product, and the pass on a range of units gives the bits of
//! the whole pass, so fusing changes no result.

use fused_rnn_kernels::gemm::packed::{IN_PLACE_ROWS, gemm_packed, panel_width};
use fused_rnn_kernels::{Float, MatMut, MatRef};
use std::ops::Range;

use super::forward::{DirForward, product_target};
use super::plan::{columns_view, splits_step};
use crate::layout::block;

/// Hidden units per column block: four panels of every gate (128 units in f32). At a chunk
/// of 8 rows an LSTM block is 8 x 4 x 128 values, 16 KiB in f32: half of Zen 4's L1.
/// Measured there with 2, 4 and 8 panels: the same speed within noise.
pub(super) const BLOCK_PANELS: usize = 4;

/// Fewest rows for which a step fuses: below 8 rows a step's whole product is a few KiB
/// that stays in L1 anyway, and the block-by-block products cost more than they save
/// (measured on Zen 4 at one thread: 2% slower at 2 rows, 7% at 1).
const MIN_ROWS: usize = 8;

impl<T: Float> DirForward<'_, T> {
    /// Whether steps fuse their pass into the product (see the module docs): single-product
    /// steps that are not split across threads, whose gate blocks start on panel
    /// boundaries, and whose A the product reads in place ([`MIN_ROWS`] to
    /// [`IN_PLACE_ROWS`] rows, the chunks a batch of 8 or more is cut into, laid out once
    /// per step column by column), so that computing it block by block packs nothing more.
    pub(super) fn fuses_steps(&self) -> bool {
        let s = self.spec;
        self.single_product()
            && !splits_step(s.batch, self.step.first, self.par)
            && (MIN_ROWS..=IN_PLACE_ROWS).contains(&s.batch)
            && s.hidden.is_multiple_of(panel_width::<T>())
    }

    /// One fused step (see the module docs).
    pub(super) fn step_fused(&mut self, t: usize, entry: usize, exit: usize) {
        let s = self.spec;
        let (b, hout, h) = (s.batch, s.hout, s.hidden);
        let h_prev = &self.tape.h[block(entry, b, hout)];
        columns_view(MatRef::row_major(h_prev, b, hout, hout), self.scratch.a);
        let units = BLOCK_PANELS * panel_width::<T>();
        for u0 in (0..h).step_by(units) {
            let block_units = u0..(u0 + units).min(h);
            self.block_product(t, block_units.clone());
            self.pointwise_units(t, entry, exit, block_units);
        }
        self.project(t, exit);
    }

    /// The recurrent product's columns of hidden units `units` in every gate block.
    fn block_product(&mut self, t: usize, units: Range<usize>) {
        let s = self.spec;
        let (b, hout, h, gh) = (s.batch, s.hout, s.hidden, s.gh());
        let (w, nr) = (self.step.first, panel_width::<T>());
        let a = MatRef::new(&self.scratch.a[..b * hout], b, hout, 1, b);
        let (target, beta) = product_target(&s, t, self.tape.gates, self.products);
        for gate in 0..s.cell.gates() {
            let col0 = gate * h + units.start;
            let panels = col0 / nr..(col0 + units.len()).div_ceil(nr);
            let c = MatMut::new(&mut target[col0..], b, units.len(), gh, 1);
            gemm_packed(self.arch, a, w.panels(panels), beta, c, &mut []);
        }
    }
}
