//! Splitting a product over threads by rows of C.
//!
//! A product's blocking depends only on its shape, and every row of C is computed by the
//! same microkernel sequence whichever part it falls in, as long as parts start at multiples
//! of the microkernel's height (see [`micro_rows`]). So a split changes which thread computes
//! a row, never its value: results are bitwise the same for any thread count.

use pulp::{Arch, Simd, WithSimd};

use super::packed::panel_width;
use super::{MatMut, MatRef};
use crate::float::Float;

/// Rows per microkernel tile of [`super::packed::gemm_packed`] on `arch`.
pub fn micro_rows<T: Float>(arch: Arch) -> usize {
    struct Rows<T>(core::marker::PhantomData<T>);
    impl<T: Float> WithSimd for Rows<T> {
        type Output = usize;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> usize {
            let lanes = T::lanes::<S>();
            let regs = panel_width::<T>() / lanes;
            if S::REGISTER_COUNT >= 32 && regs.is_multiple_of(2) {
                12
            } else if lanes > 1 && regs.is_multiple_of(2) {
                6
            } else {
                4
            }
        }
    }
    arch.dispatch(Rows::<T>(core::marker::PhantomData))
}

/// Products below this many multiply-adds run on one thread: a split costs more than it
/// saves (about 10 us of work).
const MIN_SPLIT_FMAS: usize = 1 << 20;

/// How many parts to cut `m` rows into for `threads` (0: the current rayon pool's): at
/// least one microkernel tile of rows per part. A product of a few dozen rows (a short
/// batch-1 sequence's input projection: 25 rows against a 4 MiB weight) is worth splitting:
/// kept on one thread it took half the 2-thread time of `lstm_h512_b1_t25` (measured on
/// Zen 4: 1.21 -> 0.99 ms with two parts of 12 and 13 rows).
pub(crate) fn parts(threads: usize, mr: usize, (m, k, n): (usize, usize, usize)) -> usize {
    let threads = if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    };
    if threads <= 1 || m.saturating_mul(k).saturating_mul(n) < MIN_SPLIT_FMAS {
        return 1;
    }
    threads.min(m / mr).max(1)
}

/// Runs `f` on `parts` row ranges of (A, C), cut at multiples of `mr`, in parallel with
/// rayon's `join` (which allocates nothing).
pub(crate) fn for_row_parts<T: Float>(
    parts: usize,
    mr: usize,
    a: MatRef<'_, T>,
    c: MatMut<'_, T>,
    f: &(impl Fn(MatRef<'_, T>, MatMut<'_, T>) + Sync),
) {
    if parts <= 1 {
        return f(a, c);
    }
    let half = parts / 2;
    let at = (a.rows() * half / parts).next_multiple_of(mr).min(a.rows());
    let (a_top, a_bottom) = (a.rows_range(0, at), a.rows_range(at, a.rows() - at));
    let (c_top, c_bottom) = c.split_rows(at);
    rayon::join(
        || for_row_parts(half, mr, a_top, c_top, f),
        || for_row_parts(parts - half, mr, a_bottom, c_bottom, f),
    );
}
