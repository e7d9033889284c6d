//! LSTM pointwise passes, gates in PyTorch's order i, f, g, o.
//!
//! Forward: `i, f, o = sigmoid(.)`, `g = tanh(.)`, `c' = f*c + i*g`, `h' = o*tanh(c')`.
//! Backward, with `dh` the total gradient on h' and `dc` the one arriving on c':
//! `dc' = dc + dh*o*(1 - tanh(c')^2)`, `do = dh*tanh(c')`, `di = dc'*g`, `dg = dc'*i`,
//! `df = dc'*c`, `dc_prev = dc'*f`, each gate gradient then times its activation's derivative.
//! Backward recomputes `c'` from the saved gates and `c` with forward's exact operations
//! (one FMA) instead of reading it, so the state buffers only need the states entering steps.

use core::ops::Range;

use pulp::{Arch, Simd, WithSimd};

use super::{UnitPass, Units, check_shape, run_on_units, split_gates, split_gates_mut};
use crate::float::Float;
use crate::lane_map;
use crate::lanes::Lanes;
use crate::view::{Rows, RowsMut};

/// Arguments of [`lstm_fwd_pointwise`]; B rows, hidden size H.
#[derive(Debug)]
pub struct LstmFwdPointwise<'a, T> {
    /// `[B][4H]` in: `x W_ih^T + h W_hh^T` per gate (no bias); out: the activated gates.
    pub gates: RowsMut<'a, T>,
    /// `[4H]` `b_ih + b_hh` (zeros for a layer without bias).
    pub bias: &'a [T],
    /// `[B][H]` c_{t-1}.
    pub c_prev: Rows<'a, T>,
    /// `[B][H]` out: c_t.
    pub c: RowsMut<'a, T>,
    /// `[B][H]` out: `o * tanh(c_t)`, which is h_t (before `W_hr` for a projected LSTM).
    pub h: RowsMut<'a, T>,
}

impl<T> LstmFwdPointwise<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.c_prev.rows(), self.c_prev.cols());
        check_shape(
            "lstm fwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            4 * h,
        );
        check_shape("lstm fwd bias", 1, self.bias.len(), 1, 4 * h);
        check_shape("lstm fwd c", self.c.rows(), self.c.cols(), b, h);
        check_shape("lstm fwd h", self.h.rows(), self.h.cols(), b, h);
        (b, h)
    }
}

/// `c' = f*c + i*g`, flushed: shared by forward and backward so both get the same bits.
#[inline(always)]
fn next_cell<S: Simd, T: Float>(
    l: Lanes<S, T>,
    i: T::V<S>,
    f: T::V<S>,
    g: T::V<S>,
    c: T::V<S>,
) -> T::V<S> {
    l.flush(l.mul_add(f, c, l.mul(i, g)))
}

impl<T: Float> UnitPass for LstmFwdPointwise<'_, T> {
    fn hidden(&self) -> usize {
        self.check().1
    }
    fn dispatch(arch: Arch, units: Units<Self>) {
        T::__kernel_lstm_fwd(arch, units)
    }
    #[inline(always)]
    fn run_units<S: Simd>(mut self, s: S, units: Range<usize>) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        let u = units;
        let [bi, bf, bg, bo] = split_gates::<4, T>(self.bias, h).map(|b| &b[u.clone()]);
        for r in 0..rows {
            let [gi, gf, gg, go] =
                split_gates_mut::<4, T>(self.gates.row_mut(r), h).map(|g| &mut g[u.clone()]);
            let (c, h) = (
                &mut self.c.row_mut(r)[u.clone()],
                &mut self.h.row_mut(r)[u.clone()],
            );
            // Two passes over the row's units: the gates, then the cell. In one pass each
            // vector's chain (an activation's exp and division, then tanh(c)'s) is longer
            // than the core's window holds: 43 us at 32 rows x 256 units on Zen 4, 39 so.
            lane_map!(
                l,
                [bi, bf, bg, bo],
                [gi, gf, gg, go],
                |[bi, bf, bg, bo], [ai, af, ag, ao]| {
                    let i = l.flush(l.sigmoid(l.add(ai, bi)));
                    let f = l.flush(l.sigmoid(l.add(af, bf)));
                    let g = l.flush(l.tanh(l.add(ag, bg)));
                    let o = l.flush(l.sigmoid(l.add(ao, bo)));
                    [i, f, g, o]
                }
            );
            lane_map!(
                l,
                [&*gi, &*gf, &*gg, &*go, &self.c_prev.row(r)[u.clone()]],
                [c, h],
                |[i, f, g, o, c_prev], _| {
                    let c = next_cell(l, i, f, g, c_prev);
                    let h = l.mul(o, l.tanh(c));
                    [c, l.flush(h)]
                }
            );
        }
    }
}

