//! [`Adam`].

use super::{Optimizer, check_shapes, size_state, update_in_pieces};
use crate::config::Parallelism;
use crate::error::Error;
use fused_rnn_kernels::Float;
use fused_rnn_kernels::optim::{AdamStep, AdamUpdate, adam_update};

/// Adam with PyTorch's `torch.optim.Adam` update (no weight decay, no amsgrad):
///
/// ```text
/// m = b1 m + (1 - b1) g        v = b2 v + (1 - b2) g^2
/// p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Adam<T> {
    /// Learning rate.
    pub lr: f64,
    /// `(b1, b2)`, the moments' decay rates.
    pub betas: (f64, f64),
    /// Added to the denominator.
    pub eps: f64,
    /// Updates done so far (`t`).
    pub steps: u64,
    /// First moments, one per parameter slice (empty before the first step).
    pub m: Vec<Vec<T>>,
    /// Second moments.
    pub v: Vec<Vec<T>>,
    /// Threads for an update: the current rayon pool (the default: large parameters in
    /// pieces, the same bits as on one thread) or this thread.
    pub parallelism: Parallelism,
}

impl<T: Float> Adam<T> {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8.
    pub fn new(lr: f64) -> Self {
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            steps: 0,
            m: Vec::new(),
            v: Vec::new(),
            parallelism: Parallelism::default(),
        }
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn step(&mut self, params: &mut [&mut [T]], grads: &[&[T]]) -> Result<(), Error> {
        check_shapes(params, grads, &self.m)?;
        size_state(&mut self.m, params);
        size_state(&mut self.v, params);
        self.steps += 1;
        let (b1, b2) = self.betas;
        let t = self.steps as i32;
        let step = AdamStep {
            beta2: T::from_f64(b2),
            one_minus_beta1: T::ONE - T::from_f64(b1),
            one_minus_beta2: T::ONE - T::from_f64(b2),
            step_size: T::from_f64(self.lr / (1.0 - b1.powi(t))),
            bias_correction2_sqrt: T::from_f64((1.0 - b2.powi(t)).sqrt()),
            eps: T::from_f64(self.eps),
        };
        let arch = fused_rnn_kernels::arch();
        for ((p, &g), (m, v)) in params
            .iter_mut()
            .zip(grads)
            .zip(self.m.iter_mut().zip(&mut self.v))
        {
            update_in_pieces(
                self.parallelism,
                (p, g),
                [m, v],
                &|params, grads, [m, v]| {
                    let op = AdamUpdate {
                        params,
                        grads,
                        m,
                        v,
                        step,
                    };
                    adam_update(arch, op);
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's form in f64 with bias-corrected moments: `p -= lr * m_hat /
    /// (sqrt(v_hat) + eps)`, algebraically PyTorch's.
    fn reference(p: &mut [f64], grads: &[Vec<f64>], lr: f64) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..p.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                p[i] -= lr * mh / (vh.sqrt() + eps);
            }
        }
    }

    #[test]
    fn matches_the_textbook_update() {
        let grads: Vec<Vec<f64>> = (0..20)
            .map(|s| (0..5).map(|i| ((s * 5 + i) as f64 * 0.7).sin()).collect())
            .collect();
        let mut want = vec![0.3, -0.1, 2.0, 0.0, -4.0];
        reference(&mut want, &grads, 0.01);
        let mut p = [0.3, -0.1, 2.0, 0.0, -4.0];
        let mut adam = Adam::new(0.01);
        for g in &grads {
            adam.step(&mut [&mut p[..]], &[&g[..]]).unwrap();
        }
        for (a, b) in p.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{a} {b}");
        }
        assert_eq!(adam.steps, 20);
    }

    #[test]
    fn other_shapes_are_errors_and_change_nothing() {
        let mut adam = Adam::<f32>::new(0.1);
        let mut w = vec![1.0f32; 3];
        assert!(adam.step(&mut [&mut w[..]], &[&[1.0f32; 2][..]]).is_err());
        adam.step(&mut [&mut w[..]], &[&[1.0f32; 3][..]]).unwrap();
        let (before, state) = (w.clone(), adam.clone());
        let mut w4 = [0.0f32; 4];
        assert!(adam.step(&mut [&mut w4[..]], &[&[1.0f32; 4][..]]).is_err());
        assert!(
            adam.step(
                &mut [&mut w[..], &mut w4[..]],
                &[&[1.0f32; 3][..], &[1.0f32; 4][..]]
            )
            .is_err()
        );
        assert_eq!(adam, state);
        assert_eq!(w, before);
    }
}
