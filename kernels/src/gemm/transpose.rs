//! The transposing copy behind packing a column-major source: `W_hh^T` and `W_ih^T` are
//! row-major weights read transposed, and training packs them on every update.
//! [`transpose_into`] writes rows as columns with the same tiles (the h a lockstep step
//! product reads column-major).
//!
//! A panel row `kk` gathers element `kk` of `width` source columns, each contiguous. In f32
//! on x86-64 with AVX2 (and AVX-512, which has it), 8x8 tiles move through registers: eight
//! loads, 24 in-register shuffles, eight stores. Everything else (f64, the scalar path, a
//! ragged edge) goes through a 16x8 local array, loads and stores both contiguous.

use super::MatRef;
use crate::float::Float;

/// Writes `panel` (`w.rows()` rows of `panel.len() / w.rows()`: a strip of a packed panel)
/// from columns `c0..c0 + width` of the column-major `w` (at least one row), zero past
/// `width`.
pub(super) fn transpose_panel<T: Float>(
    w: MatRef<'_, T>,
    panel: &mut [T],
    c0: usize,
    width: usize,
) {
    let (k, nr) = (w.rows(), panel.len() / w.rows());
    let (k8, w8) = fast_tiles(w, panel, c0, width, nr);
    // What the registers left: the columns past the last whole group of 8, then the rows
    // past the last whole group of 8.
    through_array(w, panel, c0, width, (0, k8), (w8, nr));
    through_array(w, panel, c0, width, (k8, k), (0, nr));
}

/// `out[kk * ld + r] = a[r][kk]`: the rows of the row-major `a` written as columns `ld`
/// apart, every other value of `out` left as it is (the step products' h, gathered
/// column-major for a group of batch chunks). f32 moves in the 8x8 register tiles of
/// packing where the instruction set has them; a transpose only copies, so every path
/// writes the same values.
///
/// # Panics
/// If `a`'s rows are not contiguous, `ld < a.rows()` or `out` is shorter than
/// `(a.cols() - 1) * ld + a.rows()`.
#[track_caller]
pub fn transpose_into<T: Float>(a: MatRef<'_, T>, out: &mut [T], ld: usize) {
    let (rows, k) = (a.rows(), a.cols());
    if rows == 0 || k == 0 {
        return;
    }
    assert!(
        a.col_stride() == 1 && ld >= rows && out.len() >= (k - 1) * ld + rows,
        "transpose_into: {rows}x{k} (row stride {}, column stride {}) into columns {ld} apart of {} values",
        a.row_stride(),
        a.col_stride(),
        out.len()
    );
    // `a` read as a column-major `k x rows` matrix: its columns are a's rows.
    let w = a.t();
    let (k8, r8) = fast_tiles(w, out, 0, rows, ld);
    for r in 0..rows {
        let row = a.row(r);
        // The registers wrote rows below `r8` up to `k8`; the rest goes one by one.
        let from = if r < r8 { k8 } else { 0 };
        for (kk, &v) in row.iter().enumerate().skip(from) {
            out[kk * ld + r] = v;
        }
    }
}

/// Panel rows `rows`, panel columns `cols` through a 16x8 array read column by column and
/// written row by row.
fn through_array<T: Float>(
    w: MatRef<'_, T>,
    panel: &mut [T],
    c0: usize,
    width: usize,
    (r0, r1): (usize, usize),
    (g0, g1): (usize, usize),
) {
    const TILE: usize = 16;
    const COLS: usize = 8;
    let nr = panel.len() / w.rows();
    let wt = w.t();
    for k0 in (r0..r1).step_by(TILE) {
        let rows = TILE.min(r1 - k0);
        for g in (g0..g1).step_by(COLS) {
            let mut tile = [[T::ZERO; COLS]; TILE];
            let cols = COLS.min(g1 - g);
            let filled = cols.min(width.saturating_sub(g));
            for (c, col) in (c0 + g..c0 + g + filled).enumerate() {
                let src = &wt.row(col)[k0..k0 + rows];
                for (r, &v) in src.iter().enumerate() {
                    tile[r][c] = v;
                }
            }
            for (r, t) in tile.iter().enumerate().take(rows) {
                let at = (k0 + r) * nr + g;
                panel[at..at + cols].copy_from_slice(&t[..cols]);
            }
        }
    }
}

