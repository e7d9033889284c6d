//! Vanilla RNN pointwise passes: `h' = act(a)` forward, `da = dh * act'(h')` backward, with
//! act = tanh (`act' = 1 - h'^2`) or relu (`act' = [h' > 0]`, as PyTorch takes it at 0).

use core::ops::Range;

use pulp::{Arch, Simd, WithSimd};

use super::{UnitPass, Units, check_shape, run_on_units};
use crate::cell::Nonlinearity;
use crate::float::Float;
use crate::lane_map;
use crate::lanes::Lanes;
use crate::view::{Rows, RowsMut};

/// Arguments of [`rnn_fwd_pointwise`]; B rows, hidden size H.
#[derive(Debug)]
pub struct RnnFwdPointwise<'a, T> {
    /// `[B][H]` in: `x W_ih^T + h W_hh^T` (no bias); out: h_t, which backward reads.
    pub gates: RowsMut<'a, T>,
    /// `[H]` `b_ih + b_hh` (zeros for a layer without bias).
    pub bias: &'a [T],
    /// The activation.
    pub nonlinearity: Nonlinearity,
    /// `[B][H]` out: h_t.
    pub h: RowsMut<'a, T>,
}

impl<T> RnnFwdPointwise<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.h.rows(), self.h.cols());
        check_shape("rnn fwd gates", self.gates.rows(), self.gates.cols(), b, h);
        check_shape("rnn fwd bias", 1, self.bias.len(), 1, h);
        (b, h)
    }
}

impl<T: Float> UnitPass for RnnFwdPointwise<'_, T> {
    fn hidden(&self) -> usize {
        self.check().1
    }
    fn dispatch(arch: Arch, units: Units<Self>) {
        T::__kernel_rnn_fwd(arch, units)
    }
    #[inline(always)]
    fn run_units<S: Simd>(mut self, s: S, units: Range<usize>) {
        let (rows, _) = self.check();
        let l = Lanes::<S, T>::new(s);
        let bias = &self.bias[units.clone()];
        for r in 0..rows {
            let g = &mut self.gates.row_mut(r)[units.clone()];
            let h = &mut self.h.row_mut(r)[units.clone()];
            match self.nonlinearity {
                Nonlinearity::Tanh => lane_map!(l, [bias], [g, h], |[b], [a, _]| {
                    let h = l.flush(l.tanh(l.add(a, b)));
                    [h, h]
                }),
                Nonlinearity::Relu => lane_map!(l, [bias], [g, h], |[b], [a, _]| {
                    let h = l.flush(l.relu(l.add(a, b)));
                    [h, h]
                }),
            }
        }
    }
}

/// One vanilla-RNN forward step's pointwise pass (see the module docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn rnn_fwd_pointwise<T: Float>(arch: Arch, args: RnnFwdPointwise<'_, T>) {
    run_on_units(arch, "rnn fwd", args, None)
}

/// [`rnn_fwd_pointwise`] on hidden units `units` only; the other units' outputs are left
/// as they are. Running it on ranges that cover `0..H` gives bitwise what one whole pass
/// gives.
///
/// # Panics
/// If the views disagree in shape or `units` is not within `0..H`.
#[track_caller]
pub fn rnn_fwd_pointwise_units<T: Float>(
    arch: Arch,
    args: RnnFwdPointwise<'_, T>,
    units: Range<usize>,
) {
    run_on_units(arch, "rnn fwd", args, Some(units))
}

/// Arguments of [`rnn_bwd_pointwise`]; B rows, hidden size H.
#[derive(Debug)]
pub struct RnnBwdPointwise<'a, T> {
    /// `[B][H]` h_t, the activation forward saved.
    pub gates: Rows<'a, T>,
    /// `[B][H]` dL/dh_t arriving through the recurrence (or the whole gradient on h_t).
    pub dh: Rows<'a, T>,
    /// `[B][H]` dL/dy_t, added to `dh` when given.
    pub dy: Option<Rows<'a, T>>,
    /// The activation.
    pub nonlinearity: Nonlinearity,
    /// `[B][H]` out: dL/d(pre-activation).
    pub d_gates: RowsMut<'a, T>,
}

impl<T> RnnBwdPointwise<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.gates.rows(), self.gates.cols());
        check_shape("rnn bwd dh", self.dh.rows(), self.dh.cols(), b, h);
        if let Some(dy) = &self.dy {
            check_shape("rnn bwd dy", dy.rows(), dy.cols(), b, h);
        }
        check_shape(
            "rnn bwd d_gates",
            self.d_gates.rows(),
            self.d_gates.cols(),
            b,
            h,
        );
        (b, h)
    }
}

impl<T: Float> WithSimd for RnnBwdPointwise<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let (rows, _) = self.check();
        let l = Lanes::<S, T>::new(s);
        let act = self.nonlinearity;
        for r in 0..rows {
            let (h, dh) = (self.gates.row(r), self.dh.row(r));
            let out = self.d_gates.row_mut(r);
            match &self.dy {
                Some(dy) => lane_map!(l, [h, dh, dy.row(r)], [out], |[h, dh, dy], _| {
                    [rnn_grad(l, act, h, l.add(dh, dy))]
                }),
                None => lane_map!(l, [h, dh], [out], |[h, dh], _| [rnn_grad(l, act, h, dh)]),
            }
        }
    }
}

