//! `C <- A W + beta C` where `W` is packed once and reused by many products: the recurrent
//! step, whose weights stay the same for all T steps of a call.
//!
//! A general GEMM packs both operands on every call; at the step shapes of an RNN (a few to a
//! few dozen rows of A against a `K x N` weight of megabytes) re-packing `W` each step costs
//! as much memory traffic as the product itself. Here [`pack`] lays `W` out once in column
//! panels of [`panel_width`] columns (`K` rows each, the last panel zero-padded), and
//! [`gemm_packed`] streams each panel exactly once per product while a register-blocked
//! microkernel keeps `MR x NV` accumulators of the panel in registers and broadcasts A's
//! elements from its rows as they are (A is not packed: it is small and read in order).
//!
//! The microkernel's shape follows the register file: with 32 registers (AVX-512) 12 rows x
//! 2 registers, with 16 (AVX2) 6 x 2, scalar 4 x 8. A panel (128 bytes of a row: the
//! AVX-512 tile's width, and the unit the layers split columns by) is stored as
//! [`strip_width`] columns at a time, all `K` rows of one strip before the next: on a machine
//! whose best path is AVX2, two strips of 64 bytes, so that the AVX2 tile (16 f32 columns)
//! reads whole cache lines one after another instead of every other line of a 128-byte
//! row; elsewhere one strip, the whole panel. Every instruction set runs on either layout,
//! so a forced path (tests, the scalar CI pass) uses the machine's.

use std::sync::OnceLock;

use pulp::{Arch, Simd, WithSimd};

#[cfg(debug_assertions)]
use crate::frame::framed;

#[cfg(debug_assertions)]
mod frames;
pub mod group;
#[cfg(debug_assertions)]
use frames::{RowPairs, TileAlone, TilePair};

use super::stacked::StackedRows;
use super::{MatMut, MatRef};
use crate::float::Float;
use crate::lanes::V;

/// Columns per packed panel: 128 bytes of a row (32 f32 or 16 f64).
pub fn panel_width<T: Float>() -> usize {
    128 / core::mem::size_of::<T>()
}

/// Columns per strip of a panel on this machine (see the module docs): 64 bytes where the
/// best instruction set has 16 registers (AVX2: its tile's width), else the whole panel.
/// Measured on Zen 4 with AVX2 (best of several calls, alternating builds), strips against
/// 128-byte rows: `[240, 512] x [512, 2048]` 76.0-80.8 -> 81.6-81.7 GFLOP/s, `[16, 512] x
/// [512, 2048]` 83.2 -> 84.5, `[8, 256] x [256, 1024]` 78.4-78.6 -> 79.1-79.4, four rows
/// much faster (see `BlockPass::pairs`); a single row, whose pair then reads two streams
/// instead of one, 59.0-59.7 -> 62.4-62.8 us at `[512] x [512, 2048]` (W in L3), even at
/// `[1024] x [1024, 3072 or 4096]` and `[256] x [256, 1024]`.
pub fn strip_width<T: Float>() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    let bytes = *BYTES.get_or_init(|| {
        if cfg!(miri) {
            128
        } else {
            Arch::new().dispatch(StripBytes)
        }
    });
    bytes / core::mem::size_of::<T>()
}

/// The strip of [`strip_width`] in bytes for an instruction set.
struct StripBytes;

impl WithSimd for StripBytes {
    type Output = usize;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> usize {
        let lanes = f32::lanes::<S>();
        if S::REGISTER_COUNT < 32 && lanes > 1 {
            2 * lanes * core::mem::size_of::<f32>()
        } else {
            128
        }
    }
}

/// Elements [`pack`] writes for a `k x n` matrix.
pub fn packed_len<T: Float>(k: usize, n: usize) -> usize {
    k * n.div_ceil(panel_width::<T>()) * panel_width::<T>()
}

/// A packed `k x n` right operand (see the module docs), or a range of its rows.
#[derive(Clone, Copy, Debug)]
pub struct PackedRef<'a, T> {
    data: &'a [T],
    k: usize,
    n: usize,
    /// Elements from one panel's start to the next's (`k * NR` unless this is a row range).
    stride: usize,
    /// Columns per strip ([`strip_width`] when packed here).
    strip: usize,
    /// Elements from one strip's start to the next's within a panel (`k * strip` unless
    /// this is a row range).
    strip_stride: usize,
}

impl<'a, T: Float> PackedRef<'a, T> {
    /// A view of a buffer [`pack`] filled for a `k x n` matrix (kept elsewhere, e.g. cached)
    /// in this process: the strips are this machine's [`strip_width`].
    ///
    /// # Panics
    /// If `data` is shorter than [`packed_len`].
    pub fn from_packed(data: &'a [T], k: usize, n: usize) -> Self {
        assert!(
            data.len() >= packed_len::<T>(k, n),
            "PackedRef::from_packed: buffer too short"
        );
        PackedRef::whole(data, k, n, strip_width::<T>())
    }
    /// The whole `k x n` matrix in `data`, strips of `strip` columns.
    fn whole(data: &'a [T], k: usize, n: usize, strip: usize) -> Self {
        PackedRef {
            data,
            k,
            n,
            stride: k * panel_width::<T>(),
            strip,
            strip_stride: k * strip,
        }
    }
    /// The panels `panels` (columns `panels.start * NR ..`, clipped to `n`): a product with
    /// it computes exactly those columns, with the same arithmetic as the whole.
    ///
    /// # Panics
    /// If the range is past the last panel.
    pub fn panels(&self, panels: core::ops::Range<usize>) -> Self {
        let (nr, count) = (panel_width::<T>(), self.panel_count());
        assert!(
            panels.start <= panels.end && panels.end <= count,
            "PackedRef::panels: out of range"
        );
        let n = (panels.end * nr)
            .min(self.n)
            .saturating_sub(panels.start * nr);
        let end = if panels.is_empty() {
            panels.start * self.stride
        } else {
            (panels.end - 1) * self.stride + self.panel_len()
        };
        PackedRef {
            data: &self.data[panels.start * self.stride..end],
            n,
            ..*self
        }
    }
    /// Rows `start..start + len` (a block of the product's inner dimension), without copying:
    /// a product with it multiplies the matching columns of A.
    ///
    /// # Panics
    /// If the range is past the last row.
    pub fn rows(&self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.k, "PackedRef::rows: out of range");
        PackedRef {
            data: &self.data[(start * self.strip).min(self.data.len())..],
            k: len,
            ..*self
        }
    }
    /// The number of panels.
    pub fn panel_count(&self) -> usize {
        self.n.div_ceil(panel_width::<T>())
    }
    /// Rows of the packed matrix (the product's inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Elements from a panel's start to the end of its last strip's rows.
    fn panel_len(&self) -> usize {
        (panel_width::<T>() / self.strip - 1) * self.strip_stride + self.k * self.strip
    }
    /// Strip `i` of panel `p`: `k` rows of `strip` elements.
    fn strip(&self, p: usize, i: usize) -> &'a [T] {
        &self.strip_onwards(p, i)[..self.k * self.strip]
    }
    /// Strip `i` of panel `p` and everything packed after it.
    fn strip_onwards(&self, p: usize, i: usize) -> &'a [T] {
        &self.data[p * self.stride + i * self.strip_stride..]
    }
}

/// Packs `w` (`k x n`, any strides) into `out` (at least [`packed_len`] long): panel `p`
/// holds rows `0..k` of columns `p*NR..(p+1)*NR`, zero-padded past `n`, strip by strip
/// (see the module docs).
///
/// Row-major sources copy row segments; column-major ones (a transposed row-major matrix,
/// as `W_hh^T` is) transpose one strip at a time, reading its columns in parallel streams.
///
/// # Panics
/// If `out` is too short.
pub fn pack<'a, T: Float>(w: MatRef<'_, T>, out: &'a mut [T]) -> PackedRef<'a, T> {
    pack_strips(w, out, strip_width::<T>())
}

/// [`pack`] in strips of `strip` columns (a divisor of [`panel_width`]; tests pack both
/// layouts on any machine).
pub(crate) fn pack_strips<'a, T: Float>(
    w: MatRef<'_, T>,
    out: &'a mut [T],
    strip: usize,
) -> PackedRef<'a, T> {
    pack_stacked_strips(StackedRows::new(&[w]), out, strip)
}

/// [`pack_strips`] of rows stacked from blocks: each strip takes its rows from the blocks in
/// turn, so the packed matrix is the one their concatenation would give.
fn pack_stacked_strips<'a, T: Float>(
    w: StackedRows<'_, '_, T>,
    out: &'a mut [T],
    strip: usize,
) -> PackedRef<'a, T> {
    let (k, n) = (w.rows(), w.cols());
    let len = packed_len::<T>(k, n);
    assert!(
        out.len() >= len,
        "pack: needs {len} elements, has {}",
        out.len()
    );
    let out = &mut out[..len];
    if k > 0 {
        for (row, piece) in w.pieces() {
            if piece.col_stride() == 1 {
                pack_rows_across(piece, out, (k, row), strip);
                continue;
            }
            // Strips follow each other through the whole buffer, panel after panel.
            for (i, dst) in out.chunks_exact_mut(k * strip).enumerate() {
                let c0 = i * strip;
                let width = strip.min(n.saturating_sub(c0));
                let dst = &mut dst[row * strip..(row + piece.rows()) * strip];
                if width == 0 {
                    dst.fill(T::ZERO);
                } else {
                    pack_strip(piece, dst, c0, width);
                }
            }
        }
    }
    PackedRef::whole(out, k, n, strip)
}

/// Columns `c0..c0 + width` of a `w` without contiguous rows (those go through
/// [`pack_rows_across`]) into `dst`, `w.rows()` rows of `dst.len() / w.rows()` values,
/// zero-padded past `width`.
fn pack_strip<T: Float>(w: MatRef<'_, T>, dst: &mut [T], c0: usize, width: usize) {
    if w.row_stride() == 1 {
        super::transpose::transpose_panel(w, dst, c0, width);
    } else {
        let strip = dst.len() / w.rows();
        for (row, dst) in dst.chunks_exact_mut(strip).enumerate() {
            for (c, d) in dst.iter_mut().enumerate() {
                *d = if c < width {
                    *w.at(row, c0 + c)
                } else {
                    T::ZERO
                };
            }
        }
    }
}

/// [`pack`] on up to `threads` threads of the current rayon pool (0: all of them), split by
/// panels: the same bytes as [`pack`]. Training packs its weights on every update, and on
/// one thread that serial copy (2-3 ms for a 12 MiB weight read transposed) was 5% of a
/// 2-thread training step.
///
/// # Panics
/// As [`pack`].
pub fn pack_on<'a, T: Float>(
    threads: usize,
    w: MatRef<'_, T>,
    out: &'a mut [T],
) -> PackedRef<'a, T> {
    pack_stacked_on(threads, StackedRows::new(&[w]), out)
}

/// [`pack_on`] of rows stacked from blocks (see [`pack_stacked_strips`]).
pub(crate) fn pack_stacked_on<'a, T: Float>(
    threads: usize,
    w: StackedRows<'_, '_, T>,
    out: &'a mut [T],
) -> PackedRef<'a, T> {
    let threads = if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    };
    let len = packed_len::<T>(w.rows(), w.cols());
    assert!(
        out.len() >= len,
        "pack: needs {len} elements, has {}",
        out.len()
    );
    // Below about 64K elements the split costs more than the copy.
    let parts = if len < 1 << 16 { 1 } else { threads };
    pack_parts(w, &mut out[..len], parts);
    PackedRef::whole(out, w.rows(), w.cols(), strip_width::<T>())
}

/// Packs `w` into `out` in `parts` ranges of whole panels, in parallel with rayon's `join`.
fn pack_parts<T: Float>(w: StackedRows<'_, '_, T>, out: &mut [T], parts: usize) {
    let (k, n, nr) = (w.rows(), w.cols(), panel_width::<T>());
    let panels = n.div_ceil(nr);
    if parts <= 1 || panels < 2 {
        pack_stacked_strips(w, out, strip_width::<T>());
        return;
    }
    let half = parts / 2;
    let left = (panels * half / parts).max(1);
    let (lo, hi) = out.split_at_mut(left * k * nr);
    rayon::join(
        || pack_parts(w.cols_range(0, left * nr), lo, half),
        || pack_parts(w.cols_range(left * nr, n - left * nr), hi, parts - half),
    );
}

