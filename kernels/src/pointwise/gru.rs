//! GRU pointwise passes, gates in PyTorch's order r, z, n, `h' = (1 - z)*n + z*h`.
//!
//! **Reset after the recurrent product** (PyTorch, cuDNN): one pass per step,
//! [`gru_fwd_pointwise`]: `r = sigmoid(x_r + h_r + b_r)`, `z = sigmoid(x_z + h_z + b_z)`,
//! `hn = h_n + b_hn`, `n = tanh(x_n + b_in + r*hn)`. Backward, [`gru_bwd_pointwise`]:
//! `dn = dh*(1-z)`, `dz = dh*(h - n)`, `dan = dn*(1-n^2)`, `dar = dan*hn*r*(1-r)`,
//! `daz = dz*z*(1-z)`; the recurrent side sees `(dar, daz, dan*r)`, the input side
//! `(dar, daz, dan)`, and `dh_prev = dh*z + (recurrent side) W_hh`.
//!
//! **Reset before the recurrent product** (Cho et al. 2014): the candidate needs `(r*h) W_hn^T`,
//! a second product between two passes. Forward: [`gru_fwd_pointwise_gates`] (r, z and
//! `r*h`), the GEMM, then [`gru_fwd_pointwise_out`] (n and h'). Backward:
//! [`gru_bwd_pointwise_out`] (daz, dan, `dh*z`), the GEMM `d(r*h) = dan W_hn`, then
//! [`gru_bwd_pointwise_gates`] (dar and `d(r*h)*r` into dh_prev).

use core::ops::Range;

use pulp::{Arch, Simd, WithSimd};

use super::{UnitPass, Units, check_shape, run_on_units, split_gates, split_gates_mut};
use crate::float::Float;
use crate::lane_map;
use crate::lanes::Lanes;
use crate::view::{Rows, RowsMut};

/// Arguments of [`gru_fwd_pointwise`] (reset after); B rows, hidden size H.
#[derive(Debug)]
pub struct GruFwdPointwise<'a, T> {
    /// `[B][3H]` in: `x W_ih^T` per gate (no bias); out: the activated r, z, n.
    pub gates: RowsMut<'a, T>,
    /// `[B][3H]` `h_{t-1} W_hh^T` per gate (no bias).
    pub hidden_gates: Rows<'a, T>,
    /// `[3H]` `b_ih + b_hh` for r and z, then `b_in` alone for n (zeros without bias).
    pub bias: &'a [T],
    /// `[H]` `b_hn` (zeros without bias).
    pub bias_hn: &'a [T],
    /// `[B][H]` h_{t-1}.
    pub h_prev: Rows<'a, T>,
    /// `[B][H]` out: `h_{t-1} W_hn^T + b_hn`, which backward needs.
    pub hn: RowsMut<'a, T>,
    /// `[B][H]` out: h_t.
    pub h: RowsMut<'a, T>,
}

impl<T> GruFwdPointwise<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.h_prev.rows(), self.h_prev.cols());
        check_shape(
            "gru fwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            3 * h,
        );
        let hg = &self.hidden_gates;
        check_shape("gru fwd hidden_gates", hg.rows(), hg.cols(), b, 3 * h);
        check_shape("gru fwd bias", 1, self.bias.len(), 1, 3 * h);
        check_shape("gru fwd bias_hn", 1, self.bias_hn.len(), 1, h);
        check_shape("gru fwd hn", self.hn.rows(), self.hn.cols(), b, h);
        check_shape("gru fwd h", self.h.rows(), self.h.cols(), b, h);
        (b, h)
    }
}

impl<T: Float> UnitPass for GruFwdPointwise<'_, T> {
    fn hidden(&self) -> usize {
        self.check().1
    }
    fn dispatch(arch: Arch, units: Units<Self>) {
        T::__kernel_gru_fwd(arch, units)
    }
    #[inline(always)]
    fn run_units<S: Simd>(mut self, s: S, units: Range<usize>) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        let u = units;
        let [br, bz, bn] = split_gates::<3, T>(self.bias, h).map(|b| &b[u.clone()]);
        let bias_hn = &self.bias_hn[u.clone()];
        for row in 0..rows {
            let [gr, gz, gn] =
                split_gates_mut::<3, T>(self.gates.row_mut(row), h).map(|g| &mut g[u.clone()]);
            let [hr, hz, hn_raw] =
                split_gates::<3, T>(self.hidden_gates.row(row), h).map(|g| &g[u.clone()]);
            let hn = &mut self.hn.row_mut(row)[u.clone()];
            let h = &mut self.h.row_mut(row)[u.clone()];
            let h_prev = &self.h_prev.row(row)[u.clone()];
            // r, z and hn first, then n and h from their stored (flushed) values: in one
            // pass the chain sigmoid, tanh, h outran the core's window (as the LSTM's did).
            lane_map!(
                l,
                [br, bz, bias_hn, hr, hz, hn_raw],
                [gr, gz, hn],
                |[br, bz, bhn, hr, hz, hn_raw], [ar, az, _]| {
                    let r = l.sigmoid(l.add(l.add(ar, hr), br));
                    let z = l.sigmoid(l.add(l.add(az, hz), bz));
                    [l.flush(r), l.flush(z), l.flush(l.add(hn_raw, bhn))]
                }
            );
            lane_map!(
                l,
                [bn, &*gr, &*gz, &*hn, h_prev],
                [gn, h],
                |[bn, r, z, hn, h_prev], [an, _]| {
                    let n = l.tanh(l.mul_add(r, hn, l.add(an, bn)));
                    let h = l.mul_add(z, l.sub(h_prev, n), n);
                    [l.flush(n), l.flush(h)]
                }
            );
        }
    }
}

