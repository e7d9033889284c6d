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
    /// `[T, B, input_size]` (or `[B, T, input_size]` for [`SeqLayout::BatchMajor`]).
    ///
    /// [`SeqLayout::BatchMajor`]: crate::SeqLayout::BatchMajor
    pub x: &'a [T],
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

impl<'a, T> Input<'a, T> {
    /// Full-length sequences with no resets.
    pub fn new(x: &'a [T], shape: SeqShape) -> Self {
        Input {
            x,
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
        check_len("x", mul(&[steps, batch, config.input_size])?, self.x.len())?;
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
