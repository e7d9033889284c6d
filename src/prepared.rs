//! Weights prepared once per parameter update: the layouts the products want, built from
//! PyTorch's.
//!
//! * `W_ih^T` as a row-major `[I, G*H]` matrix: the input projection `X W_ih^T` is then a
//!   product with a row-major right operand, the layout the `gemm` crate is fastest with
//!   (up to 4x at small batches, measured).
//! * The recurrent weights packed for [`gemm_packed`](fused_rnn_kernels::gemm::packed):
//!   forward `W_hh^T` (and `W_hn^T` or `W_hr^T`), backward `W_hh` (and `W_hn` or `W_hr`).
//! * The biases combined as the pointwise kernels take them.
//!
//! [`crate::Recurrent`] builds the forward set on its first forward call and the backward set
//! on its first backward call after the parameters change, and drops both when they change
//! (`tensors_mut`, `set_params`). Costs about 1.5x the parameters' memory.

use fused_rnn_kernels::gemm::packed::{PackedRef, pack, packed_len};
use fused_rnn_kernels::{CellKind, Float, MatRef};

use crate::config::Config;
use crate::engine::{DirSpec, DirWeights, StepWeights, combine_biases, first_gates};
use crate::params::Params;

/// A packed matrix that owns its buffer.
#[derive(Clone, Debug)]
pub(crate) struct Packed<T> {
    data: Vec<T>,
    k: usize,
    n: usize,
}

impl<T: Float> Packed<T> {
    fn new(w: MatRef<'_, T>) -> Self {
        let (k, n) = (w.rows(), w.cols());
        let mut data = vec![T::ZERO; packed_len::<T>(k, n)];
        pack(w, &mut data);
        Packed { data, k, n }
    }
    fn view(&self) -> PackedRef<'_, T> {
        PackedRef::from_packed(&self.data, self.k, self.n)
    }
}

/// One direction's prepared weights.
#[derive(Clone, Debug)]
pub(crate) struct PreparedDir<T> {
    /// Forward: `W_ih^T` row-major; backward: unused (dx takes `W_ih` as it is).
    w_ih_t: Vec<T>,
    bias: Vec<T>,
    bias_hn: Vec<T>,
    first: Packed<T>,
    second: Option<Packed<T>>,
}

/// Prepared weights of every layer and direction, for one pass direction.
#[derive(Clone, Debug)]
pub(crate) struct Prepared<T> {
    dirs: Vec<PreparedDir<T>>,
    directions: usize,
}

/// Which products a [`Prepared`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    Forward,
    Backward,
}

impl<T: Float> Prepared<T> {
    pub fn new(config: &Config, params: &Params<T>, pass: Pass) -> Self {
        let d = config.directions();
        let mut dirs = Vec::with_capacity(config.num_layers * d);
        for layer in 0..config.num_layers {
            for dir in 0..d {
                dirs.push(PreparedDir::new(config, params, (layer, dir), pass));
            }
        }
        Prepared {
            dirs,
            directions: d,
        }
    }

    /// The weights of (layer, dir), borrowed from `params` and from this cache.
    pub fn dir<'a>(
        &'a self,
        params: &'a Params<T>,
        layer: usize,
        dir: usize,
    ) -> (DirWeights<'a, T>, StepWeights<'a, T>) {
        let p = params.layer(layer, dir);
        let prep = &self.dirs[layer * self.directions + dir];
        let w = DirWeights {
            w_ih: p.w_ih,
            w_ih_t: &prep.w_ih_t,
            w_hh: p.w_hh,
            bias: &prep.bias,
            bias_hn: &prep.bias_hn,
        };
        let step = StepWeights {
            first: prep.first.view(),
            second: prep.second.as_ref().map(Packed::view),
        };
        (w, step)
    }
}

impl<T: Float> PreparedDir<T> {
    fn new(config: &Config, params: &Params<T>, (layer, dir): (usize, usize), pass: Pass) -> Self {
        let p = params.layer(layer, dir);
        let s = DirSpec::of(config, layer, dir, 0, 0);
        let (gh, h, input) = (s.gh(), s.hidden, s.input);
        let mut bias = vec![T::ZERO; gh];
        let mut bias_hn = vec![T::ZERO; h];
        combine_biases(s.cell, p.b_ih, p.b_hh, &mut bias, &mut bias_hn);
        // Borrowed views need a DirWeights; the prepared parts are filled in below.
        let w = DirWeights {
            w_ih: p.w_ih,
            w_ih_t: &[],
            w_hh: p.w_hh,
            bias: &bias,
            bias_hn: &bias_hn,
        };
        let gates = first_gates(&s);
        let (w_ih_t, first, second) = match pass {
            Pass::Forward => {
                let mut t = vec![T::ZERO; input * gh];
                for (r, row) in p.w_ih.chunks_exact(input.max(1)).enumerate().take(gh) {
                    for (c, &v) in row.iter().enumerate() {
                        t[c * gh + r] = v;
                    }
                }
                let second = match (s.cell, p.w_hr) {
                    (CellKind::Gru { reset_after: false }, _) => {
                        Some(Packed::new(w.w_hh_t(&s, 2..3)))
                    }
                    (CellKind::Lstm, Some(w_hr)) => {
                        Some(Packed::new(MatRef::new(w_hr, h, s.proj, 1, h)))
                    }
                    _ => None,
                };
                (t, Packed::new(w.w_hh_t(&s, gates)), second)
            }
            Pass::Backward => {
                let second = match (s.cell, p.w_hr) {
                    (CellKind::Gru { reset_after: false }, _) => {
                        Some(Packed::new(w.w_hh_rows(&s, 2..3)))
                    }
                    (CellKind::Lstm, Some(w_hr)) => {
                        Some(Packed::new(MatRef::row_major(w_hr, s.proj, h, h)))
                    }
                    _ => None,
                };
                (Vec::new(), Packed::new(w.w_hh_rows(&s, gates)), second)
            }
        };
        PreparedDir {
            w_ih_t,
            bias,
            bias_hn,
            first,
            second,
        }
    }
}
