//! Truncated backpropagation through time over a long sequence: [`Tbptt`].
//!
//! **TBPTT(k, k)** ([`Truncation::windows`]): the sequence is cut into windows of `k` steps;
//! each window runs forward from the state the previous one left (carried forward, detached:
//! no gradient flows back into the previous window) and backward through its own steps.
//!
//! **TBPTT(k1, k2)** ([`Truncation::new`], `k2 > k1`, after Williams and Peng, "An efficient
//! gradient-based algorithm for on-line training of recurrent network trajectories", 1990):
//! every `k1` new steps, the loss of those `k1` steps is backpropagated through the last `k2`
//! steps. The `k2 - k1` older steps are run again from the state at the start of the span,
//! with the current weights, so the gradient reaches back `k2` steps into the recurrence.
//!
//! All buffers (a reserve sized for `k2` steps, the workspace, the span's input, outputs and
//! gradients) are allocated when the driver is made; a window allocates nothing.
//!
//! ```
//! use fused_rnn::{Config, Recurrent, Tbptt, Truncation};
//!
//! let lstm = Recurrent::<f32>::with_seed(Config::lstm(3, 8), 0)?;
//! let (batch, k) = (2, 5);
//! let mut tbptt = Tbptt::new(&lstm, batch, Truncation::windows(k))?;
//! let mut grads = lstm.zero_grads();
//! let long: Vec<f32> = (0..40 * batch * 3).map(|i| (i as f32 * 0.1).sin()).collect();
//! for window in long.chunks(k * batch * 3) {
//!     // Loss = sum(y) over the window's new steps: dL/dy = 1.
//!     let loss = tbptt.step(&lstm, window, &mut grads, |y, dy| {
//!         dy.fill(1.0);
//!         y.iter().sum::<f32>()
//!     })?;
//!     assert!(loss.is_finite());
//! }
//! # Ok::<(), fused_rnn::Error>(())
//! ```

use crate::buffers::{Reserve, Workspace};
use crate::config::SeqLayout;
use crate::error::{Error, mul};
use crate::input::{Input, SeqShape};
use crate::params::Grads;
use crate::recurrent::{Backward, Recurrent};
use crate::state::State;
use fused_rnn_kernels::Float;

/// How far gradients reach back: every `k1` steps, backpropagate `k2` steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    k1: usize,
    k2: usize,
}

impl Truncation {
    /// Disjoint windows of `k` steps: TBPTT(k, k).
    pub fn windows(k: usize) -> Self {
        Truncation { k1: k, k2: k }
    }
    /// TBPTT(k1, k2): every `k1` steps, backpropagate the new steps' loss `k2` steps.
    ///
    /// # Errors
    /// [`Error::ZeroDim`] for `k1 == 0`; [`Error::InvalidArgument`] for `k2 < k1`.
    pub fn new(k1: usize, k2: usize) -> Result<Self, Error> {
        if k1 == 0 {
            return Err(Error::ZeroDim { arg: "k1" });
        }
        if k2 < k1 {
            return Err(Error::invalid(
                "k2",
                format!("{k2} is shorter than k1 = {k1}"),
            ));
        }
        Ok(Truncation { k1, k2 })
    }
    /// New steps per update.
    pub fn k1(&self) -> usize {
        self.k1
    }
    /// Steps backpropagated per update.
    pub fn k2(&self) -> usize {
        self.k2
    }
}

/// The truncated-BPTT driver for one module and batch size (see the module docs).
#[derive(Debug)]
pub struct Tbptt<T: Float> {
    truncation: Truncation,
    batch: usize,
    input_size: usize,
    output_size: usize,
    /// The state entering the span (TBPTT(k1, k2)) or the next window (TBPTT(k, k)).
    state: State<T>,
    /// The span's input `[k2][B][I]`: the kept older steps, then the new ones.
    span_x: Vec<T>,
    /// The span's token ids `[k2][B]` (see [`Tbptt::step_tokens`]), as `span_x`.
    span_ids: Vec<usize>,
    /// Older steps kept at the front of `span_x` or `span_ids` (at most `k2 - k1`).
    kept: usize,
    /// Whether the kept steps are token ids.
    kept_tokens: bool,
    y: Vec<T>,
    dy: Vec<T>,
    dx: Vec<T>,
    /// Steps of the last span, and how many of them were new.
    last: (usize, usize),
    run_state: State<T>,
    d_state: State<T>,
    reserve: Reserve<T>,
    ws: Workspace<T>,
}

