//! Splitting a product over threads by rows of C, or (a prepacked product of few rows) by
//! columns.
//!
//! A product's blocking depends only on its shape, and every row of C is computed by the
//! same microkernel sequence whichever part it falls in, as long as parts start at multiples
//! of the microkernel's height (see [`micro_rows`]). So a split changes which thread computes
//! a row, never its value: results are bitwise the same for any thread count. A part of
//! whole panels of a packed W computes its columns with the arithmetic of the whole product
//! (see [`PackedRef::panels`]), so a column split keeps the bits too.

use pulp::{Arch, Simd, WithSimd};

use super::packed::{PackedRef, panel_width};
use super::scratch::{self, Slot};
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

/// How a prepacked product is cut over threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// This many row ranges ([`for_row_parts`]).
    Rows(usize),
    /// This many ranges of W's panels ([`for_col_parts`]).
    Cols(usize),
}

/// Row-equivalents a tile's pass over a range of W costs beyond its rows' multiply-adds
/// (loading W, setting up, storing C; a rough model, fitted to the measurements at
/// [`cut`]).
const TILE_PASS_ROWS: usize = 2;

/// How to cut `C <- A W` (`m x k` by a packed `k x n` of `panels` panels) for `threads`: by
/// rows as [`parts`] says, or by columns when the model (rows, plus [`TILE_PASS_ROWS`] per
/// tile, times panels, for the largest part; a column split also copies all but its first
/// part's columns through a buffer) makes the largest column part at least 5% cheaper. Few
/// rows cut by rows leave one part a tile more than the other, or a single row that streams
/// the whole W alone; fewer rows than a tile per thread are not cut by rows at all. Measured
/// on Zen 4 (2 threads, AVX2, median of 40-400 calls): `[100,
/// 1024] x [1024, 4096]` 6.60-6.74 ms by rows (54 and 46 rows), 5.60-5.74 by columns plus
/// 0.10 for the copy; `[25, 512] x [512, 2048]` 415 -> 370-375 us plus 6; `[400, 512] x
/// [512, 2048]` 5.13 ms either way plus 0.15-0.16 for the copy, and `[150, 256] x [256,
/// 1024]` 0.52 against 0.51 plus 0.01, which stay by rows.
pub(crate) fn cut(
    threads: usize,
    mr: usize,
    (m, k, n): (usize, usize, usize),
    panels: usize,
) -> Cut {
    let rows = parts(threads, mr, (m, k, n));
    let cols = resolve(threads).min(panels);
    if cols <= 1 || m.saturating_mul(k).saturating_mul(n) < MIN_SPLIT_FMAS {
        return Cut::Rows(rows);
    }
    let pass = |rows: usize| rows + TILE_PASS_ROWS * rows.div_ceil(mr);
    let by_rows = pass(largest_row_part(rows, mr, m)) * panels;
    // The copy of one staged element, in multiply-adds of a row-panel (k x 32 of them):
    // about 0.4 ns against 32 k FMAs at 40 a nanosecond, so 8 / k of a row-panel a column.
    let copy = m * (panels - panels / cols) * 8 / k.max(1);
    let by_cols = pass(m) * panels.div_ceil(cols) + copy;
    if by_cols * 20 <= by_rows * 19 {
        Cut::Cols(cols)
    } else {
        Cut::Rows(rows)
    }
}

/// `threads`, or the current rayon pool's size for 0.
fn resolve(threads: usize) -> usize {
    if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    }
}

/// The most rows [`for_row_parts`] gives one of `parts` parts of `m` rows.
fn largest_row_part(parts: usize, mr: usize, m: usize) -> usize {
    if parts <= 1 {
        return m;
    }
    let half = parts / 2;
    let at = (m * half / parts).next_multiple_of(mr).min(m);
    largest_row_part(half, mr, at).max(largest_row_part(parts - half, mr, m - at))
}

/// Runs `f(w_part, c_part)` on `parts` ranges of W's panels in parallel with rayon's
/// `join`, each with the columns of C it computes: the first part's in C itself, the others'
/// in a buffer of this thread's (see [`scratch`]), copied in first when `beta` reads C and
/// back after. Every part computes all rows of A.
pub(crate) fn for_col_parts<T: Float>(
    parts: usize,
    w: PackedRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
    f: &(impl Fn(PackedRef<'_, T>, MatMut<'_, T>) + Sync),
) {
    let panels = w.panel_count();
    if parts <= 1 || panels <= 1 {
        return f(w, c);
    }
    let first = panels / parts;
    let n0 = (first * panel_width::<T>()).min(w.n());
    let (m, rest) = (c.rows, w.n() - n0);
    scratch::with_scratch(Slot::C, m * rest, |stage| {
        let mut c = c;
        let staged = Staged {
            w,
            panels: first..panels,
            parts: parts - 1,
            m,
        };
        if beta != T::ZERO {
            staged.copy(stage, &mut c, true);
        }
        let left = MatMut {
            cols: n0,
            ..c.reborrow()
        };
        rayon::join(|| f(w.panels(0..first), left), || staged.run(stage, f));
        staged.copy(stage, &mut c, false);
    });
}

/// The parts of a column split after the first: `parts` ranges of `panels`, each computing
/// its `m` rows into its own stretch of the staging buffer, in the order the recursion cuts
/// them (the same order for the parallel run and the copies).
struct Staged<'w, T> {
    w: PackedRef<'w, T>,
    panels: core::ops::Range<usize>,
    parts: usize,
    m: usize,
}

