//! Matrix products behind checked views, all on our own packed kernel.
//!
//! * [`packed::gemm_packed`]: `C <- A W + beta C` with `W` packed once, on this thread with
//!   the caller's scratch: the per-step recurrent products.
//! * [`gemm_prepacked`]: the same over the thread pool with per-thread scratch: the input
//!   projection and dL/dx against weights packed once per update.
//! * [`gemm`]: any `B`, packed a slice at a time: the weight gradients.
//!
//! None of them allocates once a thread has run one product of a size, and none splits a sum
//! across threads, so results do not depend on the thread count. At the large products of an
//! RNN they run at 0.8-1.05x the `gemm` crate's speed (the fastest of matrixmultiply, faer
//! and gemm there; `benches/gemm.rs`), which allocates on every call: a training window that
//! allocates nothing needs these.
//!
//! When `beta == 0`, C is not read, so it may hold NaN or garbage. Views carry their own row
//! and column strides, so transposes are free (`MatRef::t`).

use pulp::Arch;

use crate::float::Float;
use packed::PackedRef;
use stacked::StackedRows;

pub mod beside;
pub mod packed;
pub mod scratch;
pub mod split;
mod stacked;
mod transpose;

pub use transpose::transpose_into;

/// The largest offset a `rows x cols` view with strides `rs`, `cs` touches, plus one, or
/// `None` if it overflows. Empty views touch nothing.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    let last_row = (rows - 1).checked_mul(rs)?;
    let last_col = (cols - 1).checked_mul(cs)?;
    last_row.checked_add(last_col)?.checked_add(1)
}

/// Whether distinct elements of a `rows x cols` view with strides `rs`, `cs` are distinct in
/// memory (sufficient condition: one stride spans the whole other dimension).
fn non_aliasing(rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows <= 1 && (cols <= 1 || cs >= 1)
        || cols <= 1 && rs >= 1
        || cs >= 1 && rs >= cols.saturating_mul(cs)
        || rs >= 1 && cs >= rows.saturating_mul(rs)
}

/// A read-only strided matrix view.
#[derive(Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<T> Clone for MatRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MatRef<'_, T> {}

impl<'a, T> MatRef<'a, T> {
    /// A `rows x cols` view where element (i, j) is `data[i * rs + j * cs]`.
    ///
    /// # Panics
    /// If an element lies past `data` or the strides overflow.
    #[track_caller]
    pub fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        let end = extent(rows, cols, rs, cs).expect("MatRef::new: stride overflow");
        assert!(
            end <= data.len(),
            "MatRef::new: view needs {end} elements, has {}",
            data.len()
        );
        assert!(
            rs <= isize::MAX as usize && cs <= isize::MAX as usize,
            "MatRef::new: stride"
        );
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }
    /// A row-major `rows x cols` view with rows `ld` apart.
    ///
    /// # Panics
    /// As [`MatRef::new`].
    #[track_caller]
    pub fn row_major(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Self {
        Self::new(data, rows, cols, ld, 1)
    }
    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
    /// Rows `start..start + len`.
    ///
    /// # Panics
    /// If the range is out of bounds.
    #[track_caller]
    pub fn rows_range(self, start: usize, len: usize) -> Self {
        assert!(
            start + len <= self.rows,
            "MatRef::rows_range: out of bounds"
        );
        let data = if len == 0 || self.cols == 0 {
            &self.data[..0]
        } else {
            &self.data[start * self.rs..]
        };
        Self {
            data,
            rows: len,
            ..self
        }
    }
    /// Columns `start..start + len`.
    ///
    /// # Panics
    /// If the range is out of bounds.
    #[track_caller]
    pub fn cols_range(self, start: usize, len: usize) -> Self {
        assert!(
            start + len <= self.cols,
            "MatRef::cols_range: out of bounds"
        );
        let data = if len == 0 || self.rows == 0 {
            &self.data[..0]
        } else {
            &self.data[start * self.cs..]
        };
        Self {
            data,
            cols: len,
            ..self
        }
    }
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// The number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The column stride.
    pub fn col_stride(&self) -> usize {
        self.cs
    }
    /// The row stride.
    pub fn row_stride(&self) -> usize {
        self.rs
    }
    /// The underlying slice (element (i, j) is at `i * row_stride + j * col_stride`).
    pub fn data(&self) -> &'a [T] {
        self.data
    }
    /// Row `i` as a slice (for views whose rows are contiguous).
    ///
    /// # Panics
    /// If `i` is out of bounds or the column stride is not 1.
    #[inline]
    #[track_caller]
    pub fn row(&self, i: usize) -> &'a [T] {
        assert!(
            i < self.rows && self.cs == 1,
            "MatRef::row: row {i} of {}",
            self.rows
        );
        &self.data[i * self.rs..i * self.rs + self.cols]
    }
    /// Element (i, j).
    ///
    /// # Panics
    /// If out of bounds.
    #[track_caller]
    pub fn at(&self, i: usize, j: usize) -> &T {
        assert!(i < self.rows && j < self.cols, "MatRef::at: out of bounds");
        &self.data[i * self.rs + j * self.cs]
    }
}