/// Columns packed per pass over the rows of a row-major source by [`pack_rows_across`].
const ACROSS_COLS: usize = 4096;

/// The rows of a row-major `w` into every strip of `out` (a packing of `k` rows in strips of
/// `strip`), as its rows `row0..`: each source row is read once, in order, for up to
/// [`ACROSS_COLS`] columns of strips at a time. Strip after strip (each pass reading a
/// strip's segment of every row, a memcpy call apiece) read the source as sparse streams.
/// Measured on Zen 4 (1 thread, sources cycling through 64 MiB, GB/s): `[1024, 256]` 7.5 ->
/// 14.2, `[2048, 512]` 5.4 -> 11.3, `[256, 1024]` 7.5 -> 12.1, `[1024, 4096]` 4.4-5.9 ->
/// 8.0-8.5 (7.2-7.4 in passes of 1024 columns); in cache `[1024, 256]` 31.9 -> 38.7, `[256,
/// 1024]` 23.8 -> 27.5. In the char-rnn's training step (the weight gradients' B) within
/// noise.
fn pack_rows_across<T: Float>(
    w: MatRef<'_, T>,
    out: &mut [T],
    (k, row0): (usize, usize),
    strip: usize,
) {
    let n = w.cols();
    let per_pass = (ACROSS_COLS / strip).max(1) * k * strip;
    for (pass, strips) in out.chunks_mut(per_pass).enumerate() {
        let c0 = pass * (per_pass / k);
        for r in 0..w.rows() {
            let src = &w.row(r)[c0.min(n)..];
            for (i, dst) in strips.chunks_exact_mut(k * strip).enumerate() {
                let dst = &mut dst[(row0 + r) * strip..][..strip];
                let from = (i * strip).min(src.len());
                copy_padded(dst, &src[from..src.len().min(from + strip)]);
            }
        }
    }
}

/// `dst <- src` then zeros; a whole strip of 8, 16 or 32 values (f32 and f64 on AVX2 and
/// AVX-512) as one fixed-size copy, not a memcpy call.
#[inline(always)]
fn copy_padded<T: Float>(dst: &mut [T], src: &[T]) {
    fn whole<T: Copy, const W: usize>(dst: &mut [T], src: &[T]) -> bool {
        match (<&mut [T; W]>::try_from(dst), <&[T; W]>::try_from(src)) {
            (Ok(d), Ok(s)) => {
                *d = *s;
                true
            }
            _ => false,
        }
    }
    if !(whole::<T, 32>(dst, src) || whole::<T, 16>(dst, src) || whole::<T, 8>(dst, src)) {
        let (head, tail) = dst.split_at_mut(src.len());
        head.copy_from_slice(src);
        tail.fill(T::ZERO);
    }
}

/// `C <- A W + beta C` (BLAS semantics: `beta == 0` never reads C), with `W` packed by
/// [`pack`]. `A` is `m x k` with contiguous rows or contiguous columns; `C` is `m x n` with
/// contiguous rows. `scratch` holds [`a_scratch_len`] elements.
///
/// Blocking (fixed by the shapes, so results never depend on anything else): A in blocks of
/// [`MC`] rows and [`KC`] columns that stay in L2 while every panel's `KC` rows meet them,
/// each block copied into `scratch` as BLIS packs A: micro-panels of as many rows as the
/// microkernel takes, each stored step by step, so a step's values lie side by side whatever
/// A's strides (at strides that are multiples of 4 KiB, reading A in place falls into one
/// cache set and evicts itself). A single row is read in place. When A's whole K is at hand
/// (read in place, or a few rows), each panel of W goes through all its K blocks before the
/// next, so W is read in one pass; every column sums its K blocks in the same order.
///
/// # Panics
/// If the shapes disagree, `C`'s rows or both of `A`'s strides are not contiguous, or
/// `scratch` is too short.
#[track_caller]
pub fn gemm_packed<T: Float>(
    arch: Arch,
    a: MatRef<'_, T>,
    w: PackedRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
    scratch: &mut [T],
) {
    check_operands("gemm_packed", a, w, &c, scratch.len());
    if a.rows() == 0 || w.n == 0 {
        return;
    }
    let outs = &mut [(w, c)];
    T::__kernel_product(
        arch,
        Product {
            a,
            outs,
            beta,
            scratch,
        },
    );
}

/// [`gemm_packed`] for several products that share their A: `C_i <- A W_i + beta C_i` for
/// every `(W_i, C_i)` of `outs`, each block of A packed once for all of them (see
/// [`crate::gemm::beside::gemm_beside`]). Every `C_i` gets the bits of its own [`gemm_packed`].
///
/// # Panics
/// As [`gemm_packed`], for every pair.
#[track_caller]
pub fn gemm_packed_beside<T: Float>(
    arch: Arch,
    a: MatRef<'_, T>,
    outs: &mut [(PackedRef<'_, T>, MatMut<'_, T>)],
    beta: T,
    scratch: &mut [T],
) {
    for (w, c) in outs.iter() {
        check_operands("gemm_packed_beside", a, *w, c, scratch.len());
    }
    if a.rows() == 0 || outs.iter().all(|(w, _)| w.n == 0) {
        return;
    }
    T::__kernel_product(
        arch,
        Product {
            a,
            outs,
            beta,
            scratch,
        },
    );
}

/// Panics (naming `who`, at the caller's caller) unless `C <- A W` is a product
/// [`gemm_packed`] can run with `scratch` elements of scratch.
#[track_caller]
fn check_operands<T: Float>(
    who: &str,
    a: MatRef<'_, T>,
    w: PackedRef<'_, T>,
    c: &MatMut<'_, T>,
    scratch: usize,
) {
    assert!(
        a.cols() == w.k && c.rows() == a.rows() && c.cols() == w.n,
        "{who}: shapes"
    );
    assert!(
        a.col_stride() == 1 || a.row_stride() == 1,
        "{who}: A needs a unit stride"
    );
    assert!(c.col_stride() == 1, "{who}: C's rows must be contiguous");
    if !reads_a_in_place(a) {
        let need = a_scratch_len(a.rows(), a.cols());
        assert!(
            scratch >= need,
            "{who}: scratch needs {need}, has {scratch}"
        );
    }
}

/// Rows of A per block (a multiple of every microkernel height).
pub const MC: usize = 240;
/// Columns of A (rows of a panel) per block. Longer blocks (fewer passes over C, fewer
/// tile starts) beat a panel slice small enough to stay in L1: measured on Zen 4 from 128
/// to 768 (AVX-512), and on Zen 4 with AVX2, best of 8-60 calls, 512 -> 1024: `[100, 1024]
/// x [1024, 4096]` 9.98-10.07 -> 9.70-9.74 ms (onnxruntime's MatMul 9.68-9.74), `[240,
/// 1024] x [1024, 4096]` 82.6 -> 86.0 GFLOP/s, `[240, 1760] x [1760, 1760]` 81.2 -> 84.2.
/// (2048 gained 1-3% more on K >= 1760 but doubles every thread's A block.)
pub const KC: usize = 1024;

/// The row stride of a packed row-major block of A: [`KC`] plus 64 or 128 bytes, so that
/// the rows a microkernel reads side by side fall into different cache sets (at a stride of
/// a multiple of 4 KiB, which most RNN widths give, they would all share one set and evict
/// each other).
pub const PACK_LD: usize = KC + 16;

/// The scratch [`gemm_packed`] needs for an `m x k` `A`: one block of up to [`MC`] rows, or
/// for at most [`WHOLE_K_ROWS`] rows all of A's K blocks; none for one row, which is read in
/// place. The same for every instruction set.
pub fn a_scratch_len(m: usize, k: usize) -> usize {
    // Rows rounded up to a multiple of every microkernel height (4, 6, 12).
    let block = m.min(MC).next_multiple_of(12) * PACK_LD;
    if m <= 1 {
        0
    } else if m <= WHOLE_K_ROWS {
        block.max(m * PACK_LD * k.div_ceil(KC))
    } else {
        block
    }
}

/// Most rows of row-major A that a product packs K block after K block into its scratch,
/// so that it can read W in one pass, each panel through every K block before the next.
/// Few rows do little work per byte of W, which streams from L3 or memory.
pub const WHOLE_K_ROWS: usize = 4;

/// Whether a product of `rows` rows of `a` walks each sub-panel of W through every K block
/// before the next one, instead of every sub-panel once per K block: when A's whole K is at
/// hand, read in place or packed whole ([`WHOLE_K_ROWS`]). Each column is still summed K
/// block by K block, in order, so the bits are those of the blocked walk. Measured on Zen 4
/// (AVX2, 64-byte strips): `[4, 1024] x [1024, 4096]` 549-564 -> 493-502 us with W in L3,
/// 1106-1165 -> 874-928 from memory; `[2, 1024] x [1024, 4096]` 350-360 -> 315-336; a
/// single row `[1, 1024] x [1024, 3072]` 210-218 -> 198-201.
fn walks_w_once<T>(a: MatRef<'_, T>, rows: usize) -> bool {
    reads_a_in_place(a) || (a.col_stride() == 1 && rows <= WHOLE_K_ROWS)
}

/// Column-major A of at most this many rows is read in place: each tile's step reads a
/// contiguous run of a column, and there are too few rows for a stride to thrash the cache.
pub const IN_PLACE_ROWS: usize = 16;

/// Whether [`gemm_packed`] reads `a` in place (no scratch needed): one row, or few rows
/// stored column-major.
pub fn reads_a_in_place<T>(a: MatRef<'_, T>) -> bool {
    a.rows() <= 1 || (a.row_stride() == 1 && a.rows() <= IN_PLACE_ROWS)
}

/// One or more products `C_i <- A W_i + beta C_i` that share their A (and its packed blocks).
pub(crate) struct Product<'a, 'w, 's, 'o, 'c, T> {
    a: MatRef<'a, T>,
    outs: &'o mut [(PackedRef<'w, T>, MatMut<'c, T>)],
    beta: T,
    scratch: &'s mut [T],
}

impl<T: Float> WithSimd for Product<'_, '_, '_, '_, '_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        run_shaped(self, s);
    }
}

/// A product's body, generic over the microkernel's shape (`MR` rows x `NV` registers).
trait ShapedRun: Sized {
    type Elem: Float;
    fn run<S: Simd, const MR: usize, const NV: usize>(self, s: S);
}

/// Runs `body` at the microkernel shape of this instruction set: with 32 registers
/// (AVX-512) 12 rows x 2 registers, with 16 (AVX2) 6 x 2, scalar 4 x 8.
#[inline(always)]
fn run_shaped<S: Simd, R: ShapedRun>(body: R, s: S) {
    let lanes = R::Elem::lanes::<S>();
    let regs = panel_width::<R::Elem>() / lanes;
    if S::REGISTER_COUNT >= 32 && regs.is_multiple_of(2) {
        body.run::<S, 12, 2>(s);
    } else if lanes > 1 && regs.is_multiple_of(2) {
        body.run::<S, 6, 2>(s);
    } else {
        body.run::<S, 4, 8>(s);
    }
}

/// Columns of the microkernel's tile on `arch` (see [`run_shaped`]): the strips a product
/// runs on must be a multiple of it.
#[cfg(test)]
pub(crate) fn tile_width<T: Float>(arch: Arch) -> usize {
    struct Width<T>(core::marker::PhantomData<T>);
    impl<T: Float> WithSimd for Width<T> {
        type Output = usize;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> usize {
            let (lanes, regs) = (T::lanes::<S>(), panel_width::<T>() / T::lanes::<S>());
            if lanes > 1 && regs.is_multiple_of(2) {
                2 * lanes
            } else {
                8
            }
        }
    }
    arch.dispatch(Width::<T>(core::marker::PhantomData))
}

/// The strip widths a product on `arch` can run on (the whole panel, and half of it where
/// the tile fits), for tests of both layouts.
#[cfg(test)]
pub(crate) fn strips_for<T: Float>(arch: Arch) -> Vec<usize> {
    let nr = panel_width::<T>();
    [nr, nr / 2]
        .into_iter()
        .filter(|s| s.is_multiple_of(tile_width::<T>(arch)))
        .collect()
}

/// The index of element `(kk, col)` of a `k`-row matrix packed in strips of `strip`.
#[cfg(test)]
pub(crate) fn packed_index(k: usize, strip: usize, kk: usize, col: usize) -> usize {
    (col / strip) * k * strip + kk * strip + col % strip
}

