//! Optimizers over any set of parameter slices: [`Adam`] (Kingma and Ba, 2015) and
//! [`Adagrad`] (Duchi et al., 2011; the min-char-rnn's), with PyTorch's update formulas and
//! defaults, in the parameters' precision.
//!
//! The state (moments, step count) is public, so a checkpoint can save and restore it.
//!
//! ```
//! use fused_rnn::optim::{Adam, Optimizer};
//! let mut w = vec![1.0f32, -2.0];
//! let g = vec![0.5f32, -0.5];
//! let mut adam = Adam::new(0.1);
//! adam.step(&mut [&mut w[..]], &[&g[..]])?;
//! // Adam's first step moves every weight by lr against its gradient's sign.
//! assert!((w[0] - 0.9).abs() < 1e-6 && (w[1] + 1.9).abs() < 1e-6);
//! # Ok::<(), fused_rnn::Error>(())
//! ```

mod adagrad;
mod adam;

pub use adagrad::Adagrad;
pub use adam::Adam;

use crate::error::{Error, check_len};
use fused_rnn_kernels::Float;

/// One update of parameters from their gradients.
pub trait Optimizer<T: Float> {
    /// Updates every `params[i]` from `grads[i]`. The first call sizes the state; later
    /// calls must pass the same shapes.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming `grads[i]` or `params[i]` when a count or length
    /// differs; nothing changes then.
    fn step(&mut self, params: &mut [&mut [T]], grads: &[&[T]]) -> Result<(), Error>;
}

/// Checks `params` against `grads` and against the state's shapes (empty: not sized yet).
fn check_shapes<T>(params: &[&mut [T]], grads: &[&[T]], state: &[Vec<T>]) -> Result<(), Error> {
    check_len("grads (count)", params.len(), grads.len())?;
    if let Some(i) = params
        .iter()
        .zip(grads)
        .position(|(p, g)| p.len() != g.len())
    {
        return Err(Error::shape(
            format!("grads[{i}]"),
            params[i].len(),
            grads[i].len(),
        ));
    }
    if !state.is_empty() {
        check_len("params (count)", state.len(), params.len())?;
        if let Some(i) = state
            .iter()
            .zip(params)
            .position(|(s, p)| s.len() != p.len())
        {
            return Err(Error::shape(
                format!("params[{i}]"),
                state[i].len(),
                params[i].len(),
            ));
        }
    }
    Ok(())
}

/// Zero state shaped like `params`, unless already sized.
fn size_state<T: Float>(state: &mut Vec<Vec<T>>, params: &[&mut [T]]) {
    if state.is_empty() {
        *state = params.iter().map(|p| vec![T::ZERO; p.len()]).collect();
    }
}
