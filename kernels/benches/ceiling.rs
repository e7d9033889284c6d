//! How fast the microkernel's loop runs alone, beside the products built on it: the ceiling a
//! product could reach on this machine, and what it loses outside the loop.
//!
//! `bare` is the tile of the machine's best instruction set written with plain intrinsics,
//! its loop the one `gemm_packed` compiles to, run over a block as `gemm_packed` runs it
//! (each strip of packed W against every tile of rows of A):
//! - AVX-512: 12 rows x 32 columns (per step of K: 12 broadcasts of A, 2 loads of W, 24
//!   FMAs);
//! - AVX2 with FMA: 6 rows x 16 columns, W in strips of 16 columns (per step: 6 broadcasts,
//!   2 loads, 12 FMAs).
//!
//! A comes in one of two layouts:
//! - `kmajor`: a tile's values of a step side by side (column-major A, as the step products
//!   read the states in place, and as the weight gradients pack `dG^T`);
//! - `rowmajor`: the tile's rows [`PACK_LD`] apart (as `gemm_packed` packs row-major A).
//!
//! `ours` is `gemm_packed` on the same data (A column-major in place or row-major packed).
//! Measured on Zen 4 (2026-11-25, README, Performance, seventeenth session): the AVX-512 loop
//! at 96-98% of the FMA peak, `ours` at 92-97%; the same products inside a layer at 88-90%.
//!
//! `cargo bench -p fused-rnn-kernels --bench ceiling` (prints why it does nothing on a CPU
//! with neither); `CEILING_SHAPES=6x128x512,30x128x512` measures other products.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fused_rnn_kernels::aligned::AlignedBuf;
use fused_rnn_kernels::arch;
use fused_rnn_kernels::gemm::packed::{
    PACK_LD, PackedRef, a_scratch_len, gemm_packed, pack, packed_len, strip_width,
};
use fused_rnn_kernels::gemm::{MatMut, MatRef};
use std::hint::black_box;

/// A bare microkernel: its tile's rows and columns (the width of a strip of packed W), and
/// [`bare::block`] run with it.
#[derive(Clone, Copy)]
struct Bare {
    mr: usize,
    nr: usize,
    name: &'static str,
    tile: Tile,
}

/// A tile's loop, `tile(a, (step, row), w, k, c, ldc)`: `C[MR][NR] += A W` over `k` steps,
/// A's element (step kk, row r) at `a[kk * step + r * row]`, W's step kk at `w[kk * NR..]`,
/// C's rows `ldc` apart.
type Tile = unsafe fn(*const f32, (usize, usize), *const f32, usize, *mut f32, usize);

#[cfg(target_arch = "x86_64")]
mod bare {
    use super::Bare;

    /// The microkernel of this CPU's best instruction set, if it has AVX-512F or AVX2 with
    /// FMA.
    pub fn detect() -> Option<Bare> {
        if is_x86_feature_detected!("avx512f") {
            Some(Bare {
                mr: avx512::MR,
                nr: avx512::NR,
                name: "AVX-512",
                tile: avx512::tile,
            })
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            Some(Bare {
                mr: avx2::MR,
                nr: avx2::NR,
                name: "AVX2",
                tile: avx2::tile,
            })
        } else {
            None
        }
    }

