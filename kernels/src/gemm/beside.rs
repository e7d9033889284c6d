//! Products that share their left operand, `C_i <- A B_i + beta C_i`, as a layer's weight
//! gradients do: `dW_ih = dG^T X` and `dW_hh = dG^T H_prev` both multiply `dG^T`.
//!
//! Separate [`gemm`](super::gemm) calls pack every block of A (and read it from memory)
//! once per product. Here each block of A is packed once and meets every `B_i` while it is
//! in L2, and the `B_i` are packed a slice of K at a time, side by side in one buffer.
//! Measured on Zen 4 (AVX-512, 1 thread; `cargo bench -p fused-rnn-kernels --bench gemm --
//! beside`), both weight gradients against two `gemm`s: the char-rnn's upper layer (H = 256,
//! 2048 rows) 22.8 -> 21.4 ms, lstm_h128_b32_t100's (3200 rows) 9.43 -> 8.78 ms. End to end
//! on 1 thread, alternating (`profile_case`, 4 pairs): lstm_h256_b16_t150 training 79.1-81.6
//! -> 77.8-79.8 ms, lstm_h128_b32_t100 29.6-29.9 -> 29.0-29.5; on 2 threads within noise.

use pulp::Arch;

use super::packed::{self, PackedRef};
use super::scratch::{self, Slot};
use super::split;
use super::stacked::StackedRows;
use super::{MatMut, MatRef, OWN_SLICE_BYTES, gemm_prepacked, scale, slice_k};
use crate::float::Float;

/// Products one pass of [`gemm_beside`] shares A between (more run in groups of this many).
pub const MAX_BESIDE: usize = 4;

/// One product of [`gemm_beside`]: `c <- A b + beta c`, `b` being blocks of rows stacked in
/// order, as [`gemm_stacked`](super::gemm_stacked) takes them.
#[derive(Debug)]
pub struct Beside<'b, 'a, 'c, T> {
    /// B's blocks of rows, stacked in order (same widths).
    pub b: &'b [MatRef<'a, T>],
    /// C, `A`'s rows by B's columns.
    pub c: MatMut<'c, T>,
}

/// The Cs of one group, as the threads cut them by rows.
type Outs<'c, T> = [Option<MatMut<'c, T>>; MAX_BESIDE];

