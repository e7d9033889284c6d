//! Helpers shared by the integration tests: random module cases, and runners that put a case
//! through this crate (in f32 or f64, either layout) and through the f64 reference.
#![allow(dead_code)]

use fused_rnn::{
    Backward, CellKind, Config, Float, Input, Params, Recurrent, Reserve, SeqLayout, SeqShape,
    State, Workspace,
};
use fused_rnn_kernels::reference::module::{ModuleSpec, module_backward, module_forward};
use fused_rnn_kernels::reference::seq::SeqParams;
use fused_rnn_kernels::testing::SplitMix;
use proptest::prelude::*;

/// A module, its inputs and the gradients arriving from the loss; all f64, time-major.
#[derive(Clone, Debug)]
pub struct Case {
    pub config: Config,
    pub shape: SeqShape,
    pub params: Params<f64>,
    pub x: Vec<f64>,
    pub h0: Vec<f64>,
    pub c0: Vec<f64>,
    pub lengths: Option<Vec<usize>>,
    pub resets: Option<Vec<bool>>,
    pub dy: Vec<f64>,
    pub dh_n: Vec<f64>,
    pub dc_n: Vec<f64>,
}

/// What a run produces, as f64 and time-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub y: Vec<f64>,
    pub h_n: Vec<f64>,
    pub c_n: Vec<f64>,
    /// Per tensor, in `state_dict` order.
    pub grads: Vec<(String, Vec<f64>)>,
    pub dx: Vec<f64>,
    pub dh0: Vec<f64>,
    pub dc0: Vec<f64>,
}

impl Case {
    /// A case drawn from `seed` for `config` and `shape`; `lengths`/`resets` add those.
    pub fn random(config: Config, shape: SeqShape, seed: u64, lengths: bool, resets: bool) -> Self {
        let mut rng = SplitMix::new(seed);
        let params = Params::<f64>::init(&config, seed).expect("valid config");
        let (t, b) = (shape.steps, shape.batch);
        let (hl, cl) = State::<f64>::lens(&config, b);
        let lengths = lengths.then(|| {
            (0..b)
                .map(|_| (rng.next_u64() % (t as u64 + 1)) as usize)
                .collect()
        });
        let resets = resets.then(|| {
            (0..t * b)
                .map(|_| rng.next_u64().is_multiple_of(4))
                .collect()
        });
        Case {
            x: rng.vec(t * b * config.input_size, 1.0),
            h0: rng.vec(hl, 0.8),
            c0: rng.vec(cl, 0.8),
            dy: rng.vec(t * b * config.output_size(), 1.0),
            dh_n: rng.vec(hl, 1.0),
            dc_n: rng.vec(cl, 1.0),
            config,
            shape,
            params,
            lengths,
            resets,
        }
    }

    /// The reference module's shape.
    pub fn spec(&self) -> ModuleSpec {
        let c = &self.config;
        ModuleSpec {
            cell: c.cell,
            input_size: c.input_size,
            hidden_size: c.hidden_size,
            proj_size: c.proj_size,
            layers: c.num_layers,
            dirs: c.directions(),
            steps: self.shape.steps,
            batch: self.shape.batch,
        }
    }

    /// The reference parameters per (layer, dir).
    pub fn seq_params(&self) -> Vec<SeqParams> {
        let c = &self.config;
        (0..c.num_layers)
            .flat_map(|l| (0..c.directions()).map(move |d| (l, d)))
            .map(|(l, d)| {
                let p = self.params.layer(l, d);
                SeqParams {
                    w_ih: p.w_ih.to_vec(),
                    w_hh: p.w_hh.to_vec(),
                    b_ih: p.b_ih.map(<[f64]>::to_vec),
                    b_hh: p.b_hh.map(<[f64]>::to_vec),
                    w_hr: p.w_hr.map(<[f64]>::to_vec),
                }
            })
            .collect()
    }
}

/// `[T][B][F]` to `[B][T][F]` or back (swap `outer` and `inner`).
pub fn transpose(src: &[f64], outer: usize, inner: usize, width: usize) -> Vec<f64> {
    let mut dst = vec![0.0; src.len()];
    for o in 0..outer {
        for i in 0..inner {
            let (from, to) = ((o * inner + i) * width, (i * outer + o) * width);
            dst[to..to + width].copy_from_slice(&src[from..from + width]);
        }
    }
    dst
}

pub fn cast<T: Float>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

