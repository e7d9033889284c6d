//! The element types the kernels run on, `f32` and `f64`, and the SIMD operations they need.
//!
//! Every kernel is written once, generic over [`Float`]; the trait maps each operation onto
//! pulp's per-type method (`add_f32s` / `add_f64s`, ...), so the same source runs on AVX-512,
//! AVX2+FMA and the scalar fallback, in both precisions.

use core::fmt::{Debug, Display};
use core::iter::Sum;
use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use pulp::Simd;

use crate::aligned::AlignedBuf;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type the kernels support: `f32` or `f64` (sealed).
///
/// The scalar part is what the safe crate needs to write generic code (constants, conversions,
/// std math); the `v_*` part is the SIMD vocabulary of the pointwise kernels, one pulp call each.
/// Kernel code uses it through [`crate::lanes::Lanes`], which reads more naturally.
pub trait Float:
    sealed::Sealed
    + crate::instances::Instances
    + Copy
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + PartialEq
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// The smallest positive normal number; magnitudes below it are flushed to zero by the
    /// pointwise kernels (denormals make some CPUs ten times slower).
    const MIN_POSITIVE: Self;
    /// Not a number.
    const NAN: Self;
    /// Positive infinity.
    const INFINITY: Self;
    /// Machine epsilon.
    const EPSILON: Self;
    /// `"f32"` or `"f64"`, for messages and file headers.
    const NAME: &'static str;

    /// This thread's packing buffers for products whose callers give no scratch (see
    /// `gemm::scratch`); one set per element type.
    #[doc(hidden)]
    fn scratch_slots() -> &'static std::thread::LocalKey<[core::cell::RefCell<AlignedBuf<Self>>; 3]>;

    /// Converts from `f64`, rounding to nearest.
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64(self) -> f64;
    /// Converts from `usize` (rounds for `f32` above 2^24).
    fn from_usize(x: usize) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// e^x from std (scalar code outside the kernels: softmax, optimizers).
    fn exp(self) -> Self;
    /// Natural logarithm from std.
    fn ln(self) -> Self;
    /// `true` unless NaN or infinite.
    fn is_finite(self) -> bool;
    /// `true` for NaN.
    fn is_nan(self) -> bool;
    /// The larger of two numbers, ignoring NaN (std semantics).
    fn max(self, other: Self) -> Self;
    /// The smaller of two numbers, ignoring NaN (std semantics).
    fn min(self, other: Self) -> Self;

    /// A SIMD register of this type for instruction set `S`.
    type V<S: Simd>: Copy + Debug;
    /// A lane mask from a comparison.
    type M<S: Simd>: Copy + Debug;
    /// Lanes per register for `S`.
    fn lanes<S: Simd>() -> usize;
    /// All lanes set to `x`.
    fn v_splat<S: Simd>(s: S, x: Self) -> Self::V<S>;
    /// `a + b`.
    fn v_add<S: Simd>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// `a - b`.
    fn v_sub<S: Simd>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// `a * b`.
    fn v_mul<S: Simd>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// `a / b`.
    fn v_div<S: Simd>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// The square root, correctly rounded (as [`Float::sqrt`]).
    fn v_sqrt<S: Simd>(s: S, a: Self::V<S>) -> Self::V<S>;
    /// `a * b + c`, fused where the instruction set has FMA (pulp's `mul_add_e`).
    fn v_mul_add<S: Simd>(s: S, a: Self::V<S>, b: Self::V<S>, c: Self::V<S>) -> Self::V<S>;
    /// `|a|`.
    fn v_abs<S: Simd>(s: S, a: Self::V<S>) -> Self::V<S>;
    /// `a` with the sign bit of `sign` (copysign).
    fn v_copysign<S: Simd>(s: S, a: Self::V<S>, sign: Self::V<S>) -> Self::V<S>;
    /// Lanes where `a < b` (false where either is NaN).
    fn v_lt<S: Simd>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::M<S>;
    /// Lanes where `a > b` (false where either is NaN).
    fn v_gt<S: Simd>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::M<S>;
    /// Lanes where `a` is NaN.
    fn v_is_nan<S: Simd>(s: S, a: Self::V<S>) -> Self::M<S>;
    /// `if m { a } else { b }` lane by lane.
    fn v_select<S: Simd>(s: S, m: Self::M<S>, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// Loads up to one register from `x` (missing lanes are zero).
    fn v_load_partial<S: Simd>(s: S, x: &[Self]) -> Self::V<S>;
    /// Stores the first `x.len()` lanes of `v` into `x`.
    fn v_store_partial<S: Simd>(s: S, x: &mut [Self], v: Self::V<S>);
    /// Splits a slice into whole registers and a scalar tail.
    fn v_split<S: Simd>(x: &[Self]) -> (&[Self::V<S>], &[Self]);
    /// Splits a mutable slice into whole registers and a scalar tail.
    fn v_split_mut<S: Simd>(x: &mut [Self]) -> (&mut [Self::V<S>], &mut [Self]);
    /// Sum of all lanes.
    fn v_reduce_sum<S: Simd>(s: S, a: Self::V<S>) -> Self;
    /// e^x on every lane; see [`crate::math`] for its error bound.
    fn v_exp<S: Simd>(s: S, x: Self::V<S>) -> Self::V<S>;
    /// [`Self::v_exp`] without its range handling: the same bits for x in
    /// [`Self::EXP_IN_RANGE`] (and NaN), a wrong result outside.
    fn v_exp_in_range<S: Simd>(s: S, x: Self::V<S>) -> Self::V<S>;
    /// The inputs where [`Self::v_exp_in_range`] is [`Self::v_exp`]: `[lo, hi]`.
    const EXP_IN_RANGE: (Self, Self);
    /// tanh(x) for |x| < [`crate::math::TANH_SMALL`] by an odd polynomial or rational function;
    /// see [`crate::math`].
    fn v_tanh_small<S: Simd>(s: S, x: Self::V<S>) -> Self::V<S>;
}

