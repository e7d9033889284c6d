//! The optimizer updates of [`crate::optim`], one element at a time.

use crate::float::Float;
use crate::optim::AdamStep;

/// Adam's update (see [`crate::optim::AdamUpdate`]), element by element.
pub fn adam_update<T: Float>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], c: AdamStep<T>) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = *m + c.one_minus_beta1 * (g - *m);
        *v = c.beta2 * *v + c.one_minus_beta2 * g * g;
        let denom = v.sqrt() / c.bias_correction2_sqrt + c.eps;
        *p -= c.step_size * *m / denom;
    }
}

/// Adagrad's update (see [`crate::optim::AdagradUpdate`]), element by element.
pub fn adagrad_update<T: Float>(p: &mut [T], g: &[T], sum_sq: &mut [T], lr: T, eps: T) {
    for ((p, &g), s) in p.iter_mut().zip(g).zip(sum_sq.iter_mut()) {
        *s += g * g;
        *p -= lr * g / (s.sqrt() + eps);
    }
}