/// Asserts that `out`, `k` rows packed in strips of `strip`, holds `want(kk, col)` at every
/// element of columns `0..n`, and zeros past them to the end of the last panel.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_packs<T: Float>(
    out: &[T],
    (k, n, strip): (usize, usize, usize),
    want: impl Fn(usize, usize) -> T,
    what: &str,
) {
    for col in 0..n.next_multiple_of(panel_width::<T>()) {
        for kk in 0..k {
            let want = if col < n { want(kk, col) } else { T::ZERO };
            let got = out[packed_index(k, strip, kk, col)];
            assert_eq!(got, want, "{what}, strips of {strip}: ({kk}, {col})");
        }
    }
}

/// Accumulator sets of a single-row tile (alone or in [`Tile::run_pair`]); with two rows or
/// fewer registers per step, see [`Tile::run`].
const PAIR_SETS: usize = 2;

/// Accumulator sets of a tile with `accumulators` (rows x registers) accumulators: an FMA
/// waits for the previous one on its accumulator (4 cycles), so with 4 or fewer alternate
/// steps go to two independent sets, summed at the end. One rule for [`Tile::run`] and
/// [`Tile::run_rows_pair`], so that a column's bits never depend on whether it was paired.
const fn accumulator_sets(accumulators: usize) -> usize {
    if accumulators <= 4 { 2 } else { 1 }
}

/// Steps ahead a tile of a few-row block asks for W into L2 (on 16 registers; see
/// [`BlockPass::streams_w`]): 16 KiB ahead in a 64-byte strip. Measured on Zen 4 with AVX2
/// (W on huge pages, best of 200-400 calls, `[4, 1024] x [1024, 4096]`), into L1 32 steps
/// ahead as before: 440-445 us with W in L3, 790-834 from memory; into L2 256 steps ahead:
/// 436-439 and 445-461 (onnxruntime's own product: 421-463 and 680-816 in the same runs);
/// into L2 at 32, 64 and 128 steps: 456-460, 450-461 and 440-442 in L3, 1158-1197, 787-808
/// and 525-534 from memory; 384-768 steps no better. On 4 KiB pages a prefetch misses the
/// TLB: 520-537 and 669-891. A single row or a pair of tiles (2-3 rows, two streams) ran
/// 10-20% slower asking for both streams at any distance, in L3 and from memory, and asks
/// for nothing; blocks of 6-32 rows measured even either way.
const PREFETCH_STEPS: usize = 256;

/// Groups of steps (one step per accumulator set) in each iteration of a tile's loop over
/// K, the pointers moved on by adding (one step a time, the loop multiplied its index by
/// the stride on every step: 20 instructions for the 8 FMAs of a 4 x 2 tile, more than the
/// front end passes while the FMAs issue). Measured on Zen 4 with AVX2 against one group an
/// iteration (best of 100-5000 calls, alternating, W on huge pages): `[4, 1024] x [1024,
/// 4096]` 458-466 -> 446-456 us, `[4, 512] x [512, 2048]` 112.2-112.4 -> 110.0-110.4,
/// `[16, 256] x [256, 1024]` 102.7-103.3 -> 100.8-101.4, `[32, 512] x [512, 2048]` 784-789
/// -> 780-784, `[240, 512] x [512, 2048]` 85.1-86.0 -> 86.0-86.5 GFLOP/s.
const UNROLL_STEPS: usize = 4;

/// Accumulator sets of each tile of a pair of `accumulators` each ([`Tile::run_rows_pair`]).
/// With 32 registers the rule of a tile alone, [`accumulator_sets`]: a sub-panel there is a
/// whole panel, and whether it is paired depends on where a thread's panel range starts, so
/// a column's bits must not depend on it. With 16 (AVX2) both tiles of a pair are the two
/// halves of one panel, always paired, and two sets each would not fit the registers: the
/// rule counts both tiles' accumulators.
const fn pair_sets<S: Simd>(accumulators: usize) -> usize {
    if S::REGISTER_COUNT >= 32 {
        accumulator_sets(accumulators)
    } else {
        accumulator_sets(2 * accumulators)
    }
}

/// The sums of a pair of single-row tiles ([`Tile::run_pairs`]).
type Sums<S, T, const NV: usize> = ([[V<S, T>; NV]; 1], [[V<S, T>; NV]; 1]);

/// How [`Tile::run_pairs`] walks a single row's pairs of sub-panels: `count` pairs, each
/// `regs_apart` registers of W and `cols_apart` columns after the one before, the two tiles
/// of a pair step by step together or, with `one_stream`, one after the other.
#[derive(Clone, Copy)]
pub(super) struct RowWalk {
    count: usize,
    regs_apart: usize,
    cols_apart: usize,
    one_stream: bool,
}

/// The bytes of W a single row reads as one stream, one whole panel after the other,
/// instead of two panels side by side (AVX-512, whose tile is a panel wide): W past L1 that
/// stays in L2, as each core's share of `W_hh` at batch 1 and H = 256 on 2 threads.
///
/// Measured on Zen 5 (back-to-back calls, median TSC cycles, two-stream -> one-stream, the
/// same binary):
/// - `[1, 128] x [128, 512]` 5,070-5,148 -> 4,264-4,472;
/// - `[1, 256] x [256, 512]` 9,022-9,100 -> 8,632-8,710;
/// - `[1, 256] x [256, 256]` 4,368-4,472 -> 4,316-4,342.
///
/// The same loops written with bare intrinsics: 10,166-10,400 two-stream, 5,590-5,746
/// one-stream at `[1, 256] x [256, 512]`. lstm_h256_b1 inference on 2 threads
/// (`profile_case`, 5 alternating pairs): 0.705-0.732 -> 0.649-0.687 ms. Below the range
/// (W in L1) two streams measured even or faster (`[1, 64] x [64, 64]` 364 against 390);
/// from L3 two streams keep more of W in flight (`[1, 256] x [256, 1024]` and `[1, 512] x
/// [512, 512]` even, larger ones faster or even).
const ONE_STREAM_BYTES: core::ops::RangeInclusive<usize> = (128 << 10)..=(512 << 10);

/// Rows of A as the microkernel reads them: step by step, element (r, kk) at
/// `data[kk * cs + r]`, or row by row at the packed stride, `data[r * PACK_LD + kk]`.
#[derive(Clone, Copy)]
struct Block<'a, T> {
    data: &'a [T],
    cs: usize,
    row_major: bool,
}

impl<T: Float> ShapedRun for Product<'_, '_, '_, '_, '_, T> {
    type Elem = T;
    #[inline(always)]
    fn run<S: Simd, const MR: usize, const NV: usize>(self, s: S) {
        let Product {
            a,
            outs,
            beta,
            scratch,
        } = self;
        let (m, k) = (a.rows(), a.cols());
        let mc = balanced(m, MC, MR);
        // An even count, so that an odd last sub-panel's partner (none) is visited too:
        // `run_sub_panel_share` finishes a pair on its odd member.
        let subs = |w: PackedRef<'_, T>| sub_panels::<S, T, NV>(w).next_multiple_of(2);
        for m0 in (0..m).step_by(mc) {
            let rows = (m0, (m0 + mc).min(m));
            if walks_w_once(a, rows.1 - rows.0) {
                // A's whole K is at hand (in place, or a few rows packed block after block),
                // so each sub-panel meets every K block before the next: W is read in one
                // pass, in order, as a stream the hardware prefetcher follows.
                let stride = (rows.1 - rows.0) * PACK_LD;
                let at = |i: usize| if reads_a_in_place(a) { 0 } else { i * stride };
                if !reads_a_in_place(a) {
                    for (i, ks) in k_blocks(k).enumerate() {
                        pack_a_block::<T, MR>(a, rows, ks, &mut scratch[at(i)..]);
                    }
                }
                for (w, c) in outs.iter_mut() {
                    // A single row runs its whole pairs of sub-panels in one loop.
                    let j0 = if rows.1 - rows.0 == 1 {
                        let pass = BlockPass::view(a, rows, (0, k), beta, scratch);
                        pass.run_row_pairs::<S, MR, NV>(s, *w, c)
                    } else {
                        0
                    };
                    for j in j0..subs(*w) {
                        for (i, ks) in k_blocks(k).enumerate() {
                            let beta = block_beta(beta, ks.0);
                            let pass = BlockPass::view(a, rows, ks, beta, &scratch[at(i)..]);
                            pass.run_sub_panel_share::<S, MR, NV>(s, *w, j, c);
                        }
                    }
                }
            } else {
                for ks in k_blocks(k) {
                    let beta = block_beta(beta, ks.0);
                    if !reads_a_in_place(a) {
                        pack_a_block::<T, MR>(a, rows, ks, scratch);
                    }
                    let pass = BlockPass::view(a, rows, ks, beta, scratch);
                    // The packed block meets every product's W before the next is packed.
                    for (w, c) in outs.iter_mut() {
                        for j in 0..subs(*w) {
                            pass.run_sub_panel_share::<S, MR, NV>(s, *w, j, c);
                        }
                    }
                }
            }
        }
    }
}

/// The K blocks of a product with inner dimension `k` (one empty block when `k` is 0, so
/// that `beta` still applies to C).
fn k_blocks(k: usize) -> impl Iterator<Item = (usize, usize)> {
    let kcb = balanced(k, KC, 1);
    (0..k.max(1))
        .step_by(kcb)
        .map(move |k0| (k0, (k0 + kcb).min(k)))
}

/// The beta of the K block starting at `k0`: later blocks add to what the first one wrote.
fn block_beta<T: Float>(beta: T, k0: usize) -> T {
    if k0 == 0 { beta } else { T::ONE }
}

/// Sub-panels of `w` (`NV` registers wide) a product walks, in order.
fn sub_panels<S: Simd, T: Float, const NV: usize>(w: PackedRef<'_, T>) -> usize {
    let sub = NV * T::lanes::<S>();
    w.n.div_ceil(panel_width::<T>()) * panel_width::<T>().div_ceil(sub)
}

/// One block of A (rows `m0..m1`, columns `k0..k1`, packed by [`pack_a_block`] unless read
/// in place) against the matching K block of every sub-panel of W: the body of a product,
/// shared by [`gemm_packed`] and [`group::gemm_packed_group`], so that a part of a grouped
/// product runs exactly the arithmetic of its own product.
#[derive(Clone, Copy)]
struct BlockPass<'a, T> {
    a: MatRef<'a, T>,
    /// The packed block (empty when read in place).
    packed: &'a [T],
    in_place: bool,
    m0: usize,
    m1: usize,
    k0: usize,
    k1: usize,
    /// This K block's beta (see [`block_beta`]).
    beta: T,
}

impl<'a, T: Float> BlockPass<'a, T> {
    /// The block as [`pack_a_block`] left it in `scratch` (or A itself when read in place).
    fn view(
        a: MatRef<'a, T>,
        (m0, m1): (usize, usize),
        (k0, k1): (usize, usize),
        beta: T,
        scratch: &'a [T],
    ) -> Self {
        let in_place = reads_a_in_place(a);
        let rows = m1 - m0;
        let packed = match (in_place, a.col_stride() == 1) {
            (true, _) => &[][..],
            (false, true) => &scratch[..rows * PACK_LD],
            (false, false) => &scratch[..rows * (k1 - k0)],
        };
        BlockPass {
            a,
            packed,
            in_place,
            m0,
            m1,
            k0,
            k1,
            beta,
        }
    }