impl<T: Float> Staged<'_, T> {
    /// Columns of this range (the last panel clipped to W's width).
    fn cols(&self) -> usize {
        let nr = panel_width::<T>();
        (self.panels.end * nr).min(self.w.n()) - self.panels.start * nr
    }

    /// The two halves of this range (fewer parts first), or none for a single part.
    fn halves(&self) -> Option<(Self, Self)> {
        if self.parts <= 1 || self.panels.len() <= 1 {
            return None;
        }
        let half = self.parts / 2;
        let mid = self.panels.start + (self.panels.len() * half / self.parts).max(1);
        let part = |panels: core::ops::Range<usize>, parts| Staged {
            w: self.w,
            panels,
            parts,
            m: self.m,
        };
        Some((
            part(self.panels.start..mid, half),
            part(mid..self.panels.end, self.parts - half),
        ))
    }

    /// Computes every part into `stage` (this range's stretch), in parallel.
    fn run(&self, stage: &mut [T], f: &(impl Fn(PackedRef<'_, T>, MatMut<'_, T>) + Sync)) {
        match self.halves() {
            None => {
                let cols = self.cols();
                let out = MatMut::row_major(&mut stage[..self.m * cols], self.m, cols, cols);
                f(self.w.panels(self.panels.clone()), out);
            }
            Some((left, right)) => {
                let (one, two) = stage.split_at_mut(self.m * left.cols());
                rayon::join(|| left.run(one, f), || right.run(two, f));
            }
        }
    }

    /// Copies this range's columns of `c` into `stage` (`into_stage`) or back.
    fn copy(&self, stage: &mut [T], c: &mut MatMut<'_, T>, into_stage: bool) {
        match self.halves() {
            None => {
                let (cols, c0) = (self.cols(), self.panels.start * panel_width::<T>());
                for (r, part) in stage[..self.m * cols].chunks_exact_mut(cols).enumerate() {
                    let row = &mut c.row_mut(r)[c0..c0 + cols];
                    if into_stage {
                        part.copy_from_slice(row);
                    } else {
                        row.copy_from_slice(part);
                    }
                }
            }
            Some((left, right)) => {
                let (one, two) = stage.split_at_mut(self.m * left.cols());
                left.copy(one, c, into_stage);
                right.copy(two, c, into_stage);
            }
        }
    }
}

/// Outputs that a product's threads cut by rows: one C, or the several Cs of products that
/// share their A ([`super::beside::gemm_beside`]).
pub(crate) trait SplitRows: Sized + Send {
    /// The rows before `at`, and the rest.
    fn split_rows_at(self, at: usize) -> (Self, Self);
}

impl<T: Send> SplitRows for MatMut<'_, T> {
    fn split_rows_at(self, at: usize) -> (Self, Self) {
        self.split_rows(at)
    }
}

impl<T: Send, const N: usize> SplitRows for [Option<MatMut<'_, T>>; N] {
    fn split_rows_at(self, at: usize) -> (Self, Self) {
        let mut bottoms: [Option<MatMut<'_, T>>; N] = core::array::from_fn(|_| None);
        let tops = {
            let mut i = 0;
            self.map(|c| {
                let top = c.map(|c| {
                    let (top, bottom) = c.split_rows(at);
                    bottoms[i] = Some(bottom);
                    top
                });
                i += 1;
                top
            })
        };
        (tops, bottoms)
    }
}

/// Runs `f` on `parts` row ranges of (A, C), cut at multiples of `mr`, in parallel with
/// rayon's `join` (which allocates nothing).
pub(crate) fn for_row_parts<T: Float, C: SplitRows>(
    parts: usize,
    mr: usize,
    a: MatRef<'_, T>,
    c: C,
    f: &(impl Fn(MatRef<'_, T>, C) + Sync),
) {
    if parts <= 1 {
        return f(a, c);
    }
    let half = parts / 2;
    let at = (a.rows() * half / parts).next_multiple_of(mr).min(a.rows());
    let (a_top, a_bottom) = (a.rows_range(0, at), a.rows_range(at, a.rows() - at));
    let (c_top, c_bottom) = c.split_rows_at(at);
    rayon::join(
        || for_row_parts(half, mr, a_top, c_top, f),
        || for_row_parts(parts - half, mr, a_bottom, c_bottom, f),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cuts the measurements at [`cut`] ask for (AVX2's 6-row tiles, f32 panels).
    #[test]
    fn few_rows_are_cut_by_columns_and_many_by_rows() {
        let at =
            |threads, (m, k, n): (usize, usize, usize)| cut(threads, 6, (m, k, n), n.div_ceil(32));
        assert_eq!(at(2, (100, 1024, 4096)), Cut::Cols(2));
        assert_eq!(at(2, (25, 512, 2048)), Cut::Cols(2));
        assert_eq!(at(4, (25, 512, 2048)), Cut::Cols(4));
        // Fewer rows than a tile per thread: not worth cutting by rows at all.
        assert_eq!(at(2, (4, 1024, 4096)), Cut::Cols(2));
        assert_eq!(at(2, (400, 512, 2048)), Cut::Rows(2));
        assert_eq!(at(2, (150, 256, 1024)), Cut::Rows(2));
        assert_eq!(at(2, (375, 1024, 3072)), Cut::Rows(2));
        // Too small to split, or one thread.
        assert_eq!(at(2, (1, 64, 256)), Cut::Rows(1));
        assert_eq!(at(1, (100, 1024, 4096)), Cut::Rows(1));
    }
}
