//! [`Lanes`]: the SIMD vocabulary the pointwise kernels are written in.
//!
//! A `Lanes<S, T>` is a zero-sized handle on instruction set `S` for element type `T`; its
//! methods read like the equations (`l.mul_add(f, c_prev, l.mul(i, g))`), and
//! [`Lanes::map`] walks any number of equally long rows register by register, finishing with
//! a partial register, so a kernel body is written once for the main loop and the tail.

use core::marker::PhantomData;

use pulp::Simd;

use crate::float::Float;
use crate::math;

/// A SIMD register of `T` for instruction set `S`.
pub type V<S, T> = <T as Float>::V<S>;

/// SIMD operations on registers of `T` for instruction set `S` (see the module docs).
pub struct Lanes<S: Simd, T: Float> {
    /// The instruction-set token.
    pub simd: S,
    _t: PhantomData<T>,
}

impl<S: Simd, T: Float> Clone for Lanes<S, T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: Simd, T: Float> Copy for Lanes<S, T> {}

impl<S: Simd, T: Float> Lanes<S, T> {
    /// Wraps an instruction-set token.
    #[inline(always)]
    pub fn new(simd: S) -> Self {
        Self {
            simd,
            _t: PhantomData,
        }
    }
    /// All lanes `x`.
    #[inline(always)]
    pub fn splat(self, x: T) -> V<S, T> {
        T::v_splat(self.simd, x)
    }
    /// All lanes 0.
    #[inline(always)]
    pub fn zero(self) -> V<S, T> {
        self.splat(T::ZERO)
    }
    /// All lanes 1.
    #[inline(always)]
    pub fn one(self) -> V<S, T> {
        self.splat(T::ONE)
    }
    /// `a + b`.
    #[inline(always)]
    pub fn add(self, a: V<S, T>, b: V<S, T>) -> V<S, T> {
        T::v_add(self.simd, a, b)
    }
    /// `a - b`.
    #[inline(always)]
    pub fn sub(self, a: V<S, T>, b: V<S, T>) -> V<S, T> {
        T::v_sub(self.simd, a, b)
    }
    /// `a * b`.
    #[inline(always)]
    pub fn mul(self, a: V<S, T>, b: V<S, T>) -> V<S, T> {
        T::v_mul(self.simd, a, b)
    }
    /// `a / b`.
    #[inline(always)]
    pub fn div(self, a: V<S, T>, b: V<S, T>) -> V<S, T> {
        T::v_div(self.simd, a, b)
    }
    /// `a * b + c` (fused where the instruction set has FMA).
    #[inline(always)]
    pub fn mul_add(self, a: V<S, T>, b: V<S, T>, c: V<S, T>) -> V<S, T> {
        T::v_mul_add(self.simd, a, b, c)
    }
    /// `1 - a`.
    #[inline(always)]
    pub fn one_minus(self, a: V<S, T>) -> V<S, T> {
        self.sub(self.one(), a)
    }
    /// `a * (1 - a)`: the derivative of the sigmoid from its output.
    #[inline(always)]
    pub fn sigmoid_grad(self, a: V<S, T>) -> V<S, T> {
        self.mul(a, self.one_minus(a))
    }
    /// `1 - a^2`: the derivative of tanh from its output.
    #[inline(always)]
    pub fn tanh_grad(self, a: V<S, T>) -> V<S, T> {
        self.sub(self.one(), self.mul(a, a))
    }
    /// The gradient through relu from its output `h`: `if h <= 0 { 0 } else { dh }`, so a
    /// NaN output passes the gradient on, as PyTorch's `threshold_backward` does.
    #[inline(always)]
    pub fn relu_grad(self, h: V<S, T>, dh: V<S, T>) -> V<S, T> {
        let s = self.simd;
        let pass = T::v_select(s, T::v_is_nan(s, h), dh, self.zero());
        T::v_select(s, T::v_gt(s, h, self.zero()), dh, pass)
    }
    /// `max(x, 0)` that keeps NaN (relu).
    #[inline(always)]
    pub fn relu(self, x: V<S, T>) -> V<S, T> {
        T::v_select(
            self.simd,
            T::v_lt(self.simd, x, self.zero()),
            self.zero(),
            x,
        )
    }
    /// e^x (see [`crate::math`] for accuracy).
    #[inline(always)]
    pub fn exp(self, x: V<S, T>) -> V<S, T> {
        T::v_exp(self.simd, x)
    }
    /// The logistic sigmoid.
    #[inline(always)]
    pub fn sigmoid(self, x: V<S, T>) -> V<S, T> {
        math::sigmoid::<S, T>(self.simd, x)
    }
    /// The hyperbolic tangent.
    #[inline(always)]
    pub fn tanh(self, x: V<S, T>) -> V<S, T> {
        math::tanh::<S, T>(self.simd, x)
    }
    /// Replaces magnitudes below the smallest normal number by 0 (keeps NaN): what the
    /// kernels write never holds a denormal, which would slow the next GEMM on many CPUs.
    #[inline(always)]
    pub fn flush(self, x: V<S, T>) -> V<S, T> {
        let tiny = T::v_lt(
            self.simd,
            T::v_abs(self.simd, x),
            self.splat(T::MIN_POSITIVE),
        );
        T::v_select(self.simd, tiny, self.zero(), x)
    }

    /// Walks `ins` and `outs` (all of one length) a register at a time and stores
    /// `f(inputs, current outputs)` into `outs`; the last partial register is handled by the
    /// same `f` through zero-padded loads and partial stores.
    ///
    /// # Panics
    /// If the slices differ in length.
    #[inline(always)]
    pub fn map<const I: usize, const O: usize>(
        self,
        ins: [&[T]; I],
        outs: [&mut [T]; O],
        f: impl Fn([V<S, T>; I], [V<S, T>; O]) -> [V<S, T>; O],
    ) {
        let n = outs
            .first()
            .map(|x| x.len())
            .or_else(|| ins.first().map(|x| x.len()))
            .unwrap_or(0);
        assert!(
            ins.iter().all(|x| x.len() == n) && outs.iter().all(|x| x.len() == n),
            "Lanes::map: rows of different lengths"
        );
        let s = self.simd;
        let ins = ins.map(T::v_split::<S>);
        let mut outs = outs.map(T::v_split_mut::<S>);
        let full = n / T::lanes::<S>();
        // Equal lengths let the compiler drop the bounds checks below.
        let in_regs: [&[V<S, T>]; I] = core::array::from_fn(|j| &ins[j].0[..full]);
        for k in 0..full {
            let a = core::array::from_fn(|j| in_regs[j][k]);
            let b = core::array::from_fn(|j| outs[j].0[k]);
            let r = f(a, b);
            for (out, r) in outs.iter_mut().zip(r) {
                out.0[k] = r;
            }
        }
        if n % T::lanes::<S>() != 0 {
            let a = core::array::from_fn(|j| T::v_load_partial(s, ins[j].1));
            let b = core::array::from_fn(|j| T::v_load_partial(s, outs[j].1));
            let r = f(a, b);
            for (out, r) in outs.iter_mut().zip(r) {
                T::v_store_partial(s, out.1, r);
            }
        }
    }
}
