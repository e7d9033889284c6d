//! The backward time loops of several batch chunks of one direction, stepped together:
//! each step's last product, `dL/dh_{t-1} = dG_t W_hh`, is one grouped product over the
//! chunks ([`gemm_packed_group`]), which streams `W_hh` from L3 once per step for all of
//! them instead of once per chunk (see [`super::forward_lockstep`] for the forward twin).
//!
//! The grouped product gives every chunk the bits of its own product, and each chunk's
//! passes, padding and resets run as in its own loop, so the results do not depend on the
//! grouping.

use arrayvec::ArrayVec;
use fused_rnn_kernels::Float;
use fused_rnn_kernels::MatMut;
use fused_rnn_kernels::gemm::packed::group::{GroupPart, gemm_packed_group};

use super::backward::{Carries, DirBackward};
use super::plan::{LOCKSTEP_CHUNK_ROWS, splits_step};
use crate::layout::MAX_CHUNKS;

/// Whether `runs` (chunks of one direction) step in lockstep: more than one, each of 1 to
/// [`LOCKSTEP_CHUNK_ROWS`] rows, none whose step product is split across threads.
pub(crate) fn back_in_lockstep<T: Float>(runs: &[DirBackward<'_, T>]) -> bool {
    runs.len() > 1
        && runs.iter().all(|r| {
            (1..=LOCKSTEP_CHUNK_ROWS).contains(&r.spec.batch)
                && !splits_step(r.spec.batch, r.step.first, r.par)
        })
}

/// Runs every step of `runs`, last to first, in lockstep (see the module docs); `runs`
/// must pass [`back_in_lockstep`].
pub(crate) fn run_back_lockstep<T: Float>(runs: ArrayVec<DirBackward<'_, T>, MAX_CHUNKS>) {
    debug_assert!(back_in_lockstep(&runs));
    let mut runs = runs;
    let mut carries: ArrayVec<Carries<'_, T>, MAX_CHUNKS> =
        runs.iter_mut().map(DirBackward::start).collect();
    let s = runs[0].spec;
    let (arch, w) = (runs[0].arch, runs[0].step.first);
    for k in (0..s.steps).rev() {
        let t = s.time(k);
        let active: ArrayVec<bool, MAX_CHUNKS> =
            runs.iter().map(|r| !r.masks.all_inactive(t)).collect();
        // (cols, beta) of the last product: the same for every chunk of a direction.
        let mut last = (0, T::ZERO);
        for ((r, c), &a) in runs.iter_mut().zip(&mut carries).zip(&active) {
            if a {
                last = r.step_pointwise(t, c);
            } else {
                r.skip(t, c);
            }
        }
        let (cols, beta) = last;
        let mut parts: ArrayVec<GroupPart<'_, T>, MAX_CHUNKS> = ArrayVec::new();
        for ((r, c), _) in runs
            .iter_mut()
            .zip(&mut carries)
            .zip(&active)
            .filter(|(_, a)| **a)
        {
            let (dg, dh_out, sc) = r.product_operands(t, cols, c);
            let (rows, n) = (dg.rows(), w.n());
            parts.push(GroupPart {
                a: dg,
                c: MatMut::row_major(dh_out, rows, n, n),
                scratch: &mut *sc.a,
            });
        }
        gemm_packed_group(arch, &mut parts, w, beta);
        drop(parts);
        for ((r, c), &a) in runs.iter_mut().zip(&mut carries).zip(&active) {
            if a {
                r.step_end(t, c);
            }
            c.cur ^= 1;
        }
    }
    for (r, c) in runs.into_iter().zip(carries) {
        r.finish(c);
    }
}
