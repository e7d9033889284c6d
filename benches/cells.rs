//! The pointwise passes per cell, forward and backward: the native SIMD path, the forced
//! scalar path and the f64 reference side by side (pulp's `dot_product` layout), throughput
//! in elements (batch * hidden units). The reference runs only at the small size.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fused_rnn_kernels::pointwise::gru::{
    GruBwdPointwise, GruBwdPointwiseInPlace, GruFwdPointwise, gru_bwd_pointwise,
    gru_bwd_pointwise_in_place, gru_fwd_pointwise,
};
use fused_rnn_kernels::pointwise::lstm::{
    LstmBwdPointwise, LstmBwdPointwiseInPlace, LstmFwdPointwise, lstm_bwd_pointwise,
    lstm_bwd_pointwise_in_place, lstm_fwd_pointwise,
};
use fused_rnn_kernels::pointwise::rnn::{
    RnnBwdPointwise, RnnFwdPointwise, rnn_bwd_pointwise, rnn_fwd_pointwise,
};
use fused_rnn_kernels::reference;
use fused_rnn_kernels::{Arch, Nonlinearity, Rows, RowsMut};

/// (batch, hidden): a small and a DeepBench-sized step.
const SIZES: [(usize, usize); 2] = [(4, 64), (32, 1024)];

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 2000) as f32 / 500.0 - 2.0)
        .collect()
}

fn paths() -> Vec<(&'static str, Arch)> {
    vec![
        ("native", fused_rnn_kernels::arch()),
        ("scalar", Arch::Scalar),
    ]
}

