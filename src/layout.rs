//! Buffer layouts: the size formulas of the reserve and the workspace, how the batch is cut
//! into chunks, and the carving of buffers into regions.
//!
//! Notation: T steps, B sequences, I input size, H hidden size, G gates, P projection size,
//! `Hout = P if P > 0 else H`, D directions, L layers.
//!
//! # Batch chunks
//!
//! The batch is cut into `C = clamp(B / 8, 1, 16)` chunks of consecutive sequences, a number
//! fixed by B alone. Every per-step buffer is *chunk-major*: chunk `c` (sequences `b0..b1`)
//! owns rows `T*b0 .. T*b1` of a `[T*B][..]` buffer, and its rows run step by step within
//! that range. A chunk's whole time loop then touches only its own contiguous ranges, so the
//! chunks (and the directions) run as independent tasks, in parallel or in order, with the
//! same arithmetic either way.
//!
//! # Reserve, per layer and direction (the "tape")
//!
//! ```text
//! gates  [T*B][G*H]      activated gates (the input projection lands here first); the
//!                        backward of an LSTM or reset-after GRU writes their gradients
//!                        over them
//! h      [(T+1)*B][Hout] states by position: forward, position t is the state entering step t
//!                        and T the final one; reverse, position t+1 enters step t, 0 is final
//! c      [(T+1)*B][H]    the same for c                                           (LSTM)
//! extra  [T*B][H]        GRU reset-after: W_hn h + b_hn; reset-before: r*h;        (GRU,
//!                        projected LSTM: o*tanh(c)                                  projected LSTM)
//! ```
//!
//! plus, after each layer but the last, the next layer's input, one `[T*B][Hout]` block per
//! direction, and, with dropout, their masks. Keeping positions in time order makes the states
//! entering a chunk's steps one contiguous `[T*Bc, Hout]` matrix in both directions, so the
//! weight gradient `dW_hh = sum over chunks of dG^T H_prev` is a GEMM per chunk.

use std::ops::Range;

use crate::config::{Config, SeqLayout};
use crate::error::{Error, add, mul};
use crate::input::SeqShape;
use fused_rnn_kernels::CellKind;
use fused_rnn_kernels::gemm::packed::a_scratch_len;

/// The most batch chunks a call cuts (see the module docs).
pub(crate) const MAX_CHUNKS: usize = 16;

/// The most tasks a layer's time loops make: one per (direction, chunk).
pub(crate) const MAX_TASKS: usize = 2 * MAX_CHUNKS;

/// The number of batch chunks for `batch` sequences (see the module docs).
pub(crate) fn batch_chunks(batch: usize) -> usize {
    (batch / 8).clamp(1, MAX_CHUNKS)
}

/// The sequences of chunk `c` of `chunks`.
pub(crate) fn chunk_range(batch: usize, chunks: usize, c: usize) -> Range<usize> {
    c * batch / chunks..(c + 1) * batch / chunks
}

/// The sizes a layout depends on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
    pub hout: usize,
    pub gates: usize,
    pub dirs: usize,
    pub layers: usize,
    pub cell: CellKind,
    pub proj: usize,
    /// Whether the layers have biases (backward then sums them as it goes).
    pub bias: bool,
    pub dropout: bool,
    pub batch_major: bool,
    pub chunks: usize,
}

impl Dims {
    pub fn new(config: &Config, shape: SeqShape) -> Self {
        Dims {
            steps: shape.steps,
            batch: shape.batch,
            input: config.input_size,
            hidden: config.hidden_size,
            hout: config.state_size(),
            gates: config.cell.gates(),
            dirs: config.directions(),
            layers: config.num_layers,
            cell: config.cell,
            proj: config.proj_size,
            bias: config.bias,
            dropout: config.dropout > 0.0,
            batch_major: config.layout == SeqLayout::BatchMajor,
            chunks: batch_chunks(shape.batch),
        }
    }
    /// Whether the cell keeps a per-step `[B][H]` beside the gates (see the module docs).
    pub fn has_extra(&self) -> bool {
        matches!(self.cell, CellKind::Gru { .. }) || self.proj > 0
    }
    pub fn has_c(&self) -> bool {
        self.cell.has_cell_state()
    }
    /// Whether backward writes the gate gradients over the saved gates in the reserve (an
    /// LSTM and a reset-after GRU: one pass a step, which reads nothing of a step's gates
    /// after writing their gradients), not into a workspace buffer of their own. A
    /// reset-before GRU reads its gates again after the product between its two passes.
    pub fn gate_grads_in_reserve(&self) -> bool {
        matches!(
            self.cell,
            CellKind::Lstm | CellKind::Gru { reset_after: true }
        )
    }
    pub fn gh(&self) -> usize {
        self.gates * self.hidden
    }
    /// Sequences of chunk `c`.
    pub fn chunk(&self, c: usize) -> Range<usize> {
        chunk_range(self.batch, self.chunks, c)
    }
    /// Whether the layer-0 input must be copied into chunk-major order (and dx back out).
    pub fn reorders_input(&self) -> bool {
        self.batch_major || self.chunks > 1
    }
    /// `T*B*w` elements.
    pub fn per_row(&self, w: usize) -> Result<usize, Error> {
        mul(&[self.steps, self.batch, w])
    }
}