    /// A module `$name` with one instruction set's tile: `MR` rows x `NR` columns (two
    /// registers a row), `tile` its loop (see `Tile`) in that set's intrinsics.
    macro_rules! bare_tile {
        ($name:ident, $feature:literal, $mr:literal x $nr:literal,
         $zero:ident, $load:ident, $splat:ident, $fma:ident, $add:ident, $store:ident) => {
            pub mod $name {
                use std::arch::x86_64::*;

                pub const MR: usize = $mr;
                pub const NR: usize = $nr;

                /// `C[MR][NR] += A W` (see `Tile`).
                ///
                /// # Safety
                /// The CPU must have the features this function enables, and every element
                /// `Tile` names must be in bounds.
                #[target_feature(enable = $feature)]
                pub unsafe fn tile(
                    a: *const f32,
                    (step, row): (usize, usize),
                    w: *const f32,
                    k: usize,
                    c: *mut f32,
                    ldc: usize,
                ) {
                    let mut acc = [[$zero(); 2]; MR];
                    for kk in 0..k {
                        let w_k = w.wrapping_add(kk * NR);
                        // SAFETY: the caller guarantees step kk of W (NR values) is in bounds.
                        let w_lo = unsafe { $load(w_k) };
                        // SAFETY: as above.
                        let w_hi = unsafe { $load(w_k.wrapping_add(NR / 2)) };
                        let regs = [w_lo, w_hi];
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            // SAFETY: the caller guarantees step kk of A's MR rows is in
                            // bounds.
                            let x = $splat(unsafe { *a.wrapping_add(kk * step + r * row) });
                            for (acc_v, &w_v) in acc_r.iter_mut().zip(&regs) {
                                *acc_v = $fma(x, w_v, *acc_v);
                            }
                        }
                    }
                    for (r, acc_r) in acc.iter().enumerate() {
                        for (v, &acc_v) in acc_r.iter().enumerate() {
                            let at = c.wrapping_add(r * ldc + NR / 2 * v);
                            // SAFETY: the caller guarantees C's MR x NR tile is in bounds.
                            let old = unsafe { $load(at) };
                            let new = $add(old, acc_v);
                            // SAFETY: as above.
                            unsafe { $store(at, new) };
                        }
                    }
                }
            }
        };
    }

    bare_tile!(
        avx512, "avx512f", 12 x 32,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
        _mm512_storeu_ps
    );
    bare_tile!(
        avx2, "avx2,fma", 6 x 16,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
        _mm256_storeu_ps
    );

    /// `C += A W` for `m x k` A (rows a multiple of the tile's; `kmajor`: element (i, kk)
    /// at `a[(i / mr) * mr * k + kk * mr + i % mr]`, else at `a[i * lda + kk]`), W packed in
    /// strips of the tile's width (`k x n`, n a multiple of it, all k steps of a strip
    /// before the next), C row-major `m x n`: every strip against every tile of rows, as
    /// `gemm_packed` walks a block.
    ///
    /// # Panics
    /// If the CPU lacks the tile's instruction set or a slice is too short for the shapes.
    pub fn block(
        bare: Bare,
        (a, kmajor, lda): (&[f32], bool, usize),
        w: &[f32],
        c: &mut [f32],
        (m, k, n): (usize, usize, usize),
    ) {
        let Bare { mr, nr, tile, .. } = bare;
        let detected = detect().is_some_and(|d| d.mr == mr && d.nr == nr);
        assert!(detected, "block: not this CPU's microkernel");
        assert!(m.is_multiple_of(mr) && n.is_multiple_of(nr) && k > 0);
        let a_len = if kmajor { m * k } else { (m - 1) * lda + k };
        assert!(a.len() >= a_len && (kmajor || lda >= k) && w.len() >= k * n);
        assert!(c.len() >= m * n);
        for p in 0..n / nr {
            for t in 0..m / mr {
                let (a_tile, strides) = if kmajor {
                    (t * mr * k, (mr, 1))
                } else {
                    (t * mr * lda, (1, lda))
                };
                // SAFETY: the tile's instruction set was detected above (`detect` gives
                // each tile with the features it needs); the asserts bound every step of
                // the tile's rows of A, the strip's k x nr of W and the tile's C.
                unsafe {
                    tile(
                        a[a_tile..].as_ptr(),
                        strides,
                        w[p * k * nr..].as_ptr(),
                        k,
                        c[t * mr * n + p * nr..].as_mut_ptr(),
                        n,
                    )
                };
            }
        }
    }
}

fn data(len: usize) -> AlignedBuf<f32> {
    let mut buf = AlignedBuf::new();
    buf.resize(len);
    for (i, x) in buf.as_mut_slice().iter_mut().enumerate() {
        *x = ((i * 7919) % 1000) as f32 / 1000.0 - 0.5;
    }
    buf
}

