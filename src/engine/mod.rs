//! The time loops: one direction's chunk of sequences forward ([`forward`]) and backward
//! ([`backward`]), the products over all steps ([`products`]), and the module-level drivers
//! over layers, directions and chunks ([`driver`]).
//!
//! Forward, per direction: one GEMM projects the inputs of all steps onto the gates; then,
//! per chunk, each step runs the recurrent GEMM and one fused pointwise pass (two for a
//! reset-before GRU, which needs a second product in between). Backward, per chunk and step:
//! the pointwise pass gives the gate gradients, a GEMM carries dL/dh to the previous step;
//! after the loops the weight gradients and dx are GEMMs over all steps. The chunks a thread
//! runs step in lockstep, their step products grouped so that `W_hh` is read once per step
//! for all of them ([`forward_lockstep`], [`backward_lockstep`]). Nothing is allocated inside
//! the loops.

pub(crate) mod backward;
pub(crate) mod backward_lockstep;
pub(crate) mod driver;
pub(crate) mod forward;
pub(crate) mod forward_blocks;
pub(crate) mod forward_fused;
pub(crate) mod forward_lockstep;
pub(crate) mod forward_team;
pub(crate) mod plan;
pub(crate) mod products;
pub(crate) mod team;
pub(crate) mod tokens;
pub(crate) mod unit_blocks;

use fused_rnn_kernels::gemm::packed::PackedRef;
use fused_rnn_kernels::{CellKind, Float, MatRef, Rows, RowsMut};

/// One layer and direction's shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirSpec {
    pub cell: CellKind,
    /// This layer's input width.
    pub input: usize,
    pub hidden: usize,
    /// Width of h: P when projected, else H.
    pub hout: usize,
    pub proj: usize,
    pub reverse: bool,
    pub steps: usize,
    pub batch: usize,
}

impl DirSpec {
    /// Layer `layer`, direction `dir` (1 = reverse) of `config` over `steps` x `batch`.
    pub fn of(
        config: &crate::Config,
        layer: usize,
        dir: usize,
        steps: usize,
        batch: usize,
    ) -> Self {
        DirSpec {
            cell: config.cell,
            input: config.layer_input_size(layer),
            hidden: config.hidden_size,
            hout: config.state_size(),
            proj: config.proj_size,
            reverse: dir == 1,
            steps,
            batch,
        }
    }
    pub fn gh(&self) -> usize {
        self.cell.gates() * self.hidden
    }
    /// The time index processed at loop iteration `k`.
    pub fn time(&self, k: usize) -> usize {
        if self.reverse { self.steps - 1 - k } else { k }
    }
    /// The state position entering step `t` (see [`crate::layout`]).
    pub fn entry(&self, t: usize) -> usize {
        if self.reverse { t + 1 } else { t }
    }
    /// The state position leaving step `t`.
    pub fn exit(&self, t: usize) -> usize {
        if self.reverse { t } else { t + 1 }
    }
    /// The position of the initial state.
    pub fn initial(&self) -> usize {
        if self.reverse { self.steps } else { 0 }
    }
    /// The position of the final state.
    pub fn last(&self) -> usize {
        if self.reverse { 0 } else { self.steps }
    }
}

/// One layer and direction's weights, with the biases combined as the kernels take them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirWeights<'a, T> {
    /// `W_ih^T`, `[I, G*H]`, packed (inference only; see [`crate::prepared`]).
    pub w_ih_t: Option<PackedRef<'a, T>>,
    /// `[G*H, I]`, as it is.
    pub w_ih: &'a [T],
    /// `[G*H, Hout]`.
    pub w_hh: &'a [T],
    /// `[G*H]`: `b_ih + b_hh`, except GRU's n block, which holds `b_in` alone.
    pub bias: &'a [T],
    /// `[H]`: GRU's `b_hn` (zeros otherwise).
    pub bias_hn: &'a [T],
}

impl<'a, T: Float> DirWeights<'a, T> {
    /// Rows `gate_start*H .. gate_end*H` of `W_hh`, transposed: `[Hout, n*H]`.
    pub fn w_hh_t(&self, s: &DirSpec, gates: std::ops::Range<usize>) -> MatRef<'a, T> {
        let rows = gates.start * s.hidden..gates.end * s.hidden;
        MatRef::new(
            &self.w_hh[rows.start * s.hout..],
            s.hout,
            rows.len(),
            1,
            s.hout,
        )
    }
    /// Rows `gates` of `W_hh` as they are: `[n*H, Hout]` (for dL/dh = dG W_hh).
    pub fn w_hh_rows(&self, s: &DirSpec, gates: std::ops::Range<usize>) -> MatRef<'a, T> {
        let rows = gates.start * s.hidden..gates.end * s.hidden;
        MatRef::row_major(
            &self.w_hh[rows.start * s.hout..],
            rows.len(),
            s.hout,
            s.hout,
        )
    }
}

/// One direction's recurrent weights packed for the per-step products (see [`crate::prepared`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepWeights<'a, T> {
    /// The recurrent product's weight: forward `W_hh^T`, backward `W_hh` (r, z blocks only for
    /// a reset-before GRU).
    pub first: PackedRef<'a, T>,
    /// The second product's: `W_hn` (reset-before GRU) or `W_hr` (projected LSTM), transposed
    /// forward.
    pub second: Option<PackedRef<'a, T>>,
    /// Forward `W_hh^T` and the biases by unit blocks, when prepared (see [`unit_blocks`]).
    pub blocks: Option<(PackedRef<'a, T>, &'a [T])>,
}