/// One GRU (reset after) forward step's pointwise pass (see the module docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn gru_fwd_pointwise<T: Float>(arch: Arch, args: GruFwdPointwise<'_, T>) {
    run_on_units(arch, "gru fwd", args, None)
}

/// [`gru_fwd_pointwise`] on hidden units `units` only (their columns in each gate block, of
/// `hn` and of h); the other units' outputs are left as they are. Running it on ranges
/// that cover `0..H` gives bitwise what one whole pass gives.
///
/// # Panics
/// If the views disagree in shape or `units` is not within `0..H`.
#[track_caller]
pub fn gru_fwd_pointwise_units<T: Float>(
    arch: Arch,
    args: GruFwdPointwise<'_, T>,
    units: Range<usize>,
) {
    run_on_units(arch, "gru fwd", args, Some(units))
}

/// Arguments of [`gru_bwd_pointwise`] (reset after); B rows, hidden size H.
#[derive(Debug)]
pub struct GruBwdPointwise<'a, T> {
    /// `[B][3H]` the activated r, z, n forward saved.
    pub gates: Rows<'a, T>,
    /// `[B][H]` `h_{t-1} W_hn^T + b_hn` forward saved.
    pub hn: Rows<'a, T>,
    /// `[B][H]` h_{t-1}.
    pub h_prev: Rows<'a, T>,
    /// `[B][H]` dL/dh_t arriving through the recurrence (or the whole gradient on h_t).
    pub dh: Rows<'a, T>,
    /// `[B][H]` dL/dy_t, added to `dh` when given.
    pub dy: Option<Rows<'a, T>>,
    /// `[B][3H]` out: the recurrent side's gradients `(dar, daz, dan*r)`.
    pub d_gates: RowsMut<'a, T>,
    /// `[B][H]` out: `dan`, the input side's gradient of n (r and z are as in `d_gates`).
    pub d_an: RowsMut<'a, T>,
    /// `[B][H]` out: `dh*z`, the direct part of dL/dh_{t-1}.
    pub dh_prev: RowsMut<'a, T>,
}

impl<T> GruBwdPointwise<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.h_prev.rows(), self.h_prev.cols());
        check_shape(
            "gru bwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            3 * h,
        );
        check_shape("gru bwd hn", self.hn.rows(), self.hn.cols(), b, h);
        check_shape("gru bwd dh", self.dh.rows(), self.dh.cols(), b, h);
        if let Some(dy) = &self.dy {
            check_shape("gru bwd dy", dy.rows(), dy.cols(), b, h);
        }
        check_shape(
            "gru bwd d_gates",
            self.d_gates.rows(),
            self.d_gates.cols(),
            b,
            3 * h,
        );
        check_shape("gru bwd d_an", self.d_an.rows(), self.d_an.cols(), b, h);
        check_shape(
            "gru bwd dh_prev",
            self.dh_prev.rows(),
            self.dh_prev.cols(),
            b,
            h,
        );
        (b, h)
    }
}

impl<T: Float> WithSimd for GruBwdPointwise<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        for row in 0..rows {
            let [r, z, n] = split_gates::<3, T>(self.gates.row(row), h);
            let [dr, dz, dn] = split_gates_mut::<3, T>(self.d_gates.row_mut(row), h);
            let (d_an, dh_prev) = (self.d_an.row_mut(row), self.dh_prev.row_mut(row));
            let (hn, h_prev, dh) = (self.hn.row(row), self.h_prev.row(row), self.dh.row(row));
            match &self.dy {
                Some(dy) => lane_map!(
                    l,
                    [r, z, n, hn, h_prev, dh, dy.row(row)],
                    [dr, dz, dn, d_an, dh_prev],
                    |[r, z, n, hn, h_prev, dh, dy], _| {
                        gru_bwd_step(l, [r, z, n, hn, h_prev, l.add(dh, dy)])
                    }
                ),
                None => lane_map!(
                    l,
                    [r, z, n, hn, h_prev, dh],
                    [dr, dz, dn, d_an, dh_prev],
                    |x, _| gru_bwd_step(l, x)
                ),
            }
        }
    }
}