/// One LSTM forward step's pointwise pass (see the module docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn lstm_fwd_pointwise<T: Float>(arch: Arch, args: LstmFwdPointwise<'_, T>) {
    run_on_units(arch, "lstm fwd", args, None)
}

/// [`lstm_fwd_pointwise`] on hidden units `units` only (their columns in each gate block,
/// of c and of h); the other units' outputs are left as they are. Running it on ranges
/// that cover `0..H` gives bitwise what one whole pass gives.
///
/// # Panics
/// If the views disagree in shape or `units` is not within `0..H`.
#[track_caller]
pub fn lstm_fwd_pointwise_units<T: Float>(
    arch: Arch,
    args: LstmFwdPointwise<'_, T>,
    units: Range<usize>,
) {
    run_on_units(arch, "lstm fwd", args, Some(units))
}

/// Arguments of [`lstm_bwd_pointwise`]; B rows, hidden size H.
#[derive(Debug)]
pub struct LstmBwdPointwise<'a, T> {
    /// `[B][4H]` the activated gates forward saved.
    pub gates: Rows<'a, T>,
    /// `[B][H]` c_{t-1}.
    pub c_prev: Rows<'a, T>,
    /// `[B][H]` dL/dh_t arriving through the recurrence (or the whole gradient on h_t).
    pub dh: Rows<'a, T>,
    /// `[B][H]` dL/dy_t, added to `dh` when given.
    pub dy: Option<Rows<'a, T>>,
    /// `[B][H]` dL/dc_t arriving from the step after.
    pub dc: Rows<'a, T>,
    /// `[B][H]` out: dL/dc_{t-1}.
    pub dc_prev: RowsMut<'a, T>,
    /// `[B][4H]` out: dL/d(pre-activation) of i, f, g, o.
    pub d_gates: RowsMut<'a, T>,
}

impl<T> LstmBwdPointwise<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.c_prev.rows(), self.c_prev.cols());
        check_shape(
            "lstm bwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            4 * h,
        );
        check_shape("lstm bwd dh", self.dh.rows(), self.dh.cols(), b, h);
        if let Some(dy) = &self.dy {
            check_shape("lstm bwd dy", dy.rows(), dy.cols(), b, h);
        }
        check_shape("lstm bwd dc", self.dc.rows(), self.dc.cols(), b, h);
        check_shape(
            "lstm bwd dc_prev",
            self.dc_prev.rows(),
            self.dc_prev.cols(),
            b,
            h,
        );
        check_shape(
            "lstm bwd d_gates",
            self.d_gates.rows(),
            self.d_gates.cols(),
            b,
            4 * h,
        );
        (b, h)
    }
}

impl<T: Float> WithSimd for LstmBwdPointwise<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        for r in 0..rows {
            let [i, f, g, o] = split_gates::<4, T>(self.gates.row(r), h);
            let [di, df, dg, d_o] = split_gates_mut::<4, T>(self.d_gates.row_mut(r), h);
            let dc_prev = self.dc_prev.row_mut(r);
            let (c_prev, dc, dh) = (self.c_prev.row(r), self.dc.row(r), self.dh.row(r));
            // tanh(c') first, parked in d_o's place, then the rest: as in the forward pass,
            // one pass's chain (tanh's exp and division, then the gradients) outran the
            // core's window (20 us at 32 rows x 256 units on Zen 4, 16.5 so).
            lane_map!(l, [i, f, g, c_prev], [d_o], |[i, f, g, c_prev], _| {
                [l.tanh(next_cell(l, i, f, g, c_prev))]
            });
            match &self.dy {
                Some(dy) => lane_map!(
                    l,
                    [i, f, g, o, c_prev, dc, dh, dy.row(r)],
                    [dc_prev, di, df, dg, d_o],
                    |[i, f, g, o, c_prev, dc, dh, dy], [_, _, _, _, tc]| {
                        lstm_bwd_step(l, [i, f, g, o, c_prev, dc, l.add(dh, dy), tc])
                    }
                ),
                None => lane_map!(
                    l,
                    [i, f, g, o, c_prev, dc, dh],
                    [dc_prev, di, df, dg, d_o],
                    |[i, f, g, o, c_prev, dc, dh], [_, _, _, _, tc]| {
                        lstm_bwd_step(l, [i, f, g, o, c_prev, dc, dh, tc])
                    }
                ),
            }
        }
    }
}