    /// The micro-panel of the block's rows `r..r + len` (`len <= MR`).
    #[inline(always)]
    fn panel_of(&self, r: usize, len: usize) -> Block<'a, T> {
        let (a, k0, m0) = (self.a, self.k0, self.m0);
        if self.in_place {
            // One row (either stride; m0 + r = 0) or a column-major block: step kk of rows
            // m0 + r.. lies at kk * cs + m0 + r.
            let cs = if a.rows() == 1 && a.col_stride() == 1 {
                1
            } else {
                a.col_stride()
            };
            Block {
                data: &a.data()[k0 * cs + m0 + r..],
                cs,
                row_major: false,
            }
        } else if a.col_stride() == 1 {
            Block {
                data: &self.packed[r * PACK_LD..],
                cs: 1,
                row_major: true,
            }
        } else {
            Block {
                data: &self.packed[r * (self.k1 - self.k0)..],
                cs: len,
                row_major: false,
            }
        }
    }

    /// The tile of sub-panel `j`, rows 0.. of the block, or none past the last column.
    #[inline(always)]
    fn tile_at<S: Simd, const MR: usize, const NV: usize>(
        &self,
        w: PackedRef<'a, T>,
        j: usize,
    ) -> Option<Tile<'a, S, T>> {
        let (nr, lanes) = (panel_width::<T>(), T::lanes::<S>());
        let sub = NV * lanes;
        let subs_per_panel = nr.div_ceil(sub);
        let (p, s0) = (j / subs_per_panel, j % subs_per_panel * sub);
        let col0 = p * nr + s0;
        if col0 >= w.n {
            return None;
        }
        assert!(
            w.strip.is_multiple_of(sub),
            "gemm_packed: strips of {} columns are narrower than this path's tile",
            w.strip
        );
        let (regs, _) = T::v_split::<S>(w.strip(p, s0 / w.strip));
        Some(Tile {
            block: self.panel_of(0, MR),
            regs,
            k0: self.k0,
            k1: self.k1,
            r: 0,
            row0: self.m0,
            col0,
            width: sub.min(w.n - col0),
            sub_reg: s0 % w.strip / lanes,
            regs_per_row: w.strip / lanes,
            ahead: if self.streams_w::<S>() {
                PREFETCH_STEPS * w.strip / lanes
            } else {
                0
            },
        })
    }

    /// A single row against the whole pairs of sub-panels from the first on, as
    /// [`Self::run_sub_panel_share`] runs them, but in one loop ([`Tile::run_pairs`]): the
    /// two halves of each panel (AVX2), or two whole panels side by side (AVX-512, whose
    /// tile is a panel wide); returns the sub-panel where the rest begins (0: none run).
    /// Set up pair by pair through [`Self::run_pair_from`] (a few hundred cycles each),
    /// `[1, 512] x [512, 2048]` ran 62.5-63.0 us on Zen 4 with AVX2, 60.4-60.6 this way (the
    /// same loop in C: 57.6-58.4); `[1, 256] x [256, 1024]` 16.3-16.5 -> 14.9-15.2, `[1, 128]
    /// x [128, 8192]` 76.7-78.2 -> 66.9-68.2, `[1, 1024] x [1024, 3072]` 220-225 -> 190-192
    /// (with [`walks_w_once`]). With AVX-512 (Zen 4, best of 15 runs, three alternating
    /// pairs): `[1, 256] x [256, 512]` (W in L2) 5.44-6.48 -> 5.13-5.35 us, `[1, 256] x
    /// [256, 1024]` 13.0-14.9 -> 11.9-13.5, `[1, 64] x [64, 256]` 0.78-0.80 -> 0.67-0.68.
    #[inline(always)]
    fn run_row_pairs<S: Simd, const MR: usize, const NV: usize>(
        &self,
        s: S,
        w: PackedRef<'a, T>,
        c: &mut MatMut<'_, T>,
    ) -> usize {
        let (nr, lanes) = (panel_width::<T>(), T::lanes::<S>());
        let (sub, whole_panels) = (NV * lanes, w.n / nr);
        if self.m1 - self.m0 != 1 {
            return 0;
        }
        // The pairs: the two halves of each panel, or two whole panels side by side.
        let pairs = if 2 * sub == nr {
            RowWalk {
                count: whole_panels,
                regs_apart: w.stride / lanes,
                cols_apart: nr,
                one_stream: false,
            }
        } else if sub == nr {
            let bytes = 2 * (whole_panels / 2) * nr * (self.k1 - self.k0) * size_of::<T>();
            RowWalk {
                count: whole_panels / 2,
                regs_apart: 2 * w.stride / lanes,
                cols_apart: 2 * nr,
                one_stream: ONE_STREAM_BYTES.contains(&bytes),
            }
        } else {
            return 0;
        };
        if pairs.count == 0 {
            return 0;
        }
        // Sub-panels 0 and 1, W from their strips to the end of the packing.
        let onwards = |j: usize| {
            let tile = self.tile_at::<S, MR, NV>(w, j)?;
            let (p, col) = (j * sub / nr, j * sub % nr);
            let (regs, _) = T::v_split::<S>(w.strip_onwards(p, col / w.strip));
            Some(Tile { regs, ..tile })
        };
        let (Some(first), Some(second)) = (onwards(0), onwards(1)) else {
            return 0;
        };
        let kc = balanced(self.k1 - self.k0, KC, 1);
        first.run_pairs::<NV>(second, s, pairs, kc, self.beta, c);
        2 * pairs.count
    }

    /// Whether this block runs two sub-panels at a time (see [`Self::run_sub_panel_share`]): a
    /// single row, or 2-4 rows (fewer than a tile) on SIMD paths, 2-3 with 16 registers
    /// (AVX2), where a pair of four rows would not fit. There the two sub-panels are the two
    /// halves of one panel (two strips, or one 128-byte row); 2-3 rows as one tile on one
    /// half and then one on the other streamed W at 7-10 GB/s from memory and 22-33 from L3
    /// on Zen 4 (paired: 17-31 and 27-50). Four rows on strips read whole cache lines as one
    /// tile and ask for W ahead ([`Self::streams_w`]): `[4, 1024] x [1024, 4096]` with W in
    /// L3 530-549 us, 595-624 as two 2-row pairs over chunks of steps (the rule before
    /// strips), even from memory; `[4, 512] x [512, 2048]` 109 against 124-125.
    #[inline(always)]
    fn pairs<S: Simd, const MR: usize>(&self) -> bool {
        let rows = self.m1 - self.m0;
        let most = if S::REGISTER_COUNT >= 32 { 4 } else { 3 };
        rows == 1 || (rows < MR && rows <= most && T::lanes::<S>() > 1)
    }

    /// Whether this block's tiles ask for W [`PREFETCH_STEPS`] steps ahead: a few rows (at
    /// most 4: W then streams from L3 or memory with little work per line) on a SIMD path
    /// with 16 registers. (Not measured with 32 registers, so not asked there.)
    #[inline(always)]
    fn streams_w<S: Simd>(&self) -> bool {
        S::REGISTER_COUNT < 32 && T::lanes::<S>() > 1 && self.m1 - self.m0 <= 4
    }

    /// What this block runs of sub-panel `j` as the sub-panels go by in order: with
    /// [`Self::pairs`], the pair `j, j + 1` on even `j`; with 16 registers (the pair is one
    /// panel's two halves) and 1-3 rows past the whole tiles, the tiles of `j` and, on odd
    /// `j`, those rows as a pair (an 8-row chunk is a 6-row tile and 2 rows: `[8, 256] x
    /// [256, 1024]` 74-75 -> 77-78 GFLOP/s on Zen 4; a 4-row remainder measured 1.5%
    /// slower as a pair, and stays a tile); else sub-panel `j` tile by tile.
    #[inline(always)]
    fn run_sub_panel_share<S: Simd, const MR: usize, const NV: usize>(
        &self,
        s: S,
        w: PackedRef<'a, T>,
        j: usize,
        c: &mut MatMut<'_, T>,
    ) {
        if self.pairs::<S, MR>() {
            if j.is_multiple_of(2) {
                self.run_pair_from::<S, MR, NV>(s, w, j, 0, c);
            }
        } else if S::REGISTER_COUNT < 32 && T::lanes::<S>() > 1 && (self.m1 - self.m0) % MR <= 3 {
            let full = self.run_tiles::<S, MR, NV>(s, w, j, self.tiled_rows::<S, MR>(), c);
            if j % 2 == 1 {
                self.run_pair_from::<S, MR, NV>(s, w, j - 1, full, c);
            }
        } else {
            self.run_sub_panel::<S, MR, NV>(s, w, j, c);
        }
    }

    /// Rows `r0..` of this block against sub-panels `j` and `j + 1` together (see
    /// [`Tile::run_rows_pair`]; nothing past the last column).
    #[inline(always)]
    fn run_pair_from<S: Simd, const MR: usize, const NV: usize>(
        &self,
        s: S,
        w: PackedRef<'a, T>,
        j: usize,
        r0: usize,
        c: &mut MatMut<'_, T>,
    ) {
        let rows = self.m1 - self.m0 - r0;
        if rows == 0 {
            return;
        }
        let beta = self.beta;
        let pair = (
            self.tile_at::<S, MR, NV>(w, j),
            self.tile_at::<S, MR, NV>(w, j + 1),
        );
        // One row streams W once with only NV FMAs per step, and a few rows read each
        // panel of W once: two sub-panels at a time keep two streams of W in flight (the
        // step product at batch 1 to 4), or with 16 registers one stream of whole panel
        // rows. A single row ends in `Tile::run_pair`.
        let (block, row0) = (self.panel_of(r0, rows), self.m0 + r0);
        match pair {
            (Some(a), Some(b)) => Tile { block, row0, ..a }.run_rows_pair::<NV>(
                Tile { block, row0, ..b },
                s,
                rows,
                beta,
                c,
            ),
            (Some(a), None) => Tile { block, row0, ..a }.run_rows::<NV>(s, rows, beta, c),
            _ => {}
        }
    }

    /// Sub-panel `j` of this block, by whole microkernel tiles and a remainder (nothing
    /// past the last column).
    #[inline(always)]
    fn run_sub_panel<S: Simd, const MR: usize, const NV: usize>(
        &self,
        s: S,
        w: PackedRef<'a, T>,
        j: usize,
        c: &mut MatMut<'_, T>,
    ) {
        let rows = self.m1 - self.m0;
        let full = self.run_tiles::<S, MR, NV>(s, w, j, self.tiled_rows::<S, MR>(), c);
        if full < rows {
            let Some(tile) = self.tile_at::<S, MR, NV>(w, j) else {
                return;
            };
            let t = Tile {
                block: self.panel_of(full, rows - full),
                row0: self.m0 + full,
                ..tile
            };
            t.run_rows::<NV>(s, rows - full, self.beta, c);
        }
    }

    /// The rows this block runs as whole microkernel tiles; the rest go to
    /// [`Tile::run_rows`]. With 32 registers, 16 rows of A read in place (two 8-row chunks
    /// stepped in lockstep) run as two 8-row tiles, not 12 + 4: a 4 x 2-register tile has
    /// only the 8 accumulators that two FMA pipes of 4 cycles' latency keep busy, and no
    /// slack. Measured on Zen 5 (full-width AVX-512), 1 thread: an LSTM step's products at
    /// H = 256, B = 32 as the lockstep loop runs them (two 16-row parts, 4 gates x 2 blocks,
    /// best of 300) 70.2-70.4 -> 66.4-67.2 us, as fast as four unpaired 8-row parts
    /// (66.0-66.7); the forward step products of lstm_h512_b64 training (timed in the loop)
    /// 15.6-16.0 -> 14.3-14.6 ms. The char-rnn end to end: within noise. Row-major packed A
    /// of 16 rows measured no faster, and keeps 12 + 4.
    #[inline(always)]
    fn tiled_rows<S: Simd, const MR: usize>(&self) -> usize {
        let rows = self.m1 - self.m0;
        if S::REGISTER_COUNT >= 32 && MR == 12 && rows == 16 && self.in_place {
            0
        } else {
            rows / MR * MR
        }
    }

    /// The whole microkernel tiles of sub-panel `j` over the block's first `full` rows (a
    /// multiple of `MR`; nothing past the last column); returns `full`.
    #[inline(always)]
    fn run_tiles<S: Simd, const MR: usize, const NV: usize>(
        &self,
        s: S,
        w: PackedRef<'a, T>,
        j: usize,
        full: usize,
        c: &mut MatMut<'_, T>,
    ) -> usize {
        let Some(tile) = self.tile_at::<S, MR, NV>(w, j) else {
            return full;
        };
        for r in (0..full).step_by(MR) {
            let t = Tile {
                block: self.panel_of(r, MR),
                row0: self.m0 + r,
                ..tile
            };
            t.run::<MR, NV>(s, self.beta, c);
        }
        full
    }
}

/// The columns [`pack_a_block`] deals to the micro-panels at a time from a column-major
/// source (and asks for ahead): eight runs of `MR` values land contiguously in a panel.
/// Measured against 4 and 16: 8 is the fastest, by 20-40%.
const PACK_COLS: usize = 8;