/// Implements the scalar and the SIMD part of [`Float`] for one type by pasting pulp's names.
macro_rules! impl_float {
    (
        $t:ident, $name:literal,
        splat = $splat:ident, add = $add:ident, sub = $sub:ident, mul = $mul:ident,
        div = $div:ident, sqrt = $sqrt:ident, fma = $fma:ident, abs = $abs:ident, and = $and:ident, or = $or:ident,
        lt = $lt:ident, gt = $gt:ident, eq = $eq:ident, select = $select:ident,
        pload = $pload:ident, pstore = $pstore:ident, split = $split:ident,
        split_mut = $split_mut:ident, sum = $sum:ident, vec = $vec:ident, mask = $mask:ident,
        lanes = $lanes:ident, exp = $exp:path, exp_in_range = $exp_in_range:path,
        exp_domain = $exp_domain:path, tanh_small = $tanh_small:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const MIN_POSITIVE: Self = $t::MIN_POSITIVE;
            const NAN: Self = $t::NAN;
            const INFINITY: Self = $t::INFINITY;
            const EPSILON: Self = $t::EPSILON;
            const NAME: &'static str = $name;

            fn scratch_slots() -> &'static std::thread::LocalKey<[core::cell::RefCell<AlignedBuf<Self>>; 3]> {
                thread_local! {
                    static SLOTS: [core::cell::RefCell<AlignedBuf<$t>>; 3] = const {
                        [core::cell::RefCell::new(AlignedBuf::new()), core::cell::RefCell::new(AlignedBuf::new()), core::cell::RefCell::new(AlignedBuf::new())]
                    };
                }
                &SLOTS
            }

            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_usize(x: usize) -> Self {
                x as $t
            }
            #[inline(always)]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $t::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                $t::ln(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                $t::is_finite(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                $t::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                $t::min(self, other)
            }

            type V<S: Simd> = S::$vec;
            type M<S: Simd> = S::$mask;
            #[inline(always)]
            fn lanes<S: Simd>() -> usize {
                S::$lanes
            }
            #[inline(always)]
            fn v_splat<S: Simd>(s: S, x: Self) -> S::$vec {
                s.$splat(x)
            }
            #[inline(always)]
            fn v_add<S: Simd>(s: S, a: S::$vec, b: S::$vec) -> S::$vec {
                s.$add(a, b)
            }
            #[inline(always)]
            fn v_sub<S: Simd>(s: S, a: S::$vec, b: S::$vec) -> S::$vec {
                s.$sub(a, b)
            }
            #[inline(always)]
            fn v_mul<S: Simd>(s: S, a: S::$vec, b: S::$vec) -> S::$vec {
                s.$mul(a, b)
            }
            #[inline(always)]
            fn v_div<S: Simd>(s: S, a: S::$vec, b: S::$vec) -> S::$vec {
                s.$div(a, b)
            }
            #[inline(always)]
            fn v_sqrt<S: Simd>(s: S, a: S::$vec) -> S::$vec {
                s.$sqrt(a)
            }
            #[inline(always)]
            fn v_mul_add<S: Simd>(s: S, a: S::$vec, b: S::$vec, c: S::$vec) -> S::$vec {
                s.$fma(a, b, c)
            }
            #[inline(always)]
            fn v_abs<S: Simd>(s: S, a: S::$vec) -> S::$vec {
                s.$abs(a)
            }
            #[inline(always)]
            fn v_copysign<S: Simd>(s: S, a: S::$vec, sign: S::$vec) -> S::$vec {
                let sign_bit = s.$splat(-0.0);
                s.$or(s.$abs(a), s.$and(sign, sign_bit))
            }
            #[inline(always)]
            fn v_lt<S: Simd>(s: S, a: S::$vec, b: S::$vec) -> S::$mask {
                s.$lt(a, b)
            }
            #[inline(always)]
            fn v_gt<S: Simd>(s: S, a: S::$vec, b: S::$vec) -> S::$mask {
                s.$gt(a, b)
            }
            #[inline(always)]
            fn v_is_nan<S: Simd>(s: S, a: S::$vec) -> S::$mask {
                // NaN is the only value unequal to itself: select NaN lanes by swapping arms.
                let not_nan = s.$eq(a, a);
                Self::v_mask_not(s, not_nan)
            }
            #[inline(always)]
            fn v_select<S: Simd>(s: S, m: S::$mask, a: S::$vec, b: S::$vec) -> S::$vec {
                s.$select(m, a, b)
            }
            #[inline(always)]
            fn v_load_partial<S: Simd>(s: S, x: &[Self]) -> S::$vec {
                s.$pload(x)
            }
            #[inline(always)]
            fn v_store_partial<S: Simd>(s: S, x: &mut [Self], v: S::$vec) {
                s.$pstore(x, v)
            }
            #[inline(always)]
            fn v_split<S: Simd>(x: &[Self]) -> (&[S::$vec], &[Self]) {
                S::$split(x)
            }
            #[inline(always)]
            fn v_split_mut<S: Simd>(x: &mut [Self]) -> (&mut [S::$vec], &mut [Self]) {
                S::$split_mut(x)
            }
            #[inline(always)]
            fn v_reduce_sum<S: Simd>(s: S, a: S::$vec) -> Self {
                s.$sum(a)
            }
            #[inline(always)]
            fn v_exp<S: Simd>(s: S, x: S::$vec) -> S::$vec {
                $exp(s, x)
            }
            #[inline(always)]
            fn v_exp_in_range<S: Simd>(s: S, x: S::$vec) -> S::$vec {
                $exp_in_range(s, x)
            }
            const EXP_IN_RANGE: (Self, Self) = $exp_domain;
            #[inline(always)]
            fn v_tanh_small<S: Simd>(s: S, x: S::$vec) -> S::$vec {
                $tanh_small(s, x)
            }
        }
    };
}