/// The products to measure: `CEILING_SHAPES` (`MxKxN` separated by commas, M a multiple of
/// the tile's rows, N of its columns), or by default a block of the input projection (K = H
/// = 256 and 1024) and one tile of rows of a step product at H = 256 (the char-rnn's).
///
/// # Panics
/// If `CEILING_SHAPES` names a shape not of that form, saying which and why.
fn shapes(Bare { mr, nr, .. }: Bare) -> Vec<(usize, usize, usize)> {
    let Ok(list) = std::env::var("CEILING_SHAPES") else {
        return vec![(240, 256, 1024), (240, 1024, 1024), (mr, 256, 1024)];
    };
    list.split(',')
        .map(|shape| {
            let dims: Result<Vec<usize>, _> = shape.split('x').map(|d| d.trim().parse()).collect();
            match dims.as_deref() {
                Ok(&[m, k, n]) if m > 0 && k > 0 && n > 0 => {
                    assert!(
                        m.is_multiple_of(mr) && n.is_multiple_of(nr),
                        "CEILING_SHAPES: {shape:?} needs M a multiple of {mr}, N of {nr}"
                    );
                    (m, k, n)
                }
                _ => panic!("CEILING_SHAPES: {shape:?} is not MxKxN"),
            }
        })
        .collect()
}

fn ceiling(c: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    let found = bare::detect();
    #[cfg(not(target_arch = "x86_64"))]
    let found: Option<Bare> = None;
    let Some(bare) = found.filter(|b| strip_width::<f32>() == b.nr) else {
        eprintln!("ceiling: measures the AVX-512 or AVX2 microkernel, and this CPU has neither");
        return;
    };
    eprintln!(
        "ceiling: the {} microkernel, {} x {}",
        bare.name, bare.mr, bare.nr
    );
    let mr = bare.mr;
    let arch = arch();
    let mut g = c.benchmark_group("ceiling");
    g.sample_size(20);
    for (m, k, n) in shapes(bare) {
        let name = format!("{m}x{k}x{n}");
        let (a_rows, a_cols, w) = (data(m * k), data(m * k), data(k * n));
        // Packed W: strips of the tile's width, all k steps of one before the next (one strip
        // a panel with AVX-512, two with AVX2), which the bare tile reads as they are.
        let mut panels = AlignedBuf::new();
        panels.resize(packed_len::<f32>(k, n));
        pack(
            MatRef::row_major(w.as_slice(), k, n, n),
            panels.as_mut_slice(),
        );
        let packed = PackedRef::from_packed(panels.as_slice(), k, n);
        // Row-major A at the stride `gemm_packed` packs it to.
        let mut a_packed = AlignedBuf::new();
        a_packed.resize((m - 1) * PACK_LD + k);
        for (r, row) in a_rows.as_slice().chunks_exact(k).enumerate() {
            a_packed.as_mut_slice()[r * PACK_LD..r * PACK_LD + k].copy_from_slice(row);
        }
        let mut scratch = AlignedBuf::new();
        scratch.resize(a_scratch_len(m, k));
        let mut out = data(m * n);
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for kmajor in [true, false] {
            let (a, lda, layout) = if kmajor {
                (a_cols.as_slice(), k, "kmajor")
            } else {
                (a_packed.as_slice(), PACK_LD, "rowmajor")
            };
            let shape = (m, k, n);
            let run_bare = |out: &mut [f32]| {
                bare::block(bare, (a, kmajor, lda), panels.as_slice(), out, shape)
            };
            g.bench_function(BenchmarkId::new(format!("bare_{layout}"), &name), |b| {
                b.iter(|| run_bare(black_box(out.as_mut_slice())))
            });
            // Ours on the same A: column-major (one tile of rows: read in place) or row-major.
            if kmajor && m > mr {
                continue; // 240 column-major rows are `gemm`'s weight-gradient case
            }
            let a_view = if kmajor {
                MatRef::row_major(a_cols.as_slice(), k, m, m).t()
            } else {
                MatRef::row_major(a_rows.as_slice(), m, k, k)
            };
            let ours = |out: &mut [f32], scratch: &mut [f32]| {
                let c = MatMut::row_major(out, m, n, n);
                gemm_packed(arch, a_view, packed, 1.0, c, scratch)
            };
            // Both compute the same product (else the timing would mean nothing).
            let mut check = [vec![0.0f32; m * n], vec![0.0f32; m * n]];
            run_bare(&mut check[0]);
            ours(&mut check[1], scratch.as_mut_slice());
            let diff = check[0]
                .iter()
                .zip(&check[1])
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(
                diff < 1e-3 * k as f32,
                "{name}: bare and ours differ by {diff}"
            );
            g.bench_function(BenchmarkId::new(format!("ours_{layout}"), &name), |b| {
                b.iter(|| ours(black_box(out.as_mut_slice()), scratch.as_mut_slice()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, ceiling);
criterion_main!(benches);