impl<T: Float> Tbptt<T> {
    /// A driver for `module` over `batch` sequences, starting from the zero state.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a batch-major module (windows are time-major slices),
    /// or a bidirectional one with `k2 > k1` (a reverse direction has no state to resume
    /// from mid-sequence); [`Error::SizeOverflow`].
    pub fn new(module: &Recurrent<T>, batch: usize, truncation: Truncation) -> Result<Self, Error> {
        let config = module.config();
        if config.layout != SeqLayout::TimeMajor {
            return Err(Error::invalid("module", "Tbptt takes time-major windows"));
        }
        if config.bidirectional && truncation.k2 > truncation.k1 {
            return Err(Error::invalid(
                "truncation",
                "k2 > k1 needs a unidirectional module",
            ));
        }
        let (k2, i, o) = (truncation.k2, config.input_size, config.output_size());
        let shape = SeqShape::new(k2, batch);
        Ok(Tbptt {
            truncation,
            batch,
            input_size: i,
            output_size: o,
            state: module.zero_state(batch),
            span_x: vec![T::ZERO; mul(&[k2, batch, i])?],
            span_ids: vec![0; mul(&[k2, batch])?],
            kept: 0,
            kept_tokens: false,
            y: vec![T::ZERO; mul(&[k2, batch, o])?],
            dy: vec![T::ZERO; mul(&[k2, batch, o])?],
            dx: vec![T::ZERO; mul(&[k2, batch, i])?],
            last: (0, 0),
            run_state: module.zero_state(batch),
            d_state: module.zero_state(batch),
            reserve: Reserve::for_shape(module, shape)?,
            ws: Workspace::with_len(module.workspace_len(shape)?),
        })
    }

    /// Feeds the next `x` (`[n][B][I]`, time-major, `1 <= n <= k1` steps; only the last
    /// window of a sequence may be short), runs forward and backward over the span, adds the
    /// parameter gradients into `grads`, and returns what `loss` returns.
    ///
    /// `loss(y, dy)` gets the outputs of the `n` new steps (`[n][B][D*Hout]`) and writes
    /// dL/dy for them (it starts zeroed); the older steps of a TBPTT(k1, k2) span carry no
    /// loss of their own.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x` is not a whole number of steps, or
    /// [`Error::InvalidArgument`] for more than `k1` or no steps; nothing changes then.
    pub fn step<R>(
        &mut self,
        module: &Recurrent<T>,
        x: &[T],
        grads: &mut Grads<T>,
        loss: impl FnOnce(&[T], &mut [T]) -> R,
    ) -> Result<R, Error> {
        let row = self.batch * self.input_size;
        let new = self.new_steps(x.len(), row, "x")?;
        self.check_kind(module, grads, false)?;
        let steps = self.kept + new;
        self.span_x[self.kept * row..steps * row].copy_from_slice(x);
        self.run(module, steps, None, grads, None, loss)
    }

    /// [`Tbptt::step`] on token input ([`Input::tokens`]): the next `ids` (`[n][B]`) of
    /// `table` (`[V, I]`, e.g. an embedding's weight), with the lookup fused into layer 0.
    /// A TBPTT(k1, k2) span's older steps are looked up again in this `table`, as they run
    /// again with the module's current weights. `d_table` (`[V, I]`) is overwritten with
    /// dL/dtable over the whole span, its older steps included.
    ///
    /// # Errors
    /// As [`Tbptt::step`], for `ids`; an id not below V, a table that is not whole rows of
    /// I, or a `d_table` of another length; [`Error::InvalidArgument`] while the span holds
    /// older steps fed by [`Tbptt::step`]. Nothing changes then.
    pub fn step_tokens<R>(
        &mut self,
        module: &Recurrent<T>,
        (ids, table): (&[usize], &[T]),
        grads: &mut Grads<T>,
        d_table: &mut [T],
        loss: impl FnOnce(&[T], &mut [T]) -> R,
    ) -> Result<R, Error> {
        let new = self.new_steps(ids.len(), self.batch, "ids")?;
        self.check_kind(module, grads, true)?;
        let (steps, b) = (self.kept + new, self.batch);
        // The new ids and the table, checked before anything changes (the kept ids were).
        Input::tokens(ids, table, SeqShape::new(new, b)).check(module.config())?;
        crate::error::check_len("d_table", table.len(), d_table.len())?;
        self.span_ids[self.kept * b..steps * b].copy_from_slice(ids);
        self.run(module, steps, Some(table), grads, Some(d_table), loss)
    }

    /// The number of new steps in `len` values of `row` each, checked against k1.
    fn new_steps(&self, len: usize, row: usize, arg: &'static str) -> Result<usize, Error> {
        let new = len.checked_div(row).unwrap_or(0);
        if new * row != len {
            return Err(Error::shape(arg, (new + 1) * row, len));
        }
        if new == 0 || new > self.truncation.k1 {
            return Err(Error::invalid(
                arg,
                format!("{new} steps, expected 1..={}", self.truncation.k1),
            ));
        }
        Ok(new)
    }

    /// Checks the module and grads against this driver, and that the older steps a span
    /// keeps were fed the same way (rows of x, or token ids).
    fn check_kind(
        &self,
        module: &Recurrent<T>,
        grads: &Grads<T>,
        tokens: bool,
    ) -> Result<(), Error> {
        if State::<T>::lens(module.config(), self.batch)
            != (self.run_state.h.len(), self.run_state.c.len())
        {
            return Err(Error::invalid(
                "module",
                "not the module this driver was made for",
            ));
        }
        if self.kept > 0 && self.kept_tokens != tokens {
            return Err(Error::invalid(
                if tokens { "ids" } else { "x" },
                "the span keeps older steps fed the other way (step or step_tokens)",
            ));
        }
        grads.check(module.config(), "grads")
    }

