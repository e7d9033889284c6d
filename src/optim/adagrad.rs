//! [`Adagrad`].

use super::{Optimizer, check_shapes, size_state, update_in_pieces};
use crate::config::Parallelism;
use crate::error::Error;
use fused_rnn_kernels::Float;
use fused_rnn_kernels::optim::{AdagradUpdate, adagrad_update};

/// Adagrad with PyTorch's `torch.optim.Adagrad` update (no decay):
/// `s += g^2; p -= lr * g / (sqrt(s) + eps)`. The min-char-rnn uses it with lr 0.1.
#[derive(Clone, Debug, PartialEq)]
pub struct Adagrad<T> {
    /// Learning rate.
    pub lr: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Updates done so far.
    pub steps: u64,
    /// Sums of squared gradients, one per parameter slice (empty before the first step).
    pub sum_sq: Vec<Vec<T>>,
    /// Threads for an update: the current rayon pool (the default: large parameters in
    /// pieces, the same bits as on one thread) or this thread.
    pub parallelism: Parallelism,
}

impl<T: Float> Adagrad<T> {
    /// PyTorch's default eps, 1e-10.
    pub fn new(lr: f64) -> Self {
        Adagrad {
            lr,
            eps: 1e-10,
            steps: 0,
            sum_sq: Vec::new(),
            parallelism: Parallelism::default(),
        }
    }
}

impl<T: Float> Optimizer<T> for Adagrad<T> {
    fn step(&mut self, params: &mut [&mut [T]], grads: &[&[T]]) -> Result<(), Error> {
        check_shapes(params, grads, &self.sum_sq)?;
        size_state(&mut self.sum_sq, params);
        self.steps += 1;
        let (lr, eps) = (T::from_f64(self.lr), T::from_f64(self.eps));
        let arch = fused_rnn_kernels::arch();
        for ((p, &g), s) in params.iter_mut().zip(grads).zip(&mut self.sum_sq) {
            update_in_pieces(self.parallelism, (p, g), [s], &|params, grads, [sum_sq]| {
                let op = AdagradUpdate {
                    params,
                    grads,
                    sum_sq,
                    lr,
                    eps,
                };
                adagrad_update(arch, op);
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_shrink_as_squares_accumulate() {
        let mut p = [0.0f64];
        let mut opt = Adagrad::new(1.0);
        opt.step(&mut [&mut p[..]], &[&[2.0][..]]).unwrap();
        assert!((p[0] + 1.0).abs() < 1e-9); // 2 / sqrt(4)
        opt.step(&mut [&mut p[..]], &[&[2.0][..]]).unwrap();
        assert!((p[0] + 1.0 + 2.0 / 8f64.sqrt()).abs() < 1e-9);
        assert_eq!(opt.sum_sq, vec![vec![8.0]]);
    }
}
