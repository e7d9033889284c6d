//! Several products against the same packed `W` at once: `C_i <- A_i W + beta C_i` for every
//! part `i`, walking W once for all of them.
//!
//! An RNN's batch chunks step in lockstep: at every step each chunk multiplies its few rows
//! of h by the same `W_hh`. Run one after the other, each product streams all of `W_hh`
//! from L3 (4 FLOPs per byte at 8 rows). Here each K block of each pair of sub-panels of W
//! (32-64 KiB) meets every part's rows while it is in L1, so W leaves L3 once per step.
//!
//! Each part is computed by exactly the code of its own [`gemm_packed`] (the same blocks,
//! tiles and kernels in the same order), so a grouped product gives every part the bits of
//! its own product, whatever the grouping.

use pulp::{Arch, Simd, WithSimd};

use super::{
    BlockPass, MC, PackedRef, ShapedRun, block_beta, check_operands, k_blocks, pack_a_block,
    reads_a_in_place, run_shaped, sub_panels,
};
use crate::float::Float;
use crate::gemm::{MatMut, MatRef};

#[cfg(doc)]
use super::{a_scratch_len, gemm_packed};

/// One product of a group: its A, its C and its scratch, as [`gemm_packed`] takes them.
#[derive(Debug)]
pub struct GroupPart<'a, T> {
    /// `m x k`, contiguous rows or contiguous columns; at most [`MC`] rows.
    pub a: MatRef<'a, T>,
    /// `m x n`, contiguous rows.
    pub c: MatMut<'a, T>,
    /// [`a_scratch_len`] elements for this part's A (none when A is read in place).
    pub scratch: &'a mut [T],
}

/// `C_i <- A_i W + beta C_i` for every part (BLAS semantics: `beta == 0` never reads C),
/// with the bits [`gemm_packed`] gives each part alone (see the module docs).
///
/// # Panics
/// As [`gemm_packed`] for any part, or if a part has more than [`MC`] rows.
///
/// # Example
/// ```
/// use fused_rnn_kernels::gemm::packed::group::{GroupPart, gemm_packed_group};
/// use fused_rnn_kernels::gemm::packed::{pack, packed_len};
/// use fused_rnn_kernels::{Arch, MatMut, MatRef};
///
/// // W = [[1, 2], [3, 4]]; two parts of one row each.
/// let w = [1.0f32, 2.0, 3.0, 4.0];
/// let mut buf = vec![0.0; packed_len::<f32>(2, 2)];
/// let w = pack(MatRef::row_major(&w, 2, 2, 2), &mut buf);
/// let (a0, a1) = ([1.0f32, 0.0], [1.0f32, 1.0]);
/// let (mut c0, mut c1) = ([0.0f32; 2], [0.0f32; 2]);
/// let mut parts = [
///     GroupPart { a: MatRef::row_major(&a0, 1, 2, 2), c: MatMut::row_major(&mut c0, 1, 2, 2), scratch: &mut [] },
///     GroupPart { a: MatRef::row_major(&a1, 1, 2, 2), c: MatMut::row_major(&mut c1, 1, 2, 2), scratch: &mut [] },
/// ];
/// gemm_packed_group(Arch::new(), &mut parts, w, 0.0);
/// assert_eq!((c0, c1), ([1.0, 2.0], [4.0, 6.0]));
/// ```
#[track_caller]
pub fn gemm_packed_group<T: Float>(
    arch: Arch,
    parts: &mut [GroupPart<'_, T>],
    w: PackedRef<'_, T>,
    beta: T,
) {
    for p in parts.iter() {
        check_operands("gemm_packed_group", p.a, w, &p.c, p.scratch.len());
        assert!(p.a.rows() <= MC, "gemm_packed_group: more than MC rows");
    }
    if w.n == 0 || parts.iter().all(|p| p.a.rows() == 0) {
        return;
    }
    T::__kernel_group(arch, Group { parts, w, beta });
}

pub(crate) struct Group<'p, 'a, 'w, T> {
    parts: &'p mut [GroupPart<'a, T>],
    w: PackedRef<'w, T>,
    beta: T,
}

impl<T: Float> WithSimd for Group<'_, '_, '_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        // The microkernel [`gemm_packed`] picks for this instruction set.
        run_shaped(self, s);
    }
}