/// Asks for the cache lines of `x` into L2 (not L1). A block of [`pack_a_block`] asks for
/// its next columns so: into L1, its 120 requests at a time stalled on the core's few outstanding misses (a third
/// of the pack's time sat on them in `perf`). Measured on Zen 4, `[216, 1024]` blocks of a
/// column-major `[1024, 2048]` A: in cache 16.9-23.7 -> 18.9-27.2 GB/s, sources cycling
/// through 64 MiB 6.5-6.7 -> 10.7-11.5 GB/s.
#[inline(always)]
fn prefetch_l2<T>(x: &[T]) {
    for line in x.chunks(64 / core::mem::size_of::<T>().max(1)) {
        prefetch_l2_ptr(line.as_ptr());
    }
}

/// Asks for the cache line at `p` into L1, which may lie past the data (a hint: nothing is
/// read into the program).
#[inline(always)]
fn prefetch_ptr<X>(p: *const X) {
    prefetch_into::<X, L1>(p);
}

/// [`prefetch_ptr`] into L2 (not L1).
#[inline(always)]
pub(super) fn prefetch_l2_ptr<X>(p: *const X) {
    prefetch_into::<X, L2>(p);
}

/// x86's prefetch hints: `_MM_HINT_T0` (to L1) and `_MM_HINT_T1` (to L2).
const L1: i32 = 3;
const L2: i32 = 2;
#[cfg(target_arch = "x86_64")]
const _: () =
    assert!(L1 == core::arch::x86_64::_MM_HINT_T0 && L2 == core::arch::x86_64::_MM_HINT_T1);

/// Asks for the cache line at `p` into the level `HINT` names.
#[inline(always)]
fn prefetch_into<X, const HINT: i32>(p: *const X) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch never faults, whatever the address, and changes nothing the
    // program can observe.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<HINT>(p.cast())
    };
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
}

/// The block size for `len` in blocks of at most `max`: as even as multiples of `unit` make
/// them (480 + 32 rows would stream the weights twice for little work in the second block).
pub(crate) fn balanced(len: usize, max: usize, unit: usize) -> usize {
    let blocks = len.div_ceil(max).max(1);
    len.div_ceil(blocks)
        .next_multiple_of(unit)
        .clamp(1, max.max(1))
}

/// Copies rows `m0..m1`, columns `k0..k1` of `a` into `scratch`, in the layout that is a
/// plain copy of the source:
///
/// * row-major A: row `i` at `i * PACK_LD` (a memcpy per row);
/// * column-major A: micro-panels of `MR` rows (the last one shorter), each step by step:
///   rows `r..r+len` start at `r * kc`, element (r + i, kk) at `r * kc + kk * len + i`.
///
/// Transposing instead (one layout for both) costs up to a tenth of a product whose N is
/// small (dL/dx at H = 128), measured. Not inlined into the SIMD context: with AVX-512
/// enabled LLVM turns such copies into scatters, several times slower on AMD.
#[inline(never)]
fn pack_a_block<'s, T: Float, const MR: usize>(
    a: MatRef<'_, T>,
    (m0, m1): (usize, usize),
    (k0, k1): (usize, usize),
    scratch: &'s mut [T],
) -> &'s [T] {
    let (rows, kc) = (m1 - m0, k1 - k0);
    if a.col_stride() == 1 {
        // Row-major: rows copied as they are, at a stride that spreads them over the cache
        // sets (see `PACK_LD`).
        for i in 0..rows {
            scratch[i * PACK_LD..i * PACK_LD + kc].copy_from_slice(&a.row(m0 + i)[k0..k1]);
        }
        &scratch[..rows * PACK_LD]
    } else {
        // Column-major: blocks of `PACK_COLS` columns, each dealt to every micro-panel in
        // turn, so that a panel receives a contiguous run per block. Column by column (one
        // value run per panel per column) sends the writes to panels a panel apart, which
        // share a cache set (a panel is `MR * kc` values: 24 KiB at kc = 1024); panel by panel
        // walks the columns at their stride, a cache miss per step. Measured at the weight
        // gradients' `[1024, 2048]` A: 3x faster than column by column, 4% of the product.
        let cs = a.col_stride();
        let full = rows / MR * MR;
        let out = &mut scratch[..rows * kc];
        let (main, rest) = out.split_at_mut(full * kc);
        let len = rows - full;
        let column = |kk: usize| &a.data()[(k0 + kk) * cs + m0..][..rows];
        for kb in (0..kc).step_by(PACK_COLS) {
            let next = (kb + PACK_COLS).min(kc)..(kb + 2 * PACK_COLS).min(kc);
            for kk in next {
                prefetch_l2(column(kk));
            }
            if kb + PACK_COLS <= kc {
                let cols: [&[T]; PACK_COLS] = core::array::from_fn(|i| column(kb + i));
                for (g, dst) in main.chunks_exact_mut(MR * kc).enumerate() {
                    let dst = &mut dst[kb * MR..(kb + PACK_COLS) * MR];
                    for (d, col) in dst.chunks_exact_mut(MR).zip(cols) {
                        d.copy_from_slice(&col[g * MR..(g + 1) * MR]);
                    }
                }
            } else {
                for (g, dst) in main.chunks_exact_mut(MR * kc).enumerate() {
                    for kk in kb..kc {
                        dst[kk * MR..(kk + 1) * MR].copy_from_slice(&column(kk)[g * MR..][..MR]);
                    }
                }
            }
            for kk in kb..(kb + PACK_COLS).min(kc) {
                rest[kk * len..(kk + 1) * len].copy_from_slice(&column(kk)[full..]);
            }
        }
        out
    }
}

/// Rows `r..` of an A block against one sub-panel of W over the panel rows `k0..k1`.
#[derive(Clone, Copy)]
struct Tile<'a, S: Simd, T: Float> {
    block: Block<'a, T>,
    regs: &'a [V<S, T>],
    k0: usize,
    k1: usize,
    /// The first row within the block.
    r: usize,
    /// The block's first row in C.
    row0: usize,
    col0: usize,
    width: usize,
    /// The sub-panel's first register within a panel row.
    sub_reg: usize,
    regs_per_row: usize,
    /// Registers of W ahead of each step to ask for (0: none).
    ahead: usize,
}