/// A mutable strided matrix view whose elements never alias: one block of memory, or two
/// row-major blocks stacked ([`MatMut::stacked`]).
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    /// Rows `at..` of a stacked view, in their own memory (`(data, at)`), at stride `rs`.
    lower: Option<(&'a mut [T], usize)>,
}

impl<'a, T> MatMut<'a, T> {
    /// A `rows x cols` view where element (i, j) is `data[i * rs + j * cs]`.
    ///
    /// # Panics
    /// If an element lies past `data`, the strides overflow, or two elements alias.
    #[track_caller]
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        let end = extent(rows, cols, rs, cs).expect("MatMut::new: stride overflow");
        assert!(
            end <= data.len(),
            "MatMut::new: view needs {end} elements, has {}",
            data.len()
        );
        assert!(
            rs <= isize::MAX as usize && cs <= isize::MAX as usize,
            "MatMut::new: stride"
        );
        assert!(
            non_aliasing(rows, cols, rs, cs),
            "MatMut::new: elements alias"
        );
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
            lower: None,
        }
    }
    /// `top` above `bottom` as one view (rows of `bottom` numbered from `top.rows()`): two
    /// batch chunks' rows, whose memory lies apart, as one product's C. Only [`row_mut`],
    /// [`at_mut`] and [`reborrow`] reach the lower block: a stacked view cannot be transposed
    /// or split.
    ///
    /// [`row_mut`]: MatMut::row_mut
    /// [`at_mut`]: MatMut::at_mut
    /// [`reborrow`]: MatMut::reborrow
    ///
    /// # Panics
    /// If the blocks' widths or row strides differ, either is stacked already, or their rows
    /// are not contiguous.
    #[track_caller]
    pub fn stacked(top: MatMut<'a, T>, bottom: MatMut<'a, T>) -> Self {
        assert!(
            (top.cols, top.rs, top.cs) == (bottom.cols, bottom.rs, 1)
                && top.cs == 1
                && top.lower.is_none()
                && bottom.lower.is_none(),
            "MatMut::stacked: blocks of different shapes"
        );
        MatMut {
            data: top.data,
            rows: top.rows + bottom.rows,
            cols: top.cols,
            rs: top.rs,
            cs: 1,
            lower: Some((bottom.data, top.rows)),
        }
    }
    /// A row-major `rows x cols` view with rows `ld` apart.
    ///
    /// # Panics
    /// As [`MatMut::new`].
    #[track_caller]
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize, ld: usize) -> Self {
        Self::new(data, rows, cols, ld, 1)
    }
    /// The transpose (no copy).
    ///
    /// # Panics
    /// If the view is [stacked](MatMut::stacked).
    #[track_caller]
    pub fn t(self) -> Self {
        assert!(self.lower.is_none(), "MatMut::t: a stacked view");
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            lower: None,
        }
    }
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// The number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The column stride.
    pub fn col_stride(&self) -> usize {
        self.cs
    }
    /// Row `i` as a slice (for views whose rows are contiguous).
    ///
    /// # Panics
    /// If `i` is out of bounds or the column stride is not 1.
    #[inline]
    #[track_caller]
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        assert!(
            i < self.rows && self.cs == 1,
            "MatMut::row_mut: row {i} of {}",
            self.rows
        );
        let (rs, cols) = (self.rs, self.cols);
        let (data, i) = self.block_of(i);
        &mut data[i * rs..i * rs + cols]
    }
    /// Pointers to columns `col..col + width` of the `R` rows from `row`, checked once to lie
    /// in their memory: the packed product's tiles store through these. Asking
    /// [`row_mut`](Self::row_mut) for each row (a check, the stacked view's branch and the
    /// slice's bounds per row, twice a tile) took 5% of `[6, 128] x [128, 512]` in `perf`.
    ///
    /// # Panics
    /// If a row or column is out of bounds or the column stride is not 1.
    #[inline(always)]
    pub(crate) fn row_pointers<const R: usize>(
        &mut self,
        row: usize,
        col: usize,
        width: usize,
    ) -> [*mut T; R] {
        // Written so that no sum can overflow before it is checked.
        assert!(
            R <= self.rows
                && row <= self.rows - R
                && col <= self.cols
                && width <= self.cols - col
                && self.cs == 1,
            "MatMut::row_pointers: rows {row}..+{R}, columns {col}..+{width} of {} x {}",
            self.rows,
            self.cols
        );
        let end = row + R;
        let rs = self.rs;
        // Rows row..split lie in `data`, split..end in the lower block (from its row `at`).
        let (lower, at) = match &mut self.lower {
            Some((lower, at)) => (Some(&mut **lower), *at),
            None => (None, end),
        };
        let split = at.clamp(row, end);
        // The last row in each memory, as an index within it, must end within it.
        let ends_within = |last: usize, len: usize| last * rs + col + width <= len;
        assert!(
            (split == row || ends_within(split - 1, self.data.len()))
                && (split == end
                    || lower
                        .as_ref()
                        .is_some_and(|l| ends_within(end - 1 - at, l.len()))),
            "MatMut::row_pointers: rows past the view's memory"
        );
        let top = self.data.as_mut_ptr();
        let bottom = lower.map_or(top, |l| l.as_mut_ptr());
        core::array::from_fn(|r| {
            let i = row + r;
            if i < split {
                top.wrapping_add(i * rs + col)
            } else {
                bottom.wrapping_add((i - at) * rs + col)
            }
        })
    }
    /// The memory holding row `i`, and the row's index within it.
    #[inline]
    fn block_of(&mut self, i: usize) -> (&mut [T], usize) {
        match &mut self.lower {
            Some((lower, at)) if i >= *at => (&mut **lower, i - *at),
            _ => (&mut *self.data, i),
        }
    }
    /// Element (i, j).
    ///
    /// # Panics
    /// If out of bounds.
    #[track_caller]
    pub fn at_mut(&mut self, i: usize, j: usize) -> &mut T {
        assert!(
            i < self.rows && j < self.cols,
            "MatMut::at_mut: out of bounds"
        );
        let (rs, cs) = (self.rs, self.cs);
        let (data, i) = self.block_of(i);
        &mut data[i * rs + j * cs]
    }
    /// Splits into rows `..at` and rows `at..` (rows are contiguous ranges of memory, so the
    /// halves are disjoint slices).
    ///
    /// # Panics
    /// If `at > rows`, rows are not separate ranges of memory (`rs` below a row's span), or
    /// the view is [stacked](MatMut::stacked).
    pub fn split_rows(self, at: usize) -> (MatMut<'a, T>, MatMut<'a, T>) {
        assert!(at <= self.rows, "MatMut::split_rows: out of bounds");
        assert!(self.lower.is_none(), "MatMut::split_rows: a stacked view");
        let span = self.cols.saturating_sub(1) * self.cs + 1;
        assert!(
            self.rows <= 1 || self.rs >= span,
            "MatMut::split_rows: rows interleave"
        );
        let MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
            lower: _,
        } = self;
        let (top, bottom) = data.split_at_mut((at * rs).min(data.len()));
        (
            MatMut {
                data: top,
                rows: at,
                cols,
                rs,
                cs,
                lower: None,
            },
            MatMut {
                data: bottom,
                rows: rows - at,
                cols,
                rs,
                cs,
                lower: None,
            },
        )
    }
    /// A shorter-lived view of the same elements.
    pub fn reborrow(&mut self) -> MatMut<'_, T> {
        MatMut {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
            lower: self.lower.as_mut().map(|(d, at)| (&mut **d, *at)),
        }
    }
}