    /// Forward and backward over the span's `steps` (the kept ones, then the new), its
    /// input the span's x, or its ids in `table` (then dL/dtable goes to `d_table`).
    fn run<R>(
        &mut self,
        module: &Recurrent<T>,
        steps: usize,
        table: Option<&[T]>,
        grads: &mut Grads<T>,
        d_table: Option<&mut [T]>,
        loss: impl FnOnce(&[T], &mut [T]) -> R,
    ) -> Result<R, Error> {
        let (row, new) = (self.batch * self.input_size, steps - self.kept);
        let shape = SeqShape::new(steps, self.batch);
        let input = match table {
            Some(table) => Input::tokens(&self.span_ids[..steps * self.batch], table, shape),
            None => Input::new(&self.span_x[..steps * row], shape),
        };
        let out = self.batch * self.output_size;
        self.run_state.h.copy_from_slice(&self.state.h);
        self.run_state.c.copy_from_slice(&self.state.c);
        let y = &mut self.y[..steps * out];
        module.forward_train(
            input,
            &mut self.run_state,
            y,
            &mut self.reserve,
            &mut self.ws,
        )?;
        // Only the new steps carry loss.
        let dy = &mut self.dy[..steps * out];
        dy.fill(T::ZERO);
        let result = loss(&y[self.kept * out..], &mut dy[self.kept * out..]);
        // The span starts from a detached state: no gradient flows into it.
        self.d_state.reset();
        let dx = match d_table {
            Some(d_table) => d_table,
            None => &mut self.dx[..steps * row],
        };
        let bwd = Backward {
            d_state: &mut self.d_state,
            dx: Some(dx),
            grads,
        };
        module.backward(input, dy, &mut self.reserve, bwd, &mut self.ws)?;
        self.last = (steps, if table.is_some() { 0 } else { new });
        self.advance(module, steps, table)?;
        Ok(result)
    }

    /// Moves the span on: TBPTT(k, k) carries the final state; TBPTT(k1, k2) keeps the last
    /// `k2 - k1` steps and runs the start state over the steps that leave the span.
    fn advance(
        &mut self,
        module: &Recurrent<T>,
        steps: usize,
        table: Option<&[T]>,
    ) -> Result<(), Error> {
        let keep = (self.truncation.k2 - self.truncation.k1).min(steps);
        self.kept_tokens = table.is_some();
        if keep == 0 {
            self.state.h.copy_from_slice(&self.run_state.h);
            self.state.c.copy_from_slice(&self.run_state.c);
            self.kept = 0;
            return Ok(());
        }
        let (b, row) = (self.batch, self.batch * self.input_size);
        let leave = steps - keep;
        if leave > 0 {
            let shape = SeqShape::new(leave, b);
            let input = match table {
                Some(table) => Input::tokens(&self.span_ids[..leave * b], table, shape),
                None => Input::new(&self.span_x[..leave * row], shape),
            };
            let y = &mut self.y[..leave * b * self.output_size];
            module.forward(input, &mut self.state, y, &mut self.ws)?;
            match table {
                Some(_) => self.span_ids.copy_within(leave * b..steps * b, 0),
                None => self.span_x.copy_within(leave * row..steps * row, 0),
            }
        }
        self.kept = keep;
        Ok(())
    }

    /// dL/dx of the last update's new steps (`[n][B][I]`), e.g. for an embedding below;
    /// empty after [`Tbptt::step_tokens`] (whose dL/dtable went to its `d_table`).
    pub fn dx(&self) -> &[T] {
        let row = self.batch * self.input_size;
        let (steps, new) = self.last;
        &self.dx[(steps - new) * row..steps * row]
    }

    /// The carried state: entering the next window, or the start of the next span.
    pub fn state(&self) -> &State<T> {
        &self.state
    }

    /// Continues from `state` (a checkpoint's): the next window of TBPTT(k, k) enters with
    /// it; TBPTT(k1, k2) starts a new span there (older steps are not kept).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `state` is not this driver's batch and module; nothing
    /// changes then.
    pub fn set_state(&mut self, state: &State<T>) -> Result<(), Error> {
        crate::error::check_len("state.h", self.state.h.len(), state.h.len())?;
        crate::error::check_len("state.c", self.state.c.len(), state.c.len())?;
        self.state.h.copy_from_slice(&state.h);
        self.state.c.copy_from_slice(&state.c);
        self.kept = 0;
        self.last = (0, 0);
        Ok(())
    }

    /// The seed of the next window's dropout masks (save it to resume exactly).
    pub fn dropout_seed(&self) -> u64 {
        self.reserve.dropout_seed
    }

    /// Sets the seed of the next window's dropout masks.
    pub fn set_dropout_seed(&mut self, seed: u64) {
        self.reserve.dropout_seed = seed;
    }

    /// Starts a new sequence: zero state, nothing kept.
    pub fn reset(&mut self) {
        self.state.reset();
        self.kept = 0;
        self.last = (0, 0);
    }
}