/// `C_i <- A B_i + beta C_i` for every product of `products`, on up to `threads` threads of
/// the current rayon pool (0: all of them; 1: this thread), each block of A packed once for
/// up to [`MAX_BESIDE`] of them. B is packed a slice of K at a time, the slices as long as
/// [`slice_k`] makes them for the widest B; where that is every product's own slice (equal
/// widths, or every width at most 1024 columns in f32), each C gets the bits of its own
/// [`gemm_stacked`](super::gemm_stacked). Split by rows, never within a sum: the bits do not
/// depend on the thread count. Allocates nothing once each thread has run one of the size.
///
/// ```
/// use fused_rnn_kernels::gemm::beside::{Beside, gemm_beside};
/// use fused_rnn_kernels::{MatMut, MatRef};
///
/// let a = [1.0f32, 2.0]; // 1 x 2
/// let (x, h) = ([1.0f32, 0.0, 0.0, 1.0], [3.0f32, 4.0]); // 2 x 2 and 2 x 1
/// let (mut c1, mut c2) = ([0.0f32; 2], [0.0f32; 1]);
/// let arch = fused_rnn_kernels::Arch::new();
/// let (bx, bh) = ([MatRef::row_major(&x, 2, 2, 2)], [MatRef::row_major(&h, 2, 1, 1)]);
/// let mut products = [
///     Beside { b: &bx, c: MatMut::row_major(&mut c1, 1, 2, 2) },
///     Beside { b: &bh, c: MatMut::row_major(&mut c2, 1, 1, 1) },
/// ];
/// gemm_beside(arch, 1, MatRef::row_major(&a, 1, 2, 2), &mut products, 0.0);
/// assert_eq!((c1, c2), ([1.0, 2.0], [11.0]));
/// ```
///
/// # Panics
/// If a product's shapes disagree with A's (as [`gemm`](super::gemm)), or a product's blocks
/// of B differ in width.
#[track_caller]
pub fn gemm_beside<T: Float>(
    arch: Arch,
    threads: usize,
    a: MatRef<'_, T>,
    products: &mut [Beside<'_, '_, '_, T>],
    beta: T,
) {
    let (m, k) = (a.rows(), a.cols());
    for p in products.iter() {
        let b = StackedRows::new(p.b);
        assert!(
            b.rows() == k && p.c.rows() == m && p.c.cols() == b.cols(),
            "gemm_beside: A is {m}x{k}, a B is {}x{}, its C {}x{}",
            b.rows(),
            b.cols(),
            p.c.rows(),
            p.c.cols()
        );
    }
    for group in products.chunks_mut(MAX_BESIDE) {
        let mut bs = [StackedRows::new(&[]); MAX_BESIDE];
        let mut cs: Outs<'_, T> = core::array::from_fn(|_| None);
        for (i, p) in group.iter_mut().filter(|p| p.c.cols() > 0).enumerate() {
            bs[i] = StackedRows::new(p.b);
            cs[i] = Some(p.c.reborrow());
        }
        let count = cs.iter().filter(|c| c.is_some()).count();
        if m == 0 || count == 0 {
            continue;
        }
        if k == 0 {
            cs.into_iter().flatten().for_each(|c| scale(beta, c));
            continue;
        }
        group_product(arch, threads, a, (&bs[..count], cs), beta);
    }
}

/// One group of [`gemm_beside`] (`bs[i]` for the i-th C; k > 0, m > 0).
fn group_product<T: Float>(
    arch: Arch,
    threads: usize,
    a: MatRef<'_, T>,
    (bs, cs): (&[StackedRows<'_, '_, T>], Outs<'_, T>),
    beta: T,
) {
    let (m, k) = (a.rows(), a.cols());
    let widest = bs.iter().map(|b| b.cols()).max().unwrap_or(0);
    let n: usize = bs.iter().map(|b| b.cols()).sum();
    let kc = slice_k::<T>(k, widest);
    let slice_len: usize = bs
        .iter()
        .map(|b| packed::packed_len::<T>(kc.min(k), b.cols()))
        .sum();
    let mr = split::micro_rows::<T>(arch);
    let parts = split::parts(threads, mr, (m, k, n));
    if parts > 1 && slice_len * core::mem::size_of::<T>() <= OWN_SLICE_BYTES {
        // Each part packs the slices of B itself, so the parts run from start to end without
        // meeting: two hand-offs per slice cost more than packing a small slice twice.
        split::for_row_parts(parts, mr, a, cs, &|a, cs| {
            slices(arch, 1, (a, bs), beta, cs, kc)
        });
    } else {
        slices(arch, threads, (a, bs), beta, cs, kc);
    }
}

/// The products a slice of `kc` rows of every B at a time: the slices packed side by side
/// into this thread's buffer (on up to `threads` threads), then multiplied (on as many).
fn slices<T: Float>(
    arch: Arch,
    threads: usize,
    (a, bs): (MatRef<'_, T>, &[StackedRows<'_, '_, T>]),
    beta: T,
    mut cs: Outs<'_, T>,
    kc: usize,
) {
    let k = a.cols();
    let lens = |len: usize| {
        bs.iter()
            .map(move |b| packed::packed_len::<T>(len, b.cols()))
    };
    scratch::with_scratch(Slot::B, lens(kc.min(k)).sum(), |buf| {
        for k0 in (0..k).step_by(kc) {
            let len = kc.min(k - k0);
            let mut ws: [Option<PackedRef<'_, T>>; MAX_BESIDE] = [None; MAX_BESIDE];
            let mut rest = &mut buf[..];
            for ((w, b), l) in ws.iter_mut().zip(bs).zip(lens(len)) {
                let (own, tail) = core::mem::take(&mut rest).split_at_mut(l);
                *w = Some(packed::pack_stacked_on(threads, b.rows_range(k0, len), own));
                rest = tail;
            }
            // Later slices add to what the first wrote, as the kernel's own K blocks do.
            let beta = if k0 == 0 { beta } else { T::ONE };
            let outs: Outs<'_, T> = cs.each_mut().map(|c| c.as_mut().map(|c| c.reborrow()));
            prepacked(arch, threads, a.cols_range(k0, len), &ws, beta, outs);
        }
    });
}

/// The products against packed `ws` (the i-th for the i-th C), split by rows of A and the
/// Cs over up to `threads` threads, each part packing its blocks of A into its own buffer.
/// A single product is [`gemm_prepacked`], which may split few rows by columns instead.
fn prepacked<T: Float>(
    arch: Arch,
    threads: usize,
    a: MatRef<'_, T>,
    ws: &[Option<PackedRef<'_, T>>; MAX_BESIDE],
    beta: T,
    mut cs: Outs<'_, T>,
) {
    if let ([Some(w), rest @ ..], [Some(_), ..]) = (&ws[..], &cs[..])
        && rest.iter().all(Option::is_none)
    {
        let c = cs[0].take().expect("checked above");
        return gemm_prepacked(arch, threads, a, *w, beta, c);
    }
    let mr = split::micro_rows::<T>(arch);
    let n = ws.iter().flatten().map(|w| w.n()).sum();
    let parts = split::parts(threads, mr, (a.rows(), a.cols(), n));
    split::for_row_parts(parts, mr, a, cs, &|a, cs: Outs<'_, T>| {
        // The slots past `count` hold an empty placeholder the kernel is never given.
        let Some(&first) = ws.iter().flatten().next() else {
            return;
        };
        let mut pairs: [(PackedRef<'_, T>, MatMut<'_, T>); MAX_BESIDE] =
            core::array::from_fn(|_| (first, MatMut::row_major(&mut [], 0, 0, 0)));
        let mut count = 0;
        for (w, c) in ws.iter().zip(cs) {
            if let (Some(w), Some(c)) = (w, c) {
                pairs[count] = (*w, c);
                count += 1;
            }
        }
        let len = packed::a_scratch_len(a.rows(), a.cols());
        scratch::with_scratch(Slot::A, len, |s| {
            packed::gemm_packed_beside(arch, a, &mut pairs[..count], beta, s)
        });
    });
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::gemm::gemm_stacked;
    use crate::reference::gemm as reference;
    use crate::testing::{SplitMix, cast, check_close, size, size_nonzero, widen};

    /// Every product's `C` by the naive reference, in f64, from the same operands.
    type Wanted = Vec<Vec<f64>>;

    /// `count` products sharing an `m x k` A (column-major, as a transposed dG is), B `i`
    /// `k x widths[i]` in two stacked blocks cut at `cut`; returns every C's bits from
    /// [`gemm_beside`] on `threads` threads and from one [`gemm_stacked`] per product.
    fn both<T: Float>(
        (m, k, widths): (usize, usize, &[usize]),
        cut: usize,
        beta: f64,
        threads: usize,
        seed: u64,
    ) -> (Vec<Vec<u64>>, Vec<Vec<u64>>, Wanted) {
        let mut rng = SplitMix::new(seed);
        let a = cast::<T>(&rng.vec(m * k, 1.0));
        let bs: Vec<Vec<T>> = widths
            .iter()
            .map(|&n| cast::<T>(&rng.vec(k * n, 1.0)))
            .collect();
        let c0: Vec<Vec<T>> = widths
            .iter()
            .map(|&n| {
                if beta == 0.0 {
                    vec![T::NAN; m * n]
                } else {
                    cast::<T>(&rng.vec(m * n, 1.0))
                }
            })
            .collect();
        let cut = cut.min(k);
        let a_view = MatRef::new(&a, m, k, 1, m.max(1));
        let beta_t = T::from_f64(beta);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let bits = |cs: &[Vec<T>]| -> Vec<Vec<u64>> {
            cs.iter()
                .map(|c| c.iter().map(|v| v.to_f64().to_bits()).collect())
                .collect()
        };
        let a64 = widen(&a);
        let want: Wanted = bs
            .iter()
            .zip(&c0)
            .zip(widths)
            .map(|((b, c), &n)| {
                let mut want = widen(c);
                let b64 = widen(b);
                reference::gemm(
                    1.0,
                    MatRef::new(&a64, m, k, 1, m.max(1)),
                    MatRef::row_major(&b64, k, n, n),
                    beta,
                    MatMut::row_major(&mut want, m, n, n),
                );
                want
            })
            .collect();
        let mut beside = c0.clone();
        let block_sets: Vec<[MatRef<'_, T>; 2]> = bs
            .iter()
            .zip(widths)
            .map(|(b, &n)| {
                let (top, bottom) = b.split_at(cut * n);
                [
                    MatRef::row_major(top, cut, n, n),
                    MatRef::row_major(bottom, k - cut, n, n),
                ]
            })
            .collect();
        {
            let mut products: Vec<Beside<'_, '_, '_, T>> = block_sets
                .iter()
                .zip(beside.iter_mut())
                .zip(widths)
                .map(|((b, c), &n)| Beside {
                    b: &b[..],
                    c: MatMut::row_major(c, m, n, n),
                })
                .collect();
            pool.install(|| gemm_beside(crate::arch(), 0, a_view, &mut products, beta_t));
        }
        let mut alone = c0;
        for ((b, c), &n) in block_sets.iter().zip(alone.iter_mut()).zip(widths) {
            let c = MatMut::row_major(c, m, n, n);
            pool.install(|| gemm_stacked(crate::arch(), 0, a_view, &b[..], beta_t, c));
        }
        (bits(&beside), bits(&alone), want)
    }

    /// Each C within the rounding of k products of magnitude at most 1 of the reference.
    fn near_reference<T: Float>(
        beside: &[Vec<u64>],
        want: &Wanted,
        k: usize,
    ) -> Result<(), TestCaseError> {
        let eps = T::EPSILON.to_f64();
        for (c, w) in beside.iter().zip(want) {
            let c: Vec<f64> = c.iter().map(|&b| f64::from_bits(b)).collect();
            check_close("C", &c, w, (4.0 * eps * (k as f64 + 2.0), 4.0 * eps))?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::testing::cases(48))]

        /// Every C is the reference's product to rounding and has the bits of its own
        /// product (the widths here keep every product's slices of K those of the widest),
        /// on 1 to 3 threads, with 1 to 6 products (more than one group), f32 and f64, beta
        /// 0 (C's NaNs never read) or not.
        #[test]
        fn each_c_has_the_bits_of_its_own_product(
            m in size_nonzero(), k in size(), widths in prop::collection::vec(size(), 1..7),
            cut in size(), beta in prop::sample::select(vec![0.0, 1.0, -0.5]),
            threads in 1usize..4, seed in any::<u64>(),
        ) {
            let (beside, alone, want) = both::<f32>((m, k, &widths), cut, beta, threads, seed);
            prop_assert!(beside == alone, "f32 {m}x{k} {widths:?}");
            near_reference::<f32>(&beside, &want, k)?;
            let (beside, alone, want) = both::<f64>((m, k, &widths), cut, beta, threads, seed);
            prop_assert!(beside == alone, "f64 {m}x{k} {widths:?}");
            near_reference::<f64>(&beside, &want, k)?;
        }
    }

    /// Products large enough to run on several threads, with slices that every part packs
    /// for itself and slices packed once for all, and past one slice of K: the bits of the
    /// separate products and of one thread.
    #[test]
    fn long_and_threaded_products_keep_the_bits() {
        for (m, k, widths) in [
            (203, 700, &[75, 40][..]),
            (512, 3200, &[128, 128][..]),
            (100, 2 * packed::KC + 7, &[300, 33, 64][..]),
        ] {
            let (one, alone, want) = both::<f32>((m, k, widths), k / 3, 1.0, 1, 3);
            assert!(one == alone, "{m}x{k} {widths:?}");
            near_reference::<f32>(&one, &want, k).unwrap();
            for threads in 2..=3 {
                let (beside, _, _) = both::<f32>((m, k, widths), k / 3, 1.0, threads, 3);
                assert!(beside == one, "{m}x{k} {widths:?} on {threads} threads");
            }
        }
    }

    /// Widths whose own slices of K differ (an f32 B of 1760 columns is sliced shorter than
    /// one of 64): each C is still A B_i to rounding.
    #[test]
    fn products_of_unlike_widths_match_the_reference() {
        let (m, k, widths) = (30, 1800, [1760usize, 64]);
        assert_ne!(slice_k::<f32>(k, widths[0]), slice_k::<f32>(k, widths[1]));
        let (beside, _, want) = both::<f32>((m, k, &widths), 700, 0.0, 2, 9);
        near_reference::<f32>(&beside, &want, k).unwrap();
    }

    /// No rows of B (k = 0) scales each C by beta; beta 0 writes zeros over NaN.
    #[test]
    fn empty_k_scales_by_beta() {
        let (mut c1, mut c2) = (vec![2.0f32; 6], vec![f32::NAN; 3]);
        let b1 = [MatRef::row_major(&[][..], 0, 2, 2)];
        let b2 = [MatRef::row_major(&[][..], 0, 1, 1)];
        let a = MatRef::row_major(&[][..], 3, 0, 0);
        let mut products = [
            Beside {
                b: &b1,
                c: MatMut::row_major(&mut c1, 3, 2, 2),
            },
            Beside {
                b: &b2,
                c: MatMut::row_major(&mut c2, 3, 1, 1),
            },
        ];
        gemm_beside(crate::arch(), 1, a, &mut products, 0.0);
        assert_eq!((c1, c2), (vec![0.0; 6], vec![0.0; 3]));
    }

    /// A B whose rows are not A's columns is refused.
    #[test]
    #[should_panic(expected = "gemm_beside")]
    fn mismatched_shapes_are_refused() {
        let (a, b) = ([1.0f32; 6], [1.0f32; 4]);
        let mut c = [0.0f32; 4];
        let blocks = [MatRef::row_major(&b[..], 2, 2, 2)];
        let mut products = [Beside {
            b: &blocks,
            c: MatMut::row_major(&mut c, 2, 2, 2),
        }];
        gemm_beside(
            crate::arch(),
            1,
            MatRef::row_major(&a, 2, 3, 3),
            &mut products,
            0.0,
        );
    }
}