/// The backward body: (i, f, g, o, c_prev, dc, dh, tanh(c')) to (dc_prev, dai, daf, dag,
/// dao).
#[inline(always)]
fn lstm_bwd_step<S: Simd, T: Float>(
    l: Lanes<S, T>,
    [i, f, g, o, c_prev, dc, dh, tc]: [T::V<S>; 8],
) -> [T::V<S>; 5] {
    let dc = l.mul_add(l.mul(dh, o), l.tanh_grad(tc), dc);
    let dai = l.mul(l.mul(dc, g), l.sigmoid_grad(i));
    let daf = l.mul(l.mul(dc, c_prev), l.sigmoid_grad(f));
    let dag = l.mul(l.mul(dc, i), l.tanh_grad(g));
    let dao = l.mul(l.mul(dh, tc), l.sigmoid_grad(o));
    [
        l.flush(l.mul(dc, f)),
        l.flush(dai),
        l.flush(daf),
        l.flush(dag),
        l.flush(dao),
    ]
}

/// One LSTM backward step's pointwise pass (see the module docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn lstm_bwd_pointwise<T: Float>(arch: Arch, args: LstmBwdPointwise<'_, T>) {
    args.check();
    T::__kernel_lstm_bwd(arch, args)
}

/// Arguments of [`lstm_bwd_pointwise_in_place`]: [`LstmBwdPointwise`] with the gate
/// gradients written over the saved gates they come from. Training then needs no second
/// `[T][B][4H]` buffer: the gradients go to lines the pass has just read (in cache), not to
/// lines of another buffer fetched from memory first.
#[derive(Debug)]
pub struct LstmBwdPointwiseInPlace<'a, T> {
    /// `[B][4H]` in: the activated gates forward saved; out: dL/d(pre-activation) of i,
    /// f, g, o.
    pub gates: RowsMut<'a, T>,
    /// `[B][H]` c_{t-1}.
    pub c_prev: Rows<'a, T>,
    /// `[B][H]` dL/dh_t arriving through the recurrence (or the whole gradient on h_t).
    pub dh: Rows<'a, T>,
    /// `[B][H]` dL/dy_t, added to `dh` when given.
    pub dy: Option<Rows<'a, T>>,
    /// `[B][H]` dL/dc_t arriving from the step after.
    pub dc: Rows<'a, T>,
    /// `[B][H]` out: dL/dc_{t-1}.
    pub dc_prev: RowsMut<'a, T>,
}

impl<T> LstmBwdPointwiseInPlace<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.c_prev.rows(), self.c_prev.cols());
        check_shape(
            "lstm bwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            4 * h,
        );
        check_shape("lstm bwd dh", self.dh.rows(), self.dh.cols(), b, h);
        if let Some(dy) = &self.dy {
            check_shape("lstm bwd dy", dy.rows(), dy.cols(), b, h);
        }
        check_shape("lstm bwd dc", self.dc.rows(), self.dc.cols(), b, h);
        let (rows, cols) = (self.dc_prev.rows(), self.dc_prev.cols());
        check_shape("lstm bwd dc_prev", rows, cols, b, h);
        (b, h)
    }
}

impl<T: Float> WithSimd for LstmBwdPointwiseInPlace<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        for r in 0..rows {
            let dc_prev = self.dc_prev.row_mut(r);
            let (c_prev, dc, dh) = (self.c_prev.row(r), self.dc.row(r), self.dh.row(r));
            // tanh(c') first, as in [`LstmBwdPointwise`], parked in dc_prev's place (o is
            // still to be read); the same operations, so the same bits.
            let [i, f, g, _] = split_gates::<4, T>(self.gates.row(r), h);
            lane_map!(l, [i, f, g, c_prev], [dc_prev], |[i, f, g, c_prev], _| {
                [l.tanh(next_cell(l, i, f, g, c_prev))]
            });
            let [i, f, g, o] = split_gates_mut::<4, T>(self.gates.row_mut(r), h);
            match &self.dy {
                Some(dy) => lane_map!(
                    l,
                    [c_prev, dc, dh, dy.row(r)],
                    [dc_prev, i, f, g, o],
                    |[c_prev, dc, dh, dy], [tc, i, f, g, o]| {
                        lstm_bwd_step(l, [i, f, g, o, c_prev, dc, l.add(dh, dy), tc])
                    }
                ),
                None => lane_map!(
                    l,
                    [c_prev, dc, dh],
                    [dc_prev, i, f, g, o],
                    |[c_prev, dc, dh], [tc, i, f, g, o]| {
                        lstm_bwd_step(l, [i, f, g, o, c_prev, dc, dh, tc])
                    }
                ),
            }
        }
    }
}

