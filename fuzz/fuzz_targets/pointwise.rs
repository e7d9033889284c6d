//! Every fused pointwise kernel, on every instruction set this CPU has, against its f64
//! reference, on arbitrary floats (any f32 bit pattern: NaN, infinities, denormals, 1e38)
//! and arbitrary sizes.
//!
//! In f64 the kernel must match the reference to the tests' tolerances (NaN where it has
//! NaN, the same infinities). In f32 it must match where the inputs are moderate (the f32
//! rounding model of the tests holds there); elsewhere it must only not crash.

#![no_main]

use fused_rnn_kernels::pointwise::gru::*;
use fused_rnn_kernels::pointwise::lstm::*;
use fused_rnn_kernels::pointwise::rnn::*;
use fused_rnn_kernels::testing::{cast, first_mismatch, product_tolerance, widen};
use fused_rnn_kernels::{Arch, Float, Nonlinearity, Rows, RowsMut, available_archs, reference};
use libfuzzer_sys::fuzz_target;

/// Floats drawn from the fuzzer's bytes, as f32 bit patterns widened to f64.
struct Floats<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Floats<'_> {
    fn take(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                if self.bytes.len() < 4 {
                    return 0.5;
                }
                let i = self.at % (self.bytes.len() - 3);
                self.at += 4;
                let b = &self.bytes[i..i + 4];
                f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            })
            .collect()
    }
}

