//! How fast the AVX-512 microkernel's loop runs alone, beside the products built on it: the
//! ceiling a product could reach on this machine, and what it loses outside the loop.
//!
//! `bare` is a 12-row x 32-column tile written with plain intrinsics, its loop the one
//! `gemm_packed` compiles to (per step of K: 12 broadcasts of A, 2 loads of W, 24 FMAs), run
//! over a block as `gemm_packed` runs it (each 32-column panel of packed W against every
//! 12-row tile of A), with A in one of two layouts:
//! - `kmajor`: a tile's 12 values of a step side by side (column-major A, as the step
//!   products read the states in place, and as the weight gradients pack `dG^T`);
//! - `rowmajor`: 12 rows [`PACK_LD`] apart (as `gemm_packed` packs row-major A).
//!
//! `ours` is `gemm_packed` on the same data (A column-major in place or row-major packed).
//! Measured on Zen 4 (2026-11-25, README, Performance, seventeenth session): the bare loop at
//! 96-98% of the FMA peak, `ours` at 92-97%; the same products inside a layer at 88-90%.
//!
//! `cargo bench -p fused-rnn-kernels --bench ceiling` (prints why it does nothing on a CPU
//! without AVX-512).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fused_rnn_kernels::aligned::AlignedBuf;
use fused_rnn_kernels::arch;
use fused_rnn_kernels::gemm::packed::{
    PACK_LD, PackedRef, a_scratch_len, gemm_packed, pack, packed_len, strip_width,
};
use fused_rnn_kernels::gemm::{MatMut, MatRef};
use std::hint::black_box;

/// Rows and columns of the bare tile.
const MR: usize = 12;
const NR: usize = 32;

#[cfg(target_arch = "x86_64")]
mod bare {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// `C[12][32] += A W` over `k` steps: A's element (step kk, row r) at `a[kk * step +
    /// r * row]`, W's step kk at `w[kk * 32..]`, C's rows `ldc` apart.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and every element named above must be in bounds.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile(
        a: *const f32,
        (step, row): (usize, usize),
        w: *const f32,
        k: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for kk in 0..k {
            let w_k = w.wrapping_add(kk * NR);
            // SAFETY: the caller guarantees step kk of W (32 values) is in bounds.
            let w_lo = unsafe { _mm512_loadu_ps(w_k) };
            // SAFETY: as above.
            let w_hi = unsafe { _mm512_loadu_ps(w_k.wrapping_add(16)) };
            let regs = [w_lo, w_hi];
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: the caller guarantees step kk of A's 12 rows is in bounds.
                let x = _mm512_set1_ps(unsafe { *a.wrapping_add(kk * step + r * row) });
                for (acc_v, &w_v) in acc_r.iter_mut().zip(&regs) {
                    *acc_v = _mm512_fmadd_ps(x, w_v, *acc_v);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &acc_v) in acc_r.iter().enumerate() {
                let at = c.wrapping_add(r * ldc + 16 * v);
                // SAFETY: the caller guarantees C's 12 x 32 tile is in bounds.
                let old = unsafe { _mm512_loadu_ps(at) };
                let new = _mm512_add_ps(old, acc_v);
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(at, new) };
            }
        }
    }

    /// `C += A W` for `m x k` A (rows a multiple of 12; `kmajor`: element (i, kk) at
    /// `a[(i / 12) * 12 * k + kk * 12 + i % 12]`, else at `a[i * lda + kk]`), W packed in
    /// panels of 32 columns (`k x n`, n a multiple of 32), C row-major `m x n`: every panel
    /// against every tile of rows, as `gemm_packed` walks a block.
    ///
    /// # Panics
    /// If the CPU lacks AVX-512F or a slice is too short for the shapes.
    pub fn block(
        a: &[f32],
        kmajor: bool,
        lda: usize,
        w: &[f32],
        c: &mut [f32],
        (m, k, n): (usize, usize, usize),
    ) {
        assert!(is_x86_feature_detected!("avx512f"));
        assert!(m.is_multiple_of(MR) && n.is_multiple_of(NR) && k > 0);
        let a_len = if kmajor { m * k } else { (m - 1) * lda + k };
        assert!(a.len() >= a_len && (kmajor || lda >= k) && w.len() >= k * n);
        assert!(c.len() >= m * n);
        for p in 0..n / NR {
            for t in 0..m / MR {
                let (a_tile, strides) = if kmajor {
                    (t * MR * k, (MR, 1))
                } else {
                    (t * MR * lda, (1, lda))
                };
                // SAFETY: AVX-512F was detected above; the asserts bound every step of the
                // tile's rows of A, the panel's k x 32 of W and the tile's C.
                unsafe {
                    tile(
                        a[a_tile..].as_ptr(),
                        strides,
                        w[p * k * NR..].as_ptr(),
                        k,
                        c[t * MR * n + p * NR..].as_mut_ptr(),
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

fn ceiling(c: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    let avx512 = is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    if !avx512 || strip_width::<f32>() != NR {
        eprintln!("ceiling: measures the AVX-512 microkernel, and this CPU has no AVX-512F");
        return;
    }
    let arch = arch();
    let mut g = c.benchmark_group("ceiling");
    g.sample_size(20);
    // A block of the input projection (K = H = 256 and 1024), and one tile of rows of a step
    // product at H = 256 (the char-rnn's).
    for (m, k, n) in [(240, 256, 1024), (240, 1024, 1024), (12, 256, 1024)] {
        let name = format!("{m}x{k}x{n}");
        let (a_rows, a_cols, w) = (data(m * k), data(m * k), data(k * n));
        // Packed W: panels of 32 columns, all k steps of one before the next (one strip a
        // panel with AVX-512), which the bare tile reads as they are.
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
            let bare = |out: &mut [f32]| bare::block(a, kmajor, lda, panels.as_slice(), out, shape);
            g.bench_function(BenchmarkId::new(format!("bare_{layout}"), &name), |b| {
                b.iter(|| bare(black_box(out.as_mut_slice())))
            });
            // Ours on the same A: column-major (12 rows: read in place) or row-major.
            if kmajor && m > MR {
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
            bare(&mut check[0]);
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