pub fn widen<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// The case's module in `T`, and its x in the configured layout.
pub fn module_and_x<T: Float>(case: &Case) -> (Recurrent<T>, Vec<T>) {
    let c = &case.config;
    let params = Params::<T>::from_named(
        c,
        case.params.iter().map(|t| {
            (
                t.name().to_string(),
                t.shape().to_vec(),
                cast::<T>(t.data()),
            )
        }),
    )
    .expect("same tensors");
    let module = Recurrent::new(c.clone(), params).expect("valid");
    let x = if c.layout == SeqLayout::BatchMajor {
        transpose(&case.x, case.shape.steps, case.shape.batch, c.input_size)
    } else {
        case.x.clone()
    };
    (module, cast(&x))
}

/// The case's input over `x`, with its lengths and resets.
fn input_of<'a, T>(case: &'a Case, x: &'a [T]) -> Input<'a, T> {
    with_masks(case, Input::new(x, case.shape))
}

/// `input` with the case's lengths and resets.
pub fn with_masks<'a, T>(case: &'a Case, mut input: Input<'a, T>) -> Input<'a, T> {
    if let Some(l) = &case.lengths {
        input = input.with_lengths(l);
    }
    if let Some(r) = &case.resets {
        input = input.with_resets(r);
    }
    input
}

/// Runs the case's forward for inference: y (in the configured layout), then h_n and c_n.
pub fn run_ours_inference<T: Float>(case: &Case) -> Vec<f64> {
    let (module, x) = module_and_x::<T>(case);
    let mut state = State {
        h: cast::<T>(&case.h0),
        c: cast::<T>(&case.c0),
    };
    let (t, b) = (case.shape.steps, case.shape.batch);
    let mut y = vec![T::NAN; t * b * case.config.output_size()];
    module
        .forward(
            input_of(case, &x),
            &mut state,
            &mut y,
            &mut Workspace::new(),
        )
        .expect("forward");
    [y, state.h, state.c]
        .iter()
        .flat_map(|v| widen(v))
        .collect()
}

/// Runs the case through this crate in `T`, in the case's layout, with `dx` requested.
pub fn run_ours<T: Float>(case: &Case) -> Outcome {
    let (module, x) = module_and_x::<T>(case);
    let mut out = train_on(case, &module, input_of(case, &x), x.len());
    out.dx = from_layout(case, &out.dx, case.config.input_size);
    out
}

/// `[T][B][w]` values in the case's layout.
pub fn to_layout(case: &Case, v: &[f64], w: usize) -> Vec<f64> {
    let (t, b) = (case.shape.steps, case.shape.batch);
    match case.config.layout {
        SeqLayout::BatchMajor => transpose(v, t, b, w),
        SeqLayout::TimeMajor => v.to_vec(),
    }
}

/// Values in the case's layout back to `[T][B][w]`.
pub fn from_layout(case: &Case, v: &[f64], w: usize) -> Vec<f64> {
    let (t, b) = (case.shape.steps, case.shape.batch);
    match case.config.layout {
        SeqLayout::BatchMajor => transpose(v, b, t, w),
        SeqLayout::TimeMajor => v.to_vec(),
    }
}

/// `forward_train` then `backward` of `module` on `input` from the case's state, with its
/// dL/dy, dL/d(final state) and a `dx` of `dx_len` asked for; y comes back time-major, dx
/// as `backward` wrote it.
pub fn train_on<T: Float>(
    case: &Case,
    module: &Recurrent<T>,
    input: Input<'_, T>,
    dx_len: usize,
) -> Outcome {
    let c = &case.config;
    let (t, b) = (case.shape.steps, case.shape.batch);
    let mut state = State {
        h: cast::<T>(&case.h0),
        c: cast::<T>(&case.c0),
    };
    let mut y = vec![T::NAN; t * b * c.output_size()];
    let (mut reserve, mut ws) = (Reserve::new(), Workspace::new());
    module
        .forward_train(input, &mut state, &mut y, &mut reserve, &mut ws)
        .expect("forward_train");
    let dy: Vec<T> = cast(&to_layout(case, &case.dy, c.output_size()));
    let mut d_state = State {
        h: cast::<T>(&case.dh_n),
        c: cast::<T>(&case.dc_n),
    };
    let mut grads = module.zero_grads();
    let mut dx = vec![T::NAN; dx_len];
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    module
        .backward(input, &dy, &mut reserve, out, &mut ws)
        .expect("backward");
    Outcome {
        y: from_layout(case, &widen(&y), c.output_size()),
        h_n: widen(&state.h),
        c_n: widen(&state.c),
        grads: grads
            .iter()
            .map(|t| (t.name().to_string(), widen(t.data())))
            .collect(),
        dx: widen(&dx),
        dh0: widen(&d_state.h),
        dc0: widen(&d_state.c),
    }
}