/// The lengths of one direction's tape regions (each chunk-major over the batch).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TapeLens {
    pub gates: usize,
    pub h: usize,
    pub c: usize,
    pub extra: usize,
    /// h and c positions held per sequence (T+1 for training, 2 for inference).
    pub positions: usize,
    /// extra slots held per sequence (T for training, 1 for inference).
    pub extra_slots: usize,
    /// Whether backward reads this tape (its gates must be the activated ones).
    pub training: bool,
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
            gates: mul(&[d.steps, d.batch, d.gh()])?,
            h: mul(&[positions, d.batch, d.hout])?,
            c: if d.has_c() {
                mul(&[positions, d.batch, d.hidden])?
            } else {
                0
            },
            extra: mul(&[extra_slots, d.batch, d.hidden])?,
            positions,
            extra_slots,
            training,
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
    /// The length of every layer's part but the last's (all are the same): its D tapes,
    /// then its D output blocks and, with dropout, their D masks.
    pub layer_len: usize,
    /// One direction's output block (and its dropout mask): `T*B*Hout`.
    pub out_block: usize,
    pub total: usize,
}

impl ReserveLayout {
    pub fn new(d: &Dims) -> Result<Self, Error> {
        let tape = TapeLens::new(d, true)?;
        let out_block = d.per_row(d.hout)?;
        let tapes = mul(&[d.dirs, tape.total()?])?;
        let blocks = mul(&[d.dirs, out_block, if d.dropout { 2 } else { 1 }])?;
        let layer_len = add(&[tapes, blocks])?;
        let total = add(&[mul(&[d.layers.saturating_sub(1), layer_len])?, tapes])?;
        Ok(ReserveLayout {
            tape,
            layer_len,
            out_block,
            total,
        })
    }
    /// Where layer `layer`'s part starts (within `total`, so it cannot overflow).
    pub fn layer_start(&self, layer: usize) -> usize {
        layer * self.layer_len
    }
    /// Where layer `layer`'s output blocks (the next layer's input) start.
    pub fn outputs_at(&self, layer: usize, dirs: usize) -> usize {
        self.layer_start(layer) + dirs * self.tape.total().expect("checked in new")
    }
}

/// The reserve length in elements for `config` at `shape` (see the module docs).
pub(crate) fn reserve_len(config: &Config, shape: SeqShape) -> Result<usize, Error> {
    Ok(ReserveLayout::new(&Dims::new(config, shape))?.total)
}

/// Whether a step product of `rows` rows with a `k x n` weight is split into column ranges:
/// a small batch has too few rows to split the batch (see `engine::plan::step_product`), and
/// below about 128K multiply-adds per row the split costs more than it saves.
pub(crate) fn splits_columns(rows: usize, k: usize, n: usize) -> bool {
    rows < 8 && k.saturating_mul(n) >= 1 << 17
}

/// Scratch of one forward task (a direction's chunk of `rows` sequences): a copy of the
/// initial state (`rows*(Hout + H)`; resets read it all along), the GRU's recurrent products
/// (`rows*3H`), the step GEMM's scratch, and, for small batches, the staging of the split
/// product (`rows*G*H`, and for an LSTM `rows*2H` more: the c and h of its unit blocks,
/// see `engine::forward_blocks`).
pub(crate) fn fwd_task_len(d: &Dims, rows: usize) -> usize {
    let gru = matches!(d.cell, CellKind::Gru { .. });
    let lstm_states = if d.cell == CellKind::Lstm {
        2 * d.hidden
    } else {
        0
    };
    let staging = if rows < 8 {
        rows * (d.gh().max(d.hout) + lstm_states)
    } else {
        0
    };
    rows * (d.hout + d.hidden)
        + if gru { rows * 3 * d.hidden } else { 0 }
        + step_gemm_len(d, rows)
        + staging
}

/// Scratch of one backward task: two dL/dh buffers (`2*rows*Hout`), two dL/dc buffers
/// (`2*rows*H`, LSTM), `rows*H` for `d(r*h)` (reset-before GRU) or `dL/d(o tanh c)`
/// (projected LSTM), the step GEMM's scratch, and the staging of a split product.
pub(crate) fn bwd_task_len(d: &Dims, rows: usize) -> usize {
    let staging = if rows < 8 {
        rows * d.hout.max(d.hidden)
    } else {
        0
    };
    let step = if d.cell == (CellKind::Gru { reset_after: false }) || d.proj > 0 {
        rows * d.hidden
    } else {
        0
    };
    2 * rows * d.hout
        + if d.has_c() { 2 * rows * d.hidden } else { 0 }
        + step
        + step_gemm_len(d, rows)
        + staging
}

