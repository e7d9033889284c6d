//! Weights prepared once per parameter update: the layouts the products want, built from
//! PyTorch's.
//!
//! Every weight a product meets is packed for [`gemm_packed`](fused_rnn_kernels::gemm::packed)
//! once, instead of on every product:
//!
//! * forward: `W_ih^T` (the input projection `X W_ih^T`), `W_hh^T` (and `W_hn^T` or `W_hr^T`);
//! * backward: `W_ih` by input block (`dX = dG W_ih`), `W_hh` (and `W_hn` or `W_hr`).
//! * The biases combined as the pointwise kernels take them.
//!
//! They live in the caller's [`Workspace`](crate::Workspace), keyed by the module and the
//! version of its parameters: the first call after the parameters change repacks them in
//! place (no allocation after the first time), later calls reuse them. Costs about twice the
//! parameters' memory per workspace (both passes).

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
    /// Packs `w` into this buffer, reusing it when the shape is the same.
    fn refill(slot: &mut Option<Packed<T>>, w: Option<MatRef<'_, T>>) {
        match (slot.as_mut(), w) {
            (Some(p), Some(w)) if (p.k, p.n) == (w.rows(), w.cols()) => {
                pack(w, &mut p.data);
            }
            (_, w) => *slot = w.map(Packed::new),
        }
    }
    fn view(&self) -> PackedRef<'_, T> {
        PackedRef::from_packed(&self.data, self.k, self.n)
    }
}

/// One direction's prepared weights.
#[derive(Clone, Debug)]
pub(crate) struct PreparedDir<T> {
    /// Forward: `W_ih^T` packed, `[I, G*H]`.
    w_ih_t: Option<Packed<T>>,
    /// Backward: the columns of `W_ih` that meet each input block (one for layer 0, one per
    /// direction of the layer below), packed: `[G*H, width]`.
    w_ih_cols: [Option<Packed<T>>; 2],
    bias: Vec<T>,
    bias_hn: Vec<T>,
    first: Option<Packed<T>>,
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
    /// Fills `slot` for `params`, reusing its buffers when it already holds this shape.
    pub fn fill(slot: &mut Option<Prepared<T>>, config: &Config, params: &Params<T>, pass: Pass) {
        let d = config.directions();
        let count = config.num_layers * d;
        let prepared = slot.get_or_insert_with(|| Prepared {
            dirs: Vec::with_capacity(count),
            directions: d,
        });
        if prepared.dirs.len() != count || prepared.directions != d {
            prepared.dirs.clear();
            prepared.directions = d;
        }
        for layer in 0..config.num_layers {
            for dir in 0..d {
                let i = layer * d + dir;
                if i == prepared.dirs.len() {
                    prepared.dirs.push(PreparedDir::empty());
                }
                prepared.dirs[i].fill(config, params, (layer, dir), pass);
            }
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
            w_ih_t: prep.w_ih_t.as_ref().map(Packed::view),
            w_ih_cols: [0, 1].map(|i| prep.w_ih_cols[i].as_ref().map(Packed::view)),
            w_hh: p.w_hh,
            bias: &prep.bias,
            bias_hn: &prep.bias_hn,
        };
        let step = StepWeights {
            first: prep.first.as_ref().expect("filled with the rest").view(),
            second: prep.second.as_ref().map(Packed::view),
        };
        (w, step)
    }
}

impl<T: Float> PreparedDir<T> {
    fn empty() -> Self {
        PreparedDir {
            w_ih_t: None,
            w_ih_cols: [None, None],
            bias: Vec::new(),
            bias_hn: Vec::new(),
            first: None,
            second: None,
        }
    }

    /// Prepares (layer, dir) in place: same shapes reuse every buffer.
    fn fill(
        &mut self,
        config: &Config,
        params: &Params<T>,
        (layer, dir): (usize, usize),
        pass: Pass,
    ) {
        let p = params.layer(layer, dir);
        let s = DirSpec::of(config, layer, dir, 0, 0);
        let (gh, h, input) = (s.gh(), s.hidden, s.input);
        self.bias.resize(gh, T::ZERO);
        self.bias_hn.resize(h, T::ZERO);
        combine_biases(s.cell, p.b_ih, p.b_hh, &mut self.bias, &mut self.bias_hn);
        let w = DirWeights {
            w_ih_t: None,
            w_ih_cols: [None, None],
            w_hh: p.w_hh,
            bias: &[],
            bias_hn: &[],
        };
        let gates = first_gates(&s);
        let reset_before = s.cell == CellKind::Gru { reset_after: false };
        match pass {
            Pass::Forward => {
                self.w_ih_cols = [None, None];
                Packed::refill(
                    &mut self.w_ih_t,
                    Some(MatRef::new(p.w_ih, input, gh, 1, input)),
                );
                Packed::refill(&mut self.first, Some(w.w_hh_t(&s, gates)));
                let second = match (reset_before, p.w_hr) {
                    (true, _) => Some(w.w_hh_t(&s, 2..3)),
                    (false, Some(w_hr)) => Some(MatRef::new(w_hr, h, s.proj, 1, h)),
                    _ => None,
                };
                Packed::refill(&mut self.second, second);
            }
            Pass::Backward => {
                self.w_ih_t = None;
                // The input blocks: layer 0's input, or the directions of the layer below.
                let (blocks, width) = if layer == 0 {
                    (1, input)
                } else {
                    (config.directions(), s.hout)
                };
                let w_ih = MatRef::row_major(p.w_ih, gh, input, input);
                for (i, slot) in self.w_ih_cols.iter_mut().enumerate() {
                    Packed::refill(
                        slot,
                        (i < blocks).then(|| w_ih.cols_range(i * width, width)),
                    );
                }
                Packed::refill(&mut self.first, Some(w.w_hh_rows(&s, gates)));
                let second = match (reset_before, p.w_hr) {
                    (true, _) => Some(w.w_hh_rows(&s, 2..3)),
                    (false, Some(w_hr)) => Some(MatRef::row_major(w_hr, s.proj, h, h)),
                    _ => None,
                };
                Packed::refill(&mut self.second, second);
            }
        }
    }
}