/// Outputs of one kernel run, widened.
type Outs = Vec<(&'static str, Vec<f64>)>;

/// Runs kernel `which` in `T` on `arch` (or the reference when `arch` is `None`).
fn run<T: Reference>(
    which: u8,
    arch: Option<Arch>,
    b: usize,
    h: usize,
    inputs: &[Vec<f64>],
) -> Outs {
    let c = |i: usize| cast::<T>(&inputs[i]);
    match which % 10 {
        0 => {
            let (mut gates, bias, c_prev) = (c(0), c(1), c(2));
            let (mut cc, mut hh) = (vec![T::ZERO; b * h], vec![T::ZERO; b * h]);
            let args = LstmFwdPointwise {
                gates: RowsMut::contiguous(&mut gates, b, 4 * h),
                bias: &bias,
                c_prev: Rows::contiguous(&c_prev, b, h),
                c: RowsMut::contiguous(&mut cc, b, h),
                h: RowsMut::contiguous(&mut hh, b, h),
            };
            dispatch(arch, args, lstm_fwd_pointwise, T::lstm_fwd);
            vec![
                ("gates", widen(&gates)),
                ("c", widen(&cc)),
                ("h", widen(&hh)),
            ]
        }
        1 => {
            let (gates, c_prev, dh, dy, dc) = (c(0), c(2), c(3), c(4), c(5));
            let (mut dc_prev, mut dg) = (vec![T::ZERO; b * h], vec![T::ZERO; 4 * b * h]);
            let args = LstmBwdPointwise {
                gates: Rows::contiguous(&gates, b, 4 * h),
                c_prev: Rows::contiguous(&c_prev, b, h),
                dh: Rows::contiguous(&dh, b, h),
                dy: (inputs[6][0] > 0.0).then(|| Rows::contiguous(&dy, b, h)),
                dc: Rows::contiguous(&dc, b, h),
                dc_prev: RowsMut::contiguous(&mut dc_prev, b, h),
                d_gates: RowsMut::contiguous(&mut dg, b, 4 * h),
            };
            dispatch(arch, args, lstm_bwd_pointwise, T::lstm_bwd);
            vec![("dc_prev", widen(&dc_prev)), ("d_gates", widen(&dg))]
        }
        2 => {
            let (mut gates, hidden, bias, h_prev, bias_hn) = (c(0), c(7), c(1), c(2), c(8));
            let (mut hn, mut hh) = (vec![T::ZERO; b * h], vec![T::ZERO; b * h]);
            let args = GruFwdPointwise {
                gates: RowsMut::contiguous(&mut gates, b, 3 * h),
                hidden_gates: Rows::contiguous(&hidden, b, 3 * h),
                bias: &bias[..3 * h],
                bias_hn: &bias_hn,
                h_prev: Rows::contiguous(&h_prev, b, h),
                hn: RowsMut::contiguous(&mut hn, b, h),
                h: RowsMut::contiguous(&mut hh, b, h),
            };
            dispatch(arch, args, gru_fwd_pointwise, T::gru_fwd);
            vec![
                ("gates", widen(&gates)),
                ("hn", widen(&hn)),
                ("h", widen(&hh)),
            ]
        }
        3 => {
            let (gates, hn, h_prev, dh, dy) = (c(0), c(5), c(2), c(3), c(4));
            let (mut dg, mut dan, mut dhp) = (
                vec![T::ZERO; 3 * b * h],
                vec![T::ZERO; b * h],
                vec![T::ZERO; b * h],
            );
            let args = GruBwdPointwise {
                gates: Rows::contiguous(&gates, b, 3 * h),
                hn: Rows::contiguous(&hn, b, h),
                h_prev: Rows::contiguous(&h_prev, b, h),
                dh: Rows::contiguous(&dh, b, h),
                dy: (inputs[6][0] > 0.0).then(|| Rows::contiguous(&dy, b, h)),
                d_gates: RowsMut::contiguous(&mut dg, b, 3 * h),
                d_an: RowsMut::contiguous(&mut dan, b, h),
                dh_prev: RowsMut::contiguous(&mut dhp, b, h),
            };
            dispatch(arch, args, gru_bwd_pointwise, T::gru_bwd);
            vec![
                ("d_gates", widen(&dg)),
                ("d_an", widen(&dan)),
                ("dh_prev", widen(&dhp)),
            ]
        }
        4 => {
            let (mut gates, hidden, bias, h_prev) = (c(0), c(7), c(1), c(2));
            let mut rh = vec![T::ZERO; b * h];
            let args = GruFwdPointwiseGates {
                gates: RowsMut::contiguous(&mut gates, b, 3 * h),
                hidden_gates: Rows::contiguous(&hidden[..2 * b * h], b, 2 * h),
                bias: &bias[..3 * h],
                h_prev: Rows::contiguous(&h_prev, b, h),
                rh: RowsMut::contiguous(&mut rh, b, h),
            };
            dispatch(arch, args, gru_fwd_pointwise_gates, T::gru_fwd_gates);
            vec![("gates", widen(&gates)), ("rh", widen(&rh))]
        }
        5 => {
            let (mut gates, hidden_n, bias, bias_hn, h_prev) = (c(0), c(5), c(1), c(8), c(2));
            let mut hh = vec![T::ZERO; b * h];
            let args = GruFwdPointwiseOut {
                gates: RowsMut::contiguous(&mut gates, b, 3 * h),
                hidden_n: Rows::contiguous(&hidden_n, b, h),
                bias: &bias[..3 * h],
                bias_hn: &bias_hn,
                h_prev: Rows::contiguous(&h_prev, b, h),
                h: RowsMut::contiguous(&mut hh, b, h),
            };
            dispatch(arch, args, gru_fwd_pointwise_out, T::gru_fwd_out);
            vec![("gates", widen(&gates)), ("h", widen(&hh))]
        }
        6 => {
            let (gates, h_prev, dh, dy) = (c(0), c(2), c(3), c(4));
            let (mut dg, mut dhp) = (vec![T::ZERO; 3 * b * h], vec![T::ZERO; b * h]);
            let args = GruBwdPointwiseOut {
                gates: Rows::contiguous(&gates, b, 3 * h),
                h_prev: Rows::contiguous(&h_prev, b, h),
                dh: Rows::contiguous(&dh, b, h),
                dy: (inputs[6][0] > 0.0).then(|| Rows::contiguous(&dy, b, h)),
                d_gates: RowsMut::contiguous(&mut dg, b, 3 * h),
                dh_prev: RowsMut::contiguous(&mut dhp, b, h),
            };
            dispatch(arch, args, gru_bwd_pointwise_out, T::gru_bwd_out);
            vec![("d_gates", widen(&dg)), ("dh_prev", widen(&dhp))]
        }
        7 => {
            let (gates, h_prev, d_rh) = (c(0), c(2), c(3));
            let (mut dg, mut dhp) = (c(9), c(5));
            let args = GruBwdPointwiseGates {
                gates: Rows::contiguous(&gates, b, 3 * h),
                h_prev: Rows::contiguous(&h_prev, b, h),
                d_rh: Rows::contiguous(&d_rh, b, h),
                d_gates: RowsMut::contiguous(&mut dg, b, 3 * h),
                dh_prev: RowsMut::contiguous(&mut dhp, b, h),
            };
            dispatch(arch, args, gru_bwd_pointwise_gates, T::gru_bwd_gates);
            vec![("d_gates", widen(&dg)), ("dh_prev", widen(&dhp))]
        }
        w => {
            let nonlinearity = if w == 8 {
                Nonlinearity::Tanh
            } else {
                Nonlinearity::Relu
            };
            let (mut gates, bias, dh, dy) = (c(2), c(3), c(4), c(5));
            let mut hh = vec![T::ZERO; b * h];
            let args = RnnFwdPointwise {
                gates: RowsMut::contiguous(&mut gates, b, h),
                bias: &bias[..h],
                nonlinearity,
                h: RowsMut::contiguous(&mut hh, b, h),
            };
            dispatch(arch, args, rnn_fwd_pointwise, T::rnn_fwd);
            let mut dg = vec![T::ZERO; b * h];
            let args = RnnBwdPointwise {
                gates: Rows::contiguous(&gates, b, h),
                dh: Rows::contiguous(&dh, b, h),
                dy: (inputs[6][0] > 0.0).then(|| Rows::contiguous(&dy, b, h)),
                nonlinearity,
                d_gates: RowsMut::contiguous(&mut dg, b, h),
            };
            dispatch(arch, args, rnn_bwd_pointwise, T::rnn_bwd);
            vec![("h", widen(&hh)), ("d_gates", widen(&dg))]
        }
    }
}

/// The references exist in f64 only; `run` calls them (arch `None`) for `f64` alone.
macro_rules! references {
    ($($name:ident: $args:ident => $f:path),* $(,)?) => {
        trait Reference: Float {
            $(fn $name(args: $args<'_, Self>);)*
        }
        impl Reference for f64 {
            $(fn $name(args: $args<'_, f64>) { $f(args) })*
        }
        impl Reference for f32 {
            $(fn $name(_: $args<'_, f32>) { unreachable!("references run in f64") })*
        }
    };
}

references!(
    lstm_fwd: LstmFwdPointwise => reference::lstm::lstm_fwd_pointwise,
    lstm_bwd: LstmBwdPointwise => reference::lstm::lstm_bwd_pointwise,
    gru_fwd: GruFwdPointwise => reference::gru::gru_fwd_pointwise,
    gru_bwd: GruBwdPointwise => reference::gru::gru_bwd_pointwise,
    gru_fwd_gates: GruFwdPointwiseGates => reference::gru::gru_fwd_pointwise_gates,
    gru_fwd_out: GruFwdPointwiseOut => reference::gru::gru_fwd_pointwise_out,
    gru_bwd_out: GruBwdPointwiseOut => reference::gru::gru_bwd_pointwise_out,
    gru_bwd_gates: GruBwdPointwiseGates => reference::gru::gru_bwd_pointwise_gates,
    rnn_fwd: RnnFwdPointwise => reference::rnn::rnn_fwd_pointwise,
    rnn_bwd: RnnBwdPointwise => reference::rnn::rnn_bwd_pointwise,
);

/// Runs `args` through the kernel on `arch`, or through the reference when `arch` is `None`.
fn dispatch<A>(arch: Option<Arch>, args: A, kernel: fn(Arch, A), reference: fn(A)) {
    match arch {
        Some(arch) => kernel(arch, args),
        None => reference(args),
    }
}

/// What a gate block holds in a kernel's contract.
#[derive(Clone, Copy)]
enum Gate {
    /// A pre-activation: any float.
    Raw,
    /// A sigmoid output, in [0, 1].
    Sigmoid,
    /// A tanh output, in [-1, 1].
    Tanh,
}

/// Brings the gate blocks of `gates` (`[B][G*H]` with `G = kinds.len()`) into the range the
/// kernel's contract promises (backward kernels read activations the forward saved): the
/// activation of the raw value, rounded to f32. NaN stays NaN.
fn in_contract(gates: &mut [f64], b: usize, h: usize, kinds: &[Gate]) {
    let g = kinds.len();
    for row in 0..b {
        for (k, kind) in kinds.iter().enumerate() {
            for v in &mut gates[row * g * h + k * h..][..h] {
                *v = match kind {
                    Gate::Raw => *v,
                    Gate::Sigmoid => (1.0 / (1.0 + (-*v).exp())) as f32 as f64,
                    Gate::Tanh => v.tanh() as f32 as f64,
                };
            }
        }
    }
}

/// The gate blocks kernel `which` reads as activations.
fn gate_kinds(which: u8) -> &'static [Gate] {
    use Gate::*;
    match which % 10 {
        1 => &[Sigmoid, Sigmoid, Tanh, Sigmoid],
        3 | 6 | 7 => &[Sigmoid, Sigmoid, Tanh],
        5 => &[Sigmoid, Sigmoid, Raw],
        _ => &[],
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (which, b, h) = (data[0], 1 + data[1] as usize % 5, 1 + data[2] as usize % 40);
    let mut floats = Floats {
        bytes: &data[3..],
        at: 0,
    };
    // Every input any kernel takes, sized for the largest use (4 gates).
    let n = b * h;
    let mut inputs: Vec<Vec<f64>> = [4 * n, 4 * h, n, n, n, n, 1, 3 * n, h, 3 * n]
        .iter()
        .map(|&len| floats.take(len))
        .collect();
    in_contract(&mut inputs[0], b, h, gate_kinds(which));
    let want = run::<f64>(which, None, b, h, &inputs);
    let all: Vec<&[f64]> = inputs.iter().map(|v| &v[..]).collect();
    // f32 is held to the reference only on moderate inputs: finite, at most 1e6, and 0 or at
    // least 1e-6, so that no sum or product lands among the denormals the kernels flush to
    // zero (a flushed relu output has derivative 0 where f64 sees 1).
    let moderate = inputs
        .iter()
        .flatten()
        .all(|v| v.is_finite() && v.abs() <= 1e6 && (*v == 0.0 || v.abs() >= 1e-6));
    for arch in available_archs() {
        let got = run::<f64>(which, Some(arch), b, h, &inputs);
        let (abs, rel) = product_tolerance::<f64>(&all, &all);
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            if let Some((i, g, w)) = first_mismatch(g, w, abs, rel) {
                panic!(
                    "kernel {} f64 {arch:?} b={b} h={h}: {name}[{i}] = {g:e}, reference {w:e}",
                    which % 10
                );
            }
        }
        let got32 = run::<f32>(which, Some(arch), b, h, &inputs);
        if moderate && want.iter().all(|(_, w)| w.iter().all(|v| v.abs() < 1e30)) {
            let (abs, rel) = product_tolerance::<f32>(&all, &all);
            for ((name, g), (_, w)) in got32.iter().zip(&want) {
                if let Some((i, g, w)) = first_mismatch(g, w, abs, rel) {
                    panic!(
                        "kernel {} f32 {arch:?} b={b} h={h}: {name}[{i}] = {g:e}, reference {w:e}",
                        which % 10
                    );
                }
            }
        }
    }
});