fn lstm(c: &mut Criterion) {
    let mut g = c.benchmark_group("lstm_pointwise");
    for (b, h) in SIZES {
        g.throughput(Throughput::Elements((b * h) as u64));
        let (pre, bias, c_prev) = (data(b * 4 * h), data(4 * h), data(b * h));
        let (mut gates, mut cc, mut hh) = (pre.clone(), vec![0.0; b * h], vec![0.0; b * h]);
        for (name, arch) in paths() {
            g.bench_function(
                BenchmarkId::new(format!("fwd/{name}"), format!("{b}x{h}")),
                |bn| {
                    bn.iter(|| {
                        gates.copy_from_slice(&pre);
                        lstm_fwd_pointwise(
                            arch,
                            LstmFwdPointwise {
                                gates: RowsMut::contiguous(&mut gates, b, 4 * h),
                                bias: &bias,
                                c_prev: Rows::contiguous(&c_prev, b, h),
                                c: RowsMut::contiguous(&mut cc, b, h),
                                h: RowsMut::contiguous(&mut hh, b, h),
                            },
                        )
                    })
                },
            );
        }
        let (dh, dc) = (data(b * h), data(b * h));
        let (mut dc_prev, mut dg) = (vec![0.0; b * h], vec![0.0; b * 4 * h]);
        for (name, arch) in paths() {
            g.bench_function(
                BenchmarkId::new(format!("bwd/{name}"), format!("{b}x{h}")),
                |bn| {
                    bn.iter(|| {
                        lstm_bwd_pointwise(
                            arch,
                            LstmBwdPointwise {
                                gates: Rows::contiguous(&gates, b, 4 * h),
                                c_prev: Rows::contiguous(&c_prev, b, h),
                                dh: Rows::contiguous(&dh, b, h),
                                dy: None,
                                dc: Rows::contiguous(&dc, b, h),
                                dc_prev: RowsMut::contiguous(&mut dc_prev, b, h),
                                d_gates: RowsMut::contiguous(&mut dg, b, 4 * h),
                            },
                        )
                    })
                },
            );
            // Over the gates, as training runs it; each run first copies the gates back in.
            g.bench_function(
                BenchmarkId::new(format!("bwd_in_place/{name}"), format!("{b}x{h}")),
                |bn| {
                    bn.iter(|| {
                        dg.copy_from_slice(&gates);
                        lstm_bwd_pointwise_in_place(
                            arch,
                            LstmBwdPointwiseInPlace {
                                gates: RowsMut::contiguous(&mut dg, b, 4 * h),
                                c_prev: Rows::contiguous(&c_prev, b, h),
                                dh: Rows::contiguous(&dh, b, h),
                                dy: None,
                                dc: Rows::contiguous(&dc, b, h),
                                dc_prev: RowsMut::contiguous(&mut dc_prev, b, h),
                            },
                        )
                    })
                },
            );
        }
        if b * h <= 256 {
            let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
            let (pre64, bias64, c64) = (widen(&pre), widen(&bias), widen(&c_prev));
            let (mut g64, mut cc64, mut hh64) = (pre64.clone(), vec![0.0; b * h], vec![0.0; b * h]);
            g.bench_function(
                BenchmarkId::new("fwd/reference", format!("{b}x{h}")),
                |bn| {
                    bn.iter(|| {
                        g64.copy_from_slice(&pre64);
                        reference::lstm::lstm_fwd_pointwise(LstmFwdPointwise {
                            gates: RowsMut::contiguous(&mut g64, b, 4 * h),
                            bias: &bias64,
                            c_prev: Rows::contiguous(&c64, b, h),
                            c: RowsMut::contiguous(&mut cc64, b, h),
                            h: RowsMut::contiguous(&mut hh64, b, h),
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

fn gru(c: &mut Criterion) {
    let mut g = c.benchmark_group("gru_pointwise");
    for (b, h) in SIZES {
        g.throughput(Throughput::Elements((b * h) as u64));
        let (pre, hg, bias, bias_hn, h_prev) = (
            data(b * 3 * h),
            data(b * 3 * h),
            data(3 * h),
            data(h),
            data(b * h),
        );
        let (mut gates, mut hn, mut hh) = (pre.clone(), vec![0.0; b * h], vec![0.0; b * h]);
        for (name, arch) in paths() {
            g.bench_function(
                BenchmarkId::new(format!("fwd/{name}"), format!("{b}x{h}")),
                |bn| {
                    bn.iter(|| {
                        gates.copy_from_slice(&pre);
                        gru_fwd_pointwise(
                            arch,
                            GruFwdPointwise {
                                gates: RowsMut::contiguous(&mut gates, b, 3 * h),
                                hidden_gates: Rows::contiguous(&hg, b, 3 * h),
                                bias: &bias,
                                bias_hn: &bias_hn,
                                h_prev: Rows::contiguous(&h_prev, b, h),
                                hn: RowsMut::contiguous(&mut hn, b, h),
                                h: RowsMut::contiguous(&mut hh, b, h),
                            },
                        )
                    })
                },
            );
        }
        let dh = data(b * h);
        let (mut dg, mut dan, mut dhp) = (vec![0.0; b * 3 * h], vec![0.0; b * h], vec![0.0; b * h]);
        for (name, arch) in paths() {
            g.bench_function(
                BenchmarkId::new(format!("bwd/{name}"), format!("{b}x{h}")),
                |bn| {
                    bn.iter(|| {
                        gru_bwd_pointwise(
                            arch,
                            GruBwdPointwise {
                                gates: Rows::contiguous(&gates, b, 3 * h),
                                hn: Rows::contiguous(&hn, b, h),
                                h_prev: Rows::contiguous(&h_prev, b, h),
                                dh: Rows::contiguous(&dh, b, h),
                                dy: None,
                                d_gates: RowsMut::contiguous(&mut dg, b, 3 * h),
                                d_an: RowsMut::contiguous(&mut dan, b, h),
                                dh_prev: RowsMut::contiguous(&mut dhp, b, h),
                            },
                        )
                    })
                },
            );
            // Over the gates, as training runs it; each run first copies the gates back in.
            g.bench_function(
                BenchmarkId::new(format!("bwd_in_place/{name}"), format!("{b}x{h}")),
                |bn| {
                    bn.iter(|| {
                        dg.copy_from_slice(&gates);
                        gru_bwd_pointwise_in_place(
                            arch,
                            GruBwdPointwiseInPlace {
                                gates: RowsMut::contiguous(&mut dg, b, 3 * h),
                                hn: Rows::contiguous(&hn, b, h),
                                h_prev: Rows::contiguous(&h_prev, b, h),
                                dh: Rows::contiguous(&dh, b, h),
                                dy: None,
                                d_an: RowsMut::contiguous(&mut dan, b, h),
                                dh_prev: RowsMut::contiguous(&mut dhp, b, h),
                            },
                        )
                    })
                },
            );
        }
    }
    g.finish();
}

fn rnn(c: &mut Criterion) {
    let mut g = c.benchmark_group("rnn_pointwise");
    for (b, h) in SIZES {
        g.throughput(Throughput::Elements((b * h) as u64));
        let (pre, bias, dh) = (data(b * h), data(h), data(b * h));
        let (mut gates, mut hh, mut dg) = (pre.clone(), vec![0.0; b * h], vec![0.0; b * h]);
        for (name, arch) in paths() {
            g.bench_function(
                BenchmarkId::new(format!("fwd/{name}"), format!("{b}x{h}")),
                |bn| {
                    bn.iter(|| {
                        gates.copy_from_slice(&pre);
                        rnn_fwd_pointwise(
                            arch,
                            RnnFwdPointwise {
                                gates: RowsMut::contiguous(&mut gates, b, h),
                                bias: &bias,
                                nonlinearity: Nonlinearity::Tanh,
                                h: RowsMut::contiguous(&mut hh, b, h),
                            },
                        )
                    })
                },
            );
            g.bench_function(
                BenchmarkId::new(format!("bwd/{name}"), format!("{b}x{h}")),
                |bn| {
                    bn.iter(|| {
                        rnn_bwd_pointwise(
                            arch,
                            RnnBwdPointwise {
                                gates: Rows::contiguous(&gates, b, h),
                                dh: Rows::contiguous(&dh, b, h),
                                dy: None,
                                nonlinearity: Nonlinearity::Tanh,
                                d_gates: RowsMut::contiguous(&mut dg, b, h),
                            },
                        )
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, lstm, gru, rnn);
criterion_main!(benches);
