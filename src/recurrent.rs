//! [`Recurrent`]: a stack of recurrent layers (PyTorch's `nn.LSTM` / `nn.GRU` / `nn.RNN`)
//! and its three entry points.

use crate::buffers::{Reserve, ReserveShape, Stamp, Workspace};
use crate::config::Config;
use crate::engine::driver::{self, BackwardOut, Call};
use crate::engine::{Masks, unit_blocks};
use crate::error::{Error, add, check_len, mul};
use crate::input::{Input, SeqShape};
use crate::layout;
use crate::params::{Grads, Params, Tensor};
use crate::prepared::Pass;
use crate::state::State;
use fused_rnn_kernels::{Arch, Float};
use std::sync::atomic::{AtomicU64, Ordering};

/// A recurrent module: `num_layers` stacked layers of one cell, optionally bidirectional,
/// with PyTorch's parameters and semantics.
///
/// ```
/// use fused_rnn::{Config, Input, Recurrent, SeqShape, Workspace};
///
/// let lstm = Recurrent::<f32>::with_seed(Config::lstm(3, 8), 0)?;
/// let shape = SeqShape::new(5, 2); // 5 steps, 2 sequences
/// let x = vec![0.5f32; 5 * 2 * 3]; // [T, B, I]
/// let mut y = vec![0.0f32; 5 * 2 * 8]; // [T, B, H]
/// let mut state = lstm.zero_state(2);
/// lstm.forward(Input::new(&x, shape), &mut state, &mut y, &mut Workspace::new())?;
/// assert!(y.iter().all(|v| v.abs() < 1.0));
/// # Ok::<(), fused_rnn::Error>(())
/// ```
#[derive(Debug)]
pub struct Recurrent<T: Float = f32> {
    config: Config,
    params: Params<T>,
    arch: Arch,
    /// Identifies this module to the workspaces that keep its prepared weights.
    id: u64,
    /// Bumped whenever the parameters may have changed (`tensors_mut`, `set_params`).
    version: u64,
}

/// Module ids for the workspaces' prepared-weight caches.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl<T: Float> Clone for Recurrent<T> {
    /// A copy with its own id (its workspaces prepare its weights anew).
    fn clone(&self) -> Self {
        Recurrent {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ..self.clone_parts()
        }
    }
}

/// The outputs of [`Recurrent::backward`].
#[derive(Debug)]
pub struct Backward<'a, T> {
    /// In: dL/d(final state) (zeros if the loss does not read it); out: dL/d(initial
    /// state).
    pub d_state: &'a mut State<T>,
    /// dL/dx in the input's layout, overwritten; `None` skips its GEMM. For token input
    /// ([`Input::tokens`]) dL/dtable, `[V, input_size]`.
    pub dx: Option<&'a mut [T]>,
    /// Parameter gradients, *added to* (zero them with [`Params::fill`] between steps).
    pub grads: &'a mut Grads<T>,
}