/// [`lstm_bwd_pointwise`] writing the gate gradients over the gates: the same values, bit
/// for bit.
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn lstm_bwd_pointwise_in_place<T: Float>(arch: Arch, args: LstmBwdPointwiseInPlace<'_, T>) {
    args.check();
    T::__kernel_lstm_bwd_in_place(arch, args)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::reference::lstm as reference;
    use crate::testing::{
        assert_padding_nan, check_close, padded, product_tolerance, scaled_tolerance, size_nonzero,
        unpad, values,
    };
    use crate::{available_archs, testing::cast};

    /// Forward inputs: (B, H, gate pre-activations, bias, c_prev).
    type FwdCase = (usize, usize, Vec<f64>, Vec<f64>, Vec<f64>);

    fn fwd_case() -> impl Strategy<Value = FwdCase> {
        (1usize..4, size_nonzero()).prop_flat_map(|(b, h)| {
            (
                Just(b),
                Just(h),
                values(b * 4 * h),
                values(4 * h),
                values(b * h),
            )
        })
    }

    /// Runs the kernel in `T` on `arch` with padded outputs and compares with the reference.
    fn fwd<T: Float>(arch: Arch, (b, h, pre, bias, c_prev): &FwdCase) -> Result<(), TestCaseError> {
        let (b, h, pad) = (*b, *h, 3);
        let mut want_gates = pre.clone();
        let (mut want_c, mut want_h) = (vec![0.0; b * h], vec![0.0; b * h]);
        reference::lstm_fwd_pointwise(LstmFwdPointwise {
            gates: RowsMut::contiguous(&mut want_gates, b, 4 * h),
            bias,
            c_prev: Rows::contiguous(c_prev, b, h),
            c: RowsMut::contiguous(&mut want_c, b, h),
            h: RowsMut::contiguous(&mut want_h, b, h),
        });
        let mut gates = padded::<T>(pre, b, 4 * h, pad);
        let (mut c, mut hh) = (
            padded::<T>(&want_c, b, h, pad),
            padded::<T>(&want_h, b, h, pad),
        );
        for x in c.iter_mut().chain(hh.iter_mut()) {
            *x = T::NAN;
        }
        let (bias_t, c_prev_t) = (cast::<T>(bias), cast::<T>(c_prev));
        lstm_fwd_pointwise(
            arch,
            LstmFwdPointwise {
                gates: RowsMut::new(&mut gates, b, 4 * h, 4 * h + pad),
                bias: &bias_t,
                c_prev: Rows::contiguous(&c_prev_t, b, h),
                c: RowsMut::new(&mut c, b, h, h + pad),
                h: RowsMut::new(&mut hh, b, h, h + pad),
            },
        );
        let tol = scaled_tolerance::<T>(&[pre, bias, c_prev]);
        check_close("gates", &unpad(&gates, b, 4 * h, pad), &want_gates, tol)?;
        check_close("c", &unpad(&c, b, h, pad), &want_c, tol)?;
        check_close("h", &unpad(&hh, b, h, pad), &want_h, tol)?;
        assert_padding_nan("gates", &gates, b, 4 * h, pad)?;
        assert_padding_nan("c", &c, b, h, pad)?;
        assert_padding_nan("h", &hh, b, h, pad)
    }

    /// Backward inputs: (B, H, pre-activations, c_prev, dh, dy, dc).
    type BwdCase = (
        usize,
        usize,
        Vec<f64>,
        Vec<f64>,
        Vec<f64>,
        Option<Vec<f64>>,
        Vec<f64>,
    );

    fn bwd_case() -> impl Strategy<Value = BwdCase> {
        (1usize..4, size_nonzero()).prop_flat_map(|(b, h)| {
            let n = b * h;
            (
                Just(b),
                Just(h),
                values(4 * n),
                values(n),
                values(n),
                prop::option::of(values(n)),
                values(n),
            )
        })
    }

    fn bwd<T: Float>(arch: Arch, case: &BwdCase) -> Result<(), TestCaseError> {
        let (b, h, pre, c_prev, dh, dy, dc_in) = case;
        let (b, h, pad) = (*b, *h, 2);
        // Realistic saved state: run the reference forward first.
        let mut gates = pre.clone();
        let (mut c, mut hh) = (vec![0.0; b * h], vec![0.0; b * h]);
        reference::lstm_fwd_pointwise(LstmFwdPointwise {
            gates: RowsMut::contiguous(&mut gates, b, 4 * h),
            bias: &vec![0.0; 4 * h],
            c_prev: Rows::contiguous(c_prev, b, h),
            c: RowsMut::contiguous(&mut c, b, h),
            h: RowsMut::contiguous(&mut hh, b, h),
        });
        let (mut want_dc, mut want_dg) = (vec![0.0; b * h], vec![0.0; 4 * b * h]);
        reference::lstm_bwd_pointwise(LstmBwdPointwise {
            gates: Rows::contiguous(&gates, b, 4 * h),
            c_prev: Rows::contiguous(c_prev, b, h),
            dh: Rows::contiguous(dh, b, h),
            dy: dy.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
            dc: Rows::contiguous(dc_in, b, h),
            dc_prev: RowsMut::contiguous(&mut want_dc, b, h),
            d_gates: RowsMut::contiguous(&mut want_dg, b, 4 * h),
        });
        let _ = (&c, &hh);
        let [gates_t, c_prev_t, dc_t, dh_t] = [&gates, c_prev, dc_in, dh].map(|v| cast::<T>(v));
        let dy_t = dy.as_deref().map(cast::<T>);
        let mut dc = crate::testing::nan_filled::<T>(b * (h + pad));
        let mut dg = crate::testing::nan_filled::<T>(b * (4 * h + pad));
        lstm_bwd_pointwise(
            arch,
            LstmBwdPointwise {
                gates: Rows::contiguous(&gates_t, b, 4 * h),
                c_prev: Rows::contiguous(&c_prev_t, b, h),
                dh: Rows::contiguous(&dh_t, b, h),
                dy: dy_t.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
                dc: Rows::contiguous(&dc_t, b, h),
                dc_prev: RowsMut::new(&mut dc, b, h, h + pad),
                d_gates: RowsMut::new(&mut dg, b, 4 * h, 4 * h + pad),
            },
        );
        // daf = dc * c_prev * f(1-f) multiplies two unbounded inputs.
        let tol = product_tolerance::<T>(&[dh, dy.as_deref().unwrap_or(&[]), dc_in], &[c_prev]);
        check_close("dc", &unpad(&dc, b, h, pad), &want_dc, tol)?;
        check_close("d_gates", &unpad(&dg, b, 4 * h, pad), &want_dg, tol)?;
        assert_padding_nan("d_gates", &dg, b, 4 * h, pad)?;
        assert_padding_nan("dc", &dc, b, h, pad)?;
        // In place: the gradients over (padded) gates, bit for bit the pass's above.
        let mut in_place = crate::testing::nan_filled::<T>(b * (4 * h + pad));
        for (dst, src) in in_place.chunks_mut(4 * h + pad).zip(gates_t.chunks(4 * h)) {
            dst[..4 * h].copy_from_slice(src);
        }
        let mut dc_in_place = crate::testing::nan_filled::<T>(b * (h + pad));
        lstm_bwd_pointwise_in_place(
            arch,
            LstmBwdPointwiseInPlace {
                gates: RowsMut::new(&mut in_place, b, 4 * h, 4 * h + pad),
                c_prev: Rows::contiguous(&c_prev_t, b, h),
                dh: Rows::contiguous(&dh_t, b, h),
                dy: dy_t.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
                dc: Rows::contiguous(&dc_t, b, h),
                dc_prev: RowsMut::new(&mut dc_in_place, b, h, h + pad),
            },
        );
        let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&in_place), bits(&dg), "in-place d_gates");
        prop_assert_eq!(bits(&dc_in_place), bits(&dc), "in-place dc");
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::testing::cases(64))]

        #[test]
        fn fwd_matches_reference(case in fwd_case()) {
            for arch in available_archs() {
                fwd::<f32>(arch, &case)?;
                fwd::<f64>(arch, &case)?;
            }
        }

        #[test]
        fn bwd_matches_reference(case in bwd_case()) {
            for arch in available_archs() {
                bwd::<f32>(arch, &case)?;
                bwd::<f64>(arch, &case)?;
            }
        }
    }
}