impl<S: Simd, T: Float> Tile<'_, S, T> {
    /// A remainder of fewer rows than the main kernel's, by the largest kernels that fit.
    #[inline(always)]
    fn run_rows<const NV: usize>(self, s: S, rows: usize, beta: T, c: &mut MatMut<'_, T>) {
        let mut done = 0;
        while done < rows {
            let t = Tile {
                r: self.r + done,
                ..self
            };
            done += match rows - done {
                8.. => t.run::<8, NV>(s, beta, c),
                4..=7 => t.run::<4, NV>(s, beta, c),
                2..=3 => t.run::<2, NV>(s, beta, c),
                _ => t.run::<1, NV>(s, beta, c),
            };
        }
    }

    /// [`Self::run_rows`] of this tile and `other` (the next sub-panel, same rows) together,
    /// step by step, each with its own accumulators: two streams of W in flight instead of
    /// one, for the few-row products whose weights come from L3 or memory. Each tile keeps
    /// the arithmetic of [`Self::run`], so a column's result does not depend on its pair.
    /// (Single rows keep their own [`Self::run_pair`]: routed through here they measured
    /// 2.5-6% slower at batch 1 with W in L2.)
    #[inline(always)]
    fn run_rows_pair<const NV: usize>(
        self,
        other: Self,
        s: S,
        rows: usize,
        beta: T,
        c: &mut MatMut<'_, T>,
    ) {
        let mut done = 0;
        while done < rows {
            let (a, b) = (
                Tile {
                    r: self.r + done,
                    ..self
                },
                Tile {
                    r: other.r + done,
                    ..other
                },
            );
            done += match rows - done {
                // Four rows pair only with 32 registers (see `BlockPass::pairs`).
                4.. => a.run_pair_rows::<4, NV>(b, s, beta, c),
                2..=3 => a.run_pair_rows::<2, NV>(b, s, beta, c),
                _ => {
                    a.run_pair::<NV>(b, s, beta, c);
                    1
                }
            };
        }
    }

    /// [`Self::run`] of `R` rows for this tile and `other` together; returns R.
    #[inline(always)]
    fn run_pair_rows<const R: usize, const NV: usize>(
        self,
        other: Self,
        s: S,
        beta: T,
        c: &mut MatMut<'_, T>,
    ) -> usize {
        #[cfg(debug_assertions)]
        return framed(
            s,
            TilePair::<'_, '_, '_, S, T, R, NV> {
                tile: self,
                other,
                beta,
                c,
            },
        );
        #[cfg(not(debug_assertions))]
        self.run_pair_rows_unframed::<R, NV>(other, s, beta, c)
    }

    /// [`Self::run_pair_rows`] in its caller's frame.
    #[inline(always)]
    fn run_pair_rows_unframed<const R: usize, const NV: usize>(
        self,
        other: Self,
        s: S,
        beta: T,
        c: &mut MatMut<'_, T>,
    ) -> usize {
        match pair_sets::<S>(R * NV) {
            2 => self.run_pair_sets::<R, NV, 2>(other, s, beta, c),
            _ => self.run_pair_sets::<R, NV, 1>(other, s, beta, c),
        }
    }

    /// [`Self::pointers`] of a pair of tiles (this one and `other`, the next sub-panel, over
    /// the same rows of A): both W pointers with the registers per step, A's pointer and
    /// strides (the same for both tiles), and the step count.
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    fn pair_pointers<const R: usize, const NV: usize>(
        &self,
        other: &Self,
    ) -> (
        (*const V<S, T>, *const V<S, T>, usize),
        (*const T, usize, usize),
        usize,
    ) {
        let (w1, a, a_step, a_row, len) = if self.block.row_major {
            self.pointers::<R, NV, true>()
        } else {
            self.pointers::<R, NV, false>()
        };
        let (w2, ..) = if other.block.row_major {
            other.pointers::<R, NV, true>()
        } else {
            other.pointers::<R, NV, false>()
        };
        ((w1, w2, self.regs_per_row), (a, a_step, a_row), len)
    }

    /// [`Self::run_pair_rows`] with `SETS` accumulator sets per tile.
    #[inline(always)]
    fn run_pair_sets<const R: usize, const NV: usize, const SETS: usize>(
        self,
        other: Self,
        s: S,
        beta: T,
        c: &mut MatMut<'_, T>,
    ) -> usize {
        let zero = T::v_splat(s, T::ZERO);
        let mut first = [[[zero; NV]; R]; SETS];
        let mut second = first;
        self.prefetch_c::<R>(c);
        other.prefetch_c::<R>(c);
        if self.k1 > self.k0 {
            let (w, a, len) = self.pair_pointers::<R, NV>(&other);
            let groups = len / SETS * SETS;
            for kk in (0..groups).step_by(SETS) {
                for j in 0..SETS {
                    let (first, second) = (&mut first[j], &mut second[j]);
                    // SAFETY: kk + j < len for both tiles (same k range), within what
                    // `pointers` checked for each.
                    unsafe { Self::step_pair::<R, NV>(s, w, a, kk + j, first, second) };
                }
            }
            for k in groups..len {
                let (first, second) = (&mut first[0], &mut second[0]);
                // SAFETY: as above, k < len.
                unsafe { Self::step_pair::<R, NV>(s, w, a, k, first, second) };
            }
        }
        self.store::<R, NV>(s, Self::sum_sets(s, first), beta, c);
        other.store::<R, NV>(s, Self::sum_sets(s, second), beta, c);
        R
    }

    /// `C[rows, cols] <- A[rows, k0..k1] W_sub + beta C` for `R` rows; returns R.
    #[inline(always)]
    fn run<const R: usize, const NV: usize>(self, s: S, beta: T, c: &mut MatMut<'_, T>) -> usize {
        #[cfg(debug_assertions)]
        return framed(
            s,
            TileAlone::<'_, '_, '_, S, T, R, NV> {
                tile: self,
                beta,
                c,
            },
        );
        #[cfg(not(debug_assertions))]
        self.run_unframed::<R, NV>(s, beta, c)
    }

    /// [`Self::run`] in its caller's frame.
    #[inline(always)]
    fn run_unframed<const R: usize, const NV: usize>(
        self,
        s: S,
        beta: T,
        c: &mut MatMut<'_, T>,
    ) -> usize {
        match accumulator_sets(R * NV) {
            2 => self.run_sets::<R, NV, 2>(s, beta, c),
            _ => self.run_sets::<R, NV, 1>(s, beta, c),
        }
    }

    /// One step of the product into `acc`: `R` values of A from `a` (`a_row` apart) times
    /// the `NV` registers of W at `w`. Raw pointers, checked once by [`Self::steps`]: with
    /// 1 or 2 rows there are only 2-4 FMAs per step, and a bounds check per load (the
    /// indexed form) halved the single-row product's speed (measured).
    ///
    /// # Safety
    /// `w..w + NV` and `a + r * a_row` for `r < R` must be in bounds of live slices.
    #[inline(always)]
    unsafe fn step<const R: usize, const NV: usize>(
        s: S,
        w: *const V<S, T>,
        a: *const T,
        a_row: usize,
        acc: &mut [[V<S, T>; NV]; R],
    ) {
        let a_k: [T; R] = core::array::from_fn(|r| {
            let at = a.wrapping_add(r * a_row);
            // SAFETY: the caller guarantees these R elements of A are in bounds.
            unsafe { *at }
        });
        for (acc_r, &a_r) in acc.iter_mut().zip(&a_k) {
            let x = T::v_splat(s, a_r);
            for (v, acc_v) in acc_r.iter_mut().enumerate() {
                let at = w.wrapping_add(v);
                // SAFETY: the caller guarantees these NV registers of W are in bounds.
                let w_v = unsafe { *at };
                *acc_v = T::v_mul_add(s, x, w_v, *acc_v);
            }
        }
    }

    /// This tile's first register of W and first element of A, with A's (step, row)
    /// strides and the step count, after checking once every address the steps will read:
    /// the last step's last register of W and the last step's last row of A. `ROW`: the
    /// block is row-major at [`PACK_LD`] (a constant, so each row's address is one
    /// displacement).
    #[inline(always)]
    fn pointers<const R: usize, const NV: usize, const ROW: bool>(
        &self,
    ) -> (*const V<S, T>, *const T, usize, usize, usize) {
        let Block { data, cs, .. } = self.block;
        let len = self.k1 - self.k0;
        let rpr = self.regs_per_row;
        let w0 = self.k0 * rpr + self.sub_reg;
        let (a_step, a_row, a0) = if ROW {
            (1, PACK_LD, self.r * PACK_LD)
        } else {
            (cs, 1, self.r)
        };
        let last = len.saturating_sub(1);
        assert!(
            w0 + last * rpr + NV <= self.regs.len(),
            "gemm_packed: W sub-panel out of range"
        );
        assert!(
            a0 + last * a_step + (R - 1) * a_row < data.len(),
            "gemm_packed: A block out of range"
        );
        (
            self.regs[w0..].as_ptr(),
            data[a0..].as_ptr(),
            a_step,
            a_row,
            len,
        )
    }

    /// All steps `k0..k1` into the accumulator sets.
    #[inline(always)]
    fn steps<const R: usize, const NV: usize, const SETS: usize, const ROW: bool>(
        &self,
        s: S,
        sets: &mut [[[V<S, T>; NV]; R]; SETS],
    ) {
        if self.k1 == self.k0 {
            return;
        }
        let (w, a, a_step, a_row, len) = self.pointers::<R, NV, ROW>();
        let (w, a) = ((w, self.regs_per_row, self.ahead), (a, a_step, a_row));
        // Two copies of the loop, so that the one that does not ask ahead tests nothing.
        if self.ahead > 0 {
            // SAFETY: `pointers` checked the first and the last step of W and A.
            unsafe { Self::steps_from::<R, NV, SETS, true>(s, w, a, len, sets) };
        } else {
            // SAFETY: as above.
            unsafe { Self::steps_from::<R, NV, SETS, false>(s, w, a, len, sets) };
        }
    }

    /// [`Self::steps`] from W at `w.0` (`w.1` registers a step, asking for W `w.2` registers
    /// ahead when `ASK`) and A at `a.0` (`a.1` elements a step, `a.2` a row): step `k` into
    /// set `k % SETS`, the steps past the last whole group of `SETS` into the first set.
    /// [`UNROLL_STEPS`] groups to an iteration, the pointers moved on step by step.
    ///
    /// # Safety
    /// Steps `0..len` of W and A must be in bounds.
    #[inline(always)]
    unsafe fn steps_from<const R: usize, const NV: usize, const SETS: usize, const ASK: bool>(
        s: S,
        w: (*const V<S, T>, usize, usize),
        a: (*const T, usize, usize),
        len: usize,
        sets: &mut [[[V<S, T>; NV]; R]; SETS],
    ) {
        let mut at = (w.0, a.0);
        let (w, a) = ((w.1, w.2), (a.1, a.2));
        let groups = len / SETS;
        let unrolled = groups / UNROLL_STEPS * UNROLL_STEPS;
        for _ in 0..unrolled / UNROLL_STEPS {
            for _ in 0..UNROLL_STEPS {
                for acc in sets.iter_mut() {
                    // SAFETY: fewer than `len` steps taken so far.
                    unsafe { Self::step_on::<R, NV, ASK>(s, &mut at, w, a, acc) };
                }
            }
        }
        for _ in unrolled..groups {
            for acc in sets.iter_mut() {
                // SAFETY: as above.
                unsafe { Self::step_on::<R, NV, ASK>(s, &mut at, w, a, acc) };
            }
        }
        for _ in groups * SETS..len {
            // SAFETY: as above.
            unsafe { Self::step_on::<R, NV, ASK>(s, &mut at, w, a, &mut sets[0]) };
        }
    }

    /// One step at `at` (W, A) into `acc`, asking for W `w.1` registers ahead when `ASK`,
    /// then `at` moved on by a step (`w.0` registers of W, `a.0` elements of A; `a.1`: A's
    /// row stride).
    ///
    /// # Safety
    /// As [`Self::step`] at `at`.
    #[inline(always)]
    unsafe fn step_on<const R: usize, const NV: usize, const ASK: bool>(
        s: S,
        at: &mut (*const V<S, T>, *const T),
        (rpr, ahead): (usize, usize),
        (a_step, a_row): (usize, usize),
        acc: &mut [[V<S, T>; NV]; R],
    ) {
        if ASK {
            prefetch_l2_ptr(at.0.wrapping_add(ahead));
        }
        // SAFETY: the caller guarantees this step is in bounds.
        unsafe { Self::step::<R, NV>(s, at.0, at.1, a_row, acc) };
        *at = (at.0.wrapping_add(rpr), at.1.wrapping_add(a_step));
    }

    /// Step `k` of two tiles of `R` rows (W at `w.0` and `w.1`, `w.2` registers per step)
    /// against the same rows of A. A method, not a closure: closures do not inline into the
    /// SIMD context (see `crate::lanes`).
    ///
    /// # Safety
    /// Step `k` of both tiles and of A must be in bounds, as [`Self::step`] requires.
    #[inline(always)]
    unsafe fn step_pair<const R: usize, const NV: usize>(
        s: S,
        (w1, w2, rpr): (*const V<S, T>, *const V<S, T>, usize),
        (a, a_step, a_row): (*const T, usize, usize),
        k: usize,
        first: &mut [[V<S, T>; NV]; R],
        second: &mut [[V<S, T>; NV]; R],
    ) {
        let a_k = a.wrapping_add(k * a_step);
        let (w1_k, w2_k) = (w1.wrapping_add(k * rpr), w2.wrapping_add(k * rpr));
        // SAFETY: the caller guarantees step k of both tiles is in bounds.
        unsafe { Self::step::<R, NV>(s, w1_k, a_k, a_row, first) };
        // SAFETY: as above.
        unsafe { Self::step::<R, NV>(s, w2_k, a_k, a_row, second) };
    }

    /// Two single-row tiles (two sub-panels against the same row of A) step by step
    /// together, each with the arithmetic of [`Self::run`] for one row: the same two
    /// accumulator sets, so a column's result does not depend on its neighbour.
    #[inline(always)]
    fn run_pair<const NV: usize>(self, other: Self, s: S, beta: T, c: &mut MatMut<'_, T>) {
        let steps = (self.k1 - self.k0).max(1);
        let pair = RowWalk {
            count: 1,
            regs_apart: 0,
            cols_apart: 0,
            one_stream: false,
        };
        self.run_pairs::<NV>(other, s, pair, steps, beta, c);
    }

    /// [`Self::run_pair`] on the pairs of whole sub-panels `pairs` walks, in one loop (a
    /// single row's product spent a few hundred cycles setting up each pair through the
    /// general path: see [`BlockPass::run_row_pairs`]). Each pair goes through the tiles'
    /// steps in K blocks of `kc` (summed onto C as [`gemm_packed`]'s K blocks are), all of
    /// them before the next pair. More than one K block needs A read in place.
    #[inline(always)]
    fn run_pairs<const NV: usize>(
        self,
        other: Self,
        s: S,
        pairs: RowWalk,
        kc: usize,
        beta: T,
        c: &mut MatMut<'_, T>,
    ) {
        #[cfg(debug_assertions)]
        framed(
            s,
            RowPairs::<'_, '_, '_, _, _, NV> {
                tile: self,
                other,
                pairs,
                kc,
                beta,
                c,
            },
        );
        #[cfg(not(debug_assertions))]
        self.run_pairs_unframed::<NV>(other, s, pairs, kc, beta, c);
    }

    /// [`Self::run_pairs`] in its caller's frame.
    #[inline(always)]
    fn run_pairs_unframed<const NV: usize>(
        self,
        other: Self,
        s: S,
        walk: RowWalk,
        kc: usize,
        beta: T,
        c: &mut MatMut<'_, T>,
    ) {
        let (count, regs_apart, cols_apart) = (walk.count, walk.regs_apart, walk.cols_apart);
        let one_stream = walk.one_stream;
        let last_pair = count.saturating_sub(1) * regs_apart;
        assert!(
            self.spans_w::<NV>(last_pair) && other.spans_w::<NV>(last_pair),
            "gemm_packed: W pairs out of range"
        );
        if kc >= self.k1 - self.k0 {
            // One K block: the pointers of the first pair, moved on for each.
            let steps = (self.k1 > self.k0).then(|| self.pair_pointers::<1, NV>(&other));
            for i in 0..count {
                // SAFETY: `pointers` checked the steps of the first pair and `spans_w`
                // those of the last; pair i lies between.
                let sums = unsafe { Self::pair_sums::<NV>(s, steps, i * regs_apart, one_stream) };
                self.store_pair::<NV>(other, s, i * cols_apart, sums, beta, c);
            }
            return;
        }
        assert!(
            !self.block.row_major,
            "gemm_packed: a packed block of A holds one K block"
        );
        for i in 0..count {
            for b0 in (self.k0..self.k1).step_by(kc) {
                let (one, two) = (self.k_block(b0, kc), other.k_block(b0, kc));
                let steps = Some(one.pair_pointers::<1, NV>(&two));
                // SAFETY: as above, a K block's steps being among the whole tile's.
                let sums = unsafe { Self::pair_sums::<NV>(s, steps, i * regs_apart, one_stream) };
                let beta = if b0 == self.k0 { beta } else { T::ONE };
                one.store_pair::<NV>(two, s, i * cols_apart, sums, beta, c);
            }
        }
    }

    /// Stores a pair's sums into C, both tiles moved `shift` columns on.
    #[inline(always)]
    fn store_pair<const NV: usize>(
        self,
        other: Self,
        s: S,
        shift: usize,
        (first, second): Sums<S, T, NV>,
        beta: T,
        c: &mut MatMut<'_, T>,
    ) {
        let one = Tile {
            col0: self.col0 + shift,
            ..self
        };
        let two = Tile {
            col0: other.col0 + shift,
            ..other
        };
        one.store::<1, NV>(s, first, beta, c);
        two.store::<1, NV>(s, second, beta, c);
    }

    /// The two tiles' sums (accumulator sets added) over `len` steps from `pointers`
    /// (none: no steps), W moved `moved` registers on: step by step together (two streams
    /// of W), or with `one_stream` the first tile's steps and then the second's. Either way
    /// each tile's sums are those of [`Self::run`] for one row.
    ///
    /// # Safety
    /// Every step of both tiles, moved on, must lie in bounds.
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    unsafe fn pair_sums<const NV: usize>(
        s: S,
        pointers: Option<(
            (*const V<S, T>, *const V<S, T>, usize),
            (*const T, usize, usize),
            usize,
        )>,
        moved: usize,
        one_stream: bool,
    ) -> Sums<S, T, NV> {
        let zero = T::v_splat(s, T::ZERO);
        let mut first = [[[zero; NV]; 1]; PAIR_SETS];
        let mut second = first;
        if let Some(((w1, w2, rpr), a, len)) = pointers {
            let (w1, w2) = (w1.wrapping_add(moved), w2.wrapping_add(moved));
            if one_stream {
                // SAFETY: the caller's guarantee, for each tile.
                unsafe { Self::single_sums::<NV>(s, (w1, rpr), a, len, &mut first) };
                // SAFETY: as above.
                unsafe { Self::single_sums::<NV>(s, (w2, rpr), a, len, &mut second) };
                return (Self::sum_sets(s, first), Self::sum_sets(s, second));
            }
            let w = (w1, w2, rpr);
            let groups = len / PAIR_SETS * PAIR_SETS;
            for kk in (0..groups).step_by(PAIR_SETS) {
                for j in 0..PAIR_SETS {
                    // SAFETY: kk + j < len, in bounds by the caller's guarantee.
                    unsafe {
                        Self::step_pair::<1, NV>(s, w, a, kk + j, &mut first[j], &mut second[j])
                    };
                }
            }
            for k in groups..len {
                // SAFETY: as above, k < len.
                unsafe { Self::step_pair::<1, NV>(s, w, a, k, &mut first[0], &mut second[0]) };
            }
        }
        (Self::sum_sets(s, first), Self::sum_sets(s, second))
    }

    /// One single-row tile's `len` steps (W at `w.0`, `w.1` registers a step; A at `a.0`,
    /// `a.1` elements a step) into `sets`, step `k` into set `k % PAIR_SETS` and the steps
    /// past the last whole group into the first: [`Self::pair_sums`]'s arithmetic, one
    /// stream of W.
    ///
    /// # Safety
    /// Every step must lie in bounds, as [`Self::step`] requires.
    #[inline(always)]
    unsafe fn single_sums<const NV: usize>(
        s: S,
        (w, rpr): (*const V<S, T>, usize),
        (a, a_step, a_row): (*const T, usize, usize),
        len: usize,
        sets: &mut [[[V<S, T>; NV]; 1]; PAIR_SETS],
    ) {
        let groups = len / PAIR_SETS * PAIR_SETS;
        let at = |k: usize| (w.wrapping_add(k * rpr), a.wrapping_add(k * a_step));
        for kk in (0..groups).step_by(PAIR_SETS) {
            for (j, acc) in sets.iter_mut().enumerate() {
                let (w_k, a_k) = at(kk + j);
                // SAFETY: kk + j < len, in bounds by the caller's guarantee.
                unsafe { Self::step::<1, NV>(s, w_k, a_k, a_row, acc) };
            }
        }
        for k in groups..len {
            let (w_k, a_k) = at(k);
            // SAFETY: as above, k < len.
            unsafe { Self::step::<1, NV>(s, w_k, a_k, a_row, &mut sets[0]) };
        }
    }

    /// This tile's steps `b0..b0 + kc` (at most to its end), A read in place.
    #[inline(always)]
    fn k_block(self, b0: usize, kc: usize) -> Self {
        let skip = (b0 - self.k0) * self.block.cs;
        Tile {
            k0: b0,
            k1: (b0 + kc).min(self.k1),
            block: Block {
                data: &self.block.data[skip.min(self.block.data.len())..],
                ..self.block
            },
            ..self
        }
    }

    /// Whether this tile's steps, moved `regs_apart` registers on, still read W within
    /// `regs` (as [`Self::pointers`] checks without the move).
    fn spans_w<const NV: usize>(&self, regs_apart: usize) -> bool {
        let Some(last) = (self.k1 - self.k0).checked_sub(1) else {
            return true; // no steps read W
        };
        let w0 = self.k0 * self.regs_per_row + self.sub_reg;
        w0 + regs_apart + last * self.regs_per_row + NV <= self.regs.len()
    }

    /// The accumulator sets added in order.
    #[inline(always)]
    fn sum_sets<const R: usize, const NV: usize, const SETS: usize>(
        s: S,
        sets: [[[V<S, T>; NV]; R]; SETS],
    ) -> [[V<S, T>; NV]; R] {
        let mut acc = sets[0];
        for set in &sets[1..] {
            for r in 0..R {
                for v in 0..NV {
                    acc[r][v] = T::v_add(s, acc[r][v], set[r][v]);
                }
            }
        }
        acc
    }

    #[inline(always)]
    fn run_sets<const R: usize, const NV: usize, const SETS: usize>(
        self,
        s: S,
        beta: T,
        c: &mut MatMut<'_, T>,
    ) -> usize {
        let zero = T::v_splat(s, T::ZERO);
        let mut sets = [[[zero; NV]; R]; SETS];
        self.prefetch_c::<R>(c);
        if self.block.row_major {
            self.steps::<R, NV, SETS, true>(s, &mut sets);
        } else {
            self.steps::<R, NV, SETS, false>(s, &mut sets);
        }
        self.store::<R, NV>(s, Self::sum_sets(s, sets), beta, c);
        R
    }

    /// Asks for the cache lines of this tile's `R` rows of C now, so that they arrive
    /// while the steps run instead of stalling the store at the end.
    #[inline(always)]
    fn prefetch_c<const R: usize>(&self, c: &mut MatMut<'_, T>) {
        let line = 64 / core::mem::size_of::<T>().max(1);
        for row in self.c_rows::<R>(c) {
            for col in (0..self.width).step_by(line) {
                prefetch_ptr(row.wrapping_add(col));
            }
        }
    }

    /// Pointers to this tile's `R` rows of C at its first column, each row's `width`
    /// columns checked to lie in C.
    #[inline(always)]
    fn c_rows<const R: usize>(&self, c: &mut MatMut<'_, T>) -> [*mut T; R] {
        c.row_pointers::<R>(self.row0 + self.r, self.col0, self.width)
    }

    /// `acc + beta * old`, or `acc` alone when `beta == 0`: `old` may then be NaN or
    /// garbage, and must not reach the result (BLAS semantics).
    #[inline(always)]
    fn updated(s: S, beta: T, old: V<S, T>, acc: V<S, T>) -> V<S, T> {
        if beta == T::ZERO {
            acc
        } else {
            T::v_mul_add(s, T::v_splat(s, beta), old, acc)
        }
    }

    /// `C[rows, cols] <- acc + beta C` for this tile's rows and columns.
    #[inline(always)]
    fn store<const R: usize, const NV: usize>(
        &self,
        s: S,
        acc: [[V<S, T>; NV]; R],
        beta: T,
        c: &mut MatMut<'_, T>,
    ) {
        if self.width == NV * T::lanes::<S>() {
            // A whole sub-panel: plain loads and stores through pointers checked once, in
            // loops of constant length (with a variable one LLVM once turned the `beta ==
            // 0` stores into a call to memcpy from the accumulators spilled to the stack).
            for (row, acc_r) in self.c_rows::<R>(c).into_iter().zip(&acc) {
                for (v, &a) in acc_r.iter().enumerate() {
                    let at = row.wrapping_add(v * T::lanes::<S>()).cast::<V<S, T>>();
                    let new = if beta == T::ZERO {
                        a
                    } else {
                        // SAFETY: `c_rows` checked that each row's `width` = NV registers
                        // lie in C; an unaligned read needs no alignment.
                        Self::updated(s, beta, unsafe { at.read_unaligned() }, a)
                    };
                    // SAFETY: as above.
                    unsafe { at.write_unaligned(new) };
                }
            }
            return;
        }
        // A ragged edge (the last columns of C): whole registers of it as slices, and the
        // rest through pulp's masked (out-of-line) partial loads and stores.
        for (r, acc_r) in acc.iter().enumerate() {
            let row = &mut c.row_mut(self.row0 + self.r + r)[self.col0..self.col0 + self.width];
            let (regs, tail) = T::v_split_mut::<S>(row);
            for (out, &a) in regs.iter_mut().zip(acc_r) {
                *out = Self::updated(s, beta, *out, a);
            }
            if !tail.is_empty() {
                let a = acc_r[regs.len()];
                let out = if beta == T::ZERO {
                    a
                } else {
                    T::v_mul_add(s, T::v_splat(s, beta), T::v_load_partial(s, tail), a)
                };
                T::v_store_partial(s, tail, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::available_archs;
    use crate::reference::gemm as reference;
    use crate::testing::{SplitMix, cases, cast, check_close, size, widen};

    fn run<T: Float>(
        arch: Arch,
        m: usize,
        k: usize,
        n: usize,
        beta: f64,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        for strip in strips_for::<T>(arch) {
            run_layout::<T>(arch, (m, k, n), (false, strip), beta, seed)?;
            run_layout::<T>(arch, (m, k, n), (true, strip), beta, seed)?;
        }
        Ok(())
    }

    /// `A W` for a row-major A of `a.len() / k` rows, C filled with NaN first (beta 0 must
    /// not read it).
    fn packed_product(arch: Arch, a: &[f32], w: PackedRef<'_, f32>) -> Vec<f32> {
        let (k, n) = (w.k(), w.n());
        let m = a.len() / k.max(1);
        let mut c = vec![f32::NAN; m * n];
        let mut scratch = vec![0.0f32; a_scratch_len(m, k)];
        gemm_packed(
            arch,
            MatRef::row_major(a, m, k, k),
            w,
            0.0,
            MatMut::row_major(&mut c, m, n, n),
            &mut scratch,
        );
        c
    }

    /// `A` row-major, or column-major (a transposed row-major matrix); W packed in strips
    /// of `strip` columns.
    fn run_layout<T: Float>(
        arch: Arch,
        (m, k, n): (usize, usize, usize),
        (col_major, strip): (bool, usize),
        beta: f64,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        let mut rng = SplitMix::new(seed);
        let ldc = n + 2;
        let lda = if col_major { m + 3 } else { k + 3 };
        fn a_view<X>(d: &[X], (m, k, ld): (usize, usize, usize), col_major: bool) -> MatRef<'_, X> {
            if col_major {
                MatRef::new(d, m, k, 1, ld)
            } else {
                MatRef::row_major(d, m, k, ld)
            }
        }
        let a = cast::<T>(&rng.vec(m.max(1) * k.max(1) + lda * (m.max(k) + 1), 1.0));
        let w = cast::<T>(&rng.vec(k * n, 1.0));
        let mut c = cast::<T>(&rng.vec(m.max(1) * ldc, 1.0));
        if beta == 0.0 {
            c.iter_mut().for_each(|x| *x = T::NAN);
        }
        let mut want = widen(&c);
        let (a64, w64) = (widen(&a), widen(&w));
        reference::gemm(
            1.0,
            a_view(&a64, (m, k, lda), col_major),
            MatRef::row_major(&w64, k, n, n),
            beta,
            MatMut::row_major(&mut want, m, n, ldc),
        );
        let mut buf = vec![T::NAN; packed_len::<T>(k, n)];
        // Pack from the transpose's view, as the layers do with W_hh^T.
        let wt: Vec<T> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
        let packed = pack_strips(MatRef::new(&wt, k, n, 1, k), &mut buf, strip);
        let mut scratch = vec![T::NAN; a_scratch_len(m, k)];
        gemm_packed(
            arch,
            a_view(&a, (m, k, lda), col_major),
            packed,
            T::from_f64(beta),
            MatMut::row_major(&mut c, m, n, ldc),
            &mut scratch,
        );
        let eps = T::EPSILON.to_f64();
        check_close(
            "C",
            &widen(&c),
            &want,
            (4.0 * eps * (k as f64 + 2.0), 4.0 * eps),
        )
    }

    proptest! {
        #![proptest_config(cases(96))]

        #[test]
        fn matches_reference(m in 0usize..30, k in size(), n in size(), beta in prop::sample::select(vec![0.0, 1.0, 0.5]), seed in any::<u64>()) {
            for arch in available_archs() {
                run::<f32>(arch, m, k, n, beta, seed)?;
                run::<f64>(arch, m, k, n, beta, seed)?;
            }
        }

        /// Few rows (the pair paths, alone and after whole tiles, and the tiles that ask for
        /// W ahead) with K up to past a K block.
        #[test]
        fn few_rows_match_reference(m in prop::sample::select(vec![1usize, 2, 3, 4, 5, 7, 8, 9, 10, 14, 16]), k in 0usize..(KC + 40), n in size(), beta in prop::sample::select(vec![0.0, 1.0, 0.5]), seed in any::<u64>()) {
            for arch in available_archs() {
                run::<f32>(arch, m, k, n, beta, seed)?;
                run::<f64>(arch, m, k, n, beta, seed)?;
            }
        }
    }

    /// A product with a range of panels equals the same columns of the whole product.
    #[test]
    fn panel_ranges_compute_the_same_columns() {
        let (m, k, n) = (3, 40, 100);
        let mut rng = SplitMix::new(3);
        let (a, w) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
        let mut buf = vec![0.0; packed_len::<f64>(k, n)];
        let packed = pack(MatRef::row_major(&w, k, n, n), &mut buf);
        let mut whole = vec![0.0; m * n];
        let mut scratch = vec![0.0; a_scratch_len(m, k)];
        gemm_packed(
            crate::arch(),
            MatRef::row_major(&a, m, k, k),
            packed,
            0.0,
            MatMut::row_major(&mut whole, m, n, n),
            &mut scratch,
        );
        let nr = panel_width::<f64>();
        for (p0, p1) in [(0, 1), (1, 4), (3, packed.panel_count())] {
            let part = packed.panels(p0..p1);
            let cols = part.n();
            let mut out = vec![0.0; m * cols];
            gemm_packed(
                crate::arch(),
                MatRef::row_major(&a, m, k, k),
                part,
                0.0,
                MatMut::row_major(&mut out, m, cols, cols),
                &mut scratch,
            );
            for r in 0..m {
                assert_eq!(
                    &out[r * cols..(r + 1) * cols],
                    &whole[r * n + p0 * nr..r * n + p0 * nr + cols]
                );
            }
        }
    }

    /// A single row runs its whole panels two at a time from the range's first panel, so
    /// a range that starts on an odd panel pairs them differently from the whole product:
    /// each column must still get the same bits (the team's pieces rely on it). On AVX-512
    /// the whole products and the wider ranges at K = 256 read 128-448 KiB of W as one
    /// stream ([`ONE_STREAM_BYTES`]), as does a single pair of panels at K = KC + 9 (in two
    /// K blocks); the 3-panel ranges read two streams: the bits still agree.
    #[test]
    fn single_row_panel_ranges_keep_the_bits_of_the_whole() {
        fn check<T: Float>(k: usize, n: usize, beta: f64) {
            let mut rng = SplitMix::new(k as u64 * 31 + n as u64);
            let (a, w) = (cast::<T>(&rng.vec(k, 1.0)), cast::<T>(&rng.vec(k * n, 1.0)));
            let c0 = cast::<T>(&rng.vec(n, 1.0));
            let mut buf = vec![T::ZERO; packed_len::<T>(k, n)];
            let packed = pack(MatRef::row_major(&w, k, n, n), &mut buf);
            let beta = T::from_f64(beta);
            let a = MatRef::row_major(&a, 1, k, k);
            let mut whole = c0.clone();
            gemm_packed(
                crate::arch(),
                a,
                packed,
                beta,
                MatMut::row_major(&mut whole, 1, n, n),
                &mut [],
            );
            let (nr, count) = (panel_width::<T>(), packed.panel_count());
            for (p0, p1) in [
                (0, count),
                (1, count),
                (1, 4.min(count)),
                (3.min(count), count),
            ] {
                let part = packed.panels(p0..p1);
                let cols = part.n();
                let mut out = c0[p0 * nr..p0 * nr + cols].to_vec();
                gemm_packed(
                    crate::arch(),
                    a,
                    part,
                    beta,
                    MatMut::row_major(&mut out, 1, cols, cols),
                    &mut [],
                );
                assert_eq!(
                    out,
                    whole[p0 * nr..p0 * nr + cols],
                    "k {k}, n {n}, panels {p0}..{p1}"
                );
            }
        }
        for k in [1, 40, 256, KC + 9] {
            for n in [150, 7 * 32, 5 * 32 + 3, 100] {
                for beta in [0.0, 1.0, 0.5] {
                    check::<f32>(k, n, beta);
                    check::<f64>(k, n, beta);
                }
            }
        }
    }

    /// A range of rows of a packed W (a K block, as the layers' input projections take)
    /// and a range of panels of that multiply exactly as the same part of W packed on its
    /// own, on every instruction set and strip width.
    #[test]
    fn row_and_panel_ranges_match_their_own_packing() {
        let (m, k, n, start, len) = (5, 90, 100, 17, 41);
        let mut rng = SplitMix::new(8);
        let (a, w) = (
            cast::<f32>(&rng.vec(m * len, 1.0)),
            cast::<f32>(&rng.vec(k * n, 1.0)),
        );
        let nr = panel_width::<f32>();
        let (p0, p1) = (1, n.div_ceil(nr));
        let cols = n - p0 * nr;
        let mut whole = vec![0.0f32; packed_len::<f32>(k, n)];
        let mut part = vec![0.0f32; packed_len::<f32>(len, cols)];
        for arch in available_archs() {
            for strip in strips_for::<f32>(arch) {
                let packed = pack_strips(MatRef::row_major(&w, k, n, n), &mut whole, strip);
                let own = pack_strips(
                    MatRef::row_major(&w[start * n + p0 * nr..], len, cols, n),
                    &mut part,
                    strip,
                );
                let view = packed.rows(start, len).panels(p0..p1);
                assert_eq!((view.k(), view.n()), (len, cols));
                assert_eq!(
                    packed_product(arch, &a, view),
                    packed_product(arch, &a, own),
                    "{arch:?}, strips of {strip}"
                );
            }
        }
    }

    /// Packs a row-major `k x n` source (rows `n + pad` apart), whole, as two blocks of rows
    /// stacked at row `cut`, and with the lower block column-major, in both strip widths, and compares every element of every
    /// strip with the source, zero padding included; the buffer starts as NaN, so an element
    /// nobody wrote fails too. Widths past [`ACROSS_COLS`] take more than one pass.
    fn row_major_packs_exactly<T: Float>(k: usize, n: usize, pad: usize, cut: usize, seed: u64) {
        let ld = n + pad;
        let data = cast::<T>(&SplitMix::new(seed).vec(k * ld + pad, 1.0));
        let cut = cut.min(k);
        let whole = MatRef::new(&data, k, n, ld, 1);
        let blocks = [
            MatRef::new(&data, cut, n, ld, 1),
            MatRef::new(&data[cut * ld..], k - cut, n, ld, 1),
        ];
        // The same lower block stored column-major: a stack of mixed layouts.
        let low = k - cut;
        let lower_t: Vec<T> = (0..n * low)
            .map(|i| *blocks[1].at(i % low, i / low))
            .collect();
        let mixed = [blocks[0], MatRef::new(&lower_t, low, n, 1, low.max(1))];
        let nr = panel_width::<T>();
        for strip in [nr, nr / 2] {
            for source in [&[whole][..], &blocks, &mixed].map(StackedRows::new) {
                let mut out = vec![T::NAN; packed_len::<T>(k, n)];
                pack_stacked_strips(source, &mut out, strip);
                let what = format!("{k}x{n} cut {cut}");
                assert_packs(&out, (k, n, strip), |kk, col| *whole.at(kk, col), &what);
            }
        }
    }

    proptest! {
        #![proptest_config(cases(64))]

        #[test]
        fn row_major_pack_matches_the_source(
            k in size(),
            n in prop_oneof![size(), ACROSS_COLS - 40..ACROSS_COLS + 80],
            pad in 0usize..9,
            cut in 0usize..40,
            seed in any::<u64>()
        ) {
            row_major_packs_exactly::<f32>(k, n, pad, cut, seed);
            row_major_packs_exactly::<f64>(k, n, pad, cut, seed);
        }
    }

    /// A pack split over threads writes the same bytes as one on a single thread, from
    /// row-major and transposed sources, at panel counts that do and do not divide evenly.
    #[test]
    fn packing_on_threads_writes_the_same_bytes() {
        let mut rng = SplitMix::new(11);
        for (k, n) in [(300, 1000), (257, 33), (600, 129), (1, 5000), (3, 2)] {
            let w = rng.vec(k * n, 1.0);
            for view in [
                MatRef::row_major(&w, k, n, n),
                MatRef::row_major(&w, n, k, k).t(),
            ] {
                let mut want = vec![f64::NAN; packed_len::<f64>(view.rows(), view.cols())];
                pack(view, &mut want);
                for threads in [1, 2, 3, 4] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut got = vec![f64::NAN; want.len() + 7];
                    pool.install(|| pack_on(0, view, &mut got));
                    assert_eq!(&got[..want.len()], &want[..], "{k}x{n} on {threads}");
                }
            }
        }
    }

    /// Products of 1-5 rows (the pair paths: two sub-panels at a time; on 16 registers four
    /// rows as one tile that asks for W ahead) match the reference on every instruction set
    /// and strip width, with K below, at and past [`PREFETCH_STEPS`] and past a K block.
    #[test]
    fn few_row_pairs_match_reference_every_arch() {
        for arch in available_archs() {
            for m in 1..=5 {
                for k in [
                    1,
                    PREFETCH_STEPS - 1,
                    PREFETCH_STEPS + 1,
                    3 * PREFETCH_STEPS + 5,
                    KC + 7,
                ] {
                    for (n, beta) in [(70, 0.0), (33, 1.0), (16, 0.5)] {
                        run::<f32>(arch, m, k, n, beta, 5).unwrap();
                        run::<f64>(arch, m, k, n, beta, 6).unwrap();
                    }
                }
            }
        }
    }

    /// A tile of four rows or more sums each row's steps in one accumulator set, in order,
    /// so a product of 4 rows (a pair of four rows with 32 registers, one tile with 16)
    /// gives the bits those rows get inside a larger block (whole microkernel tiles), on
    /// either strip width. (Tiles of 1-2 rows keep two sets.)
    #[test]
    fn four_rows_keep_the_bits_of_a_larger_block() {
        let (big, k, n) = (12, KC + 9, 70);
        let mut rng = SplitMix::new(21);
        let (a, w) = (
            cast::<f32>(&rng.vec(big * k, 1.0)),
            cast::<f32>(&rng.vec(k * n, 1.0)),
        );
        let mut packed_w = vec![0.0f32; packed_len::<f32>(k, n)];
        for arch in available_archs() {
            for strip in strips_for::<f32>(arch) {
                let packed = pack_strips(MatRef::row_major(&w, k, n, n), &mut packed_w, strip);
                let product = |m: usize| {
                    let c = packed_product(arch, &a[..m * k], packed);
                    c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                let whole = product(big);
                assert!(
                    product(4) == whole[..4 * n],
                    "4 rows on {arch:?}, strips of {strip}"
                );
            }
        }
    }

    /// Past the blocking sizes (several K and M blocks) on the native path.
    #[test]
    fn blocked_shapes_match_reference() {
        let arch = crate::arch();
        for (m, k, n) in [
            (MC + 13, KC * 2 + 5, 40),
            (7, KC * 3 + 1, 33),
            (MC * 2 + 1, 3, 17),
            // A few rows with all their K blocks packed at once (`WHOLE_K_ROWS`), in more
            // blocks than a block of rows' scratch holds.
            (WHOLE_K_ROWS, KC * 3 + 1, 33),
            (3, KC * 5 + 2, 40),
            (2, KC * 2, 17),
            (1, KC * 2 + 5, 70),
        ] {
            for beta in [0.0, 1.0] {
                run::<f32>(arch, m, k, n, beta, 9).unwrap();
            }
        }
    }

    #[test]
    fn exact_on_small_integers_every_arch() {
        let (m, k, n) = (13, 70, 45);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 9) as f32 - 4.0).collect();
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
        let mut want = vec![0.0f32; m * n];
        reference::gemm(
            1.0,
            MatRef::row_major(&a, m, k, k),
            MatRef::row_major(&w, k, n, n),
            0.0,
            MatMut::row_major(&mut want, m, n, n),
        );
        let mut buf = vec![0.0f32; packed_len::<f32>(k, n)];
        let packed = pack(MatRef::row_major(&w, k, n, n), &mut buf);
        for arch in available_archs() {
            assert_eq!(packed_product(arch, &a, packed), want, "{arch:?}");
        }
    }
}
