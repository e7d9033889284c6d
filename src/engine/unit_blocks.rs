//! The forward weights of an LSTM laid out by unit blocks, for the small batches whose steps
//! a team of threads shares ([`super::forward_blocks`]).
//!
//! `W_hh^T` (`[Hout][4H]`, gates i, f, g, o) is packed block after block of [`unit_block`]
//! hidden units, each block its four gates' columns one after another:
//! `[i of units 0..U | f 0..U | g 0..U | o 0..U | i of U..2U | ...]`, and the combined bias
//! in the same order. A range of blocks is then one contiguous range of panels: one product
//! gives all four gates of its units, and the pointwise pass can run on them right away,
//! so the threads of a team each finish their own units instead of handing the whole step
//! to one of them. Every column holds the same packed values as in PyTorch's order, so the
//! products give the same bits. The layout is a second packing, kept beside the first in
//! the workspace (one more `W_hh^T` in memory) and made only for calls that use it.

use fused_rnn_kernels::gemm::packed::{self, packed_len, panel_width};
use fused_rnn_kernels::{CellKind, Float, MatRef};

use super::DirSpec;
use super::plan::pool_threads;
use crate::config::Parallelism;
use crate::layout::splits_columns;

/// Hidden units per block: two panels (64 in f32, 32 in f64).
pub(crate) fn unit_block<T: Float>() -> usize {
    2 * panel_width::<T>()
}

/// Whether a direction's weights can be laid out by unit blocks: an LSTM without projection
/// whose hidden size is a multiple of [`unit_block`].
pub(crate) fn applies<T: Float>(s: &DirSpec) -> bool {
    s.cell == CellKind::Lstm
        && s.proj == 0
        && s.hidden > 0
        && s.hidden.is_multiple_of(unit_block::<T>())
}

/// Whether a forward call of `batch` sequences runs its steps by unit blocks: the layout
/// applies and the steps are split among several threads (one chunk of fewer than 8 rows;
/// see [`super::plan::splits_step`]).
pub(crate) fn wanted<T: Float>(s: &DirSpec, batch: usize, par: Parallelism) -> bool {
    applies::<T>(s)
        && splits_columns(batch, s.hout, s.gh())
        && s.gh() > panel_width::<T>()
        && pool_threads(par) > 1
}

/// Packs `w_t` (`W_hh^T`, `[Hout][4H]`) by unit blocks into `out` ([`packed_len`] long).
pub(crate) fn pack<T: Float>(s: &DirSpec, w_t: MatRef<'_, T>, out: &mut [T]) {
    let (h, ub, nr) = (s.hidden, unit_block::<T>(), panel_width::<T>());
    let k = w_t.rows();
    let per_panel = k * nr;
    assert!(out.len() >= packed_len::<T>(k, w_t.cols()));
    for b in 0..h / ub {
        for g in 0..4 {
            let panel = (b * 4 + g) * ub / nr;
            packed::pack(
                w_t.cols_range(g * h + b * ub, ub),
                &mut out[panel * per_panel..],
            );
        }
    }
}

/// Writes `src` (`[4H]`, the gates one after another) into `dst` in unit-block order.
pub(crate) fn order<T: Float>(s: &DirSpec, src: &[T], dst: &mut [T]) {
    let (h, ub) = (s.hidden, unit_block::<T>());
    for b in 0..h / ub {
        for g in 0..4 {
            dst[(b * 4 + g) * ub..][..ub].copy_from_slice(&src[g * h + b * ub..][..ub]);
        }
    }
}
