//! How work is cut and run: tasks over directions and batch chunks, and the per-step product
//! that small batches split by columns.
//!
//! Every cut depends only on the shapes (see [`crate::layout`]); `Parallelism::Sequential`
//! runs the same pieces in order, so results are bitwise the same for any thread count.

use rayon::prelude::*;

use crate::config::Parallelism;
use crate::layout::splits_columns;
use fused_rnn_kernels::gemm::packed::{PackedRef, gemm_packed, panel_width};
use fused_rnn_kernels::{Arch, Float, MatMut, MatRef};

/// Runs `f` on every task, on the current rayon pool or in order. Tasks are taken out of a
/// slice (rayon splits slices with `join`, which allocates nothing).
pub(crate) fn run_tasks<X: Send>(
    par: Parallelism,
    tasks: &mut [Option<X>],
    f: impl Fn(X) + Sync + Send,
) {
    let run = |slot: &mut Option<X>| {
        if let Some(task) = slot.take() {
            f(task);
        }
    };
    match par {
        Parallelism::Sequential => tasks.iter_mut().for_each(run),
        Parallelism::Rayon => tasks.par_iter_mut().with_max_len(1).for_each(run),
    }
}

/// Threads for a large product: the whole current pool, or this thread.
pub(crate) fn gemm_threads(par: Parallelism) -> usize {
    match par {
        Parallelism::Sequential => 1,
        Parallelism::Rayon => 0,
    }
}

/// Scratch of a step product: `gemm_packed`'s for A (or A's transpose when split), and the
/// staging of a split product's column ranges (`rows * n`).
#[derive(Debug)]
pub(crate) struct StepScratch<'a, T> {
    pub a: &'a mut [T],
    pub staging: &'a mut [T],
}

/// `C <- A W + beta C` for one step (`beta` is 0 or 1; C is `[rows][n]`, packed rows).
///
/// A batch chunk of 8 or more rows is one product. Fewer rows (a small batch, where the
/// chunks cannot split the work) are split into ranges of panels of W, each computed into
/// its own part of `staging` (on the pool's threads when parallel) and then copied or added
/// into C. Whether to split depends only on the shape, and each column range is computed
/// with the same arithmetic as in the whole product.
pub(crate) fn step_product<T: Float>(
    (arch, par): (Arch, Parallelism),
    a: MatRef<'_, T>,
    w: PackedRef<'_, T>,
    beta: T,
    c: &mut [T],
    scratch: &mut StepScratch<'_, T>,
) {
    let (rows, k, n) = (a.rows(), a.cols(), w.n());
    let panels = w.panel_count();
    if !splits_columns(rows, k, n) || panels < 2 {
        gemm_packed(
            arch,
            a,
            w,
            beta,
            MatMut::row_major(c, rows, n, n),
            scratch.a,
        );
        return;
    }
    // Each range reads A column by column, so transpose it once (a single row already is).
    let a_cm = if rows == 1 {
        a
    } else {
        let t = &mut scratch.a[..rows * k];
        for r in 0..rows {
            for (kk, &v) in a.row(r).iter().enumerate() {
                t[kk * rows + r] = v;
            }
        }
        MatRef::new(&*t, rows, k, 1, rows)
    };
    let per = panels.div_ceil(16);
    let block = rows * per * panel_width::<T>();
    let staging = &mut scratch.staging[..rows * n];
    let range = |(i, out): (usize, &mut [T])| {
        let part = w.panels(i * per..((i + 1) * per).min(panels));
        let cols = part.n();
        gemm_packed(
            arch,
            a_cm,
            part,
            T::ZERO,
            MatMut::row_major(&mut out[..rows * cols], rows, cols, cols),
            &mut [],
        );
    };
    match par {
        Parallelism::Sequential => staging.chunks_mut(block).enumerate().for_each(range),
        Parallelism::Rayon => staging.par_chunks_mut(block).enumerate().for_each(range),
    }
    for (i, part) in staging.chunks(block).enumerate() {
        let (col0, cols) = (i * per * panel_width::<T>(), part.len() / rows);
        for r in 0..rows {
            let (dst, src) = (
                &mut c[r * n + col0..r * n + col0 + cols],
                &part[r * cols..(r + 1) * cols],
            );
            if beta == T::ZERO {
                dst.copy_from_slice(src);
            } else {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            }
        }
    }
}