/// Values of one chunk's bias sums: the column sums of its gate gradients (`G*H`), then for
/// a reset-after GRU those of the input side of n (`H`); none without biases.
pub(crate) fn bias_sums_width(d: &Dims) -> usize {
    let n = if d.cell == (CellKind::Gru { reset_after: true }) {
        d.hidden
    } else {
        0
    };
    if d.bias { d.gh() + n } else { 0 }
}

/// `gemm_packed`'s scratch for a step product's left operand (`rows` rows of h or of the
/// gate gradients), or for the transposed copy a split product reads.
fn step_gemm_len(d: &Dims, rows: usize) -> usize {
    let k = d.gh().max(d.hout);
    a_scratch_len(rows, k).max(rows * k)
}

/// The scratch of all tasks of a layer (`D` directions times the chunks).
pub(crate) fn tasks_len(d: &Dims, per_task: impl Fn(&Dims, usize) -> usize) -> usize {
    d.dirs
        * (0..d.chunks)
            .map(|c| per_task(d, d.chunk(c).len()))
            .sum::<usize>()
}

/// The workspace each entry point needs; [`workspace_len`] is their maximum.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkspaceLens {
    /// The layer-0 input in chunk-major order (when it is not already): `T*B*I`. Backward
    /// reuses it for dL/dx in chunk-major order once layer 0's weight gradients have read x.
    pub x_cm: usize,
    /// One set of per-direction layer blocks, `D*T*B*Hout`.
    pub block_set: usize,
    /// Sets inference alternates its layer outputs between: `min(L, 2)`.
    pub infer_sets: usize,
    /// Sets backward alternates dL/d(layer outputs) between, below the top layer (whose
    /// dL/dy is read in place): `min(L - 1, 2)`.
    pub bwd_sets: usize,
    /// Inference tapes, one per direction (see [`TapeLens`]).
    pub infer_tapes: usize,
    /// Backward's per-direction gate gradients `D*T*B*G*H` (none where they go over the
    /// saved gates, see [`Dims::gate_grads_in_reserve`]), plus `D*T*B*H` for the input side
    /// of a reset-after GRU's n, plus `D*T*B*P` of dL/dh for a projected LSTM's `dW_hr`,
    /// plus each chunk's bias sums (`D*chunks*`[`bias_sums_width`]).
    pub bwd_grads: usize,
    pub fwd_tasks: usize,
    pub bwd_tasks: usize,
}

impl WorkspaceLens {
    pub fn new(d: &Dims) -> Result<Self, Error> {
        let xi = if d.reorders_input() {
            d.per_row(d.input)?
        } else {
            0
        };
        let dg = if d.gate_grads_in_reserve() {
            0
        } else {
            mul(&[d.dirs, d.per_row(d.gh())?])?
        };
        let d_an = if d.cell == (CellKind::Gru { reset_after: true }) {
            mul(&[d.dirs, d.per_row(d.hidden)?])?
        } else {
            0
        };
        let dh_all = if d.proj > 0 {
            mul(&[d.dirs, d.per_row(d.proj)?])?
        } else {
            0
        };
        let bias_sums = mul(&[d.dirs, d.chunks, bias_sums_width(d)])?;
        Ok(WorkspaceLens {
            x_cm: xi,
            block_set: mul(&[d.dirs, d.per_row(d.hout)?])?,
            infer_sets: d.layers.min(2),
            bwd_sets: d.layers.saturating_sub(1).min(2),
            infer_tapes: mul(&[d.dirs, TapeLens::new(d, false)?.total()?])?,
            bwd_grads: add(&[dg, d_an, dh_all, bias_sums])?,
            fwd_tasks: tasks_len(d, fwd_task_len),
            bwd_tasks: tasks_len(d, bwd_task_len),
        })
    }
    /// `forward`: x_cm + its block sets + inference tapes + forward tasks.
    pub fn forward(&self) -> Result<usize, Error> {
        let sets = mul(&[self.infer_sets, self.block_set])?;
        add(&[self.x_cm, sets, self.infer_tapes, self.fwd_tasks])
    }
    /// `forward_train`: x_cm + one block set (the top layer's outputs) + forward tasks.
    pub fn forward_train(&self) -> Result<usize, Error> {
        add(&[self.x_cm, self.block_set, self.fwd_tasks])
    }
    /// `backward`: x_cm (then dx) + its block sets + gradients + backward tasks.
    pub fn backward(&self) -> Result<usize, Error> {
        let sets = mul(&[self.bwd_sets, self.block_set])?;
        add(&[self.x_cm, sets, self.bwd_grads, self.bwd_tasks])
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