/// Arguments of [`gru_bwd_pointwise_in_place`]: [`GruBwdPointwise`] with the recurrent
/// side's gradients written over the saved gates they come from (as
/// [`crate::pointwise::lstm::LstmBwdPointwiseInPlace`]).
#[derive(Debug)]
pub struct GruBwdPointwiseInPlace<'a, T> {
    /// `[B][3H]` in: the activated r, z, n forward saved; out: the recurrent side's
    /// gradients `(dar, daz, dan*r)`.
    pub gates: RowsMut<'a, T>,
    /// `[B][H]` `h_{t-1} W_hn^T + b_hn` forward saved.
    pub hn: Rows<'a, T>,
    /// `[B][H]` h_{t-1}.
    pub h_prev: Rows<'a, T>,
    /// `[B][H]` dL/dh_t arriving through the recurrence (or the whole gradient on h_t).
    pub dh: Rows<'a, T>,
    /// `[B][H]` dL/dy_t, added to `dh` when given.
    pub dy: Option<Rows<'a, T>>,
    /// `[B][H]` out: `dan`, the input side's gradient of n.
    pub d_an: RowsMut<'a, T>,
    /// `[B][H]` out: `dh*z`, the direct part of dL/dh_{t-1}.
    pub dh_prev: RowsMut<'a, T>,
}

impl<T> GruBwdPointwiseInPlace<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.h_prev.rows(), self.h_prev.cols());
        check_shape(
            "gru bwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            3 * h,
        );
        check_shape("gru bwd hn", self.hn.rows(), self.hn.cols(), b, h);
        check_shape("gru bwd dh", self.dh.rows(), self.dh.cols(), b, h);
        if let Some(dy) = &self.dy {
            check_shape("gru bwd dy", dy.rows(), dy.cols(), b, h);
        }
        check_shape("gru bwd d_an", self.d_an.rows(), self.d_an.cols(), b, h);
        let (rows, cols) = (self.dh_prev.rows(), self.dh_prev.cols());
        check_shape("gru bwd dh_prev", rows, cols, b, h);
        (b, h)
    }
}

impl<T: Float> WithSimd for GruBwdPointwiseInPlace<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        for row in 0..rows {
            let [r, z, n] = split_gates_mut::<3, T>(self.gates.row_mut(row), h);
            let (d_an, dh_prev) = (self.d_an.row_mut(row), self.dh_prev.row_mut(row));
            let (hn, h_prev, dh) = (self.hn.row(row), self.h_prev.row(row), self.dh.row(row));
            match &self.dy {
                Some(dy) => lane_map!(
                    l,
                    [hn, h_prev, dh, dy.row(row)],
                    [r, z, n, d_an, dh_prev],
                    |[hn, h_prev, dh, dy], [r, z, n, _, _]| {
                        gru_bwd_step(l, [r, z, n, hn, h_prev, l.add(dh, dy)])
                    }
                ),
                None => lane_map!(
                    l,
                    [hn, h_prev, dh],
                    [r, z, n, d_an, dh_prev],
                    |[hn, h_prev, dh], [r, z, n, _, _]| {
                        gru_bwd_step(l, [r, z, n, hn, h_prev, dh])
                    }
                ),
            }
        }
    }
}

/// [`gru_bwd_pointwise`] writing the recurrent side's gradients over the gates: the same
/// values, bit for bit.
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn gru_bwd_pointwise_in_place<T: Float>(arch: Arch, args: GruBwdPointwiseInPlace<'_, T>) {
    args.check();
    T::__kernel_gru_bwd_in_place(arch, args)
}

/// The reset-after backward body: (r, z, n, hn, h_prev, dh) to
/// (dar, daz, dan*r, dan, dh*z).
#[inline(always)]
fn gru_bwd_step<S: Simd, T: Float>(
    l: Lanes<S, T>,
    [r, z, n, hn, h_prev, dh]: [T::V<S>; 6],
) -> [T::V<S>; 5] {
    let dn = l.mul(dh, l.one_minus(z));
    let dz = l.mul(dh, l.sub(h_prev, n));
    let dan = l.mul(dn, l.tanh_grad(n));
    let dar = l.mul(l.mul(dan, hn), l.sigmoid_grad(r));
    let daz = l.mul(dz, l.sigmoid_grad(z));
    [
        l.flush(dar),
        l.flush(daz),
        l.flush(l.mul(dan, r)),
        l.flush(dan),
        l.flush(l.mul(dh, z)),
    ]
}

/// One GRU (reset after) backward step's pointwise pass (see the module docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn gru_bwd_pointwise<T: Float>(arch: Arch, args: GruBwdPointwise<'_, T>) {
    args.check();
    T::__kernel_gru_bwd(arch, args)
}

/// Arguments of [`gru_fwd_pointwise_gates`] (reset before); B rows, hidden size H.
#[derive(Debug)]
pub struct GruFwdPointwiseGates<'a, T> {
    /// `[B][3H]` in: `x W_ih^T` per gate (no bias); out: r and z activated, n untouched.
    pub gates: RowsMut<'a, T>,
    /// `[B][2H]` `h_{t-1} W_h{r,z}^T` (no bias).
    pub hidden_gates: Rows<'a, T>,
    /// `[3H]` `b_ih + b_hh` for r and z, then `b_in` (only r and z are read here).
    pub bias: &'a [T],
    /// `[B][H]` h_{t-1}.
    pub h_prev: Rows<'a, T>,
    /// `[B][H]` out: `r * h_{t-1}`, the left operand of the candidate's product.
    pub rh: RowsMut<'a, T>,
}

