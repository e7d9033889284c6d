//! Buffer layouts: the size formulas of the reserve and the workspace, and the carving of a
//! buffer into its regions.
//!
//! Notation: T steps, B sequences, I input size, H hidden size, G gates, P projection size,
//! `Hout = P if P > 0 else H`, D directions, L layers.
//!
//! # Reserve, per layer and direction (the "tape")
//!
//! ```text
//! gates  [T][B][G*H]      activated gates, indexed by time (the input projection lands here first)
//! h      [T+1][B][Hout]   states by position: forward, position t is the state entering step t
//!                         and T the final one; reverse, position t+1 enters step t and 0 is final
//! c      [T+1][B][H]      the same for c                                          (LSTM)
//! extra  [T][B][H]        GRU reset-after: W_hn h + b_hn; reset-before: r*h;      (GRU, projected LSTM)
//!                         projected LSTM: o*tanh(c)
//! ```
//!
//! plus, after each layer but the last, the next layer's input `[T][B][D*Hout]` and, with
//! dropout, its mask `[T][B][D*Hout]`. Keeping positions in time order makes the states
//! entering steps 0..T one contiguous `[T*B, Hout]` matrix in both directions, so the weight
//! gradient `dW_hh = dG^T H_prev` is a single GEMM.
//!
//! # Workspace
//!
//! The largest of what `forward`, `forward_train` and `backward` need (see
//! [`workspace_len`]); its regions are documented where they are carved.

use std::ops::Range;

use crate::config::{Config, SeqLayout};
use crate::error::{Error, add, mul};
use crate::input::SeqShape;
use fused_rnn_kernels::CellKind;
use fused_rnn_kernels::gemm::packed::a_scratch_len;

/// The sizes a layout depends on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    pub hout: usize,
    pub gates: usize,
    pub dirs: usize,
    pub layers: usize,
    pub cell: CellKind,
    pub proj: usize,
    pub dropout: bool,
    pub batch_major: bool,
    pub input: usize,
}

impl Dims {
    pub fn new(config: &Config, shape: SeqShape) -> Self {
        Dims {
            steps: shape.steps,
            batch: shape.batch,
            hidden: config.hidden_size,
            hout: config.state_size(),
            gates: config.cell.gates(),
            dirs: config.directions(),
            layers: config.num_layers,
            cell: config.cell,
            proj: config.proj_size,
            dropout: config.dropout > 0.0,
            batch_major: config.layout == SeqLayout::BatchMajor,
            input: config.input_size,
        }
    }
    /// Whether the cell keeps a per-step `[B][H]` beside the gates (see the module docs).
    pub fn has_extra(&self) -> bool {
        matches!(self.cell, CellKind::Gru { .. }) || self.proj > 0
    }
    pub fn has_c(&self) -> bool {
        self.cell.has_cell_state()
    }
    /// The width of a layer's output step: D * Hout.
    pub fn out_width(&self) -> usize {
        self.dirs * self.hout
    }
}

/// The lengths of one direction's tape regions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TapeLens {
    pub gates: usize,
    pub h: usize,
    pub c: usize,
    pub extra: usize,
    /// h and c positions held (T+1 for training, 2 for inference).
    pub positions: usize,
    /// extra slots held (T for training, 1 for inference).
    pub extra_slots: usize,
}

impl TapeLens {
    /// A training tape (everything backward needs) or an inference tape (the gates of all
    /// steps, two state positions, one extra slot).
    pub fn new(d: &Dims, training: bool) -> Result<Self, Error> {
        let positions = if training {
            d.steps.checked_add(1).ok_or(Error::SizeOverflow)?
        } else {
            2
        };
        let extra_slots = if !d.has_extra() {
            0
        } else if training {
            d.steps
        } else {
            1
        };
        Ok(TapeLens {
            gates: mul(&[d.steps, d.batch, d.gates, d.hidden])?,
            h: mul(&[positions, d.batch, d.hout])?,
            c: if d.has_c() {
                mul(&[positions, d.batch, d.hidden])?
            } else {
                0
            },
            extra: mul(&[extra_slots, d.batch, d.hidden])?,
            positions,
            extra_slots,
        })
    }
    pub fn total(&self) -> Result<usize, Error> {
        add(&[self.gates, self.h, self.c, self.extra])
    }
}

/// Where each layer's part of the reserve lies.
#[derive(Clone, Debug)]
pub(crate) struct ReserveLayout {
    pub tape: TapeLens,
    /// Per layer: its start; the layer's D tapes come first, then its output regions.
    pub layer_start: Vec<usize>,
    /// Length of a next-layer input (and of its dropout mask).
    pub next_input: usize,
    pub total: usize,
}

impl ReserveLayout {
    pub fn new(d: &Dims) -> Result<Self, Error> {
        let tape = TapeLens::new(d, true)?;
        let next_input = mul(&[d.steps, d.batch, d.out_width()])?;
        let mut layer_start = Vec::with_capacity(d.layers);
        let mut offset = 0usize;
        for layer in 0..d.layers {
            layer_start.push(offset);
            let mut len = mul(&[d.dirs, tape.total()?])?;
            if layer + 1 < d.layers {
                len = add(&[len, next_input, if d.dropout { next_input } else { 0 }])?;
            }
            offset = add(&[offset, len])?;
        }
        Ok(ReserveLayout {
            tape,
            layer_start,
            next_input,
            total: offset,
        })
    }
}

/// The reserve length in elements for `config` at `shape` (see the module docs).
pub(crate) fn reserve_len(config: &Config, shape: SeqShape) -> Result<usize, Error> {
    Ok(ReserveLayout::new(&Dims::new(config, shape))?.total)
}