/// `C <- A B + beta C` (BLAS semantics: `beta == 0` never reads C) on up to `threads`
/// threads of the current rayon pool (0: all of them; 1: this thread).
///
/// B is packed [`slice_k`] rows at a time into a thread's buffer (see [`scratch`]),
/// so after a thread's first product of a size nothing is allocated: one buffer shared by
/// the threads, or, for a small slice, one per thread (each packs the slice for its own
/// rows). The work is split by rows of C ([`split`]): the result is bitwise the same for
/// any thread count.
///
/// # Panics
/// If the shapes disagree (`A` is `m x k`, `B` is `k x n`, `C` is `m x n`), `A` has no unit
/// stride, or `C`'s rows are not contiguous.
#[track_caller]
pub fn gemm<T: Float>(
    arch: Arch,
    threads: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
) {
    gemm_stacked(arch, threads, a, &[b], beta, c);
}

/// [`gemm`] where B is the blocks of rows in `b` stacked in order (`b[0]`'s rows first): `C
/// <- A [b0; b1; ...] + beta C` without copying the blocks together. Slices of B are packed
/// across the blocks' edges, so a product over many short blocks makes one pass over C per
/// slice, as one over a single B would; a product per block would make one per block.
///
/// Measured on Zen 4 (AVX2, 1 thread), `dW_hh` of an LSTM over four chunks of 8 sequences
/// (its layers' weight gradients), against a product per chunk: H = 256, T = 64 (blocks of
/// 512 rows) 13.9-14.1 -> 13.5-13.8 ms per training step, H = 1024, T = 25 (blocks of 200)
/// 85.0-86.0 -> 83.8-84.0 ms. Alone (`benches/gemm.rs`, `stacked`, best of two runs each):
/// H = 1024 85.9 -> 81.1 ms, H = 256 even (13.4-14.0 against 13.8-13.9).
///
/// ```
/// use fused_rnn_kernels::{MatMut, MatRef, gemm_stacked};
///
/// let a = [1.0f32, 2.0, 3.0]; // 1 x 3
/// let (top, bottom) = ([1.0f32, 0.0, 0.0, 1.0], [2.0f32, 3.0]); // 2 x 2 over 1 x 2
/// let b = [MatRef::row_major(&top, 2, 2, 2), MatRef::row_major(&bottom, 1, 2, 2)];
/// let mut c = [0.0f32; 2];
/// let arch = fused_rnn_kernels::Arch::new();
/// gemm_stacked(arch, 1, MatRef::row_major(&a, 1, 3, 3), &b, 0.0, MatMut::row_major(&mut c, 1, 2, 2));
/// assert_eq!(c, [1.0 + 3.0 * 2.0, 2.0 + 3.0 * 3.0]);
/// ```
///
/// # Panics
/// As [`gemm`] (B's rows being the blocks' rows together), and if the blocks' widths differ.
#[track_caller]
pub fn gemm_stacked<T: Float>(
    arch: Arch,
    threads: usize,
    a: MatRef<'_, T>,
    b: &[MatRef<'_, T>],
    beta: T,
    c: MatMut<'_, T>,
) {
    let stack = StackedRows::new(b);
    let (m, k, n) = (a.rows, a.cols, stack.cols());
    assert!(
        stack.rows() == k && c.rows == m && c.cols == n,
        "gemm: A is {m}x{k}, B is {}x{n}, C is {}x{}",
        stack.rows(),
        c.rows,
        c.cols
    );
    // One product of `gemm_beside` (slices of B, threads, scratch).
    beside::gemm_beside(arch, threads, a, &mut [beside::Beside { b, c }], beta);
}

/// Most bytes of a packed slice of B in [`gemm`] (its buffer is kept for the next product
/// of the size): slices run up to [`packed::KC`] rows (each slice is a pass over C, which
/// for a weight gradient is megabytes) but no wider than this, and never under
/// [`MIN_SLICE_K`] rows. Measured on Zen 4 (AVX2), lstm_h1024_b32 training (weight gradients
/// of K = 800: two slices of 400 rows, or one), with [`packed::KC`] at 1024 either way,
/// alternating: 548-560 -> 530-554 ms on 1 thread, 275-278 -> 270-273 on 2.
pub const SLICE_BYTES: usize = 4 << 20;

/// The fewest rows of B per slice (see [`SLICE_BYTES`]).
pub const MIN_SLICE_K: usize = 512;

/// The rows of each packed slice of B (`k x n`) in [`gemm`].
pub fn slice_k<T>(k: usize, n: usize) -> usize {
    let fit = SLICE_BYTES / (n.max(1) * core::mem::size_of::<T>());
    packed::balanced(k, fit.clamp(MIN_SLICE_K, packed::KC), 1)
}

/// Slices of B up to this size (packed) are packed by every part of a product split over
/// threads, larger ones once for all. Measured on Zen 4, 2 threads: the weight gradients of
/// H = 128 (K = 3200 in 7 slices of 256 KiB) 13% faster when every part packs its own;
/// H = 256 to 1760 (slices of 0.4 to 2.8 MiB) the same within noise either way. Half a
/// core's L2 also bounds the memory each extra thread holds for it.
pub(crate) const OWN_SLICE_BYTES: usize = 512 << 10;

/// `C <- A W + beta C` with `W` packed once by [`packed::pack`] (weights, reused by many
/// products), on up to `threads` threads as [`gemm`], or for few rows split by W's panels
/// instead of C's rows where that balances the threads better (see [`split`]); the blocks of
/// A are packed into each thread's buffer.
///
/// # Panics
/// As [`packed::gemm_packed`].
#[track_caller]
pub fn gemm_prepacked<T: Float>(
    arch: Arch,
    threads: usize,
    a: MatRef<'_, T>,
    w: PackedRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
) {
    let mr = split::micro_rows::<T>(arch);
    let shape = (a.rows, a.cols, w.n());
    let run = |a: MatRef<'_, T>, w: PackedRef<'_, T>, c: MatMut<'_, T>| {
        let len = packed::a_scratch_len(a.rows(), a.cols());
        scratch::with_scratch(scratch::Slot::A, len, |s| {
            packed::gemm_packed(arch, a, w, beta, c, s)
        });
    };
    match split::cut(threads, mr, shape, w.panel_count()) {
        split::Cut::Rows(parts) => split::for_row_parts(parts, mr, a, c, &|a, c| run(a, w, c)),
        split::Cut::Cols(parts) => split::for_col_parts(parts, w, beta, c, &|w, c| run(a, w, c)),
    }
}