/// The gate blocks of the first recurrent product.
pub(crate) fn first_gates(s: &DirSpec) -> std::ops::Range<usize> {
    match s.cell {
        CellKind::Gru { reset_after: false } => 0..2,
        cell => 0..cell.gates(),
    }
}

/// Writes the kernels' bias vectors (see [`DirWeights::bias`]) into `bias` and `bias_hn`.
pub(crate) fn combine_biases<T: Float>(
    cell: CellKind,
    b_ih: Option<&[T]>,
    b_hh: Option<&[T]>,
    bias: &mut [T],
    bias_hn: &mut [T],
) {
    bias.fill(T::ZERO);
    bias_hn.fill(T::ZERO);
    let (Some(b_ih), Some(b_hh)) = (b_ih, b_hh) else {
        return;
    };
    let h = bias_hn.len();
    for (j, out) in bias.iter_mut().enumerate() {
        let n_block = matches!(cell, CellKind::Gru { .. }) && j >= 2 * h;
        *out = if n_block { b_ih[j] } else { b_ih[j] + b_hh[j] };
    }
    if let CellKind::Gru { .. } = cell {
        bias_hn.copy_from_slice(&b_hh[2 * h..3 * h]);
    }
}

/// Per-sequence lengths and resets, for a chunk of sequences.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Masks<'a> {
    /// The chunk's lengths.
    pub lengths: Option<&'a [usize]>,
    /// The whole call's `[T][B]` resets.
    pub resets: Option<&'a [bool]>,
    /// The chunk's first sequence, and the whole batch (the row length of `resets`).
    pub b0: usize,
    pub full_batch: usize,
}

impl<'a> Masks<'a> {
    /// The masks of the whole call's sequences `range`.
    pub fn chunk(&self, range: std::ops::Range<usize>) -> Masks<'a> {
        Masks {
            lengths: self.lengths.map(|l| &l[range.clone()]),
            resets: self.resets,
            b0: self.b0 + range.start,
            full_batch: self.full_batch,
        }
    }
    /// Whether sequence `b` is at a real (not padding) step `t`.
    pub fn active(&self, t: usize, b: usize) -> bool {
        self.lengths.is_none_or(|l| t < l[b])
    }
    /// Whether any sequence is padding at step `t`.
    pub fn any_inactive(&self, t: usize) -> bool {
        self.lengths.is_some_and(|l| l.iter().any(|&len| t >= len))
    }
    /// Whether every sequence is padding at step `t`: the step has no work.
    pub fn all_inactive(&self, t: usize) -> bool {
        self.lengths.is_some_and(|l| l.iter().all(|&len| t >= len))
    }
    /// Whether sequence `b` enters step `t` from the initial state by a reset (see
    /// [`crate::Input::resets`]).
    pub fn reset_at_entry(&self, s: &DirSpec, t: usize, b: usize) -> bool {
        let Some(resets) = self.resets else {
            return false;
        };
        let at = |t: usize| t * self.full_batch + self.b0 + b;
        let marked = if s.reverse {
            t + 1 < s.steps && resets[at(t + 1)]
        } else {
            resets[at(t)]
        };
        marked && self.active(t, b)
    }
}

/// Positions `read` and `write` of a `[positions][len]` buffer, one shared and one mutable.
pub(crate) fn read_write<T>(
    buf: &mut [T],
    len: usize,
    read: usize,
    write: usize,
) -> (&[T], &mut [T]) {
    debug_assert_ne!(read, write);
    if read < write {
        let (lo, hi) = buf.split_at_mut(write * len);
        (&lo[read * len..(read + 1) * len], &mut hi[..len])
    } else {
        let (lo, hi) = buf.split_at_mut(read * len);
        (&hi[..len], &mut lo[write * len..(write + 1) * len])
    }
}

/// A chunk's rows of every step of a buffer, read in place: step `t`'s `rows` rows start at
/// `first + t * step`, `stride` apart. Serves dL/dy straight from the caller's layout (time-
/// or batch-major) as well as from chunk-major blocks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepRows<'a, T> {
    pub data: &'a [T],
    pub first: usize,
    pub step: usize,
    pub stride: usize,
    pub rows: usize,
    pub cols: usize,
}

impl<'a, T> StepRows<'a, T> {
    /// Step `t`'s rows.
    pub fn at(&self, t: usize) -> Rows<'a, T> {
        let data = if self.rows == 0 {
            &self.data[..0]
        } else {
            &self.data[self.first + t * self.step..]
        };
        Rows::new(data, self.rows, self.cols, self.stride)
    }
}

/// `RowsMut` over `rows` packed rows of `cols`.
pub(crate) fn rows_mut<T>(data: &mut [T], rows: usize, cols: usize) -> RowsMut<'_, T> {
    RowsMut::contiguous(data, rows, cols)
}

/// `Rows` over `rows` packed rows of `cols`.
pub(crate) fn rows<T>(data: &[T], rows: usize, cols: usize) -> Rows<'_, T> {
    Rows::contiguous(data, rows, cols)
}

/// A row-major `rows x cols` matrix over packed rows.
pub(crate) fn mat<T>(data: &[T], rows: usize, cols: usize) -> MatRef<'_, T> {
    MatRef::row_major(data, rows, cols, cols)
}
