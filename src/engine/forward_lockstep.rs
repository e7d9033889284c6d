//! The forward time loops of several batch chunks of one direction, stepped together.
//!
//! Each chunk's fused step multiplies its 8-16 rows of h by the whole of `W_hh`; run one
//! chunk after the other, every chunk streams all of `W_hh` from L3 each step, 4 FLOPs per
//! byte at 8 rows. In lockstep every column block of the step's product is one grouped
//! product over the chunks ([`gemm_packed_group`]): each slice of `W_hh` meets all their
//! rows while it is in L1, so `W_hh` leaves L3 once per step for the whole group.
//!
//! A grouped product gives every chunk the bits of its own product, and each chunk's pass,
//! resets and padding run as in its own loop, so the results are those of the chunks run
//! one by one, whatever the grouping (and hence the thread count).

use arrayvec::ArrayVec;
use fused_rnn_kernels::gemm::packed::group::{GroupPart, gemm_packed_group};
use fused_rnn_kernels::gemm::packed::panel_width;
use fused_rnn_kernels::{Float, MatMut, MatRef};
use std::ops::Range;

use super::forward::{DirForward, product_target};
use super::forward_fused::BLOCK_PANELS;
use super::plan::{LOCKSTEP_CHUNK_ROWS, columns_view};
use crate::layout::{MAX_CHUNKS, block};

/// Whether `runs` (chunks of one direction) step in lockstep: more than one, each of at most
/// [`LOCKSTEP_CHUNK_ROWS`] rows and each of whose steps fuses (see [`DirForward::fuses_steps`]).
pub(crate) fn steps_in_lockstep<T: Float>(runs: &[DirForward<'_, T>]) -> bool {
    runs.len() > 1
        && runs
            .iter()
            .all(|r| (1..=LOCKSTEP_CHUNK_ROWS).contains(&r.spec.batch) && r.fuses_steps())
}

/// Runs every step of `runs` in lockstep (see the module docs); `runs` must pass
/// [`steps_in_lockstep`].
pub(crate) fn run_lockstep<T: Float>(runs: &mut [DirForward<'_, T>]) {
    debug_assert!(steps_in_lockstep(runs));
    runs.iter_mut().for_each(DirForward::start);
    let s = runs[0].spec;
    for k in 0..s.steps {
        let t = s.time(k);
        let (entry, exit) = runs[0].positions(t);
        // A chunk whose sequences are all padding at `t` skips the step, as alone.
        let active: ArrayVec<bool, MAX_CHUNKS> =
            runs.iter().map(|r| !r.masks.all_inactive(t)).collect();
        for (r, _) in runs.iter_mut().zip(&active).filter(|(_, a)| **a) {
            r.apply_resets(t, entry);
            let (b, hout) = (r.spec.batch, s.hout);
            let h_prev = &r.tape.h[block(entry, b, hout)];
            columns_view(MatRef::row_major(h_prev, b, hout, hout), r.scratch.a);
        }
        let units = BLOCK_PANELS * panel_width::<T>();
        for u0 in (0..s.hidden).step_by(units) {
            let block_units = u0..(u0 + units).min(s.hidden);
            block_products(runs, &active, t, block_units.clone());
            for (r, _) in runs.iter_mut().zip(&active).filter(|(_, a)| **a) {
                r.pointwise_units(t, entry, exit, block_units.clone());
            }
        }
        for (r, &a) in runs.iter_mut().zip(&active) {
            if a {
                r.project(t, exit);
            }
            r.hold_padding(t, entry, exit);
            r.write_outputs(t, exit);
        }
    }
}

/// The step products' columns of hidden units `units` in every gate block, for every
/// active chunk: one grouped product per gate.
fn block_products<T: Float>(
    runs: &mut [DirForward<'_, T>],
    active: &[bool],
    t: usize,
    units: Range<usize>,
) {
    let s = runs[0].spec;
    let (h, gh, nr) = (s.hidden, s.gh(), panel_width::<T>());
    let (arch, w) = (runs[0].arch, runs[0].step.first);
    for gate in 0..s.cell.gates() {
        let col0 = gate * h + units.start;
        let panels = col0 / nr..(col0 + units.len()).div_ceil(nr);
        let mut beta = T::ZERO;
        let mut parts: ArrayVec<GroupPart<'_, T>, MAX_CHUNKS> = ArrayVec::new();
        for (r, _) in runs.iter_mut().zip(active).filter(|(_, a)| **a) {
            let (b, hout) = (r.spec.batch, s.hout);
            let (target, part_beta) = product_target(&r.spec, t, r.tape.gates, r.products);
            beta = part_beta;
            parts.push(GroupPart {
                a: MatRef::new(&r.scratch.a[..b * hout], b, hout, 1, b),
                c: MatMut::new(&mut target[col0..], b, units.len(), gh, 1),
                scratch: &mut [],
            });
        }
        gemm_packed_group(arch, &mut parts, w.panels(panels.clone()), beta);
    }
}
