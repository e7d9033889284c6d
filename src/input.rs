//! [`SeqShape`] and [`Input`]: what a call runs on.

use crate::config::Config;
use crate::error::{Error, check_len, mul};

/// The shape of a batch of sequences: `steps` (T) and `batch` (B).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SeqShape {
    /// Time steps, T (0 is allowed: the state passes through unchanged).
    pub steps: usize,
    /// Sequences, B.
    pub batch: usize,
}

impl SeqShape {
    /// `SeqShape { steps, batch }`.
    pub const fn new(steps: usize, batch: usize) -> Self {
        SeqShape { steps, batch }
    }
}

/// A batch of input sequences: the data, its shape, and optionally per-sequence lengths and
/// state resets.
///
/// ```
/// use fused_rnn::{Input, SeqShape};
/// let x = vec![0.0f32; 5 * 2 * 3];
/// let lengths = [5, 2];
/// let input = Input::new(&x, SeqShape::new(5, 2)).with_lengths(&lengths);
/// assert_eq!(input.shape.batch, 2);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Input<'a, T> {
    /// `[T, B, input_size]` (or `[B, T, input_size]` for [`SeqLayout::BatchMajor`]); empty
    /// for token input ([`Input::tokens`]).
    ///
    /// [`SeqLayout::BatchMajor`]: crate::SeqLayout::BatchMajor
    pub x: &'a [T],
    /// Token input instead of `x` (see [`Input::tokens`]).
    pub tokens: Option<Tokens<'a, T>>,
    /// T and B.
    pub shape: SeqShape,
    /// `lengths[b] <= T` for each sequence, as cuDNN's sequence lengths and PyTorch's packed
    /// sequences mean them: steps at and past a sequence's length output zeros and leave its
    /// state alone (its final state is the one after its own last step; a reverse direction
    /// starts at its own last step). No sorting, no packing.
    pub lengths: Option<&'a [usize]>,
    /// `resets[t * B + b]` (always time-major): sequence `b` starts afresh at step `t`, as at
    /// an episode boundary. The forward direction enters step `t` from the initial state
    /// instead of the state after step `t - 1`; a reverse direction enters step `t - 1` from
    /// the initial state. No gradient crosses the boundary. Ignored at padding steps.
    pub resets: Option<&'a [bool]>,
}

/// Token ids and the table their vectors come from: an embedding lookup feeding layer 0,
/// `x[r] = table[ids[r]]`, fused into its input projection.
///
/// Layer 0 then projects the table's `V` rows (`table W_ih^T`, once per call) and gathers a
/// row per step and sequence, instead of projecting `T * B` gathered vectors; backward sums
/// the gate gradients per id and takes `dW_ih` and dL/d(table) from those `V` rows. Worth it
/// when `V` is well under `T * B` (a character model: `V` = 97 against 2048 rows a window);
/// with `V >= T * B` (a word-level vocabulary) layer 0 looks the rows up and runs as on x,
/// and dL/d(table) sums dL/dx by id: no gain, no loss, and no `V`-sized scratch.
#[derive(Debug)]
pub struct Tokens<'a, T> {
    /// `[T, B]` (or `[B, T]` batch-major), each below `V`.
    pub ids: &'a [usize],
    /// `[V, input_size]`, row-major (PyTorch's `nn.Embedding.weight`).
    pub table: &'a [T],
}

impl<'a, T> Input<'a, T> {
    /// Full-length sequences with no resets.
    pub fn new(x: &'a [T], shape: SeqShape) -> Self {
        Input {
            x,
            tokens: None,
            shape,
            lengths: None,
            resets: None,
        }
    }
    /// Token input: step `t` of sequence `b` is the row `ids[t * B + b]` of `table`
    /// (`[V, input_size]`), as an embedding lookup followed by the module would see it, with
    /// the lookup fused into layer 0 (see [`Tokens`]). Backward's `dx` is then dL/d(table),
    /// `[V, input_size]`. A call takes more workspace than [`Recurrent::workspace_len`] says,
    /// `V * G * H` (and `V * H` more for a reset-after GRU) or, with `V >= T * B`,
    /// `T * B * input_size`: the workspace grows to it on the first such call.
    ///
    /// [`Recurrent::workspace_len`]: crate::Recurrent::workspace_len
    ///
    /// ```
    /// use fused_rnn::{Config, Input, Recurrent, SeqShape, Workspace};
    /// let lstm = Recurrent::<f32>::with_seed(Config::lstm(4, 8), 0)?;
    /// let table = vec![0.5f32; 10 * 4]; // 10 tokens of 4 values
    /// let ids = [3, 9, 0, 3]; // 2 steps x 2 sequences
    /// let shape = SeqShape::new(2, 2);
    /// let (mut state, mut y) = (lstm.zero_state(2), vec![0.0; 2 * 2 * 8]);
    /// lstm.forward(Input::tokens(&ids, &table, shape), &mut state, &mut y, &mut Workspace::new())?;
    /// # Ok::<(), fused_rnn::Error>(())
    /// ```
    pub fn tokens(ids: &'a [usize], table: &'a [T], shape: SeqShape) -> Self {
        Input {
            x: &[],
            tokens: Some(Tokens { ids, table }),
            shape,
            lengths: None,
            resets: None,
        }
    }
    /// With per-sequence lengths.
    pub fn with_lengths(mut self, lengths: &'a [usize]) -> Self {
        self.lengths = Some(lengths);
        self
    }
    /// With state resets.
    pub fn with_resets(mut self, resets: &'a [bool]) -> Self {
        self.resets = Some(resets);
        self
    }

    /// Checks every part against `config`.
    pub(crate) fn check(&self, config: &Config) -> Result<(), Error> {
        let SeqShape { steps, batch } = self.shape;
        match self.tokens {
            None => check_len("x", mul(&[steps, batch, config.input_size])?, self.x.len())?,
            Some(tokens) => tokens.check(config.input_size, steps * batch, self.x.len())?,
        }
        if let Some(lengths) = self.lengths {
            check_len("lengths", batch, lengths.len())?;
            if let Some((b, &l)) = lengths.iter().enumerate().find(|(_, l)| **l > steps) {
                return Err(Error::invalid(
                    "lengths",
                    format!("lengths[{b}] = {l} > steps {steps}"),
                ));
            }
        }
        if let Some(resets) = self.resets {
            check_len("resets", mul(&[steps, batch])?, resets.len())?;
        }
        Ok(())
    }
}

// By hand: a derive would ask `T: Copy` of what is only borrowed.
impl<T> Clone for Tokens<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Tokens<'_, T> {}

impl<T> Tokens<'_, T> {
    /// The table's rows, V.
    pub fn vocab(&self, input_size: usize) -> usize {
        self.table.len() / input_size.max(1)
    }

    /// Checks the ids and the table against `input_size` and the number of rows.
    fn check(&self, input_size: usize, rows: usize, x_len: usize) -> Result<(), Error> {
        check_len("x", 0, x_len)?;
        check_len("ids", rows, self.ids.len())?;
        let vocab = self.vocab(input_size);
        if vocab == 0 || vocab * input_size != self.table.len() {
            return Err(Error::invalid(
                "table",
                format!(
                    "{} values are not a whole number (at least 1) of rows of {input_size}",
                    self.table.len()
                ),
            ));
        }
        match self.ids.iter().position(|&id| id >= vocab) {
            Some(i) => Err(Error::invalid(
                "ids",
                format!(
                    "ids[{i}] = {} is not below the table's {vocab} rows",
                    self.ids[i]
                ),
            )),
            None => Ok(()),
        }
    }
}
