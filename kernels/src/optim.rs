//! Optimizer updates, a register of parameters at a time: Adam's and Adagrad's updates take
//! a square root and one or two divisions per parameter, which as plain Rust (compiled for
//! baseline x86-64: SSE2, 4 lanes) cost the char-rnn about 1 ms a step for its 0.89 M
//! parameters.
//!
//! Every operation is the scalar update's, in its order and unfused (no FMA), and square
//! roots and divisions are correctly rounded on every instruction set, so each update has
//! the bits of its reference ([`crate::reference::optim`]) on each.

use pulp::{Arch, Simd, WithSimd};

use crate::float::Float;
use crate::lane_map;
use crate::lanes::Lanes;

/// One Adam step's constants (PyTorch's `Adam`, no weight decay, no amsgrad).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep<T> {
    /// `b2`, the second moment's decay rate.
    pub beta2: T,
    /// `1 - b1`.
    pub one_minus_beta1: T,
    /// `1 - b2`.
    pub one_minus_beta2: T,
    /// `lr / (1 - b1^t)`.
    pub step_size: T,
    /// `sqrt(1 - b2^t)`.
    pub bias_correction2_sqrt: T,
    /// Added to the denominator.
    pub eps: T,
}

/// Adam's update of one slice of parameters, element by element:
///
/// ```text
/// m += (1 - b1) (g - m)        v = b2 v + (1 - b2) g g
/// p -= step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// ```
pub struct AdamUpdate<'a, T> {
    /// The parameters, updated in place.
    pub params: &'a mut [T],
    /// Their gradients.
    pub grads: &'a [T],
    /// First moments, updated in place.
    pub m: &'a mut [T],
    /// Second moments, updated in place.
    pub v: &'a mut [T],
    /// The step's constants.
    pub step: AdamStep<T>,
}

impl<T: Float> WithSimd for AdamUpdate<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = Lanes::<S, T>::new(s);
        let c = self.step;
        let (b2, one_b1, one_b2) = (
            l.splat(c.beta2),
            l.splat(c.one_minus_beta1),
            l.splat(c.one_minus_beta2),
        );
        let (step_size, bc2, eps) = (
            l.splat(c.step_size),
            l.splat(c.bias_correction2_sqrt),
            l.splat(c.eps),
        );
        lane_map!(l, [self.grads], [self.params, self.m, self.v], |[g],
                                                                   [
            p,
            m,
            v,
        ]| {
            let m = l.add(m, l.mul(one_b1, l.sub(g, m)));
            let v = l.add(l.mul(b2, v), l.mul(l.mul(one_b2, g), g));
            let denom = l.add(l.div(l.sqrt(v), bc2), eps);
            let p = l.sub(p, l.div(l.mul(step_size, m), denom));
            [p, m, v]
        });
    }
}

/// Runs an [`AdamUpdate`] on `arch`.
///
/// # Panics
/// If the slices differ in length.
#[track_caller]
pub fn adam_update<T: Float>(arch: Arch, op: AdamUpdate<'_, T>) {
    let n = op.params.len();
    assert!(
        op.grads.len() == n && op.m.len() == n && op.v.len() == n,
        "adam_update: slices of different lengths"
    );
    T::__kernel_adam(arch, op);
}

/// Adagrad's update of one slice of parameters, element by element:
/// `s += g g; p -= lr g / (sqrt(s) + eps)`.
pub struct AdagradUpdate<'a, T> {
    /// The parameters, updated in place.
    pub params: &'a mut [T],
    /// Their gradients.
    pub grads: &'a [T],
    /// The sums of squared gradients, updated in place.
    pub sum_sq: &'a mut [T],
    /// The learning rate.
    pub lr: T,
    /// Added to the denominator.
    pub eps: T,
}

impl<T: Float> WithSimd for AdagradUpdate<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = Lanes::<S, T>::new(s);
        let (lr, eps) = (l.splat(self.lr), l.splat(self.eps));
        lane_map!(
            l,
            [self.grads],
            [self.params, self.sum_sq],
            |[g], [p, sq]| {
                let sq = l.add(sq, l.mul(g, g));
                let p = l.sub(p, l.div(l.mul(lr, g), l.add(l.sqrt(sq), eps)));
                [p, sq]
            }
        );
    }
}