/// A ReLU pre-activation closer to 0 than this may round to the other side in f32: ten
/// times the f32 error of a pre-activation (sums of ~20 products of O(1), each state
/// itself carrying f32 error from the step before).
pub const RELU_KINK: f64 = 1e-5;

/// Whether f32 may take the other side of a ReLU unit's kink in `case` (its pre-activation
/// within f32's rounding of 0): the gradients then differ by a weight, not by rounding, so
/// such a case is compared in f64 only.
pub fn f32_may_cross_a_relu_kink(case: &Case) -> bool {
    relu_margin(case) < RELU_KINK
}

/// The smallest |pre-activation| of a ReLU unit in the reference's forward pass of `case`
/// (infinity for other cells).
pub fn relu_margin(case: &Case) -> f64 {
    let (l, r) = (case.lengths.as_deref(), case.resets.as_deref());
    module_forward(
        &case.spec(),
        &case.seq_params(),
        &case.x,
        &case.h0,
        &case.c0,
        l,
        r,
    )
    .relu_margin()
}

/// Runs the case through the f64 reference.
pub fn run_reference(case: &Case) -> Outcome {
    let spec = case.spec();
    let sp = case.seq_params();
    let (l, r) = (case.lengths.as_deref(), case.resets.as_deref());
    let f = module_forward(&spec, &sp, &case.x, &case.h0, &case.c0, l, r);
    let g = module_backward(&spec, &sp, &f, &case.dy, &case.dh_n, &case.dc_n, l, r);
    let mut grads = Vec::new();
    for (p, gp) in case.params.iter().zip(
        g.params
            .iter()
            .flat_map(|g| {
                [
                    Some(&g.w_ih),
                    Some(&g.w_hh),
                    g.b_ih.as_ref(),
                    g.b_hh.as_ref(),
                    g.w_hr.as_ref(),
                ]
            })
            .flatten(),
    ) {
        grads.push((p.name().to_string(), gp.clone()));
    }
    Outcome {
        y: f.y,
        h_n: f.h_n,
        c_n: f.c_n,
        grads,
        dx: g.dx,
        dh0: g.dh0,
        dc0: g.dc0,
    }
}

/// Fails with the first element of `got` that differs from `want` beyond `(abs, rel)`.
pub fn compare(got: &Outcome, want: &Outcome, tol: (f64, f64)) -> Result<(), TestCaseError> {
    use fused_rnn_kernels::testing::check_close;
    check_close("y", &got.y, &want.y, tol)?;
    check_close("h_n", &got.h_n, &want.h_n, tol)?;
    check_close("c_n", &got.c_n, &want.c_n, tol)?;
    check_close("dx", &got.dx, &want.dx, tol)?;
    check_close("dh0", &got.dh0, &want.dh0, tol)?;
    check_close("dc0", &got.dc0, &want.dc0, tol)?;
    prop_assert_eq!(got.grads.len(), want.grads.len());
    for ((name, g), (wname, w)) in got.grads.iter().zip(&want.grads) {
        prop_assert_eq!(name, wname);
        check_close(name, g, w, tol)?;
    }
    Ok(())
}

/// Random module configurations and shapes: every cell, 1-3 layers, either direction count,
/// with or without bias, projection (LSTM), either layout; sizes that are not multiples of
/// any SIMD width.
pub fn config_and_shape() -> impl Strategy<Value = (Config, SeqShape)> {
    let cells = prop::sample::select(CellKind::ALL.to_vec());
    (
        cells,
        1usize..8,
        1usize..8,
        1usize..4,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0usize..6,
        1usize..4,
        0usize..3,
    )
        .prop_map(
            |(cell, input, hidden, layers, bidir, bias, batch_major, steps, batch, proj)| {
                let proj = if cell == CellKind::Lstm && hidden > 1 {
                    proj.min(hidden - 1)
                } else {
                    0
                };
                let layout = if batch_major {
                    SeqLayout::BatchMajor
                } else {
                    SeqLayout::TimeMajor
                };
                let config = Config::lstm(input, hidden)
                    .with_cell(cell)
                    .with_layers(layers)
                    .with_bidirectional(bidir)
                    .with_bias(bias)
                    .with_proj_size(proj)
                    .with_layout(layout);
                (config, SeqShape::new(steps, batch))
            },
        )
}
