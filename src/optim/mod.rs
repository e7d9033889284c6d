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

use crate::config::Parallelism;
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

/// Elements per piece of a parameter's update on the pool's threads. An update is
/// elementwise, so how a parameter is cut never changes a bit; it is memory-bound, so a
/// parameter of fewer than two pieces runs on the calling thread.
const PIECE: usize = 1 << 15;

/// Runs `update` on a parameter, its gradient and `S` state slices of the same length: cut
/// in halves down to pieces of about [`PIECE`] run on the current rayon pool (`par`
/// [`Parallelism::Rayon`], a large parameter), or whole on this thread. Allocates nothing.
fn update_in_pieces<T: Float, const S: usize, F>(
    par: Parallelism,
    (p, g): (&mut [T], &[T]),
    state: [&mut [T]; S],
    update: &F,
) where
    F: Fn(&mut [T], &[T], [&mut [T]; S]) + Sync,
{
    if par == Parallelism::Sequential || p.len() < 2 * PIECE {
        return update(p, g, state);
    }
    let mid = p.len() / 2;
    let (p_lo, p_hi) = p.split_at_mut(mid);
    let (g_lo, g_hi) = g.split_at(mid);
    let mut halves = state.map(|s| {
        let (lo, hi) = s.split_at_mut(mid);
        [lo, hi]
    });
    let lo = halves.each_mut().map(|h| std::mem::take(&mut h[0]));
    let hi = halves.map(|[_, hi]| hi);
    rayon::join(
        || update_in_pieces(par, (p_lo, g_lo), lo, update),
        || update_in_pieces(par, (p_hi, g_hi), hi, update),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Updates of a parameter large enough to be cut into pieces on the pool: the same
    /// bits on pools of 1, 2 and 3 threads as on this thread, for both optimizers.
    #[test]
    fn updates_in_pieces_have_the_bits_of_one_thread() {
        let n = 5 * PIECE + 17;
        let grads: Vec<Vec<f32>> = (0..3)
            .map(|s| (0..n).map(|i| ((s * n + i) as f32 * 0.37).sin()).collect())
            .collect();
        let run = |par: Parallelism, threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (mut p_adam, mut p_adagrad) = (vec![0.5f32; n], vec![0.5f32; n]);
            let mut adam = Adam::new(0.01);
            let mut adagrad = Adagrad::new(0.1);
            adam.parallelism = par;
            adagrad.parallelism = par;
            pool.install(|| {
                for g in &grads {
                    adam.step(&mut [&mut p_adam[..]], &[&g[..]]).unwrap();
                    adagrad.step(&mut [&mut p_adagrad[..]], &[&g[..]]).unwrap();
                }
            });
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (bits(&p_adam), bits(&adam.v[0]), bits(&p_adagrad))
        };
        let want = run(Parallelism::Sequential, 1);
        assert!(want.0.iter().any(|&b| b != 0.5f32.to_bits()));
        for threads in [1, 2, 3] {
            assert!(
                run(Parallelism::Rayon, threads) == want,
                "{threads} threads"
            );
        }
    }
}