/// Per-direction scratch of a forward pass: a copy of the initial state (`B*Hout + B*H`;
/// resets read it all along), the recurrent products that do not accumulate onto the gates
/// (GRU: `B*3H`) and the step GEMM's scratch ([`gemm_a_len`]).
pub(crate) fn fwd_scratch_len(d: &Dims) -> Result<usize, Error> {
    let products = match d.cell {
        CellKind::Gru { .. } => mul(&[d.batch, 3, d.hidden])?,
        _ => 0,
    };
    let init = add(&[mul(&[d.batch, d.hout])?, mul(&[d.batch, d.hidden])?])?;
    add(&[init, products, gemm_a_len(d)])
}

/// `gemm_packed`'s scratch for the per-step products' left operands (`B` rows of h or of
/// the gate gradients).
pub(crate) fn gemm_a_len(d: &Dims) -> usize {
    a_scratch_len(d.batch, (d.gates * d.hidden).max(d.hout))
}

/// Per-direction scratch of a backward pass (see [`crate::engine::backward`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BwdScratchLens {
    /// dL/d gate pre-activations, all steps: `T*B*G*H`.
    pub dg: usize,
    /// GRU reset-after: the input side of n, `T*B*H`.
    pub d_an: usize,
    /// Running dL/dh: two `B*Hout` buffers.
    pub dh: usize,
    /// Running dL/dc: two `B*H` buffers (LSTM).
    pub dc: usize,
    /// GRU reset-before: `d(r*h)`, `B*H`; projected LSTM: `dL/d(o*tanh(c))`, `B*H`.
    pub step: usize,
    /// Projected LSTM: dL/dh for all steps, `T*B*P` (for `dW_hr`).
    pub dh_all: usize,
}

impl BwdScratchLens {
    pub fn new(d: &Dims) -> Result<Self, Error> {
        let bh = mul(&[d.batch, d.hidden])?;
        Ok(BwdScratchLens {
            dg: mul(&[d.steps, d.batch, d.gates, d.hidden])?,
            d_an: if d.cell == (CellKind::Gru { reset_after: true }) {
                mul(&[d.steps, bh])?
            } else {
                0
            },
            dh: mul(&[2, d.batch, d.hout])?,
            dc: if d.has_c() { mul(&[2, bh])? } else { 0 },
            step: if d.cell == (CellKind::Gru { reset_after: false }) || d.proj > 0 {
                bh
            } else {
                0
            },
            dh_all: if d.proj > 0 {
                mul(&[d.steps, d.batch, d.proj])?
            } else {
                0
            },
        })
    }
    pub fn total(&self) -> Result<usize, Error> {
        add(&[self.dg, self.d_an, self.dh, self.dc, self.step, self.dh_all])
    }
}

/// The workspace each entry point needs; [`workspace_len`] is their maximum.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkspaceLens {
    /// Batch-major only: the layer-0 input transposed to time-major, `T*B*I`.
    pub x_tm: usize,
    /// Batch-major backward with dx: dL/dx in time-major before it is transposed, `T*B*I`.
    pub dx_tm: usize,
    /// Inter-layer buffers: two `T*B*D*Hout` when L > 1.
    pub layer_io: usize,
    pub fwd_scratch: usize,
    pub infer_tape: usize,
    pub bwd_scratch: usize,
}

impl WorkspaceLens {
    pub fn new(d: &Dims) -> Result<Self, Error> {
        let xi = if d.batch_major {
            mul(&[d.steps, d.batch, d.input])?
        } else {
            0
        };
        Ok(WorkspaceLens {
            x_tm: xi,
            dx_tm: xi,
            layer_io: if d.layers > 1 {
                mul(&[2, d.steps, d.batch, d.out_width()])?
            } else {
                0
            },
            fwd_scratch: fwd_scratch_len(d)?,
            infer_tape: TapeLens::new(d, false)?.total()?,
            bwd_scratch: BwdScratchLens::new(d)?.total()?,
        })
    }
    /// `forward`: x_tm + layer_io + inference tape + forward scratch.
    pub fn forward(&self) -> Result<usize, Error> {
        add(&[self.x_tm, self.layer_io, self.infer_tape, self.fwd_scratch])
    }
    /// `forward_train`: x_tm + forward scratch.
    pub fn forward_train(&self) -> Result<usize, Error> {
        add(&[self.x_tm, self.fwd_scratch])
    }
    /// `backward`: x_tm + dx_tm + layer_io + backward scratch + forward scratch (GEMM).
    pub fn backward(&self) -> Result<usize, Error> {
        add(&[
            self.x_tm,
            self.dx_tm,
            self.layer_io,
            self.bwd_scratch,
            self.fwd_scratch,
        ])
    }
}

/// The workspace length for every entry point of `config` at `shape`.
pub(crate) fn workspace_len(config: &Config, shape: SeqShape) -> Result<usize, Error> {
    let w = WorkspaceLens::new(&Dims::new(config, shape))?;
    Ok(w.forward()?.max(w.forward_train()?).max(w.backward()?))
}

/// Splits a buffer into consecutive regions.
pub(crate) struct Carver<'a, T> {
    rest: &'a mut [T],
}

impl<'a, T> Carver<'a, T> {
    pub fn new(buf: &'a mut [T]) -> Self {
        Carver { rest: buf }
    }
    /// The next `len` elements.
    ///
    /// # Panics
    /// If fewer remain (the layouts above size every buffer first).
    #[track_caller]
    pub fn take(&mut self, len: usize) -> &'a mut [T] {
        let (head, tail) = std::mem::take(&mut self.rest).split_at_mut(len);
        self.rest = tail;
        head
    }
}

/// The range of position `pos` in a `[positions][rows][width]` buffer.
pub(crate) fn block(pos: usize, rows: usize, width: usize) -> Range<usize> {
    pos * rows * width..(pos + 1) * rows * width
}