/// Mask negation, which pulp names per width.
trait MaskNot: Float {
    fn v_mask_not<S: Simd>(s: S, m: Self::M<S>) -> Self::M<S>;
}
impl MaskNot for f32 {
    #[inline(always)]
    fn v_mask_not<S: Simd>(s: S, m: S::m32s) -> S::m32s {
        s.not_m32s(m)
    }
}
impl MaskNot for f64 {
    #[inline(always)]
    fn v_mask_not<S: Simd>(s: S, m: S::m64s) -> S::m64s {
        s.not_m64s(m)
    }
}

impl_float!(
    f32,
    "f32",
    splat = splat_f32s,
    add = add_f32s,
    sub = sub_f32s,
    mul = mul_f32s,
    div = div_f32s,
    sqrt = sqrt_f32s,
    fma = mul_add_e_f32s,
    abs = abs_f32s,
    and = and_f32s,
    or = or_f32s,
    lt = less_than_f32s,
    gt = greater_than_f32s,
    eq = equal_f32s,
    select = select_f32s,
    pload = partial_load_f32s,
    pstore = partial_store_f32s,
    split = as_simd_f32s,
    split_mut = as_mut_simd_f32s,
    sum = reduce_sum_f32s,
    vec = f32s,
    mask = m32s,
    lanes = F32_LANES,
    exp = crate::math::exp_f32,
    exp_in_range = crate::math::exp_f32_in_range,
    exp_domain = crate::math::EXP_IN_RANGE_F32,
    tanh_small = crate::math::tanh_small_f32
);

impl_float!(
    f64,
    "f64",
    splat = splat_f64s,
    add = add_f64s,
    sub = sub_f64s,
    mul = mul_f64s,
    div = div_f64s,
    sqrt = sqrt_f64s,
    fma = mul_add_e_f64s,
    abs = abs_f64s,
    and = and_f64s,
    or = or_f64s,
    lt = less_than_f64s,
    gt = greater_than_f64s,
    eq = equal_f64s,
    select = select_f64s,
    pload = partial_load_f64s,
    pstore = partial_store_f64s,
    split = as_simd_f64s,
    split_mut = as_mut_simd_f64s,
    sum = reduce_sum_f64s,
    vec = f64s,
    mask = m64s,
    lanes = F64_LANES,
    exp = crate::math::exp_f64,
    exp_in_range = crate::math::exp_f64_in_range,
    exp_domain = crate::math::EXP_IN_RANGE_F64,
    tanh_small = crate::math::tanh_small_f64
);