/// `C <- beta * C`, writing zeros without reading C when `beta == 0`.
fn scale<T: Float>(beta: T, mut c: MatMut<'_, T>) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            let x = c.at_mut(i, j);
            *x = if beta == T::ZERO { T::ZERO } else { beta * *x };
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::reference::gemm as reference;
    use crate::testing::{SplitMix, cast, check_close, size, size_nonzero, widen};

    /// A matrix stored row- or column-major with some padding between lines.
    fn layout(rows: usize, cols: usize, col_major: bool, pad: usize) -> (usize, usize, usize) {
        if col_major {
            (1, rows + pad, (rows + pad) * cols.max(1))
        } else {
            (cols + pad, 1, (cols + pad) * rows.max(1))
        }
    }

    fn run<T: Float>(
        arch: Arch,
        (m, k, n): (usize, usize, usize),
        flags: [bool; 2],
        beta: f64,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        let mut rng = SplitMix::new(seed);
        let (ars, acs, alen) = layout(m, k, flags[0], 1);
        let (brs, bcs, blen) = layout(k, n, flags[1], 2);
        let (crs, ccs, clen) = layout(m, n, false, 3);
        let a = cast::<T>(&rng.vec(alen, 1.0));
        let b = cast::<T>(&rng.vec(blen, 1.0));
        let c0 = rng.vec(clen, 1.0);
        let mut c = cast::<T>(&c0);
        if beta == 0.0 {
            c.iter_mut().for_each(|x| *x = T::NAN);
        }
        let mut want = c.iter().map(|v| v.to_f64()).collect::<Vec<_>>();
        let (a64, b64) = (widen(&a), widen(&b));
        reference::gemm(
            1.0,
            MatRef::new(&a64, m, k, ars, acs),
            MatRef::new(&b64, k, n, brs, bcs),
            beta,
            MatMut::new(&mut want, m, n, crs, ccs),
        );
        gemm(
            arch,
            1,
            MatRef::new(&a, m, k, ars, acs),
            MatRef::new(&b, k, n, brs, bcs),
            T::from_f64(beta),
            MatMut::new(&mut c, m, n, crs, ccs),
        );
        // Each element sums k products of magnitude <= 1: error grows like k ulps.
        let eps = T::EPSILON.to_f64();
        check_close(
            "C",
            &widen(&c),
            &want,
            (4.0 * eps * (k as f64 + 2.0), 4.0 * eps),
        )
    }

    proptest! {
        #![proptest_config(crate::testing::cases(64))]

        #[test]
        fn matches_reference(m in size(), k in size(), n in size(), flags in any::<[bool; 2]>(),
                             beta in prop::sample::select(vec![0.0, 1.0, -0.5]), seed in any::<u64>()) {
            for arch in crate::available_archs() {
                run::<f32>(arch, (m, k, n), flags, beta, seed)?;
                run::<f64>(arch, (m, k, n), flags, beta, seed)?;
            }
        }
    }

    /// A prepacked product of few rows cut by columns on 2 threads (and by columns or rows
    /// on 3 and 4; the later parts staged through a buffer, copied in when beta reads C)
    /// gives the bits of one thread (shapes cut by columns with the tiles of every path: 4, 6
    /// and 12 rows),
    /// f32 and f64, with a last panel cut short, for `beta` 0 (C's old NaNs never read) and
    /// not.
    #[test]
    fn a_column_split_keeps_the_bits() {
        fn case<T: Float>(m: usize, k: usize, n: usize, beta: f64) {
            let mut rng = SplitMix::new(11);
            let a = cast::<T>(&rng.vec(m * k, 1.0));
            let w = cast::<T>(&rng.vec(k * n, 1.0));
            let c0 = cast::<T>(&rng.vec(m * n, 1.0));
            let mut packed = vec![T::ZERO; packed::packed_len::<T>(k, n)];
            let w = packed::pack(MatRef::row_major(&w, k, n, n), &mut packed);
            let mr = split::micro_rows::<T>(crate::arch());
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut c = if beta == 0.0 {
                    vec![T::NAN; m * n]
                } else {
                    c0.clone()
                };
                let beta = T::from_f64(beta);
                pool.install(|| {
                    let (a, c) = (
                        MatRef::row_major(&a, m, k, k),
                        MatMut::row_major(&mut c, m, n, n),
                    );
                    gemm_prepacked(crate::arch(), 0, a, w, beta, c)
                });
                c.iter().map(|v| v.to_f64().to_bits()).collect::<Vec<_>>()
            };
            let one = run(1);
            assert!(one.iter().all(|&b| f64::from_bits(b).is_finite()));
            let cut = split::cut(2, mr, (m, k, n), w.panel_count());
            assert!(matches!(cut, split::Cut::Cols(2)), "{m}x{k}x{n}: {cut:?}");
            for threads in 2..=4 {
                assert!(
                    run(threads) == one,
                    "{m}x{k}x{n} {} on {threads} threads",
                    T::NAME
                );
            }
        }
        for beta in [0.0, 0.5] {
            case::<f32>(9, 300, 1000, beta);
            case::<f32>(19, 512, 2000, beta);
            case::<f64>(13, 256, 990, beta);
        }
    }

    /// Slices run to `KC` rows within `SLICE_BYTES`, never under `MIN_SLICE_K`, balanced.
    #[test]
    fn slices_of_b_fit_their_budget() {
        // A weight gradient of K = 800, n = 1024: one slice (one pass over C).
        assert_eq!(slice_k::<f32>(800, 1024), 800);
        // Long and narrow: KC rows at most, the slices balanced (3000 = 3 x 1000).
        assert_eq!(slice_k::<f32>(3000, 64), 1000);
        // Wide: 4 MiB holds 595 rows of 1760 f32, so 3 balanced slices of 587.
        let rows = slice_k::<f32>(1760, 1760);
        assert_eq!(rows, 587);
        assert!(rows * 1760 * 4 <= SLICE_BYTES);
        // f64 at n = 1024 fits 512 rows: two slices of 400.
        assert_eq!(slice_k::<f64>(800, 1024), 400);
        // Very wide: never under MIN_SLICE_K rows.
        assert_eq!(slice_k::<f32>(2048, 1 << 16), MIN_SLICE_K);
    }

    /// Past the K slice (several B slices) and big enough to be split over threads.
    #[test]
    fn long_products_match_reference() {
        let k = packed::KC * 2 + 7;
        for flags in [[false, false], [true, false], [false, true]] {
            run::<f32>(crate::arch(), (61, k, 45), flags, 1.0, 4).unwrap();
            run::<f64>(crate::arch(), (30, k, 17), flags, 0.0, 5).unwrap();
        }
    }

    /// A product split over 1 to 4 threads gives the same bits, for many rows and for a few
    /// dozen (a short sequence's input projection, cut into parts of one tile or so), with
    /// slices of B that every part packs for itself and slices packed once for all.
    #[test]
    fn thread_count_does_not_change_bits() {
        let slice_bytes =
            |k: usize, n: usize| packed::packed_len::<f32>(slice_k::<f32>(k, n), n) * 4;
        assert!(slice_bytes(700, 75) <= OWN_SLICE_BYTES);
        assert!(slice_bytes(1100, 400) > OWN_SLICE_BYTES);
        for (m, k, n) in [(203, 700, 75), (25, 512, 96), (40, 1100, 400)] {
            let mut rng = SplitMix::new(8);
            let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
            let a = cast::<f32>(&a);
            let b = cast::<f32>(&b);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut c = vec![0.0f32; m * n];
                pool.install(|| {
                    gemm(
                        crate::arch(),
                        0,
                        MatRef::new(&a, m, k, 1, m),
                        MatRef::row_major(&b, k, n, n),
                        0.0,
                        MatMut::row_major(&mut c, m, n, n),
                    )
                });
                c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert!(split::parts(4, split::micro_rows::<f32>(crate::arch()), (m, k, n)) > 1);
            let one = run(1);
            for threads in 2..=4 {
                assert!(run(threads) == one, "{m}x{k}x{n} on {threads} threads");
            }
        }
    }

    /// `B` (`k x n`, row- or column-major) cut at `cuts` (row indices) into blocks that each
    /// live in a buffer of their own, padded on both sides.
    fn own_blocks<T: Float>(
        b: &[T],
        (k, n): (usize, usize),
        col_major: bool,
        cuts: &[usize],
    ) -> Vec<Vec<T>> {
        let mut edges: Vec<usize> = cuts.iter().map(|&c| c.min(k)).collect();
        edges.extend([0, k]);
        edges.sort_unstable();
        let view = if col_major {
            MatRef::new(b, k, n, 1, k)
        } else {
            MatRef::row_major(b, k, n, n)
        };
        edges
            .windows(2)
            .map(|e| {
                let rows = e[1] - e[0];
                let mut own = vec![T::NAN; 3 + rows * n + 5];
                for i in 0..rows {
                    for j in 0..n {
                        let at = if col_major { j * rows + i } else { i * n + j };
                        own[3 + at] = *view.at(e[0] + i, j);
                    }
                }
                own
            })
            .collect()
    }

    /// The views of [`own_blocks`]' buffers, `rows` each, in the source's layout.
    fn block_views<'a, T>(own: &'a [Vec<T>], n: usize, col_major: bool) -> Vec<MatRef<'a, T>> {
        own.iter()
            .map(|o| {
                let rows = (o.len() - 8) / n.max(1);
                let data = &o[3..3 + rows * n];
                if col_major {
                    MatRef::new(data, rows, n, 1, rows)
                } else {
                    MatRef::row_major(data, rows, n, n)
                }
            })
            .collect()
    }

    /// A stacked B gives the bits of the same B in one piece, on 1 to 3 threads, wherever the
    /// blocks' edges fall (empty blocks, edges inside and on a slice's edge, one block).
    fn stacked_case<T: Float>(
        (m, k, n): (usize, usize, usize),
        col_major: bool,
        cuts: &[usize],
        beta: f64,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        let mut rng = SplitMix::new(seed);
        let a = cast::<T>(&rng.vec(m * k, 1.0));
        let b = cast::<T>(&rng.vec(k * n, 1.0));
        let c0 = cast::<T>(&rng.vec(m * n, 1.0));
        let own = own_blocks(&b, (k, n), col_major, cuts);
        let blocks = block_views(&own, n, col_major);
        let b = if col_major {
            MatRef::new(&b, k, n, 1, k)
        } else {
            MatRef::row_major(&b, k, n, n)
        };
        let a = MatRef::row_major(&a, m, k, k);
        for threads in 1..=3 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (mut want, mut got) = (c0.clone(), c0.clone());
            let beta = T::from_f64(beta);
            // The stacked product first: its packing must not find the whole B's in scratch.
            pool.install(|| {
                gemm_stacked(
                    crate::arch(),
                    0,
                    a,
                    &blocks,
                    beta,
                    MatMut::row_major(&mut got, m, n, n),
                );
                gemm(
                    crate::arch(),
                    0,
                    a,
                    b,
                    beta,
                    MatMut::row_major(&mut want, m, n, n),
                );
            });
            let bits = |c: &[T]| c.iter().map(|v| v.to_f64().to_bits()).collect::<Vec<_>>();
            prop_assert!(
                bits(&got) == bits(&want),
                "{m}x{k}x{n} cut at {cuts:?} on {threads} threads"
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::testing::cases(32))]

        #[test]
        fn stacked_b_has_the_bits_of_one_block(m in size_nonzero(), k in size(), n in size_nonzero(),
                                               col_major in any::<bool>(),
                                               cuts in prop::collection::vec(0usize..80, 0..5),
                                               beta in prop::sample::select(vec![0.0, 1.0]),
                                               seed in any::<u64>()) {
            stacked_case::<f32>((m, k, n), col_major, &cuts, beta, seed)?;
            stacked_case::<f64>((m, k, n), col_major, &cuts, beta, seed)?;
        }
    }

    /// Past a slice of B (K = 2 x 1024 + 7 at n = 40: three slices of 685 rows), with a
    /// block's edge on a slice's edge, one inside a slice, and a block across one; and a
    /// product big enough to be split over threads.
    #[test]
    fn stacked_b_across_slices_has_the_bits_of_one_block() {
        let k = 2 * packed::KC + 7;
        assert_eq!(slice_k::<f32>(k, 40), 685);
        stacked_case::<f32>((50, k, 40), false, &[200, 685, 1000], 1.0, 3).unwrap();
        stacked_case::<f32>((203, 700, 75), false, &[175, 350, 525], 0.0, 4).unwrap();
        stacked_case::<f64>((30, k, 17), true, &[685, 1500], 0.5, 5).unwrap();
        assert!(split::parts(3, split::micro_rows::<f32>(crate::arch()), (203, 700, 75)) > 1);
    }

    /// With small-integer operands every partial sum is exact in f32, so the product must
    /// equal the reference bit for bit (oneDNN's `--skip-nonlinear` idea).
    #[test]
    fn exact_on_small_integers() {
        let (m, k, n) = (37, 129, 67);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 9) as f32 - 4.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
        let mut c = vec![f32::NAN; m * n];
        gemm(
            crate::arch(),
            1,
            MatRef::row_major(&a, m, k, k),
            MatRef::row_major(&b, k, n, n),
            0.0,
            MatMut::row_major(&mut c, m, n, n),
        );
        let mut want = vec![0.0f32; m * n];
        reference::gemm(
            1.0,
            MatRef::row_major(&a, m, k, k),
            MatRef::row_major(&b, k, n, n),
            0.0,
            MatMut::row_major(&mut want, m, n, n),
        );
        assert_eq!(c, want);
    }

    #[test]
    fn beta_zero_never_reads_c_even_when_k_is_zero() {
        let mut c = vec![f64::NAN; 6];
        gemm(
            crate::arch(),
            1,
            MatRef::row_major(&[], 2, 0, 0),
            MatRef::row_major(&[], 0, 3, 3),
            0.0,
            MatMut::row_major(&mut c, 2, 3, 3),
        );
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "elements alias")]
    fn aliasing_output_is_refused() {
        let mut c = vec![0.0f32; 4];
        let _ = MatMut::new(&mut c, 2, 2, 1, 1);
    }

    #[test]
    #[should_panic(expected = "view needs")]
    fn short_buffer_is_refused() {
        let a = vec![0.0f32; 5];
        let _ = MatRef::row_major(&a, 2, 3, 3);
    }

    #[test]
    fn a_stacked_view_reaches_both_blocks() {
        let (mut top, mut bottom) = (vec![0.0f32; 2 * 4], vec![0.0f32; 3 * 4]);
        {
            let mut c = MatMut::stacked(
                MatMut::row_major(&mut top, 2, 3, 4),
                MatMut::row_major(&mut bottom, 3, 3, 4),
            );
            assert_eq!((c.rows(), c.cols()), (5, 3));
            for i in 0..5 {
                c.row_mut(i).fill(i as f32 + 1.0);
            }
            *c.reborrow().at_mut(4, 2) = 9.0;
        }
        // Row i of the stack is row i of `top`, then row i - 2 of `bottom`; the padding
        // column of each row stays untouched.
        assert_eq!(top, [1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0, 0.0]);
        assert_eq!(
            bottom,
            [3.0, 3.0, 3.0, 0.0, 4.0, 4.0, 4.0, 0.0, 5.0, 5.0, 9.0, 0.0]
        );
    }

    /// Every run of `R` rows from every row and every column range: the pointers
    /// `row_pointers` gives are those of `row_mut`'s slices, across a stacked view's seam.
    fn check_row_pointers<const R: usize>(c: &mut MatMut<'_, f32>) {
        for row in 0..=c.rows().saturating_sub(R) {
            for col in 0..c.cols() {
                for width in 0..=c.cols() - col {
                    let got = c.row_pointers::<R>(row, col, width);
                    for (r, &p) in got.iter().enumerate() {
                        let want = c.row_mut(row + r)[col..].as_mut_ptr();
                        assert_eq!(p, want, "rows {row}.. (+{r}), columns {col}..+{width}");
                    }
                }
            }
        }
    }

    #[test]
    fn row_pointers_are_those_of_the_rows() {
        let (mut top, mut bottom, mut plain) = (vec![0.0f32; 8], vec![0.0f32; 12], [0.0; 20]);
        let mut stacked = MatMut::stacked(
            MatMut::row_major(&mut top, 2, 3, 4),
            MatMut::row_major(&mut bottom, 3, 3, 4),
        );
        check_row_pointers::<1>(&mut stacked);
        check_row_pointers::<2>(&mut stacked);
        check_row_pointers::<4>(&mut stacked);
        check_row_pointers::<5>(&mut stacked);
        let mut plain = MatMut::row_major(&mut plain, 4, 3, 5);
        check_row_pointers::<1>(&mut plain);
        check_row_pointers::<3>(&mut plain);
    }

    #[test]
    #[should_panic(expected = "MatMut::row_pointers: rows 1..+3, columns 0..+3 of 3 x 3")]
    fn row_pointers_past_the_last_row_are_refused() {
        let mut data = [0.0f32; 9];
        let _ = MatMut::row_major(&mut data, 3, 3, 3).row_pointers::<3>(1, 0, 3);
    }

    #[test]
    #[should_panic(expected = "MatMut::row_pointers: rows 0..+2, columns 2..+2 of 2 x 3")]
    fn row_pointers_past_the_last_column_are_refused() {
        let mut data = [0.0f32; 6];
        let _ = MatMut::row_major(&mut data, 2, 3, 3).row_pointers::<2>(0, 2, 2);
    }

    #[test]
    fn row_pointers_at_indices_near_overflow_are_refused() {
        let mut data = [0.0f32; 6];
        let mut c = MatMut::row_major(&mut data, 2, 3, 3);
        for (row, col, width) in [(usize::MAX, 0, 1), (0, usize::MAX, 2), (0, 1, usize::MAX)] {
            let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.row_pointers::<2>(row, col, width)
            }));
            assert!(refused.is_err(), "({row}, {col}, {width}) was not refused");
        }
    }

    #[test]
    #[should_panic(expected = "blocks of different shapes")]
    fn stacking_blocks_of_different_strides_is_refused() {
        let (mut top, mut bottom) = (vec![0.0f32; 8], vec![0.0f32; 6]);
        let _ = MatMut::stacked(
            MatMut::row_major(&mut top, 2, 3, 4),
            MatMut::row_major(&mut bottom, 2, 3, 3),
        );
    }

    #[test]
    #[should_panic(expected = "a stacked view")]
    fn a_stacked_view_is_not_transposed() {
        let (mut top, mut bottom) = (vec![0.0f32; 4], vec![0.0f32; 4]);
        let c = MatMut::stacked(
            MatMut::row_major(&mut top, 2, 2, 2),
            MatMut::row_major(&mut bottom, 2, 2, 2),
        );
        let _ = c.t();
    }
}