/// dL/da from the activation's output `h` and dL/dh.
#[inline(always)]
fn rnn_grad<S: Simd, T: Float>(
    l: Lanes<S, T>,
    act: Nonlinearity,
    h: T::V<S>,
    dh: T::V<S>,
) -> T::V<S> {
    match act {
        Nonlinearity::Tanh => l.flush(l.mul(dh, l.tanh_grad(h))),
        Nonlinearity::Relu => l.relu_grad(h, dh),
    }
}

/// One vanilla-RNN backward step's pointwise pass (see the module docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn rnn_bwd_pointwise<T: Float>(arch: Arch, args: RnnBwdPointwise<'_, T>) {
    args.check();
    T::__kernel_rnn_bwd(arch, args)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::available_archs;
    use crate::reference::rnn as reference;
    use crate::testing::{
        assert_padding_nan, cast, check_close, padded, scaled_tolerance, size_nonzero, unpad,
        values,
    };

    /// (B, H, pre-activations, bias, dh, dy).
    type Case = (usize, usize, Vec<f64>, Vec<f64>, Vec<f64>, Option<Vec<f64>>);

    fn case() -> impl Strategy<Value = Case> {
        (1usize..4, size_nonzero()).prop_flat_map(|(b, h)| {
            let n = b * h;
            (
                Just(b),
                Just(h),
                values(n),
                values(h),
                values(n),
                prop::option::of(values(n)),
            )
        })
    }

    fn run<T: Float>(arch: Arch, act: Nonlinearity, case: &Case) -> Result<(), TestCaseError> {
        let (b, h, pre, bias, dh, dy) = case;
        let (b, h, pad) = (*b, *h, 3);
        let mut want_gates = pre.clone();
        let mut want_h = vec![0.0; b * h];
        reference::rnn_fwd_pointwise(RnnFwdPointwise {
            gates: RowsMut::contiguous(&mut want_gates, b, h),
            bias,
            nonlinearity: act,
            h: RowsMut::contiguous(&mut want_h, b, h),
        });
        let mut gates = padded::<T>(pre, b, h, pad);
        let mut hh = padded::<T>(&want_h, b, h, pad);
        hh.iter_mut().for_each(|x| *x = T::NAN);
        let bias_t = cast::<T>(bias);
        rnn_fwd_pointwise(
            arch,
            RnnFwdPointwise {
                gates: RowsMut::new(&mut gates, b, h, h + pad),
                bias: &bias_t,
                nonlinearity: act,
                h: RowsMut::new(&mut hh, b, h, h + pad),
            },
        );
        let tol = scaled_tolerance::<T>(&[pre, bias]);
        check_close("gates", &unpad(&gates, b, h, pad), &want_gates, tol)?;
        check_close("h", &unpad(&hh, b, h, pad), &want_h, tol)?;
        assert_padding_nan("h", &hh, b, h, pad)?;

        let mut want_dg = vec![0.0; b * h];
        reference::rnn_bwd_pointwise(RnnBwdPointwise {
            gates: Rows::contiguous(&want_gates, b, h),
            dh: Rows::contiguous(dh, b, h),
            dy: dy.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
            nonlinearity: act,
            d_gates: RowsMut::contiguous(&mut want_dg, b, h),
        });
        let (saved, dh_t) = (cast::<T>(&want_gates), cast::<T>(dh));
        let dy_t = dy.as_deref().map(cast::<T>);
        let mut dg = padded::<T>(&want_dg, b, h, pad);
        dg.iter_mut().for_each(|x| *x = T::NAN);
        rnn_bwd_pointwise(
            arch,
            RnnBwdPointwise {
                gates: Rows::contiguous(&saved, b, h),
                dh: Rows::contiguous(&dh_t, b, h),
                dy: dy_t.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
                nonlinearity: act,
                d_gates: RowsMut::new(&mut dg, b, h, h + pad),
            },
        );
        let tol = scaled_tolerance::<T>(&[dh, dy.as_deref().unwrap_or(&[])]);
        check_close("d_gates", &unpad(&dg, b, h, pad), &want_dg, tol)?;
        assert_padding_nan("d_gates", &dg, b, h, pad)
    }

    proptest! {
        #![proptest_config(crate::testing::cases(64))]

        #[test]
        fn fwd_bwd_match_reference(case in case()) {
            for arch in available_archs() {
                for act in [Nonlinearity::Tanh, Nonlinearity::Relu] {
                    run::<f32>(arch, act, &case)?;
                    run::<f64>(arch, act, &case)?;
                }
            }
        }
    }

    #[test]
    fn relu_grad_is_zero_at_zero_and_passes_nan_like_pytorch() {
        let gates = [0.0f32, -1.0, 2.0, f32::NAN];
        let dh = [5.0f32; 4];
        for arch in available_archs() {
            let mut dg = [f32::NAN; 4];
            rnn_bwd_pointwise(
                arch,
                RnnBwdPointwise {
                    gates: Rows::contiguous(&gates, 1, 4),
                    dh: Rows::contiguous(&dh, 1, 4),
                    dy: None,
                    nonlinearity: Nonlinearity::Relu,
                    d_gates: RowsMut::contiguous(&mut dg, 1, 4),
                },
            );
            assert_eq!(&dg[..3], &[0.0, 0.0, 5.0]);
            assert_eq!(
                dg[3], 5.0,
                "PyTorch's threshold_backward passes the gradient at NaN"
            );
        }
    }
}