impl<T> GruFwdPointwiseGates<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.h_prev.rows(), self.h_prev.cols());
        check_shape(
            "gru fwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            3 * h,
        );
        let hg = &self.hidden_gates;
        check_shape("gru fwd hidden_gates", hg.rows(), hg.cols(), b, 2 * h);
        check_shape("gru fwd bias", 1, self.bias.len(), 1, 3 * h);
        check_shape("gru fwd rh", self.rh.rows(), self.rh.cols(), b, h);
        (b, h)
    }
}

impl<T: Float> WithSimd for GruFwdPointwiseGates<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        let [br, bz, _] = split_gates::<3, T>(self.bias, h);
        for row in 0..rows {
            let [gr, gz, _] = split_gates_mut::<3, T>(self.gates.row_mut(row), h);
            let [hr, hz] = split_gates::<2, T>(self.hidden_gates.row(row), h);
            let (rh, h_prev) = (self.rh.row_mut(row), self.h_prev.row(row));
            lane_map!(
                l,
                [br, bz, hr, hz, h_prev],
                [gr, gz, rh],
                |[br, bz, hr, hz, h_prev], [ar, az, _]| {
                    let r = l.flush(l.sigmoid(l.add(l.add(ar, hr), br)));
                    let z = l.flush(l.sigmoid(l.add(l.add(az, hz), bz)));
                    [r, z, l.flush(l.mul(r, h_prev))]
                }
            );
        }
    }
}

/// The first forward pass of a GRU (reset before) step: r, z and `r*h` (see the module docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn gru_fwd_pointwise_gates<T: Float>(arch: Arch, args: GruFwdPointwiseGates<'_, T>) {
    args.check();
    T::__kernel_gru_fwd_gates(arch, args)
}

/// Arguments of [`gru_fwd_pointwise_out`] (reset before); B rows, hidden size H.
#[derive(Debug)]
pub struct GruFwdPointwiseOut<'a, T> {
    /// `[B][3H]` in: r, z activated and `x W_in^T`; out: n activated.
    pub gates: RowsMut<'a, T>,
    /// `[B][H]` `(r * h_{t-1}) W_hn^T` (no bias).
    pub hidden_n: Rows<'a, T>,
    /// `[3H]` as in [`GruFwdPointwiseGates`]; `b_in` is read here.
    pub bias: &'a [T],
    /// `[H]` `b_hn` (zeros without bias).
    pub bias_hn: &'a [T],
    /// `[B][H]` h_{t-1}.
    pub h_prev: Rows<'a, T>,
    /// `[B][H]` out: h_t.
    pub h: RowsMut<'a, T>,
}

impl<T> GruFwdPointwiseOut<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.h_prev.rows(), self.h_prev.cols());
        check_shape(
            "gru fwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            3 * h,
        );
        check_shape(
            "gru fwd hidden_n",
            self.hidden_n.rows(),
            self.hidden_n.cols(),
            b,
            h,
        );
        check_shape("gru fwd bias", 1, self.bias.len(), 1, 3 * h);
        check_shape("gru fwd bias_hn", 1, self.bias_hn.len(), 1, h);
        check_shape("gru fwd h", self.h.rows(), self.h.cols(), b, h);
        (b, h)
    }
}

impl<T: Float> WithSimd for GruFwdPointwiseOut<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        let [_, _, bn] = split_gates::<3, T>(self.bias, h);
        for row in 0..rows {
            let [_, gz, gn] = split_gates_mut::<3, T>(self.gates.row_mut(row), h);
            let (hidden_n, h_prev, h) = (
                self.hidden_n.row(row),
                self.h_prev.row(row),
                self.h.row_mut(row),
            );
            lane_map!(
                l,
                [bn, self.bias_hn, &*gz, hidden_n, h_prev],
                [gn, h],
                |[bn, bhn, z, hn, h_prev], [an, _]| {
                    let n = l.tanh(l.add(l.add(an, bn), l.add(hn, bhn)));
                    let h = l.mul_add(z, l.sub(h_prev, n), n);
                    [l.flush(n), l.flush(h)]
                }
            );
        }
    }
}

/// The second forward pass of a GRU (reset before) step: n and h (see the module docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn gru_fwd_pointwise_out<T: Float>(arch: Arch, args: GruFwdPointwiseOut<'_, T>) {
    args.check();
    T::__kernel_gru_fwd_out(arch, args)
}