impl<T: Float> ShapedRun for Group<'_, '_, '_, T> {
    type Elem = T;
    #[inline(always)]
    fn run<S: Simd, const MR: usize, const NV: usize>(self, s: S) {
        let Group { parts, w, beta } = self;
        for (k0, k1) in k_blocks(w.k) {
            let beta = block_beta(beta, k0);
            for p in parts.iter_mut() {
                if p.a.rows() > 0 && !reads_a_in_place(p.a) {
                    pack_a_block::<T, MR>(p.a, (0, p.a.rows()), (k0, k1), p.scratch);
                }
            }
            // Sub-panel by sub-panel, each meeting every part while it is in L1 (each part
            // runs its share of it as its own product would: `run_sub_panel_share`).
            for j in 0..sub_panels::<S, T, NV>(w) {
                for p in parts.iter_mut().filter(|p| p.a.rows() > 0) {
                    let pass = BlockPass::view(p.a, (0, p.a.rows()), (k0, k1), beta, p.scratch);
                    pass.run_sub_panel_share::<S, MR, NV>(s, w, j, &mut p.c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::available_archs;
    use crate::gemm::packed::{a_scratch_len, gemm_packed, pack, packed_len};
    use crate::reference::gemm as reference;
    use crate::testing::{SplitMix, cases, cast, check_close, size, widen};

    /// One part's A: `rows x k`, row-major or column-major (as the step products read h and
    /// the gate gradients), with a padded leading dimension.
    struct PartData<T> {
        a: Vec<T>,
        rows: usize,
        ld: usize,
        col_major: bool,
    }

    impl<T: Float> PartData<T> {
        fn a(&self, k: usize) -> MatRef<'_, T> {
            if self.col_major {
                MatRef::new(&self.a, self.rows, k, 1, self.ld)
            } else {
                MatRef::row_major(&self.a, self.rows, k, self.ld)
            }
        }
    }

    /// Every part of a grouped product has the bits of its own product (C starting from
    /// the same values, so beta 1 and 0.5 add onto the same C) and matches the naive f64
    /// product.
    fn grouped_equals_alone<T: Float>(
        arch: Arch,
        shapes: &[(usize, bool)],
        (k, n): (usize, usize),
        beta: f64,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        let mut rng = SplitMix::new(seed);
        let w_rows = cast::<T>(&rng.vec(k * n, 1.0));
        let mut buf = vec![T::NAN; packed_len::<T>(k, n)];
        let w = pack(MatRef::row_major(&w_rows, k, n, n), &mut buf);
        let data: Vec<PartData<T>> = shapes
            .iter()
            .map(|&(rows, col_major)| {
                let ld = if col_major { rows + 3 } else { k + 3 };
                let len = if col_major {
                    ld * k.max(1)
                } else {
                    ld * rows.max(1)
                };
                PartData {
                    a: cast(&rng.vec(len, 1.0)),
                    rows,
                    ld,
                    col_major,
                }
            })
            .collect();
        let c0: Vec<Vec<T>> = data
            .iter()
            .map(|d| cast(&rng.vec(d.rows * n, 1.0)))
            .collect();
        let c_start = c0.clone();
        let mut alone = c0.clone();
        for (d, c) in data.iter().zip(&mut alone) {
            let mut scratch = vec![T::NAN; a_scratch_len(d.rows, k)];
            let c = MatMut::row_major(c, d.rows, n, n);
            gemm_packed(arch, d.a(k), w, T::from_f64(beta), c, &mut scratch);
        }
        let mut grouped = c0;
        let mut scratches: Vec<Vec<T>> = data
            .iter()
            .map(|d| vec![T::NAN; a_scratch_len(d.rows, k)])
            .collect();
        let mut parts: Vec<GroupPart<'_, T>> = data
            .iter()
            .zip(&mut grouped)
            .zip(&mut scratches)
            .map(|((d, c), scratch)| GroupPart {
                a: d.a(k),
                c: MatMut::row_major(c, d.rows, n, n),
                scratch,
            })
            .collect();
        gemm_packed_group(arch, &mut parts, w, T::from_f64(beta));
        drop(parts);
        // Against the naive f64 product too (each part alone is checked so in `packed`).
        let w64 = widen(&w_rows);
        for ((d, g), c0) in data.iter().zip(&grouped).zip(&c_start) {
            let mut want = widen(c0);
            let a64 = widen(&d.a);
            let a64 = PartData {
                a: a64,
                rows: d.rows,
                ld: d.ld,
                col_major: d.col_major,
            };
            reference::gemm(
                1.0,
                a64.a(k),
                MatRef::row_major(&w64, k, n, n),
                beta,
                MatMut::row_major(&mut want, d.rows, n, n),
            );
            let eps = T::EPSILON.to_f64();
            check_close(
                "C",
                &widen(g),
                &want,
                (4.0 * eps * (k as f64 + 2.0), 4.0 * eps),
            )?;
        }
        for (i, (g, a)) in grouped.iter().zip(&alone).enumerate() {
            // Widening is exact, so equal f64 bits are equal T bits.
            let (g, a) = (widen(g), widen(a));
            let same = g.iter().zip(&a).all(|(x, y)| x.to_bits() == y.to_bits());
            prop_assert!(same, "part {i} of {shapes:?}, k {k}, n {n}: bits differ");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(cases(64))]

        #[test]
        fn each_part_has_the_bits_of_its_own_product(
            shapes in prop::collection::vec((0usize..30, any::<bool>()), 1..5),
            k in size(),
            n in size(),
            beta in prop::sample::select(vec![0.0, 1.0, 0.5]),
            seed in any::<u64>(),
        ) {
            for arch in available_archs() {
                grouped_equals_alone::<f32>(arch, &shapes, (k, n), beta, seed)?;
                grouped_equals_alone::<f64>(arch, &shapes, (k, n), beta, seed)?;
            }
        }
    }

    /// A part whose C is two blocks of memory stacked (two batch chunks' rows as one part)
    /// gets the bits of the same part with C in one block.
    fn stacked_c_keeps_the_bits<T: Float>(
        arch: Arch,
        (top, bottom, col_major): (usize, usize, bool),
        (k, n): (usize, usize),
        beta: f64,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        let mut rng = SplitMix::new(seed);
        let rows = top + bottom;
        let w_rows = cast::<T>(&rng.vec(k * n, 1.0));
        let mut buf = vec![T::NAN; packed_len::<T>(k, n)];
        let w = pack(MatRef::row_major(&w_rows, k, n, n), &mut buf);
        let part = PartData {
            a: cast(&rng.vec(rows.max(1) * k.max(1), 1.0)),
            rows,
            ld: if col_major { rows } else { k },
            col_major,
        };
        let ld = n + 3;
        let c0 = cast::<T>(&rng.vec(rows * ld, 1.0));
        let mut scratch = vec![T::NAN; a_scratch_len(rows, k)];
        let mut whole = c0.clone();
        let mut parts = [GroupPart {
            a: part.a(k),
            c: MatMut::row_major(&mut whole, rows, n, ld),
            scratch: &mut scratch,
        }];
        gemm_packed_group(arch, &mut parts, w, T::from_f64(beta));
        let (mut upper, mut lower) = (c0[..top * ld].to_vec(), c0[top * ld..].to_vec());
        let mut parts = [GroupPart {
            a: part.a(k),
            c: MatMut::stacked(
                MatMut::row_major(&mut upper, top, n, ld),
                MatMut::row_major(&mut lower, bottom, n, ld),
            ),
            scratch: &mut scratch,
        }];
        gemm_packed_group(arch, &mut parts, w, T::from_f64(beta));
        let stacked: Vec<T> = upper.into_iter().chain(lower).collect();
        let same = widen(&whole)
            .iter()
            .zip(&widen(&stacked))
            .all(|(x, y)| x.to_bits() == y.to_bits());
        prop_assert!(same, "{top} + {bottom} rows, k {k}, n {n}: bits differ");
        Ok(())
    }

    proptest! {
        #![proptest_config(cases(64))]

        #[test]
        fn a_stacked_c_has_the_bits_of_one_block(
            top in 0usize..17,
            bottom in 0usize..17,
            col_major in any::<bool>(),
            k in size(),
            n in size(),
            beta in prop::sample::select(vec![0.0, 1.0, 0.5]),
            seed in any::<u64>(),
        ) {
            for arch in available_archs() {
                let shape = (top, bottom, col_major);
                stacked_c_keeps_the_bits::<f32>(arch, shape, (k, n), beta, seed)?;
                stacked_c_keeps_the_bits::<f64>(arch, shape, (k, n), beta, seed)?;
            }
        }
    }

    /// K longer than one block and rows of a whole microkernel tile plus a remainder: the
    /// blocked path, which random sizes reach rarely. A group walks W K block by K block,
    /// while a product alone whose A's whole K is at hand (in place, or a few rows) takes
    /// each panel through every K block before the next: the same sums, bit for bit.
    #[test]
    fn blocked_shapes_keep_their_bits() {
        let shapes = [
            (8, true),
            (13, false),
            (1, false),
            (24, true),
            (2, false),
            (4, false),
            (3, true),
            (16, true),
            (1, true),
        ];
        for arch in available_archs() {
            grouped_equals_alone::<f32>(arch, &shapes, (1100, 70), 1.0, 7).unwrap();
            grouped_equals_alone::<f32>(arch, &shapes, (1537, 40), 0.5, 9).unwrap();
            grouped_equals_alone::<f64>(arch, &shapes, (600, 33), 0.0, 8).unwrap();
        }
    }
}
