//! The products an RNN runs, in f32 on one thread, by three GEMMs side by side: ours (packed
//! weights, `gemm_prepacked`; the general `gemm` for the weight gradients), the `gemm` crate
//! (AVX-512 kernels) and `matrixmultiply`. This is the measurement behind the choice of GEMM
//! (README, Performance).
//!
//! Shapes, for hidden size H, batch B, T steps and 4 gates (LSTM):
//! - `step`:  `[B, H] x [H, 4H]`: the recurrent product of one step (weights packed once);
//! - `row`: `[1, 256] x [256, N]`: a single row against 512 KiB of W (one core's half of
//!   `W_hh` at H = 256 on 2 threads, in L2) and 1 MiB;
//! - `proj`:  `[T*B, H] x [H, 4H]`: the input projection over all steps;
//! - `dw`:    `[4H, T*B] x [T*B, H]`: a weight gradient (A read transposed);
//! - `stacked`: `dW_hh` over 4 batch chunks whose states lie in regions of their own: one
//!   `gemm_stacked` against a `gemm` per chunk;
//! - `gather`: a lockstep part's h, two chunks of 8 rows side by side, column-major;
//! - `beside`: a layer's two weight gradients, `dG^T X` and `dG^T H_prev`: one
//!   `gemm_beside` (each block of `dG^T` packed once) against two `gemm`s.
//!
//! `cargo bench -p fused-rnn-kernels --bench gemm --features compare-gemm` (without the
//! feature, ours alone: the two crates are only compiled when asked for).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fused_rnn_kernels::aligned::AlignedBuf;
use fused_rnn_kernels::gemm::beside::{Beside, gemm_beside};
use fused_rnn_kernels::gemm::packed::{pack, packed_len};
use fused_rnn_kernels::gemm::{MatMut, MatRef, gemm, gemm_prepacked, gemm_stacked, transpose_into};
use fused_rnn_kernels::{Arch, arch};
use std::hint::black_box;

/// `C = A B` with A `m x k` (strides `rsa`, `csa`) and B, C row-major.
struct Product {
    m: usize,
    k: usize,
    n: usize,
    a_transposed: bool,
}

fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

