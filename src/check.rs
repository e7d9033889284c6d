//! Finding the first non-finite value (NaN or an infinity) and where it is: an optional check
//! for when a loss turns NaN and you want to know whether the input, a parameter, the
//! initial state or a step of the output brought it.
//!
//! The layers never hide a non-finite value: NaN in gives NaN out (in that sequence, from
//! that step on), so a check on the output finds the step where it appeared.
//!
//! ```
//! use fused_rnn::check::check_sequence;
//! use fused_rnn::{SeqLayout, SeqShape};
//!
//! // y: [T=3, B=2, F=2], with a NaN at step 1 of sequence 1.
//! let mut y = vec![0.5f32; 12];
//! y[6] = f32::NAN;
//! let err = check_sequence("y", &y, SeqShape::new(3, 2), 2, SeqLayout::TimeMajor).unwrap_err();
//! assert_eq!((err.step, err.index.clone()), (Some(1), vec![1, 1, 0]));
//! assert_eq!(err.to_string(), "y[1, 1, 0] = NaN (step 1)");
//! ```

use std::fmt;

use crate::config::SeqLayout;
use crate::input::{Input, SeqShape};
use crate::params::Params;
use crate::recurrent::Recurrent;
use crate::state::State;
use fused_rnn_kernels::Float;

/// A non-finite value and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// The tensor or buffer (`"x"`, `"weight_hh_l0"`, `"state.h"`, ...).
    pub tensor: String,
    /// Its position, one index per dimension of the tensor's own layout.
    pub index: Vec<usize>,
    /// For a sequence, the step it is at.
    pub step: Option<usize>,
    /// The value (NaN, +inf or -inf), widened to f64.
    pub value: f64,
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index: Vec<String> = self.index.iter().map(usize::to_string).collect();
        write!(f, "{}[{}] = {}", self.tensor, index.join(", "), self.value)?;
        if let Some(step) = self.step {
            write!(f, " (step {step})")?;
        }
        Ok(())
    }
}

impl std::error::Error for NonFinite {}

/// The position of the first non-finite element of `data`, in memory order.
pub fn first_non_finite<T: Float>(data: &[T]) -> Option<usize> {
    data.iter().position(|v| !v.is_finite())
}

/// `Err` with the first non-finite element of `data`, read as a tensor of `shape` (row-major;
/// a `shape` that does not match `data.len()` is read as `[data.len()]`).
pub fn check_tensor<T: Float>(tensor: &str, shape: &[usize], data: &[T]) -> Result<(), NonFinite> {
    let Some(at) = first_non_finite(data) else {
        return Ok(());
    };
    let fits = shape.iter().product::<usize>() == data.len();
    let shape = if fits { shape } else { &[data.len()] };
    let mut index = vec![0; shape.len()];
    let mut rest = at;
    for (i, &dim) in shape.iter().enumerate().rev() {
        index[i] = rest % dim;
        rest /= dim;
    }
    Err(NonFinite {
        tensor: tensor.to_string(),
        index,
        step: None,
        value: data[at].to_f64(),
    })
}

/// `Err` with the earliest step's first non-finite element of a sequence buffer (`x`, `y`,
/// `dy`): `width` features per step and sequence, in `layout`. The index is in the layout's
/// order (`[t, b, f]` or `[b, t, f]`).
pub fn check_sequence<T: Float>(
    tensor: &str,
    data: &[T],
    shape: SeqShape,
    width: usize,
    layout: SeqLayout,
) -> Result<(), NonFinite> {
    let (steps, batch) = (shape.steps, shape.batch);
    if steps * batch * width != data.len() {
        return check_tensor(tensor, &[data.len()], data);
    }
    for t in 0..steps {
        for b in 0..batch {
            let (index, at) = match layout {
                SeqLayout::TimeMajor => ([t, b], (t * batch + b) * width),
                SeqLayout::BatchMajor => ([b, t], (b * steps + t) * width),
            };
            if let Some(f) = first_non_finite(&data[at..at + width]) {
                return Err(NonFinite {
                    tensor: tensor.to_string(),
                    index: vec![index[0], index[1], f],
                    step: Some(t),
                    value: data[at + f].to_f64(),
                });
            }
        }
    }
    Ok(())
}

/// `Err` with the first non-finite element of any tensor of `params`, in `state_dict` order.
pub fn check_params<T: Float>(params: &Params<T>) -> Result<(), NonFinite> {
    params
        .iter()
        .try_for_each(|t| check_tensor(t.name(), t.shape(), t.data()))
}

/// Checks what a call of `module` would read: its parameters, the input sequence and the
/// initial state (`[layers * directions, B, H]`), in that order.
pub fn check_call<T: Float>(
    module: &Recurrent<T>,
    input: &Input<'_, T>,
    state: &State<T>,
) -> Result<(), NonFinite> {
    let config = module.config();
    check_params(module.params())?;
    match input.tokens {
        Some(tokens) => check_tensor(
            "table",
            &[tokens.vocab(config.input_size), config.input_size],
            tokens.table,
        )?,
        None => check_sequence("x", input.x, input.shape, config.input_size, config.layout)?,
    }
    let slices = config.num_layers * config.directions();
    let batch = input.shape.batch;
    check_tensor("state.h", &[slices, batch, config.state_size()], &state.h)?;
    check_tensor("state.c", &[slices, batch, config.hidden_size], &state.c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_in_row_major_order() {
        let mut w = vec![1.0f64; 12];
        w[7] = f64::NEG_INFINITY;
        w[9] = f64::NAN;
        let err = check_tensor("w", &[3, 4], &w).unwrap_err();
        assert_eq!(err.index, vec![1, 3]);
        assert_eq!(err.value, f64::NEG_INFINITY);
        assert!(check_tensor("w", &[3, 4], &[0.0f64; 12]).is_ok());
    }

    #[test]
    fn a_sequence_reports_the_earliest_step_in_either_layout() {
        // [B=2, T=3, F=1]: sequence 0 is NaN at step 2, sequence 1 at step 1.
        let y = [0.0f32, 0.0, f32::NAN, 0.0, f32::INFINITY, 0.0];
        let shape = SeqShape::new(3, 2);
        let err = check_sequence("y", &y, shape, 1, SeqLayout::BatchMajor).unwrap_err();
        assert_eq!((err.step, err.index), (Some(1), vec![1, 1, 0]));
        assert_eq!(err.value, f64::INFINITY);
    }

    #[test]
    fn a_mismatched_shape_is_read_flat() {
        let err = check_tensor("v", &[2, 2], &[0.0f32, f32::NAN, 0.0]).unwrap_err();
        assert_eq!(err.index, vec![1]);
    }
}
