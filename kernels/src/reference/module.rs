//! Whole-module reference: stacked layers and both directions composed from
//! [`super::seq`], as PyTorch composes them: each layer reads the concatenated
//! `[forward, reverse]` outputs of the layer below; states are `[L*D][B][..]`.
//! Time-major throughout; no dropout (tests with dropout fix the masks themselves).

use super::seq::{SeqForward, SeqOptions, SeqParams, SeqSpec, seq_backward, seq_forward};
use crate::cell::CellKind;

/// A module's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleSpec {
    /// The cell.
    pub cell: CellKind,
    /// Input features of layer 0.
    pub input_size: usize,
    /// Hidden units.
    pub hidden_size: usize,
    /// LSTM projection (0 for none).
    pub proj_size: usize,
    /// Stacked layers.
    pub layers: usize,
    /// 1 or 2.
    pub dirs: usize,
    /// Steps.
    pub steps: usize,
    /// Sequences.
    pub batch: usize,
}

impl ModuleSpec {
    /// Width of h: P or H.
    pub fn hout(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }
    /// The spec of layer `layer`'s directions.
    pub fn layer(&self, layer: usize) -> SeqSpec {
        SeqSpec {
            cell: self.cell,
            input_size: if layer == 0 {
                self.input_size
            } else {
                self.dirs * self.hout()
            },
            hidden_size: self.hidden_size,
            proj_size: self.proj_size,
            steps: self.steps,
            batch: self.batch,
        }
    }
}

/// Forward results: outputs `[T][B][D*Hout]`, final states `[L*D][B][..]`, and what backward
/// needs.
#[derive(Clone, Debug)]
pub struct ModuleForward {
    /// Top layer outputs.
    pub y: Vec<f64>,
    /// `[L*D][B][Hout]`.
    pub h_n: Vec<f64>,
    /// `[L*D][B][H]` (LSTM).
    pub c_n: Vec<f64>,
    inputs: Vec<Vec<f64>>,
    runs: Vec<SeqForward>,
}

impl ModuleForward {
    /// [`SeqForward::relu_margin`](super::seq::SeqForward::relu_margin) over every layer
    /// and direction.
    pub fn relu_margin(&self) -> f64 {
        self.runs
            .iter()
            .map(SeqForward::relu_margin)
            .fold(f64::INFINITY, f64::min)
    }
}

/// Gradients: per (layer, dir) in `state_dict` order, plus dx and the initial state's.
#[derive(Clone, Debug)]
pub struct ModuleGrads {
    /// Per (layer, dir).
    pub params: Vec<super::seq::SeqGrads>,
    /// `[T][B][I]`.
    pub dx: Vec<f64>,
    /// `[L*D][B][Hout]`.
    pub dh0: Vec<f64>,
    /// `[L*D][B][H]`.
    pub dc0: Vec<f64>,
}

fn state_rows(v: &[f64], index: usize, rows: usize, width: usize) -> &[f64] {
    &v[index * rows * width..(index + 1) * rows * width]
}

/// Runs the module: `params[layer * dirs + dir]`, `x` `[T][B][I]`, `h0`/`c0` `[L*D][B][..]`.
///
/// # Panics
/// If a buffer has the wrong length.
pub fn module_forward(
    spec: &ModuleSpec,
    params: &[SeqParams],
    x: &[f64],
    h0: &[f64],
    c0: &[f64],
    lengths: Option<&[usize]>,
    resets: Option<&[bool]>,
) -> ModuleForward {
    let (steps, batch, hout, h) = (spec.steps, spec.batch, spec.hout(), spec.hidden_size);
    let lstm = spec.cell.has_cell_state();
    let mut input = x.to_vec();
    let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
    let (mut inputs, mut runs) = (Vec::new(), Vec::new());
    for layer in 0..spec.layers {
        let ls = spec.layer(layer);
        let mut out = vec![0.0; steps * batch * spec.dirs * hout];
        for dir in 0..spec.dirs {
            let idx = layer * spec.dirs + dir;
            let opts = SeqOptions {
                lengths,
                resets,
                reverse: dir == 1,
            };
            let c0_rows = if lstm {
                state_rows(c0, idx, batch, h)
            } else {
                &[][..]
            };
            let run = seq_forward(
                &ls,
                &params[idx],
                &input,
                state_rows(h0, idx, batch, hout),
                c0_rows,
                opts,
            );
            for tb in 0..steps * batch {
                let dst = tb * spec.dirs * hout + dir * hout;
                out[dst..dst + hout].copy_from_slice(&run.y[tb * hout..(tb + 1) * hout]);
            }
            h_n.extend_from_slice(&run.h_n);
            c_n.extend_from_slice(&run.c_n);
            runs.push(run);
        }
        inputs.push(std::mem::replace(&mut input, out));
    }
    ModuleForward {
        y: input,
        h_n,
        c_n,
        inputs,
        runs,
    }
}

/// Backpropagates through [`module_forward`]: `dy` `[T][B][D*Hout]`, `dh_n`/`dc_n`
/// `[L*D][B][..]`.
///
/// # Panics
/// If a buffer has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn module_backward(
    spec: &ModuleSpec,
    params: &[SeqParams],
    fwd: &ModuleForward,
    dy: &[f64],
    dh_n: &[f64],
    dc_n: &[f64],
    lengths: Option<&[usize]>,
    resets: Option<&[bool]>,
) -> ModuleGrads {
    let (steps, batch, hout, h) = (spec.steps, spec.batch, spec.hout(), spec.hidden_size);
    let lstm = spec.cell.has_cell_state();
    let n = spec.layers * spec.dirs;
    let mut grads: Vec<Option<super::seq::SeqGrads>> = vec![None; n];
    let mut dh0 = vec![0.0; n * batch * hout];
    let mut dc0 = vec![0.0; if lstm { n * batch * h } else { 0 }];
    let mut d_out = dy.to_vec();
    for layer in (0..spec.layers).rev() {
        let ls = spec.layer(layer);
        let mut d_in = vec![0.0; steps * batch * ls.input_size];
        for dir in 0..spec.dirs {
            let idx = layer * spec.dirs + dir;
            let opts = SeqOptions {
                lengths,
                resets,
                reverse: dir == 1,
            };
            let dy_dir: Vec<f64> = (0..steps * batch)
                .flat_map(|tb| {
                    let at = tb * spec.dirs * hout + dir * hout;
                    d_out[at..at + hout].to_vec()
                })
                .collect();
            let dc = if lstm {
                state_rows(dc_n, idx, batch, h)
            } else {
                &[][..]
            };
            let g = seq_backward(
                &ls,
                &params[idx],
                &fwd.inputs[layer],
                &fwd.runs[idx],
                &dy_dir,
                state_rows(dh_n, idx, batch, hout),
                dc,
                opts,
            );
            for (a, b) in d_in.iter_mut().zip(&g.dx) {
                *a += b;
            }
            dh0[idx * batch * hout..(idx + 1) * batch * hout].copy_from_slice(&g.dh0);
            if lstm {
                dc0[idx * batch * h..(idx + 1) * batch * h].copy_from_slice(&g.dc0);
            }
            grads[idx] = Some(g);
        }
        d_out = d_in;
    }
    ModuleGrads {
        params: grads
            .into_iter()
            .map(|g| g.expect("every layer ran"))
            .collect(),
        dx: d_out,
        dh0,
        dc0,
    }
}
