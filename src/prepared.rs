//! Weights prepared once per parameter update: the layouts the products want, built from
//! PyTorch's.
//!
//! The weights of the per-step products are packed for
//! [`gemm_packed`](fused_rnn_kernels::gemm::packed) once, instead of on every step:
//!
//! * inference ([`Pass::Forward`]): `W_ih^T` (the input projection `X W_ih^T`) and `W_hh^T`
//!   (and `W_hn^T` or `W_hr^T`), kept across calls: repeated inference at the same
//!   parameters (sampling one step at a time) packs nothing;
//! * training forward ([`Pass::TrainForward`]): `W_hh^T` (and `W_hn^T` or `W_hr^T`) only;
//! * backward ([`Pass::Backward`]): `W_hh` (and `W_hn` or `W_hr`) only;
//! * for the forward passes of a small LSTM batch on several threads, also `W_hh^T` and the
//!   biases by unit blocks ([`crate::engine::unit_blocks`]), made the first time a call
//!   needs them;
//! * the biases combined as the pointwise kernels take them.
//!
//! The training passes leave `W_ih` as it is: its products run once per call over all rows,
//! where [`gemm`](fused_rnn_kernels::gemm()) packs it a slice at a time, the same packing work
//! as caching it, without a copy of it held through the call. The two training passes share
//! one slot and repack it in place when the pass changes, which a training loop does once
//! per pass anyway (its parameters change every update): training holds one packed copy of
//! the recurrent weights, not four copies of all of them.
//!
//! They live in the caller's [`Workspace`](crate::Workspace), keyed by the module, the
//! version of its parameters and the pass: the first call after a change repacks in place
//! (no allocation after the first time), later calls reuse them.

use fused_rnn_kernels::aligned::AlignedBuf;
use fused_rnn_kernels::gemm::packed::{PackedRef, pack_on, packed_len};
use fused_rnn_kernels::{CellKind, Float, MatRef};

use crate::config::Config;
use crate::engine::plan::gemm_threads;
use crate::engine::{DirSpec, DirWeights, StepWeights, combine_biases, first_gates, unit_blocks};
use crate::params::Params;

/// A packed matrix that owns its buffer (cache-line aligned: see [`AlignedBuf`]).
#[derive(Clone, Debug)]
pub(crate) struct Packed<T> {
    data: AlignedBuf<T>,
    k: usize,
    n: usize,
}

impl<T: Float> Packed<T> {
    /// Packs `w` into this slot on up to `threads` threads, reusing its buffer (once it has
    /// grown to the largest shape it holds, repacking allocates nothing).
    fn refill(slot: &mut Option<Packed<T>>, w: Option<MatRef<'_, T>>, threads: usize) {
        let Some(w) = w else {
            *slot = None;
            return;
        };
        let p = slot.get_or_insert_with(|| Packed {
            data: AlignedBuf::new(),
            k: 0,
            n: 0,
        });
        (p.k, p.n) = (w.rows(), w.cols());
        p.data.resize(packed_len::<T>(p.k, p.n));
        pack_on(threads, w, p.data.as_mut_slice());
    }
    fn view(&self) -> PackedRef<'_, T> {
        PackedRef::from_packed(self.data.as_slice(), self.k, self.n)
    }
}

/// One direction's prepared weights.
#[derive(Clone, Debug)]
pub(crate) struct PreparedDir<T> {
    /// Inference: `W_ih^T` packed, `[I, G*H]`.
    w_ih_t: Option<Packed<T>>,
    bias: Vec<T>,
    bias_hn: Vec<T>,
    first: Option<Packed<T>>,
    second: Option<Packed<T>>,
    /// Forward `W_hh^T` and the biases by unit blocks (see [`crate::engine::unit_blocks`]),
    /// for the small batches whose steps a team of threads shares.
    blocks: Option<Packed<T>>,
    bias_blocks: Vec<T>,
}

/// Prepared weights of every layer and direction, for one pass direction.
#[derive(Clone, Debug)]
pub(crate) struct Prepared<T> {
    dirs: Vec<PreparedDir<T>>,
    directions: usize,
    /// Whether the unit-block packings are filled for the current parameters.
    has_blocks: bool,
}

/// Which products a [`Prepared`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Inference: the input projection and the step products.
    Forward,
    /// `forward_train`: the step products.
    TrainForward,
    /// `backward`: the step products.
    Backward,
}