/// Arguments of [`gru_bwd_pointwise_out`] (reset before); B rows, hidden size H.
#[derive(Debug)]
pub struct GruBwdPointwiseOut<'a, T> {
    /// `[B][3H]` the activated r, z, n forward saved.
    pub gates: Rows<'a, T>,
    /// `[B][H]` h_{t-1}.
    pub h_prev: Rows<'a, T>,
    /// `[B][H]` dL/dh_t arriving through the recurrence (or the whole gradient on h_t).
    pub dh: Rows<'a, T>,
    /// `[B][H]` dL/dy_t, added to `dh` when given.
    pub dy: Option<Rows<'a, T>>,
    /// `[B][3H]` out: `daz` and `dan` (the r block is written by
    /// [`gru_bwd_pointwise_gates`]).
    pub d_gates: RowsMut<'a, T>,
    /// `[B][H]` out: `dh*z`, the direct part of dL/dh_{t-1}.
    pub dh_prev: RowsMut<'a, T>,
}

impl<T> GruBwdPointwiseOut<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.h_prev.rows(), self.h_prev.cols());
        check_shape(
            "gru bwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            3 * h,
        );
        check_shape("gru bwd dh", self.dh.rows(), self.dh.cols(), b, h);
        if let Some(dy) = &self.dy {
            check_shape("gru bwd dy", dy.rows(), dy.cols(), b, h);
        }
        check_shape(
            "gru bwd d_gates",
            self.d_gates.rows(),
            self.d_gates.cols(),
            b,
            3 * h,
        );
        check_shape(
            "gru bwd dh_prev",
            self.dh_prev.rows(),
            self.dh_prev.cols(),
            b,
            h,
        );
        (b, h)
    }
}

impl<T: Float> WithSimd for GruBwdPointwiseOut<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        for row in 0..rows {
            let [_, z, n] = split_gates::<3, T>(self.gates.row(row), h);
            let [_, dz, dn] = split_gates_mut::<3, T>(self.d_gates.row_mut(row), h);
            let dh_prev = self.dh_prev.row_mut(row);
            let (h_prev, dh) = (self.h_prev.row(row), self.dh.row(row));
            match &self.dy {
                Some(dy) => lane_map!(
                    l,
                    [z, n, h_prev, dh, dy.row(row)],
                    [dz, dn, dh_prev],
                    |[z, n, hp, dh, dy], _| { gru_bwd_out_step(l, [z, n, hp, l.add(dh, dy)]) }
                ),
                None => lane_map!(l, [z, n, h_prev, dh], [dz, dn, dh_prev], |x, _| {
                    gru_bwd_out_step(l, x)
                }),
            }
        }
    }
}

/// The reset-before out-pass backward body: (z, n, h_prev, dh) to (daz, dan, dh*z).
#[inline(always)]
fn gru_bwd_out_step<S: Simd, T: Float>(
    l: Lanes<S, T>,
    [z, n, h_prev, dh]: [T::V<S>; 4],
) -> [T::V<S>; 3] {
    let dan = l.mul(l.mul(dh, l.one_minus(z)), l.tanh_grad(n));
    let daz = l.mul(l.mul(dh, l.sub(h_prev, n)), l.sigmoid_grad(z));
    [l.flush(daz), l.flush(dan), l.flush(l.mul(dh, z))]
}

/// The first backward pass of a GRU (reset before) step: daz, dan, `dh*z` (see the module
/// docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn gru_bwd_pointwise_out<T: Float>(arch: Arch, args: GruBwdPointwiseOut<'_, T>) {
    args.check();
    T::__kernel_gru_bwd_out(arch, args)
}

/// Arguments of [`gru_bwd_pointwise_gates`] (reset before); B rows, hidden size H.
#[derive(Debug)]
pub struct GruBwdPointwiseGates<'a, T> {
    /// `[B][3H]` the activated r, z, n forward saved.
    pub gates: Rows<'a, T>,
    /// `[B][H]` h_{t-1}.
    pub h_prev: Rows<'a, T>,
    /// `[B][H]` `dL/d(r*h_{t-1}) = dan W_hn`.
    pub d_rh: Rows<'a, T>,
    /// `[B][3H]` out: `dar` in the r block (the others are left as they are).
    pub d_gates: RowsMut<'a, T>,
    /// `[B][H]` in: the direct part of dL/dh_{t-1}; out: plus `d(r*h)*r`.
    pub dh_prev: RowsMut<'a, T>,
}

impl<T> GruBwdPointwiseGates<'_, T> {
    /// Checks the views against each other; returns (B, H).
    #[track_caller]
    pub fn check(&self) -> (usize, usize) {
        let (b, h) = (self.h_prev.rows(), self.h_prev.cols());
        check_shape(
            "gru bwd gates",
            self.gates.rows(),
            self.gates.cols(),
            b,
            3 * h,
        );
        check_shape("gru bwd d_rh", self.d_rh.rows(), self.d_rh.cols(), b, h);
        check_shape(
            "gru bwd d_gates",
            self.d_gates.rows(),
            self.d_gates.cols(),
            b,
            3 * h,
        );
        check_shape(
            "gru bwd dh_prev",
            self.dh_prev.rows(),
            self.dh_prev.cols(),
            b,
            h,
        );
        (b, h)
    }
}

