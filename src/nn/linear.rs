//! [`Linear`]: `y = x W^T + b` (PyTorch's `nn.Linear`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Parallelism;
use crate::engine::plan::gemm_threads;
use crate::error::{Error, check_len, mul};
use fused_rnn_kernels::sums::{AddRows, add_rows};
use fused_rnn_kernels::{Float, MatMut, MatRef, Rows, gemm};

/// A dense layer from `inputs` to `outputs` features, with bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear<T> {
    inputs: usize,
    outputs: usize,
    /// `[outputs, inputs]`, row-major (PyTorch's `weight`).
    pub weight: Vec<T>,
    /// `[outputs]`.
    pub bias: Vec<T>,
    /// Threads for its products (results do not depend on it).
    pub parallelism: Parallelism,
}

impl<T: Float> Linear<T> {
    /// PyTorch's initialization: weight and bias uniform in `[-1/sqrt(inputs),
    /// 1/sqrt(inputs)]`, seeded.
    ///
    /// # Errors
    /// [`Error::ZeroDim`] for a zero size, [`Error::SizeOverflow`].
    pub fn new(inputs: usize, outputs: usize, seed: u64) -> Result<Self, Error> {
        let mut l = Self::zeros(inputs, outputs)?;
        let k = 1.0 / (inputs as f64).sqrt();
        let mut rng = StdRng::seed_from_u64(seed);
        for w in l.weight.iter_mut().chain(l.bias.iter_mut()) {
            *w = T::from_f64(rng.random_range(-k..=k));
        }
        Ok(l)
    }

    /// All zeros (a gradient's starting point).
    ///
    /// # Errors
    /// As [`Linear::new`].
    pub fn zeros(inputs: usize, outputs: usize) -> Result<Self, Error> {
        if inputs == 0 {
            return Err(Error::ZeroDim { arg: "inputs" });
        }
        if outputs == 0 {
            return Err(Error::ZeroDim { arg: "outputs" });
        }
        Ok(Linear {
            inputs,
            outputs,
            weight: vec![T::ZERO; mul(&[outputs, inputs])?],
            bias: vec![T::ZERO; outputs],
            parallelism: Parallelism::default(),
        })
    }

    /// Input features.
    pub fn inputs(&self) -> usize {
        self.inputs
    }
    /// Output features.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Rows of `x` (`[rows, inputs]`), checking `other` is `[rows, outputs]`.
    fn rows(&self, x: &[T], other: (&'static str, usize)) -> Result<usize, Error> {
        let rows = x.len() / self.inputs;
        check_len("x", mul(&[rows, self.inputs])?, x.len())?;
        check_len(other.0, mul(&[rows, self.outputs])?, other.1)?;
        Ok(rows)
    }

    fn threads(&self) -> usize {
        gemm_threads(self.parallelism)
    }

    /// `y = x W^T + b` for `x` `[rows, inputs]`, `y` `[rows, outputs]`.
    ///
    /// # Errors
    /// A length that is not a whole number of rows, or `y` of another row count; nothing is
    /// written then.
    pub fn forward(&self, x: &[T], y: &mut [T]) -> Result<(), Error> {
        let rows = self.rows(x, ("y", y.len()))?;
        let (i, o) = (self.inputs, self.outputs);
        for row in y.chunks_exact_mut(o) {
            row.copy_from_slice(&self.bias);
        }
        let w_t = MatRef::new(&self.weight, i, o, 1, i);
        let arch = fused_rnn_kernels::arch();
        gemm(
            arch,
            self.threads(),
            MatRef::row_major(x, rows, i, i),
            w_t,
            T::ONE,
            MatMut::row_major(y, rows, o, o),
        );
        Ok(())
    }

    /// Adds `dW += dy^T x`, `db += sum of dy's rows` into `grads`, and writes `dx = dy W`
    /// when given.
    ///
    /// # Errors
    /// Lengths as in [`Linear::forward`], `dx` not as long as `x`, or `grads` of another
    /// shape; nothing is written then.
    pub fn backward(
        &self,
        x: &[T],
        dy: &[T],
        dx: Option<&mut [T]>,
        grads: &mut Linear<T>,
    ) -> Result<(), Error> {
        let rows = self.rows(x, ("dy", dy.len()))?;
        if let Some(dx) = dx.as_deref() {
            check_len("dx", x.len(), dx.len())?;
        }
        if (grads.inputs, grads.outputs) != (self.inputs, self.outputs) {
            return Err(Error::invalid("grads", "another layer's shape"));
        }
        let (i, o) = (self.inputs, self.outputs);
        let (arch, threads) = (fused_rnn_kernels::arch(), self.threads());
        let dy_m = MatRef::row_major(dy, rows, o, o);
        gemm(
            arch,
            threads,
            dy_m.t(),
            MatRef::row_major(x, rows, i, i),
            T::ONE,
            MatMut::row_major(&mut grads.weight, o, i, i),
        );
        let dy_rows = Rows::contiguous(dy, rows, o);
        add_rows(
            arch,
            AddRows {
                acc: &mut grads.bias,
                rows: dy_rows,
            },
        );
        if let Some(dx) = dx {
            let w = MatRef::row_major(&self.weight, o, i, i);
            gemm(
                arch,
                threads,
                dy_m,
                w,
                T::ZERO,
                MatMut::row_major(dx, rows, i, i),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_match_hand_computation() {
        let mut l = Linear::<f64>::zeros(2, 3).unwrap();
        l.weight.copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        l.bias.copy_from_slice(&[0.5, -0.5, 1.0]);
        let x = [1.0, -1.0, 2.0, 0.5];
        let mut y = vec![0.0; 6];
        l.forward(&x, &mut y).unwrap();
        assert_eq!(y, [-0.5, -1.5, 0.0, 3.5, 7.5, 14.0]);
        let dy = [1.0, 0.0, -1.0, 0.5, 2.0, 1.0];
        let (mut g, mut dx) = (Linear::zeros(2, 3).unwrap(), vec![0.0; 4]);
        l.backward(&x, &dy, Some(&mut dx), &mut g).unwrap();
        // dW[o][i] = sum_r dy[r][o] x[r][i]; db = column sums; dx = dy W.
        assert_eq!(g.weight, [2.0, -0.75, 4.0, 1.0, 1.0, 1.5]);
        assert_eq!(g.bias, [1.5, 2.0, 0.0]);
        assert_eq!(dx, [-4.0, -4.0, 11.5, 15.0]);
    }

    #[test]
    fn bad_lengths_are_errors_and_write_nothing() {
        let l = Linear::<f32>::new(3, 2, 0).unwrap();
        let mut y = vec![9.0; 4];
        assert!(l.forward(&[0.0; 5], &mut y).is_err());
        assert!(l.forward(&[0.0; 3], &mut y).is_err());
        assert_eq!(y, [9.0; 4]);
        let mut g = Linear::zeros(2, 2).unwrap();
        assert!(l.backward(&[0.0; 3], &[0.0; 2], None, &mut g).is_err());
        let mut g = Linear::zeros(3, 2).unwrap();
        assert!(
            l.backward(&[0.0; 3], &[0.0; 2], Some(&mut [0.0; 2]), &mut g)
                .is_err()
        );
        assert!(g.weight.iter().all(|&w| w == 0.0));
    }
}