impl Pass {
    /// The workspace slot that keeps this pass's weights: inference, or training (both
    /// training passes share one).
    pub fn slot(self) -> usize {
        match self {
            Pass::Forward => 0,
            Pass::TrainForward | Pass::Backward => 1,
        }
    }
}

impl<T: Float> Prepared<T> {
    /// Fills `slot` for `params`, reusing its buffers when it already holds this shape.
    pub fn fill(slot: &mut Option<Prepared<T>>, config: &Config, params: &Params<T>, pass: Pass) {
        let d = config.directions();
        let count = config.num_layers * d;
        let prepared = slot.get_or_insert_with(|| Prepared {
            dirs: Vec::with_capacity(count),
            directions: d,
            has_blocks: false,
        });
        prepared.has_blocks = false;
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

    /// Also packs the forward weights by unit blocks (once per parameter update), for the
    /// directions that can use them.
    pub fn fill_blocks(&mut self, config: &Config, params: &Params<T>) {
        if self.has_blocks {
            return;
        }
        for layer in 0..config.num_layers {
            for dir in 0..self.directions {
                let s = DirSpec::of(config, layer, dir, 0, 0);
                let prep = &mut self.dirs[layer * self.directions + dir];
                if unit_blocks::applies::<T>(&s) {
                    let p = params.layer(layer, dir);
                    let w = MatRef::new(p.w_hh, s.hout, s.gh(), 1, s.hout);
                    let p = prep.blocks.get_or_insert_with(|| Packed {
                        data: AlignedBuf::new(),
                        k: 0,
                        n: 0,
                    });
                    (p.k, p.n) = (w.rows(), w.cols());
                    p.data.resize(packed_len::<T>(p.k, p.n));
                    unit_blocks::pack(&s, w, p.data.as_mut_slice());
                    prep.bias_blocks.resize(s.gh(), T::ZERO);
                    unit_blocks::order(&s, &prep.bias, &mut prep.bias_blocks);
                } else {
                    // Never a stale layout of another module's weights.
                    prep.blocks = None;
                }
            }
        }
        self.has_blocks = true;
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
            w_ih: p.w_ih,
            w_hh: p.w_hh,
            bias: &prep.bias,
            bias_hn: &prep.bias_hn,
        };
        let step = StepWeights {
            first: prep.first.as_ref().expect("filled with the rest").view(),
            second: prep.second.as_ref().map(Packed::view),
            blocks: match (&prep.blocks, self.has_blocks) {
                (Some(b), true) => Some((b.view(), &prep.bias_blocks[..])),
                _ => None,
            },
        };
        (w, step)
    }
}

impl<T: Float> PreparedDir<T> {
    fn empty() -> Self {
        PreparedDir {
            w_ih_t: None,
            bias: Vec::new(),
            bias_hn: Vec::new(),
            first: None,
            second: None,
            blocks: None,
            bias_blocks: Vec::new(),
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
            w_ih: p.w_ih,
            w_hh: p.w_hh,
            bias: &[],
            bias_hn: &[],
        };
        let gates = first_gates(&s);
        let reset_before = s.cell == CellKind::Gru { reset_after: false };
        let forward = pass != Pass::Backward;
        // W_ih stays as it is in training (see the module docs).
        let threads = gemm_threads(config.parallelism);
        let w_ih_t = (pass == Pass::Forward).then(|| MatRef::new(p.w_ih, input, gh, 1, input));
        Packed::refill(&mut self.w_ih_t, w_ih_t, threads);
        if forward {
            Packed::refill(&mut self.first, Some(w.w_hh_t(&s, gates)), threads);
            let second = match (reset_before, p.w_hr) {
                (true, _) => Some(w.w_hh_t(&s, 2..3)),
                (false, Some(w_hr)) => Some(MatRef::new(w_hr, h, s.proj, 1, h)),
                _ => None,
            };
            Packed::refill(&mut self.second, second, threads);
        } else {
            Packed::refill(&mut self.first, Some(w.w_hh_rows(&s, gates)), threads);
            let second = match (reset_before, p.w_hr) {
                (true, _) => Some(w.w_hh_rows(&s, 2..3)),
                (false, Some(w_hr)) => Some(MatRef::row_major(w_hr, s.proj, h, h)),
                _ => None,
            };
            Packed::refill(&mut self.second, second, threads);
        }
    }
}
