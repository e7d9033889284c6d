//! [`Lanes`]: the SIMD vocabulary the pointwise kernels are written in.
//!
//! A `Lanes<S, T>` is a zero-sized handle on instruction set `S` for element type `T`; its
//! methods read like the equations (`l.mul_add(f, c_prev, l.mul(i, g))`), and
//! [`lane_map!`](crate::lane_map) walks any number of equally long rows register by
//! register, finishing with a partial register, so a kernel body is written once for the main
//! loop and the tail.
//!
//! Why a macro and not a method taking a closure: pulp runs the kernel inside a function
//! compiled for the instruction set, and only code inlined into it gets those instructions.
//! A closure body is a function of its own that LLVM may keep out of line (large bodies are),
//! and then every intrinsic in it becomes a call. The macro pastes the body in place, and
//! everything it calls is `#[inline(always)]`.

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
    /// The square root, correctly rounded.
    #[inline(always)]
    pub fn sqrt(self, a: V<S, T>) -> V<S, T> {
        T::v_sqrt(self.simd, a)
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
}

/// A row split into whole registers and a scalar tail.
pub type RegsAndTail<'a, S, T> = (&'a mut [V<S, T>], &'a mut [T]);

/// Rows split into whole registers and a scalar tail, `I` inputs and `O` outputs, for
/// [`lane_map!`](crate::lane_map).
pub struct Split<'a, S: Simd, T: Float, const I: usize, const O: usize> {
    /// Input registers, each slice `full` long.
    pub ins: [&'a [V<S, T>]; I],
    /// Input tails.
    pub in_tails: [&'a [T]; I],
    /// Output registers and tails.
    pub outs: [RegsAndTail<'a, S, T>; O],
    /// Whole registers per row.
    pub full: usize,
}

impl<'a, S: Simd, T: Float, const I: usize, const O: usize> Split<'a, S, T, I, O> {
    /// Splits rows of one length.
    ///
    /// # Panics
    /// If the rows differ in length.
    #[inline(always)]
    pub fn new(ins: [&'a [T]; I], outs: [&'a mut [T]; O]) -> Self {
        let n = match (outs.first(), ins.first()) {
            (Some(o), _) => o.len(),
            (None, Some(i)) => i.len(),
            _ => 0,
        };
        let same = ins.iter().all(|x| x.len() == n) && outs.iter().all(|x| x.len() == n);
        assert!(same, "lane_map: rows of different lengths");
        let full = n / T::lanes::<S>();
        let mut in_regs: [&[V<S, T>]; I] = [&[]; I];
        let mut in_tails: [&[T]; I] = [&[]; I];
        for ((x, regs), tail) in ins.iter().zip(&mut in_regs).zip(&mut in_tails) {
            let (r, t) = T::v_split::<S>(x);
            // Equal lengths let the compiler drop the bounds checks in the loop.
            *regs = &r[..full];
            *tail = t;
        }
        let outs = outs.map(|o| T::v_split_mut::<S>(o));
        Split {
            ins: in_regs,
            in_tails,
            outs,
            full,
        }
    }
    /// Input registers at `k`. (`from_fn` unrolls; a loop over the array stayed a loop with
    /// a stack copy per input: LSTM's passes at 32 rows x 256 units on Zen 4 took 51 us
    /// forward and 30 backward that way, 43 and 20 this way.)
    #[inline(always)]
    pub fn load(&self, k: usize) -> [V<S, T>; I] {
        core::array::from_fn(|i| self.ins[i][k])
    }
    /// Output registers at `k`.
    #[inline(always)]
    pub fn load_out(&self, k: usize) -> [V<S, T>; O] {
        core::array::from_fn(|o| self.outs[o].0[k])
    }
    /// Stores `r` at `k`.
    #[inline(always)]
    pub fn store(&mut self, k: usize, r: [V<S, T>; O]) {
        for (out, r) in self.outs.iter_mut().zip(r) {
            out.0[k] = r;
        }
    }
    /// Whether a partial register is left.
    #[inline(always)]
    pub fn has_tail(&self) -> bool {
        let out_tail = self.outs.first().is_some_and(|o| !o.1.is_empty());
        out_tail || self.in_tails.first().is_some_and(|t| !t.is_empty())
    }
    /// The tail inputs, zero-padded.
    #[inline(always)]
    pub fn load_tail(&self, l: Lanes<S, T>) -> [V<S, T>; I] {
        let mut out = [l.zero(); I];
        for (o, tail) in out.iter_mut().zip(&self.in_tails) {
            *o = T::v_load_partial(l.simd, tail);
        }
        out
    }
    /// The tail outputs, zero-padded.
    #[inline(always)]
    pub fn load_tail_out(&self, l: Lanes<S, T>) -> [V<S, T>; O] {
        let mut out = [l.zero(); O];
        for (o, regs) in out.iter_mut().zip(&self.outs) {
            *o = T::v_load_partial(l.simd, regs.1);
        }
        out
    }
    /// Stores the tail's valid lanes.
    #[inline(always)]
    pub fn store_tail(&mut self, l: Lanes<S, T>, r: [V<S, T>; O]) {
        for (out, r) in self.outs.iter_mut().zip(r) {
            T::v_store_partial(l.simd, out.1, r);
        }
    }
}

/// `lane_map!(l, [inputs...], [outputs...], |[in names...], [out names...]| body)`: walks
/// equally long rows a register at a time and stores `body` (an array with one register per
/// output) into the outputs; the outputs' current values are bound too. The last partial
/// register goes through zero-padded loads and partial stores. See the module docs for why
/// this is a macro.
#[macro_export]
macro_rules! lane_map {
    ($l:expr, [$($in:expr),* $(,)?], [$($out:expr),* $(,)?], |$a:pat_param, $b:pat_param| $body:expr) => {{
        let l = $l;
        let mut split = $crate::lanes::Split::new([$($in),*], [$($out),*]);
        for k in 0..split.full {
            let $a = split.load(k);
            let $b = split.load_out(k);
            let r = $body;
            split.store(k, r);
        }
        if split.has_tail() {
            let $a = split.load_tail(l);
            let $b = split.load_tail_out(l);
            let r = $body;
            split.store_tail(l, r);
        }
    }};
}
