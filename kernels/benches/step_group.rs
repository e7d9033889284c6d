//! The step products of batch chunks run in lockstep: each chunk's product alone, one after
//! the other (every chunk streams all of W), against one grouped product
//! (`gemm_packed_group`, W streamed once for all chunks). f32, one thread.
//!
//! Cases, for hidden size H and `chunks` chunks of 8 rows (LSTM, 4 gates):
//! - `fwd_h{H}_{chunks}x8`: `[8, H] x [H, 4H]` per chunk, h read in place column by column
//!   (as the fused forward step reads it);
//! - `back_h{H}_{chunks}x8`: `[8, 4H] x [4H, H]` per chunk, the gate gradients row-major
//!   (packed per call, as the backward step reads them).
//!
//! `cargo bench -p fused-rnn-kernels --bench step_group`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fused_rnn_kernels::aligned::AlignedBuf;
use fused_rnn_kernels::gemm::packed::group::{GroupPart, gemm_packed_group};
use fused_rnn_kernels::gemm::packed::{PackedRef, a_scratch_len, gemm_packed, pack, packed_len};
use fused_rnn_kernels::{MatMut, MatRef, arch};
use std::hint::black_box;

const ROWS: usize = 8;

fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// Chunk `i`'s A: `ROWS x k`, column-major (forward) or row-major (backward).
fn a_of(a: &[f32], k: usize, col_major: bool) -> MatRef<'_, f32> {
    if col_major {
        MatRef::new(a, ROWS, k, 1, ROWS)
    } else {
        MatRef::row_major(a, ROWS, k, k)
    }
}

fn step_chunks(c: &mut Criterion) {
    let arch = arch();
    let mut g = c.benchmark_group("step_group");
    g.sample_size(30);
    for h in [512, 1024] {
        for (dir, (k, n), col_major) in [("fwd", (h, 4 * h), true), ("back", (4 * h, h), false)] {
            let w = data(k * n);
            let mut packed = AlignedBuf::new();
            packed.resize(packed_len::<f32>(k, n));
            pack(MatRef::row_major(&w, k, n, n), packed.as_mut_slice());
            let w = PackedRef::from_packed(packed.as_slice(), k, n);
            for chunks in [2, 4, 8] {
                let name = format!("{dir}_h{h}_{chunks}x{ROWS}");
                let a: Vec<Vec<f32>> = (0..chunks).map(|i| data(ROWS * k + i)).collect();
                let mut out = vec![vec![0.0f32; ROWS * n]; chunks];
                let mut scratch = vec![vec![0.0f32; a_scratch_len(ROWS, k)]; chunks];
                g.throughput(Throughput::Elements((2 * chunks * ROWS * k * n) as u64));
                g.bench_function(BenchmarkId::new("alone", &name), |bench| {
                    bench.iter(|| {
                        for ((a, c), s) in a.iter().zip(&mut out).zip(&mut scratch) {
                            let c = MatMut::row_major(c, ROWS, n, n);
                            gemm_packed(arch, a_of(black_box(a), k, col_major), w, 0.0, c, s);
                        }
                    })
                });
                g.bench_function(BenchmarkId::new("grouped", &name), |bench| {
                    bench.iter(|| {
                        let mut parts: Vec<GroupPart<'_, f32>> = a
                            .iter()
                            .zip(&mut out)
                            .zip(&mut scratch)
                            .map(|((a, c), s)| GroupPart {
                                a: a_of(black_box(a), k, col_major),
                                c: MatMut::row_major(c, ROWS, n, n),
                                scratch: s,
                            })
                            .collect();
                        gemm_packed_group(arch, &mut parts, w, 0.0);
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, step_chunks);
criterion_main!(benches);