/// The 8x8 tiles in registers where the instruction set and the type allow: returns how many
/// rows and columns (multiples of 8) it wrote, `(0, 0)` where it wrote nothing.
fn fast_tiles<T: Float>(
    w: MatRef<'_, T>,
    panel: &mut [T],
    c0: usize,
    width: usize,
    nr: usize,
) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let simd = match crate::arch() {
            pulp::Arch::V4(v4) => Some(*v4),
            pulp::Arch::V3(v3) => Some(v3),
            _ => None,
        };
        if let (Some(simd), Some(src), Some(dst)) = (simd, f32_view(w.data()), f32_view_mut(panel))
        {
            let (k8, w8) = (w.rows() / 8 * 8, width / 8 * 8);
            avx::tiles(simd, src, w.col_stride(), c0, (k8, w8), dst, nr);
            return (k8, w8);
        }
    }
    let _ = (w, panel, c0, width, nr);
    (0, 0)
}

/// `x` as `[f32]` when `T` is `f32`.
fn f32_view<T: Float>(x: &[T]) -> Option<&[f32]> {
    if core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` (same `TypeId`), so the pointer and length describe the
        // same `[f32]`, borrowed for the same lifetime.
        Some(unsafe { core::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) })
    } else {
        None
    }
}

/// `x` as `[f32]` when `T` is `f32`.
fn f32_view_mut<T: Float>(x: &mut [T]) -> Option<&mut [f32]> {
    if core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>() {
        // SAFETY: as in `f32_view`; the borrow is unique because `x`'s is.
        Some(unsafe { core::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), x.len()) })
    } else {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use core::arch::x86_64::__m256;
    use pulp::x86::V3;

    use super::super::packed::prefetch_l2_ptr;

    /// Panel rows `0..k8`, columns `0..w8` (rows of `nr`) from `src`, whose column `c`
    /// starts at `c * cs`.
    ///
    /// A group of eight columns is read as eight streams, which the hardware prefetcher
    /// follows poorly from memory, and training repacks `W_hh^T` from memory after every
    /// update; so each group asks for the next one's lines into L2 as it goes. Measured on
    /// Zen 4 (`[256, 1024]`, 1 thread, best of 20 passes over 24 sources cycling through 24
    /// MiB): 182-192 -> 135-164 us from memory, 60.5-62.4 -> 63.7-67.9 in cache; char-rnn
    /// timers (both layers' repacks, three alternating pairs) 0.45-0.61 -> 0.33-0.38 ms a
    /// step on 1 thread, 0.40-0.43 -> 0.32-0.38 on 2.
    pub(super) fn tiles(
        simd: V3,
        src: &[f32],
        cs: usize,
        c0: usize,
        (k8, w8): (usize, usize),
        panel: &mut [f32],
        nr: usize,
    ) {
        simd.vectorize(
            #[inline(always)]
            || {
                for g in (0..w8).step_by(8) {
                    for k0 in (0..k8).step_by(8) {
                        // The next group's columns into L2, a line of each every other
                        // tile (past the last group, a harmless hint).
                        if k0 % 16 == 0 {
                            for i in 0..8 {
                                let at = (c0 + g + 8 + i) * cs + k0;
                                prefetch_l2_ptr(src.as_ptr().wrapping_add(at));
                            }
                        }
                        let rows: [__m256; 8] = core::array::from_fn(|i| {
                            let at = (c0 + g + i) * cs + k0;
                            let v: [f32; 8] = src[at..at + 8].try_into().expect("8 values");
                            pulp::cast(v)
                        });
                        let cols = transpose(simd, rows);
                        for (j, v) in cols.into_iter().enumerate() {
                            let at = (k0 + j) * nr + g;
                            let v: [f32; 8] = pulp::cast(v);
                            panel[at..at + 8].copy_from_slice(&v);
                        }
                    }
                }
            },
        )
    }

    /// The transpose of an 8x8 tile held as eight rows.
    #[inline(always)]
    fn transpose(simd: V3, r: [__m256; 8]) -> [__m256; 8] {
        let avx = simd.avx;
        // Pairs of rows interleaved: t0 = a0 b0 a1 b1 | a4 b4 a5 b5, t1 = a2 b2 a3 b3 | ...
        let t: [__m256; 8] = core::array::from_fn(|i| {
            let (x, y) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                avx._mm256_unpacklo_ps(x, y)
            } else {
                avx._mm256_unpackhi_ps(x, y)
            }
        });
        // Quads: s0 = a0 b0 c0 d0 | a4 b4 c4 d4, s1 = a1 .. d1 | a5 .., s2, s3; s4..s7 for e..h.
        let quad = |lo: __m256, hi: __m256, upper: bool| {
            if upper {
                avx._mm256_shuffle_ps::<0xEE>(lo, hi)
            } else {
                avx._mm256_shuffle_ps::<0x44>(lo, hi)
            }
        };
        let s = [
            quad(t[0], t[2], false),
            quad(t[0], t[2], true),
            quad(t[1], t[3], false),
            quad(t[1], t[3], true),
            quad(t[4], t[6], false),
            quad(t[4], t[6], true),
            quad(t[5], t[7], false),
            quad(t[5], t[7], true),
        ];
        // Halves joined: column j < 4 from the low 128 bits of s_j and s_{j+4}, j >= 4 from
        // the high ones.
        core::array::from_fn(|j| {
            let (lo, hi) = (s[j % 4], s[j % 4 + 4]);
            if j < 4 {
                avx._mm256_permute2f128_ps::<0x20>(lo, hi)
            } else {
                avx._mm256_permute2f128_ps::<0x31>(lo, hi)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::packed::{assert_packs, pack_strips, packed_len, panel_width};
    use super::*;
    use crate::testing::{SplitMix, cases, cast, size};

    /// Packs a column-major `k x n` view (columns `ld >= k` apart) in both strip layouts and
    /// compares every element of every panel with the source, zero padding included; the
    /// buffer starts as NaN, so an element nobody wrote fails too.
    fn packs_exactly<T: Float>(k: usize, n: usize, pad: usize, seed: u64) {
        let ld = k + pad;
        let data = cast::<T>(&SplitMix::new(seed).vec(n * ld, 1.0));
        let w = MatRef::new(&data, k, n, 1, ld);
        let nr = panel_width::<T>();
        for strip in [nr, nr / 2] {
            let mut out = vec![T::NAN; packed_len::<T>(k, n)];
            pack_strips(w, &mut out, strip);
            assert_packs(
                &out,
                (k, n, strip),
                |kk, col| *w.at(kk, col),
                &format!("{k}x{n}"),
            );
        }
    }

    proptest! {
        #![proptest_config(cases(64))]

        #[test]
        fn transposing_pack_matches_the_source(
            k in size(), n in size(), pad in 0usize..9, seed in any::<u64>()
        ) {
            packs_exactly::<f32>(k, n, pad, seed);
            packs_exactly::<f64>(k, n, pad, seed);
        }
    }

    /// [`transpose_into`] against its definition: every written value is its source's, and
    /// every other value of the buffer (a sentinel) is left as it was.
    fn transposes_into_columns<T: Float>(
        rows: usize,
        k: usize,
        (pad, r0): (usize, usize),
        seed: u64,
    ) {
        let a_data = cast::<T>(&SplitMix::new(seed).vec(rows * k, 1.0));
        let a = MatRef::row_major(&a_data, rows, k, k);
        let ld = r0 + rows + pad;
        let sentinel = T::from_f64(-7.5);
        let mut out = vec![sentinel; k.max(1) * ld];
        transpose_into(a, &mut out[r0..], ld);
        for kk in 0..k {
            for col in 0..ld {
                let want = if (r0..r0 + rows).contains(&col) {
                    *a.at(col - r0, kk)
                } else {
                    sentinel
                };
                assert_eq!(
                    out[kk * ld + col],
                    want,
                    "{rows}x{k}, ld {ld}, r0 {r0}: ({kk}, {col})"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(cases(64))]

        #[test]
        fn transpose_into_writes_the_columns_and_nothing_else(
            rows in size(), k in size(), pad in 0usize..9, r0 in 0usize..9, seed in any::<u64>()
        ) {
            transposes_into_columns::<f32>(rows, k, (pad, r0), seed);
            transposes_into_columns::<f64>(rows, k, (pad, r0), seed);
        }
    }

    /// The step products' shapes (8 rows of h beside another chunk's) and ragged edges.
    #[test]
    fn transpose_into_tiles_and_edges() {
        for (rows, k, pad, r0) in [
            (8, 256, 8, 0),
            (8, 256, 0, 8),
            (16, 64, 0, 0),
            (9, 17, 2, 3),
            (7, 7, 0, 1),
            (1, 33, 0, 0),
        ] {
            transposes_into_columns::<f32>(rows, k, (pad, r0), 11);
            transposes_into_columns::<f64>(rows, k, (pad, r0), 12);
        }
    }

    /// Shapes where the 8x8 tiles cover most of a panel, and each ragged edge around them.
    #[test]
    fn tiles_and_edges() {
        for (k, n) in [
            (8, 8),
            (64, 32),
            (512, 2048),
            (17, 40),
            (24, 31),
            (9, 65),
            (7, 7),
        ] {
            packs_exactly::<f32>(k, n, 0, 5);
            packs_exactly::<f32>(k, n, 3, 6);
        }
    }
}