/// Runs an [`AdagradUpdate`] on `arch`.
///
/// # Panics
/// If the slices differ in length.
#[track_caller]
pub fn adagrad_update<T: Float>(arch: Arch, op: AdagradUpdate<'_, T>) {
    let n = op.params.len();
    assert!(
        op.grads.len() == n && op.sum_sq.len() == n,
        "adagrad_update: slices of different lengths"
    );
    T::__kernel_adagrad(arch, op);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::optim as naive;
    use proptest::prelude::*;

    fn bits<T: Float>(v: &[T]) -> Vec<u64> {
        v.iter().map(|x| x.to_f64().to_bits()).collect()
    }

    fn adam_case<T: Float>(values: &[(f64, f64, f64, f64)], t: i32) {
        let of = |k: usize| -> Vec<T> {
            values
                .iter()
                .map(|v| T::from_f64([v.0, v.1, v.2, v.3][k]))
                .collect()
        };
        let (b1, b2, lr) = (0.9f64, 0.999f64, 2e-3);
        let step = AdamStep {
            beta2: T::from_f64(b2),
            one_minus_beta1: T::ONE - T::from_f64(b1),
            one_minus_beta2: T::ONE - T::from_f64(b2),
            step_size: T::from_f64(lr / (1.0 - b1.powi(t))),
            bias_correction2_sqrt: T::from_f64((1.0 - b2.powi(t)).sqrt()),
            eps: T::from_f64(1e-8),
        };
        let (p0, g, m0) = (of(0), of(1), of(2));
        let v0: Vec<T> = of(3).iter().map(|x| x.abs()).collect();
        let (mut p_want, mut m_want, mut v_want) = (p0.clone(), m0.clone(), v0.clone());
        naive::adam_update(&mut p_want, &g, &mut m_want, &mut v_want, step);
        for arch in crate::available_archs() {
            let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
            let op = AdamUpdate {
                params: &mut p,
                grads: &g,
                m: &mut m,
                v: &mut v,
                step,
            };
            adam_update(arch, op);
            assert_eq!(bits(&p), bits(&p_want), "{arch:?}");
            assert_eq!(bits(&m), bits(&m_want), "{arch:?}");
            assert_eq!(bits(&v), bits(&v_want), "{arch:?}");
        }
    }

    fn adagrad_case<T: Float>(values: &[(f64, f64, f64, f64)]) {
        let p0: Vec<T> = values.iter().map(|v| T::from_f64(v.0)).collect();
        let g: Vec<T> = values.iter().map(|v| T::from_f64(v.1)).collect();
        let s0: Vec<T> = values.iter().map(|v| T::from_f64(v.2.abs())).collect();
        let (lr, eps) = (T::from_f64(0.1), T::from_f64(1e-10));
        let (mut p_want, mut s_want) = (p0.clone(), s0.clone());
        naive::adagrad_update(&mut p_want, &g, &mut s_want, lr, eps);
        for arch in crate::available_archs() {
            let (mut p, mut s) = (p0.clone(), s0.clone());
            let op = AdagradUpdate {
                params: &mut p,
                grads: &g,
                sum_sq: &mut s,
                lr,
                eps,
            };
            adagrad_update(arch, op);
            assert_eq!(bits(&p), bits(&p_want), "{arch:?}");
            assert_eq!(bits(&s), bits(&s_want), "{arch:?}");
        }
    }

    proptest! {
        /// The bits of the scalar update on every instruction set, at every length
        /// (1, odd, non-multiples of the register) and for gradients from tiny to large.
        #[test]
        fn updates_have_the_references_bits(
            values in prop::collection::vec(
                (-2.0f64..2.0, prop_oneof![-1e-6f64..1e-6, -10.0f64..10.0], -1.0f64..1.0, 0.0f64..4.0),
                1..70,
            ),
            t in 1i32..2000,
        ) {
            adam_case::<f32>(&values, t);
            adam_case::<f64>(&values, t);
            adagrad_case::<f32>(&values);
            adagrad_case::<f64>(&values);
        }
    }

    #[test]
    #[should_panic(expected = "slices of different lengths")]
    fn slices_of_different_lengths_are_refused() {
        let (mut p, mut m, mut v) = (vec![0.0f32; 3], vec![0.0f32; 3], vec![0.0f32; 2]);
        let step = AdamStep {
            beta2: 0.999,
            one_minus_beta1: 0.1,
            one_minus_beta2: 0.001,
            step_size: 1e-3,
            bias_correction2_sqrt: 0.03,
            eps: 1e-8,
        };
        let op = AdamUpdate {
            params: &mut p,
            grads: &[0.0; 3],
            m: &mut m,
            v: &mut v,
            step,
        };
        adam_update(crate::arch(), op);
    }
}