impl<T: Float> Recurrent<T> {
    /// A module with the given parameters.
    ///
    /// # Errors
    /// If the configuration is invalid or `params` are not exactly its tensors.
    pub fn new(config: Config, params: Params<T>) -> Result<Self, Error> {
        config.validate()?;
        params.check(&config, "params")?;
        Ok(Recurrent {
            config,
            params,
            arch: fused_rnn_kernels::arch(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            version: 0,
        })
    }

    /// A module with PyTorch's default initialization from `seed` (see [`Params::init`]).
    ///
    /// # Errors
    /// If the configuration is invalid.
    pub fn with_seed(config: Config, seed: u64) -> Result<Self, Error> {
        let params = Params::init(&config, seed)?;
        Self::new(config, params)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The parameters.
    pub fn params(&self) -> &Params<T> {
        &self.params
    }
    /// The parameter tensors, writable in place (their shapes cannot change).
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = &mut Tensor<T>> {
        self.version += 1;
        self.params.iter_mut()
    }
    /// Replaces all parameters.
    ///
    /// # Errors
    /// If `params` are not exactly this configuration's tensors; nothing changes then.
    pub fn set_params(&mut self, params: Params<T>) -> Result<(), Error> {
        params.check(&self.config, "params")?;
        self.params = params;
        self.version += 1;
        Ok(())
    }
    /// A zero state for `batch` sequences.
    pub fn zero_state(&self, batch: usize) -> State<T> {
        State::zeros(&self.config, batch)
    }
    /// Zero gradients shaped like the parameters.
    pub fn zero_grads(&self) -> Grads<T> {
        let mut g = self.params.clone();
        g.fill(T::ZERO);
        g
    }

    /// Elements of the reserve `forward_train` needs for `shape`.
    ///
    /// Per layer and direction `T*B*G*H + (T+1)*B*Hout`, plus `(T+1)*B*H` for an LSTM, plus
    /// `T*B*H` for a GRU or a projected LSTM; per layer but the last, `T*B*D*Hout` more, and
    /// that again with dropout. (T steps, B sequences, G gates, H hidden, P projection,
    /// `Hout = P or H`, D directions; see [`crate::layout`].)
    ///
    /// # Errors
    /// [`Error::SizeOverflow`].
    pub fn reserve_len(&self, shape: SeqShape) -> Result<usize, Error> {
        layout::reserve_len(&self.config, shape)
    }

    /// Elements of the workspace any entry point needs for `shape`: the largest of
    ///
    /// * `forward`: inference tape `T*B*G*H + 2*B*Hout (+ 2*B*H LSTM) (+ B*H GRU or
    ///   projected)`, two inter-layer buffers `2*T*B*D*Hout` when L > 1;
    /// * `forward_train`: nothing beyond the common part;
    /// * `backward`: `T*B*G*H` gate gradients, `2*B*Hout (+ 2*B*H)` carries, `T*B*H` for a
    ///   reset-after GRU, `B*H` for a reset-before GRU or a projected LSTM (and `T*B*P` for
    ///   the latter), `2*T*B*D*Hout` when L > 1, and `T*B*I` for dx when batch-major;
    ///
    /// each plus `G*H + H + B*Hout + B*H (+ 3*B*H GRU)` of per-direction scratch and, when
    /// batch-major, `T*B*I` for the transposed input. See [`crate::layout`].
    ///
    /// # Errors
    /// [`Error::SizeOverflow`].
    pub fn workspace_len(&self, shape: SeqShape) -> Result<usize, Error> {
        layout::workspace_len(&self.config, shape)
    }

    fn output_len(&self, shape: SeqShape) -> Result<usize, Error> {
        mul(&[shape.steps, shape.batch, self.config.output_size()])
    }

    fn clone_parts(&self) -> Self {
        Recurrent {
            config: self.config.clone(),
            params: self.params.clone(),
            arch: self.arch,
            id: self.id,
            version: self.version,
        }
    }

    /// The call's shared context and its scratch, with the weights prepared for `pass` (kept
    /// in the workspace; see [`crate::prepared`]).
    fn call<'a>(
        &'a self,
        input: &Input<'a, T>,
        pass: Pass,
        ws: &'a mut Workspace<T>,
        len: usize,
    ) -> (Call<'a, T>, &'a mut [T]) {
        let key = ((self.id, self.version), &self.config, &self.params);
        let spec = crate::engine::DirSpec::of(&self.config, 0, 0, 0, 0);
        let blocks = pass != Pass::Backward
            && unit_blocks::wanted::<T>(&spec, input.shape.batch, self.config.parallelism);
        let (scratch, prepared) = ws.for_call(len, key, (pass, blocks));
        let call = Call {
            config: &self.config,
            params: &self.params,
            prepared,
            arch: self.arch,
            shape: input.shape,
            par: self.config.parallelism,
            masks: Masks {
                lengths: input.lengths,
                resets: input.resets,
                b0: 0,
                full_batch: input.shape.batch,
            },
        };
        (call, scratch)
    }

    /// Inference: runs `input` from `state` (in: initial, out: final), writing every step's
    /// output into `y` (`[T, B, D*Hout]`, or `[B, T, D*Hout]` batch-major).
    ///
    /// # Errors
    /// A typed error naming the argument whose size is wrong; nothing is written then.
    pub fn forward(
        &self,
        input: Input<'_, T>,
        state: &mut State<T>,
        y: &mut [T],
        ws: &mut Workspace<T>,
    ) -> Result<(), Error> {
        self.check_forward(&input, state, y)?;
        let len = self.call_len(&input)?;
        let (call, scratch) = self.call(&input, Pass::Forward, ws, len);
        driver::forward(&call, (input.x, input.tokens), state, y, scratch);
        Ok(())
    }

    fn check_forward(&self, input: &Input<'_, T>, state: &State<T>, y: &[T]) -> Result<(), Error> {
        input.check(&self.config)?;
        state.check(&self.config, input.shape.batch, ["state.h", "state.c"])?;
        check_len("y", self.output_len(input.shape)?, y.len())?;
        self.call_len(input).map(|_| ())
    }

    /// The workspace a call on `input` takes: [`Recurrent::workspace_len`], and for token
    /// input the scratch of its layer-0 products (the workspace grows to it).
    fn call_len(&self, input: &Input<'_, T>) -> Result<usize, Error> {
        let base = self.workspace_len(input.shape)?;
        match &input.tokens {
            None => Ok(base),
            Some(tokens) => {
                let d = layout::Dims::new(&self.config, input.shape);
                let vocab = tokens.vocab(self.config.input_size);
                add(&[base, crate::engine::tokens::scratch_len(&d, vocab)?])
            }
        }
    }

    /// Training forward: as [`Recurrent::forward`], and fills `reserve` with what
    /// [`Recurrent::backward`] needs (growing it if it is too small).
    ///
    /// # Errors
    /// A typed error naming the argument whose size is wrong; nothing is written then.
    pub fn forward_train(
        &self,
        input: Input<'_, T>,
        state: &mut State<T>,
        y: &mut [T],
        reserve: &mut Reserve<T>,
        ws: &mut Workspace<T>,
    ) -> Result<(), Error> {
        self.check_forward(&input, state, y)?;
        let need = self.reserve_len(input.shape)?;
        let ws_len = self.call_len(&input)?;
        if reserve.buf.len() < need {
            reserve.buf.resize(need);
        }
        reserve.stamp = None;
        let seed = reserve.dropout_seed;
        reserve.dropout_seed = reserve.dropout_seed.wrapping_add(1);
        let (call, scratch) = self.call(&input, Pass::TrainForward, ws, ws_len);
        driver::forward_train(
            &call,
            (input.x, input.tokens),
            state,
            y,
            &mut reserve.buf.as_mut_slice()[..need],
            seed,
            scratch,
        );
        reserve.lengths.clear();
        reserve
            .lengths
            .extend_from_slice(input.lengths.unwrap_or(&[]));
        reserve.resets.clear();
        reserve
            .resets
            .extend_from_slice(input.resets.unwrap_or(&[]));
        reserve.stamp = Some(Stamp {
            shape: ReserveShape {
                steps: input.shape.steps,
                batch: input.shape.batch,
            },
            config: self.config.clone(),
            has_lengths: input.lengths.is_some(),
            has_resets: input.resets.is_some(),
        });
        Ok(())
    }

    /// Backpropagation through time over the steps `forward_train` saved in `reserve`.
    ///
    /// `input` must be the one given to that `forward_train` (same x, shape, lengths and
    /// resets); `dy` is dL/dy in y's layout. Gradients are added into `out.grads`; `out.dx`
    /// is overwritten; `out.d_state` goes from dL/d(final state) to dL/d(initial state).
    ///
    /// Backward uses the reserve up, as PyTorch frees a graph's saved tensors: an LSTM or a
    /// reset-after GRU writes its gate gradients over the saved gates (no buffer of their
    /// own). A second backward needs a new `forward_train` ([`Error::ReserveEmpty`] until
    /// then).
    ///
    /// # Errors
    /// [`Error::ReserveEmpty`] if no `forward_train` filled the reserve (or a backward has
    /// used it since),
    /// [`Error::ReserveMismatch`] if it was filled for another shape, or a typed error naming
    /// the argument whose size is wrong; nothing is written then.
    pub fn backward(
        &self,
        input: Input<'_, T>,
        dy: &[T],
        reserve: &mut Reserve<T>,
        out: Backward<'_, T>,
        ws: &mut Workspace<T>,
    ) -> Result<(), Error> {
        let stamp = reserve.stamp.as_ref().ok_or(Error::ReserveEmpty)?;
        let asked = ReserveShape {
            steps: input.shape.steps,
            batch: input.shape.batch,
        };
        if stamp.shape != asked {
            return Err(Error::ReserveMismatch {
                expected: asked,
                actual: stamp.shape,
            });
        }
        if stamp.config != self.config {
            return Err(Error::invalid(
                "reserve",
                "filled by a module with another configuration",
            ));
        }
        input.check(&self.config)?;
        if !same_option(input.lengths, stamp.has_lengths, &reserve.lengths) {
            return Err(Error::invalid(
                "lengths",
                "differ from the forward_train that filled the reserve",
            ));
        }
        if !same_option(input.resets, stamp.has_resets, &reserve.resets) {
            return Err(Error::invalid(
                "resets",
                "differ from the forward_train that filled the reserve",
            ));
        }
        check_len("dy", self.output_len(input.shape)?, dy.len())?;
        out.d_state
            .check(&self.config, input.shape.batch, ["d_state.h", "d_state.c"])?;
        if let Some(dx) = out.dx.as_deref() {
            // For token input, dL/dtable.
            let x_len = input.tokens.map_or(input.x.len(), |t| t.table.len());
            check_len("dx", x_len, dx.len())?;
        }
        out.grads.check(&self.config, "grads")?;
        let need = self.reserve_len(input.shape)?;
        let ws_len = self.call_len(&input)?;
        let Backward { d_state, dx, grads } = out;
        let (call, scratch) = self.call(&input, Pass::Backward, ws, ws_len);
        let out = BackwardOut { d_state, dx, grads };
        // From here the saved steps are being overwritten.
        reserve.stamp = None;
        driver::backward(
            &call,
            (input.x, input.tokens),
            dy,
            &mut reserve.buf.as_mut_slice()[..need],
            out,
            scratch,
        );
        Ok(())
    }
}

/// Whether an optional argument matches what a reserve saved of it.
fn same_option<X: PartialEq>(given: Option<&[X]>, had: bool, saved: &[X]) -> bool {
    given.is_some() == had && given.unwrap_or(&[]) == saved
}