impl<T: Float> WithSimd for GruBwdPointwiseGates<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let (rows, h) = self.check();
        let l = Lanes::<S, T>::new(s);
        for row in 0..rows {
            let [r, _, _] = split_gates::<3, T>(self.gates.row(row), h);
            let [dr, _, _] = split_gates_mut::<3, T>(self.d_gates.row_mut(row), h);
            let (h_prev, d_rh, dh_prev) = (
                self.h_prev.row(row),
                self.d_rh.row(row),
                self.dh_prev.row_mut(row),
            );
            lane_map!(
                l,
                [r, h_prev, d_rh],
                [dr, dh_prev],
                |[r, h_prev, d_rh], [_, dh_prev]| {
                    let dar = l.mul(l.mul(d_rh, h_prev), l.sigmoid_grad(r));
                    [l.flush(dar), l.flush(l.mul_add(d_rh, r, dh_prev))]
                }
            );
        }
    }
}

/// The second backward pass of a GRU (reset before) step: dar and `dh_prev += d(r*h)*r` (see
/// the module docs).
///
/// # Panics
/// If the views disagree in shape.
#[track_caller]
pub fn gru_bwd_pointwise_gates<T: Float>(arch: Arch, args: GruBwdPointwiseGates<'_, T>) {
    args.check();
    T::__kernel_gru_bwd_gates(arch, args)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::available_archs;
    use crate::reference::gru as reference;
    use crate::testing::{
        assert_padding_nan, cast, check_close, padded, product_tolerance, scaled_tolerance,
        size_nonzero, unpad, values,
    };

    /// Random inputs for one step of both GRU forms.
    #[derive(Clone, Debug)]
    struct Case {
        b: usize,
        h: usize,
        /// `[B][3H]` input products.
        x: Vec<f64>,
        /// `[B][3H]` recurrent products.
        hg: Vec<f64>,
        bias: Vec<f64>,
        bias_hn: Vec<f64>,
        h_prev: Vec<f64>,
        dh: Vec<f64>,
        dy: Option<Vec<f64>>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (1usize..4, size_nonzero()).prop_flat_map(|(b, h)| {
            let n = b * h;
            (
                (Just(b), Just(h), values(3 * n), values(3 * n)),
                (
                    values(3 * h),
                    values(h),
                    values(n),
                    values(n),
                    prop::option::of(values(n)),
                ),
            )
                .prop_map(|((b, h, x, hg), (bias, bias_hn, h_prev, dh, dy))| Case {
                    b,
                    h,
                    x,
                    hg,
                    bias,
                    bias_hn,
                    h_prev,
                    dh,
                    dy,
                })
        })
    }

    fn reset_after<T: Float>(arch: Arch, c: &Case) -> Result<(), TestCaseError> {
        let (b, h, pad) = (c.b, c.h, 2);
        let (mut want_g, mut want_hn, mut want_h) =
            (c.x.clone(), vec![0.0; b * h], vec![0.0; b * h]);
        reference::gru_fwd_pointwise(GruFwdPointwise {
            gates: RowsMut::contiguous(&mut want_g, b, 3 * h),
            hidden_gates: Rows::contiguous(&c.hg, b, 3 * h),
            bias: &c.bias,
            bias_hn: &c.bias_hn,
            h_prev: Rows::contiguous(&c.h_prev, b, h),
            hn: RowsMut::contiguous(&mut want_hn, b, h),
            h: RowsMut::contiguous(&mut want_h, b, h),
        });
        let [hg, bias, bias_hn, h_prev, dh] =
            [&c.hg, &c.bias, &c.bias_hn, &c.h_prev, &c.dh].map(|v| cast::<T>(v));
        let mut g = padded::<T>(&c.x, b, 3 * h, pad);
        let mut hn = crate::testing::nan_filled::<T>(b * (h + pad));
        let mut hh = crate::testing::nan_filled::<T>(b * (h + pad));
        gru_fwd_pointwise(
            arch,
            GruFwdPointwise {
                gates: RowsMut::new(&mut g, b, 3 * h, 3 * h + pad),
                hidden_gates: Rows::contiguous(&hg, b, 3 * h),
                bias: &bias,
                bias_hn: &bias_hn,
                h_prev: Rows::contiguous(&h_prev, b, h),
                hn: RowsMut::new(&mut hn, b, h, h + pad),
                h: RowsMut::new(&mut hh, b, h, h + pad),
            },
        );
        let tol = scaled_tolerance::<T>(&[&c.x, &c.hg, &c.bias, &c.bias_hn, &c.h_prev]);
        check_close("gates", &unpad(&g, b, 3 * h, pad), &want_g, tol)?;
        check_close("hn", &unpad(&hn, b, h, pad), &want_hn, tol)?;
        check_close("h", &unpad(&hh, b, h, pad), &want_h, tol)?;
        assert_padding_nan("hn", &hn, b, h, pad)?;
        assert_padding_nan("h", &hh, b, h, pad)?;

        let n = b * h;
        let (mut want_dg, mut want_dan, mut want_dhp) =
            (vec![0.0; 3 * n], vec![0.0; n], vec![0.0; n]);
        reference::gru_bwd_pointwise(GruBwdPointwise {
            gates: Rows::contiguous(&want_g, b, 3 * h),
            hn: Rows::contiguous(&want_hn, b, h),
            h_prev: Rows::contiguous(&c.h_prev, b, h),
            dh: Rows::contiguous(&c.dh, b, h),
            dy: c.dy.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
            d_gates: RowsMut::contiguous(&mut want_dg, b, 3 * h),
            d_an: RowsMut::contiguous(&mut want_dan, b, h),
            dh_prev: RowsMut::contiguous(&mut want_dhp, b, h),
        });
        let (saved_g, saved_hn) = (cast::<T>(&want_g), cast::<T>(&want_hn));
        let dy = c.dy.as_deref().map(cast::<T>);
        let mut dg = crate::testing::nan_filled::<T>(b * (3 * h + pad));
        let mut dan = crate::testing::nan_filled::<T>(b * (h + pad));
        let mut dhp = crate::testing::nan_filled::<T>(b * (h + pad));
        gru_bwd_pointwise(
            arch,
            GruBwdPointwise {
                gates: Rows::contiguous(&saved_g, b, 3 * h),
                hn: Rows::contiguous(&saved_hn, b, h),
                h_prev: Rows::contiguous(&h_prev, b, h),
                dh: Rows::contiguous(&dh, b, h),
                dy: dy.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
                d_gates: RowsMut::new(&mut dg, b, 3 * h, 3 * h + pad),
                d_an: RowsMut::new(&mut dan, b, h, h + pad),
                dh_prev: RowsMut::new(&mut dhp, b, h, h + pad),
            },
        );
        let tol = product_tolerance::<T>(
            &[&c.dh, c.dy.as_deref().unwrap_or(&[])],
            &[&want_hn, &c.h_prev],
        );
        check_close("d_gates", &unpad(&dg, b, 3 * h, pad), &want_dg, tol)?;
        check_close("d_an", &unpad(&dan, b, h, pad), &want_dan, tol)?;
        check_close("dh_prev", &unpad(&dhp, b, h, pad), &want_dhp, tol)?;
        assert_padding_nan("d_gates", &dg, b, 3 * h, pad)?;
        // In place: the gradients over (padded) gates, bit for bit the pass's above.
        let mut in_place = padded::<T>(&want_g, b, 3 * h, pad);
        let mut dan_in_place = crate::testing::nan_filled::<T>(b * (h + pad));
        let mut dhp_in_place = crate::testing::nan_filled::<T>(b * (h + pad));
        gru_bwd_pointwise_in_place(
            arch,
            GruBwdPointwiseInPlace {
                gates: RowsMut::new(&mut in_place, b, 3 * h, 3 * h + pad),
                hn: Rows::contiguous(&saved_hn, b, h),
                h_prev: Rows::contiguous(&h_prev, b, h),
                dh: Rows::contiguous(&dh, b, h),
                dy: dy.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
                d_an: RowsMut::new(&mut dan_in_place, b, h, h + pad),
                dh_prev: RowsMut::new(&mut dhp_in_place, b, h, h + pad),
            },
        );
        let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&in_place), bits(&dg), "in-place d_gates");
        prop_assert_eq!(bits(&dan_in_place), bits(&dan), "in-place d_an");
        prop_assert_eq!(bits(&dhp_in_place), bits(&dhp), "in-place dh_prev");
        Ok(())
    }

    fn reset_before<T: Float>(arch: Arch, c: &Case) -> Result<(), TestCaseError> {
        let (b, h) = (c.b, c.h);
        let n = b * h;
        // Reference forward: gates pass, the product (taken from the case), out pass.
        let (mut want_g, mut want_rh, mut want_h) = (c.x.clone(), vec![0.0; n], vec![0.0; n]);
        let hg_rz: Vec<f64> = (0..b)
            .flat_map(|r| c.hg[r * 3 * h..r * 3 * h + 2 * h].to_vec())
            .collect();
        let hidden_n: Vec<f64> = (0..b)
            .flat_map(|r| c.hg[r * 3 * h + 2 * h..(r + 1) * 3 * h].to_vec())
            .collect();
        reference::gru_fwd_pointwise_gates(GruFwdPointwiseGates {
            gates: RowsMut::contiguous(&mut want_g, b, 3 * h),
            hidden_gates: Rows::contiguous(&hg_rz, b, 2 * h),
            bias: &c.bias,
            h_prev: Rows::contiguous(&c.h_prev, b, h),
            rh: RowsMut::contiguous(&mut want_rh, b, h),
        });
        let want_g_mid = want_g.clone();
        reference::gru_fwd_pointwise_out(GruFwdPointwiseOut {
            gates: RowsMut::contiguous(&mut want_g, b, 3 * h),
            hidden_n: Rows::contiguous(&hidden_n, b, h),
            bias: &c.bias,
            bias_hn: &c.bias_hn,
            h_prev: Rows::contiguous(&c.h_prev, b, h),
            h: RowsMut::contiguous(&mut want_h, b, h),
        });
        let [hg_rz_t, hidden_n_t, bias, bias_hn, h_prev, dh] =
            [&hg_rz, &hidden_n, &c.bias, &c.bias_hn, &c.h_prev, &c.dh].map(|v| cast::<T>(v));
        let mut g = cast::<T>(&c.x);
        let mut rh = crate::testing::nan_filled::<T>(n);
        gru_fwd_pointwise_gates(
            arch,
            GruFwdPointwiseGates {
                gates: RowsMut::contiguous(&mut g, b, 3 * h),
                hidden_gates: Rows::contiguous(&hg_rz_t, b, 2 * h),
                bias: &bias,
                h_prev: Rows::contiguous(&h_prev, b, h),
                rh: RowsMut::contiguous(&mut rh, b, h),
            },
        );
        let tol = scaled_tolerance::<T>(&[&c.x, &c.hg, &c.bias, &c.bias_hn, &c.h_prev]);
        check_close(
            "gates after first pass",
            &crate::testing::widen(&g),
            &want_g_mid,
            tol,
        )?;
        check_close("rh", &crate::testing::widen(&rh), &want_rh, tol)?;
        let mut hh = crate::testing::nan_filled::<T>(n);
        gru_fwd_pointwise_out(
            arch,
            GruFwdPointwiseOut {
                gates: RowsMut::contiguous(&mut g, b, 3 * h),
                hidden_n: Rows::contiguous(&hidden_n_t, b, h),
                bias: &bias,
                bias_hn: &bias_hn,
                h_prev: Rows::contiguous(&h_prev, b, h),
                h: RowsMut::contiguous(&mut hh, b, h),
            },
        );
        check_close("gates", &crate::testing::widen(&g), &want_g, tol)?;
        check_close("h", &crate::testing::widen(&hh), &want_h, tol)?;

        // Backward: out pass, then (with d(r*h) taken from the case's dy or dh) the gates pass.
        let (mut want_dg, mut want_dhp) = (vec![0.0; 3 * n], vec![0.0; n]);
        reference::gru_bwd_pointwise_out(GruBwdPointwiseOut {
            gates: Rows::contiguous(&want_g, b, 3 * h),
            h_prev: Rows::contiguous(&c.h_prev, b, h),
            dh: Rows::contiguous(&c.dh, b, h),
            dy: c.dy.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
            d_gates: RowsMut::contiguous(&mut want_dg, b, 3 * h),
            dh_prev: RowsMut::contiguous(&mut want_dhp, b, h),
        });
        let d_rh = c.hg[..n].to_vec();
        reference::gru_bwd_pointwise_gates(GruBwdPointwiseGates {
            gates: Rows::contiguous(&want_g, b, 3 * h),
            h_prev: Rows::contiguous(&c.h_prev, b, h),
            d_rh: Rows::contiguous(&d_rh, b, h),
            d_gates: RowsMut::contiguous(&mut want_dg, b, 3 * h),
            dh_prev: RowsMut::contiguous(&mut want_dhp, b, h),
        });
        let (saved_g, d_rh_t) = (cast::<T>(&want_g), cast::<T>(&d_rh));
        let dy = c.dy.as_deref().map(cast::<T>);
        let (mut dg, mut dhp) = (
            crate::testing::nan_filled::<T>(3 * n),
            crate::testing::nan_filled::<T>(n),
        );
        gru_bwd_pointwise_out(
            arch,
            GruBwdPointwiseOut {
                gates: Rows::contiguous(&saved_g, b, 3 * h),
                h_prev: Rows::contiguous(&h_prev, b, h),
                dh: Rows::contiguous(&dh, b, h),
                dy: dy.as_deref().map(|dy| Rows::contiguous(dy, b, h)),
                d_gates: RowsMut::contiguous(&mut dg, b, 3 * h),
                dh_prev: RowsMut::contiguous(&mut dhp, b, h),
            },
        );
        gru_bwd_pointwise_gates(
            arch,
            GruBwdPointwiseGates {
                gates: Rows::contiguous(&saved_g, b, 3 * h),
                h_prev: Rows::contiguous(&h_prev, b, h),
                d_rh: Rows::contiguous(&d_rh_t, b, h),
                d_gates: RowsMut::contiguous(&mut dg, b, 3 * h),
                dh_prev: RowsMut::contiguous(&mut dhp, b, h),
            },
        );
        let grads: [&[f64]; 3] = [&c.dh, c.dy.as_deref().unwrap_or(&[]), &d_rh];
        let tol = product_tolerance::<T>(&grads, &[&c.h_prev]);
        check_close("d_gates", &crate::testing::widen(&dg), &want_dg, tol)?;
        check_close("dh_prev", &crate::testing::widen(&dhp), &want_dhp, tol)
    }

    proptest! {
        #![proptest_config(crate::testing::cases(64))]

        #[test]
        fn reset_after_matches_reference(case in case()) {
            for arch in available_archs() {
                reset_after::<f32>(arch, &case)?;
                reset_after::<f64>(arch, &case)?;
            }
        }

        #[test]
        fn reset_before_matches_reference(case in case()) {
            for arch in available_archs() {
                reset_before::<f32>(arch, &case)?;
                reset_before::<f64>(arch, &case)?;
            }
        }
    }
}
