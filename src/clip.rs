//! Gradient clipping, as Pascanu, Mikolov and Bengio, "On the difficulty of training
//! recurrent neural networks" (2013, <https://arxiv.org/abs/1211.5063>) propose against
//! exploding gradients, and as the min-char-rnn clips by value.
//!
//! Both work on any set of gradient slices (a module's [`Grads`](crate::Grads), an
//! embedding's, a head's), so one norm covers the whole model:
//!
//! ```
//! use fused_rnn::clip::clip_grad_norm;
//! let (mut a, mut b) = (vec![3.0f32, 0.0], vec![4.0f32]);
//! let norm = clip_grad_norm(&mut [&mut a[..], &mut b[..]], 1.0);
//! assert_eq!(norm, 5.0);
//! assert!((a[0] - 0.6).abs() < 1e-6 && (b[0] - 0.8).abs() < 1e-6);
//! ```

use crate::fold::{LANES, fold_lanes};
use fused_rnn_kernels::Float;

/// The L2 norm of all elements of all slices, accumulated in f64 in eight running sums (a
/// fixed order: the same result every run).
pub fn global_norm<T: Float>(tensors: &[&mut [T]]) -> T {
    let mut sums = [0.0f64; LANES];
    for t in tensors {
        fold_lanes(&mut sums, t, |s, g| s + g * g);
    }
    T::from_f64(sums.iter().sum::<f64>().sqrt())
}

/// Scales all slices by `max_norm / (norm + 1e-6)` when that is below 1, PyTorch's
/// `clip_grad_norm_`, and returns the norm before clipping.
///
/// Unlike PyTorch, a non-finite norm (a NaN or infinite gradient) leaves the gradients as they
/// are: scaling by 0 would turn a blow-up into plausible-looking zeros. Check the returned norm.
pub fn clip_grad_norm<T: Float>(tensors: &mut [&mut [T]], max_norm: T) -> T {
    let norm = global_norm(tensors);
    let coef = max_norm.to_f64() / (norm.to_f64() + 1e-6);
    if norm.is_finite() && coef < 1.0 {
        let coef = T::from_f64(coef);
        for t in tensors.iter_mut() {
            t.iter_mut().for_each(|g| *g *= coef);
        }
    }
    norm
}

/// Clamps every element into `[-clip, clip]` (PyTorch's `clip_grad_value_`); NaN stays NaN.
pub fn clip_grad_value<T: Float>(tensors: &mut [&mut [T]], clip: T) {
    for g in tensors.iter_mut().flat_map(|t| t.iter_mut()) {
        if *g > clip {
            *g = clip;
        } else if *g < -clip {
            *g = -clip;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_limit_nothing_changes() {
        let mut a = vec![0.1f64, -0.2];
        let norm = clip_grad_norm(&mut [&mut a[..]], 1.0);
        assert!((norm - 0.05f64.sqrt()).abs() < 1e-15);
        assert_eq!(a, vec![0.1, -0.2]);
    }

    #[test]
    fn above_the_limit_the_norm_becomes_the_limit() {
        let mut a: Vec<f64> = (0..100).map(|i| (i as f64).sin() * 10.0).collect();
        let before = clip_grad_norm(&mut [&mut a[..]], 2.5);
        assert!(before > 2.5);
        let after = global_norm(&[&mut a[..]]);
        assert!((after - 2.5).abs() < 1e-5, "{after}");
    }

    #[test]
    fn non_finite_norm_leaves_gradients_visible() {
        let mut a = [f32::NAN, 1.0];
        let norm = clip_grad_norm(&mut [&mut a[..]], 1.0);
        assert!(norm.is_nan());
        assert!(a[0].is_nan() && a[1] == 1.0);
        let mut b = [f32::INFINITY, 1.0];
        assert!(clip_grad_norm(&mut [&mut b[..]], 1.0).is_infinite());
        assert_eq!(b[1], 1.0);
    }

    #[test]
    fn by_value_clamps_and_keeps_nan() {
        let mut a = [-7.0f32, 0.5, 9.0, f32::NAN];
        clip_grad_value(&mut [&mut a[..]], 5.0);
        assert_eq!(&a[..3], &[-5.0, 0.5, 5.0]);
        assert!(a[3].is_nan());
    }
}