#[cfg(feature = "compare-gemm")]
fn gemm_crate(p: &Product, a: &[f32], b: &[f32], c: &mut [f32]) {
    let (rsa, csa) = if p.a_transposed {
        (1, p.m as isize)
    } else {
        (p.k as isize, 1)
    };
    // SAFETY: the strides describe `a` (m x k), `b` (k x n) and `c` (m x n) inside their
    // slices, whose lengths the caller sized for exactly these shapes; `c` is not aliased.
    unsafe {
        gemm::gemm(
            p.m,
            p.n,
            p.k,
            c.as_mut_ptr(),
            1,
            p.n as isize,
            false,
            a.as_ptr(),
            csa,
            rsa,
            b.as_ptr(),
            1,
            p.n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(feature = "compare-gemm")]
fn matrixmultiply(p: &Product, a: &[f32], b: &[f32], c: &mut [f32]) {
    let (rsa, csa) = if p.a_transposed {
        (1, p.m as isize)
    } else {
        (p.k as isize, 1)
    };
    // SAFETY: as in `gemm_crate`: every stride stays inside its slice; `c` is not aliased.
    unsafe {
        matrixmultiply::sgemm(
            p.m,
            p.k,
            p.n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            p.n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            p.n as isize,
            1,
        );
    }
}

fn ours(arch: Arch, p: &Product, a: &[f32], b: &[f32], packed: &[f32], c: &mut [f32]) {
    let a = if p.a_transposed {
        MatRef::row_major(a, p.k, p.m, p.m).t()
    } else {
        MatRef::row_major(a, p.m, p.k, p.k)
    };
    let c = MatMut::row_major(c, p.m, p.n, p.n);
    if p.a_transposed {
        // Weight gradients: the general product (B, the activations, changes every call).
        gemm(arch, 1, a, MatRef::row_major(b, p.k, p.n, p.n), 0.0, c);
    } else {
        let w = fused_rnn_kernels::gemm::packed::PackedRef::from_packed(packed, p.k, p.n);
        gemm_prepacked(arch, 1, a, w, 0.0, c);
    }
}

fn products(c: &mut Criterion) {
    let arch = arch();
    let (t, h) = (25, 512);
    let mut cases = Vec::new();
    for b in [1, 4, 8, 16, 32, 64] {
        cases.push((
            format!("step_h{h}_b{b}"),
            Product {
                m: b,
                k: h,
                n: 4 * h,
                a_transposed: false,
            },
        ));
    }
    for n in [512, 1024] {
        // A single row at H = 256: each core's half of an LSTM's W_hh on 2 threads (512 KiB,
        // in L2: read as one stream) and the whole (1 MiB: two streams).
        cases.push((
            format!("row_h256_n{n}"),
            Product {
                m: 1,
                k: 256,
                n,
                a_transposed: false,
            },
        ));
    }
    for b in [8, 16] {
        // The backward step: dL/dh = dG W_hh, against W_hh packed.
        cases.push((
            format!("step_back_h{h}_b{b}"),
            Product {
                m: b,
                k: 4 * h,
                n: h,
                a_transposed: false,
            },
        ));
    }
    for b in [16, 64] {
        cases.push((
            format!("proj_h{h}_b{b}_t{t}"),
            Product {
                m: t * b,
                k: h,
                n: 4 * h,
                a_transposed: false,
            },
        ));
        cases.push((
            format!("dw_h{h}_b{b}_t{t}"),
            Product {
                m: 4 * h,
                k: t * b,
                n: h,
                a_transposed: true,
            },
        ));
    }
    let mut g = c.benchmark_group("gemm");
    g.sample_size(20);
    for (name, p) in &cases {
        let (a, b) = (data(p.m * p.k), data(p.k * p.n));
        let mut out = vec![0.0f32; p.m * p.n];
        // Cache-line aligned, as the crate keeps its packed weights.
        let mut packed = AlignedBuf::new();
        packed.resize(packed_len::<f32>(p.k, p.n));
        pack(MatRef::row_major(&b, p.k, p.n, p.n), packed.as_mut_slice());
        let packed = packed.as_slice();
        g.throughput(Throughput::Elements((2 * p.m * p.k * p.n) as u64));
        g.bench_function(BenchmarkId::new("ours", name), |bench| {
            bench.iter(|| ours(arch, p, black_box(&a), &b, packed, &mut out))
        });
        #[cfg(feature = "compare-gemm")]
        {
            // The three compute the same product (else the timing would mean nothing).
            let mut check = vec![vec![0.0f32; p.m * p.n]; 3];
            ours(arch, p, &a, &b, packed, &mut check[0]);
            gemm_crate(p, &a, &b, &mut check[1]);
            matrixmultiply(p, &a, &b, &mut check[2]);
            for other in &check[1..] {
                let diff = check[0]
                    .iter()
                    .zip(other)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(
                    diff < 1e-3 * p.k as f32,
                    "{name}: the GEMMs disagree by {diff}"
                );
            }
            g.bench_function(BenchmarkId::new("gemm_crate", name), |bench| {
                bench.iter(|| gemm_crate(p, black_box(&a), &b, &mut out))
            });
            g.bench_function(BenchmarkId::new("matrixmultiply", name), |bench| {
                bench.iter(|| matrixmultiply(p, black_box(&a), &b, &mut out))
            });
        }
    }
    g.finish();
}

/// Packing a recurrent weight, as training does once per update: `W_hh^T` (`H x 4H`) read
/// from the row-major `W_hh`, i.e. a transposing copy, and, for comparison, a row-major copy
/// of the same size. Throughput in bytes written.
fn packing(c: &mut Criterion) {
    let mut g = c.benchmark_group("pack");
    g.sample_size(30);
    for h in [256, 512, 1024] {
        let (k, n) = (h, 4 * h);
        let w = data(k * n);
        let mut out = vec![0.0f32; packed_len::<f32>(k, n)];
        g.throughput(Throughput::Bytes((out.len() * 4) as u64));
        g.bench_function(BenchmarkId::new("transposed", format!("h{h}")), |bench| {
            bench.iter(|| {
                pack(MatRef::row_major(black_box(&w), n, k, k).t(), &mut out);
            })
        });
        g.bench_function(BenchmarkId::new("row_major", format!("h{h}")), |bench| {
            bench.iter(|| {
                pack(MatRef::row_major(black_box(&w), k, n, n), &mut out);
            })
        });
    }
    g.finish();
}

/// Gathering a lockstep part's h for its step product: two chunks of 8 rows of h side by
/// side, column-major (`transpose_into`), against the plain loop of strided stores it
/// replaced. Throughput in bytes written.
fn gather(c: &mut Criterion) {
    let mut g = c.benchmark_group("gather");
    for h in [128, 256, 1024] {
        let (rows, ld) = (8, 16);
        let a = data(rows * h);
        let mut out = vec![0.0f32; h * ld];
        g.throughput(Throughput::Bytes((2 * rows * h * 4) as u64));
        g.bench_function(BenchmarkId::new("tiles", format!("h{h}")), |bench| {
            bench.iter(|| {
                for r0 in [0, rows] {
                    let a = MatRef::row_major(black_box(&a), rows, h, h);
                    transpose_into(a, &mut out[r0..], ld);
                }
            })
        });
        g.bench_function(BenchmarkId::new("loop", format!("h{h}")), |bench| {
            bench.iter(|| {
                for r0 in [0, rows] {
                    let a = MatRef::row_major(black_box(&a), rows, h, h);
                    for r in 0..rows {
                        for (kk, &v) in a.row(r).iter().enumerate() {
                            out[kk * ld + r0 + r] = v;
                        }
                    }
                }
            })
        });
    }
    g.finish();
}

/// `dW_hh += dG^T H_prev` over four chunks of 8 sequences, each chunk's `T * 8` states in a
/// region of its own (a step's gap between them, as in a training tape): one stacked product
/// against one product per chunk. Throughput in FLOPs.
fn stacked(c: &mut Criterion) {
    let arch = arch();
    let mut g = c.benchmark_group("stacked");
    g.sample_size(10);
    for (h, t) in [(256, 64), (1024, 25)] {
        let (chunks, bc) = (4, 8);
        let (rows, gh) = (chunks * t * bc, 4 * h);
        let dg = data(rows * gh);
        let region = (t + 1) * bc * h;
        let tape = data(chunks * region);
        let blocks: Vec<MatRef<'_, f32>> = (0..chunks)
            .map(|i| MatRef::row_major(&tape[i * region..][..t * bc * h], t * bc, h, h))
            .collect();
        let mut dw = vec![0.0f32; gh * h];
        let dg_t = MatRef::row_major(&dg, rows, gh, gh).t();
        let name = format!("h{h}_b{}_t{t}", chunks * bc);
        g.throughput(Throughput::Elements((2 * rows * gh * h) as u64));
        g.bench_function(BenchmarkId::new("one_product", &name), |bench| {
            bench.iter(|| {
                let c = MatMut::row_major(&mut dw, gh, h, h);
                gemm_stacked(arch, 1, black_box(dg_t), &blocks, 1.0, c)
            })
        });
        g.bench_function(BenchmarkId::new("per_chunk", &name), |bench| {
            bench.iter(|| {
                for (i, b) in blocks.iter().enumerate() {
                    let a = dg_t.cols_range(i * t * bc, t * bc);
                    let c = MatMut::row_major(&mut dw, gh, h, h);
                    gemm(arch, 1, black_box(a), *b, 1.0, c);
                }
            })
        });
    }
    g.finish();
}

/// A layer's `dW_ih += dG^T X` and `dW_hh += dG^T H_prev` (input size = hidden size), as
/// one `gemm_beside` and as two `gemm`s, at the char-rnn's upper layer (H = 256, 2048 rows)
/// and lstm_h128_b32_t100's (3200 rows). Throughput in FLOPs.
fn beside(c: &mut Criterion) {
    let arch = arch();
    let mut g = c.benchmark_group("beside");
    g.sample_size(10);
    for (h, rows) in [(256, 2048), (128, 3200)] {
        let gh = 4 * h;
        let (dg, x, h_prev) = (data(rows * gh), data(rows * h), data(rows * h));
        let (mut dw_ih, mut dw_hh) = (vec![0.0f32; gh * h], vec![0.0f32; gh * h]);
        let dg_t = MatRef::row_major(&dg, rows, gh, gh).t();
        let (xs, hs) = (
            [MatRef::row_major(&x, rows, h, h)],
            [MatRef::row_major(&h_prev, rows, h, h)],
        );
        let name = format!("h{h}_rows{rows}");
        g.throughput(Throughput::Elements((2 * 2 * rows * gh * h) as u64));
        g.bench_function(BenchmarkId::new("shared_a", &name), |bench| {
            bench.iter(|| {
                let mut products = [
                    Beside {
                        b: &xs,
                        c: MatMut::row_major(&mut dw_ih, gh, h, h),
                    },
                    Beside {
                        b: &hs,
                        c: MatMut::row_major(&mut dw_hh, gh, h, h),
                    },
                ];
                gemm_beside(arch, 1, black_box(dg_t), &mut products, 1.0)
            })
        });
        g.bench_function(BenchmarkId::new("two_products", &name), |bench| {
            bench.iter(|| {
                gemm(
                    arch,
                    1,
                    black_box(dg_t),
                    xs[0],
                    1.0,
                    MatMut::row_major(&mut dw_ih, gh, h, h),
                );
                gemm(
                    arch,
                    1,
                    black_box(dg_t),
                    hs[0],
                    1.0,
                    MatMut::row_major(&mut dw_hh, gh, h, h),
                );
            })
        });
    }
    g.finish();
}

criterion_group!(benches, products, packing, gather, stacked, beside);
criterion_main!(benches);
