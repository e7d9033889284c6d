//! The explicit buffers: [`Workspace`] (scratch) and [`Reserve`] (what backward needs).
//!
//! In cuDNN's terms the reserve is the "reserve space" and the workspace the "workspace"; in
//! oneDNN's, the reserve is the "workspace" and our workspace its "scratchpad". Their sizes
//! are formulas ([`Recurrent::reserve_len`](crate::Recurrent::reserve_len),
//! [`Recurrent::workspace_len`](crate::Recurrent::workspace_len)); both are plain `Vec`s
//! that grow when a call needs more and are reused by later calls, so a training loop that
//! keeps them allocates only on its first step.

use std::fmt;

use crate::config::Config;
use crate::input::SeqShape;
use crate::params::Params;
use crate::prepared::{Pass, Prepared};
use fused_rnn_kernels::Float;
use fused_rnn_kernels::aligned::AlignedBuf;

/// Scratch memory for one call at a time, reusable across calls and modules.
///
/// It also keeps the weights of the last module it served prepared (packed) for inference
/// and for training, so the first call after the parameters change repacks them, and later
/// calls do not.
#[derive(Clone, Debug)]
pub struct Workspace<T> {
    /// Cache-line aligned, as the kernels' vector loads want (see [`AlignedBuf`]).
    buf: AlignedBuf<T>,
    /// Per [`Pass::slot`]: which module (id, parameter version) and pass the slot was
    /// prepared for.
    prepared: [PreparedSlot<T>; 2],
}

/// Prepared weights and the (module id, parameter version, pass) they were prepared for.
type PreparedSlot<T> = (Option<((u64, u64), Pass)>, Option<Prepared<T>>);

impl<T: Float> Default for Workspace<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Workspace<T> {
    /// An empty workspace; the first call grows it.
    pub fn new() -> Self {
        Workspace {
            buf: AlignedBuf::new(),
            prepared: [(None, None), (None, None)],
        }
    }
    /// A workspace of `len` elements (from [`Recurrent::workspace_len`](crate::Recurrent::workspace_len)),
    /// so that no call allocates.
    pub fn with_len(len: usize) -> Self {
        let mut w = Self::new();
        w.buf.resize(len);
        w
    }
    /// Its current length in elements.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Whether it holds nothing yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The first `len` elements of scratch (growing the buffer if needed; contents are
    /// unspecified) and the weights of the module `key = (id, version)` prepared for `pass`,
    /// with the unit-block layout too if `blocks` (see `engine::unit_blocks`).
    pub(crate) fn for_call(
        &mut self,
        len: usize,
        (key, config, params): ((u64, u64), &Config, &Params<T>),
        (pass, blocks): (Pass, bool),
    ) -> (&mut [T], &Prepared<T>) {
        if self.buf.len() < len {
            self.buf.resize(len);
        }
        let (held, slot) = &mut self.prepared[pass.slot()];
        if *held != Some((key, pass)) {
            Prepared::fill(slot, config, params, pass);
            *held = Some((key, pass));
        }
        let prepared = slot.as_mut().expect("filled above");
        if blocks {
            prepared.fill_blocks(config, params);
        }
        (&mut self.buf.as_mut_slice()[..len], prepared)
    }
}

/// The shape a [`Reserve`] was filled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReserveShape {
    /// Time steps.
    pub steps: usize,
    /// Sequences.
    pub batch: usize,
}

impl fmt::Display for ReserveShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} steps x {} sequences", self.steps, self.batch)
    }
}

/// What `forward_train` saves for `backward`: every step's activated gates and states, the
/// inputs of upper layers, and the call's lengths, resets and dropout masks.
///
/// Size one with [`Reserve::for_shape`] for the largest window you run; a shorter window
/// (the last one of a sequence) reuses it. `backward` checks that the reserve was filled by
/// the same module for the shape it is asked about, and uses it up: an LSTM's or a reset-after
/// GRU's gate gradients are written over its saved gates, so each backward needs its own
/// `forward_train` (as PyTorch frees a graph's saved tensors in `backward`).
#[derive(Clone, Debug)]
pub struct Reserve<T> {
    /// Cache-line aligned (see [`AlignedBuf`]).
    pub(crate) buf: AlignedBuf<T>,
    pub(crate) stamp: Option<Stamp>,
    pub(crate) lengths: Vec<usize>,
    pub(crate) resets: Vec<bool>,
    pub(crate) dropout_seed: u64,
}

/// Who filled a reserve, for which shape, with which options.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stamp {
    pub shape: ReserveShape,
    pub config: Config,
    pub has_lengths: bool,
    pub has_resets: bool,
}

impl<T: Float> Default for Reserve<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Reserve<T> {
    /// An empty reserve; the first `forward_train` grows it.
    pub fn new() -> Self {
        Reserve {
            buf: AlignedBuf::new(),
            stamp: None,
            lengths: Vec::new(),
            resets: Vec::new(),
            dropout_seed: 0,
        }
    }
    /// A reserve sized for `shape` on `module` (and any shorter window of the same batch).
    ///
    /// # Errors
    /// If the size overflows.
    pub fn for_shape(module: &crate::Recurrent<T>, shape: SeqShape) -> Result<Self, crate::Error> {
        let mut r = Self::new();
        r.buf.resize(module.reserve_len(shape)?);
        r.lengths.reserve(shape.batch);
        r.resets.reserve(shape.steps * shape.batch);
        Ok(r)
    }
    /// Seeds the dropout masks of the following `forward_train` calls (each call advances
    /// the seed, so windows get fresh masks; the same seed replays the same masks).
    pub fn with_dropout_seed(mut self, seed: u64) -> Self {
        self.dropout_seed = seed;
        self
    }
    /// The shape of the last `forward_train` that filled it, if no `backward` has used it up
    /// since.
    pub fn shape(&self) -> Option<ReserveShape> {
        self.stamp.as_ref().map(|s| s.shape)
    }
    /// Its length in elements.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Whether it holds no memory yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}
