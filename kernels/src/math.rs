//! Vector exp, sigmoid and tanh on SIMD lanes (pulp has none).
//!
//! The algorithms are Cephes' (Moshier), written once over [`Float`] with per-type constants:
//!
//! * `exp`: Cody-Waite reduction `x = n ln2 + r`, |r| <= ln2/2, then a degree-6 polynomial
//!   (f32) or Cephes' Padé form (f64) for e^r, scaled by 2^n built in the exponent bits.
//! * `sigmoid(x) = 1 / (1 + exp(-x))`.
//! * `tanh(x)`: for |x| < 0.625 an odd polynomial (f32) or rational function (f64) in x;
//!   above, `1 - 2 / (exp(2|x|) + 1)` with the sign of x.
//!
//! sigmoid and tanh clamp exp's argument to where it needs no range handling and call
//! [`exp_f32_in_range`] (16 operations instead of 28; the pointwise passes spend most of
//! their time in these functions): the results are the bits of the unclamped formulas for
//! every f32 input (compared once over all 2^32 on each instruction set; the tests compare
//! a strided sample), except sigmoid below -88, 0 where it was a denormal number before.
//!
//! # Accuracy (measured, see `tests` below and `examples/math_error.rs`)
//!
//! Against the f64 std functions over every f32 input (the example sweeps all 2^32 bit
//! patterns; the test here sweeps a strided sample of them):
//!
//! | function | max relative error (results >= `MIN_POSITIVE`) | max absolute error |
//! |----------|-------------------------------------------------|--------------------|
//! | exp      | 1.191e-7 (1 ulp), worst at x = 3.45e-4          | (relative only)    |
//! | sigmoid  | 1.921e-7, worst at x = -16.65                    | 8.9e-8             |
//! | tanh     | 1.449e-7, worst at x = 0.625                     | 8.1e-8             |
//!
//! Measured over all 4,278,190,080 finite f32 inputs on AVX-512 (every 7th on AVX2 and
//! scalar: the same figures to three digits). The test holds them to 1.3e-7, 2.0e-7 and 1.6e-7
//! (absolute 1e-7). In f64 the functions are within 6e-16 relative of std (tested on a sample
//! that covers both tanh branches and the ends of exp's range).
//!
//! # Special values
//! No finite input gives NaN; `exp(+inf) = +inf`, `exp(-inf) = 0`, `sigmoid(+-inf) = 1, 0`,
//! `tanh(+-inf) = +-1`; NaN in gives NaN out. Results below the smallest normal number
//! (exp(x) for x < ln(MIN_POSITIVE), about -87.3 in f32) are 0 or denormal: the pointwise
//! kernels flush them to zero ([`crate::lanes::Lanes::flush`]).

use pulp::Simd;

use crate::float::Float;

/// Below this magnitude `tanh` uses its polynomial branch.
pub const TANH_SMALL: f64 = 0.625;

/// Evaluates a polynomial with coefficients from the highest degree down (Horner, fused).
#[inline(always)]
fn horner<S: Simd, T: Float>(s: S, x: T::V<S>, coeffs: &[T]) -> T::V<S> {
    let mut acc = T::v_splat(s, coeffs[0]);
    for &c in &coeffs[1..] {
        acc = T::v_mul_add(s, acc, x, T::v_splat(s, c));
    }
    acc
}

/// Constants of the shared exp algorithm for one type.
struct ExpConsts<T> {
    /// Inputs below give 0 (the result would be below the smallest normal number).
    lo: T,
    /// Inputs above give +inf.
    hi: T,
    /// 1.5 * 2^mantissa_bits: adding it rounds to an integer held in the low mantissa bits.
    magic: T,
    /// ln 2 split in a high part with trailing zero bits and a low correction.
    ln2_hi: T,
    ln2_lo: T,
    /// The largest exponent 2^n that is finite.
    max_exp: T,
    /// The exponent bias.
    bias: T,
    /// The largest input whose 2^n is finite without the split of [`exp_scale_parts`]
    /// (n <= `max_exp`): the upper end of [`exp_f32_in_range`]'s domain.
    in_range_hi: T,
}

#[allow(clippy::excessive_precision)] // Cephes' published values, kept verbatim.
const EXP_F32: ExpConsts<f32> = ExpConsts {
    lo: -87.336_55,
    hi: 88.722_83,
    magic: 12_582_912.0,
    ln2_hi: 0.693_359_375,
    ln2_lo: -2.121_944_4e-4,
    max_exp: 127.0,
    bias: 127.0,
    in_range_hi: 88.0,
};

#[allow(clippy::excessive_precision)] // Cephes' published values, kept verbatim.
const EXP_F64: ExpConsts<f64> = ExpConsts {
    lo: -708.396_418_532_264_1,
    hi: 709.782_712_893_384,
    magic: 6_755_399_441_055_744.0,
    ln2_hi: 6.931_457_519_531_25e-1,
    ln2_lo: 1.428_606_820_309_417_232_12e-6,
    max_exp: 1023.0,
    bias: 1023.0,
    in_range_hi: 709.0,
};

/// `x` clamped into `[lo, hi]` by selects, so that NaN stays NaN.
#[inline(always)]
fn clamp<S: Simd, T: Float>(s: S, x: T::V<S>, lo: T, hi: T) -> T::V<S> {
    let (lo, hi) = (T::v_splat(s, lo), T::v_splat(s, hi));
    let x = T::v_select(s, T::v_lt(s, x, lo), lo, x);
    T::v_select(s, T::v_gt(s, x, hi), hi, x)
}

/// The reduction shared by both types: returns `(r, n)` with `x = n ln2 + r`, |r| <= ln2/2.
#[inline(always)]
fn exp_reduce<S: Simd, T: Float>(s: S, x: T::V<S>, c: &ExpConsts<T>) -> (T::V<S>, T::V<S>) {
    let magic = T::v_splat(s, c.magic);
    let log2e = T::v_splat(s, T::from_f64(core::f64::consts::LOG2_E));
    let k = T::v_mul_add(s, x, log2e, magic);
    let n = T::v_sub(s, k, magic);
    let r = T::v_mul_add(s, n, T::v_splat(s, -c.ln2_hi), x);
    let r = T::v_mul_add(s, n, T::v_splat(s, -c.ln2_lo), r);
    (r, n)
}

/// Applies the range limits of exp: x < lo gives 0, x > hi gives +inf.
#[inline(always)]
fn exp_limits<S: Simd, T: Float>(s: S, x: T::V<S>, y: T::V<S>, c: &ExpConsts<T>) -> T::V<S> {
    let y = T::v_select(
        s,
        T::v_lt(s, x, T::v_splat(s, c.lo)),
        T::v_splat(s, T::ZERO),
        y,
    );
    T::v_select(
        s,
        T::v_gt(s, x, T::v_splat(s, c.hi)),
        T::v_splat(s, T::INFINITY),
        y,
    )
}

/// Splits 2^n into 2^min(n, max_exp) (built from exponent bits) and a factor 2 for n = max+1,
/// and returns `(p * extra, n_clamped + bias + magic)`: the caller turns the latter's low bits
/// into an exponent field.
#[inline(always)]
fn exp_scale_parts<S: Simd, T: Float>(
    s: S,
    p: T::V<S>,
    n: T::V<S>,
    c: &ExpConsts<T>,
) -> (T::V<S>, T::V<S>) {
    let max = T::v_splat(s, c.max_exp);
    let over = T::v_gt(s, n, max);
    let p = T::v_select(s, over, T::v_add(s, p, p), p);
    let n = T::v_select(s, over, max, n);
    (p, T::v_add(s, n, T::v_splat(s, c.bias + c.magic)))
}

/// Cephes' `expf` polynomial: e^r for |r| <= ln2/2.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' published coefficients, kept verbatim.
fn exp_poly_f32<S: Simd>(s: S, r: S::f32s) -> S::f32s {
    const P: [f32; 6] = [
        1.987_569_15e-4,
        1.398_199_950_7e-3,
        8.333_451_907_3e-3,
        4.166_579_589_4e-2,
        1.666_666_545_9e-1,
        5.000_000_120_1e-1,
    ];
    let r2 = s.mul_f32s(r, r);
    let p = horner::<S, f32>(s, r, &P);
    s.mul_add_e_f32s(p, r2, s.add_f32s(r, s.splat_f32s(1.0)))
}

/// 2^n from `biased` = n + bias + magic (the low bits hold n + 127 above the magic
/// constant's bits), built in the exponent field.
#[inline(always)]
fn pow2_f32<S: Simd>(s: S, biased: S::f32s) -> S::f32s {
    let e = s.sub_u32s(
        s.transmute_u32s_f32s(biased),
        s.splat_u32s(EXP_F32.magic.to_bits()),
    );
    s.transmute_f32s_u32s(s.wrapping_dyn_shl_u32s(e, s.splat_u32s(23)))
}

/// e^x for f32 lanes (Cephes `expf`): see the module docs for the error bound.
#[inline(always)]
pub fn exp_f32<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let c = &EXP_F32;
    let (r, n) = exp_reduce::<S, f32>(s, clamp::<S, f32>(s, x, c.lo, c.hi), c);
    let (p, biased) = exp_scale_parts::<S, f32>(s, exp_poly_f32(s, r), n, c);
    exp_limits::<S, f32>(s, x, s.mul_f32s(p, pow2_f32(s, biased)), c)
}

/// [`exp_f32`] for x in `[-87.33, 88]` (or NaN), without its range handling: the same
/// bits there, in 16 operations instead of 28. Outside that range the result is wrong.
#[inline(always)]
pub fn exp_f32_in_range<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let c = &EXP_F32;
    let (r, n) = exp_reduce::<S, f32>(s, x, c);
    let biased = s.add_f32s(n, s.splat_f32s(c.bias + c.magic));
    s.mul_f32s(exp_poly_f32(s, r), pow2_f32(s, biased))
}

/// Cephes' `exp` Padé form: e^r for |r| <= ln2/2.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' published coefficients, kept verbatim.
fn exp_poly_f64<S: Simd>(s: S, r: S::f64s) -> S::f64s {
    const P: [f64; 3] = [
        1.261_771_930_748_105_908_78e-4,
        3.029_944_077_074_419_613_00e-2,
        9.999_999_999_999_999_999_10e-1,
    ];
    const Q: [f64; 4] = [
        3.001_985_051_386_644_550_42e-6,
        2.524_483_403_496_841_041_92e-3,
        2.272_655_482_081_550_287_66e-1,
        2.000_000_000_000_000_000_09e0,
    ];
    let r2 = s.mul_f64s(r, r);
    let px = s.mul_f64s(r, horner::<S, f64>(s, r2, &P));
    let qx = horner::<S, f64>(s, r2, &Q);
    let p = s.div_f64s(px, s.sub_f64s(qx, px));
    s.mul_add_e_f64s(p, s.splat_f64s(2.0), s.splat_f64s(1.0))
}

/// 2^n from `biased` = n + bias + magic, built in the exponent field.
#[inline(always)]
fn pow2_f64<S: Simd>(s: S, biased: S::f64s) -> S::f64s {
    let e = s.sub_u64s(
        s.transmute_u64s_f64s(biased),
        s.splat_u64s(EXP_F64.magic.to_bits()),
    );
    // Multiplying by 2^52 shifts n + 1023 into the exponent field (pulp has no 64-bit shift).
    s.transmute_f64s_u64s(s.mul_u64s(e, s.splat_u64s(1 << 52)))
}

/// e^x for f64 lanes (Cephes `exp`, Padé form): see the module docs for the error bound.
#[inline(always)]
pub fn exp_f64<S: Simd>(s: S, x: S::f64s) -> S::f64s {
    let c = &EXP_F64;
    let (r, n) = exp_reduce::<S, f64>(s, clamp::<S, f64>(s, x, c.lo, c.hi), c);
    let (p, biased) = exp_scale_parts::<S, f64>(s, exp_poly_f64(s, r), n, c);
    exp_limits::<S, f64>(s, x, s.mul_f64s(p, pow2_f64(s, biased)), c)
}

/// [`exp_f64`] for x in `[-708.39, 709]` (or NaN), without its range handling: the same
/// bits there. Outside that range the result is wrong.
#[inline(always)]
pub fn exp_f64_in_range<S: Simd>(s: S, x: S::f64s) -> S::f64s {
    let c = &EXP_F64;
    let (r, n) = exp_reduce::<S, f64>(s, x, c);
    let biased = s.add_f64s(n, s.splat_f64s(c.bias + c.magic));
    s.mul_f64s(exp_poly_f64(s, r), pow2_f64(s, biased))
}

/// tanh(x) for |x| < [`TANH_SMALL`], f32 (Cephes `tanhf` polynomial).
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' published coefficients, kept verbatim.
pub fn tanh_small_f32<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    const P: [f32; 5] = [
        -5.704_988_727_45e-3,
        2.063_908_879_54e-2,
        -5.373_971_555_31e-2,
        1.333_144_220_36e-1,
        -3.333_328_194_22e-1,
    ];
    let z = s.mul_f32s(x, x);
    let p = s.mul_f32s(horner::<S, f32>(s, z, &P), z);
    s.mul_add_e_f32s(p, x, x)
}

/// tanh(x) for |x| < [`TANH_SMALL`], f64 (Cephes `tanh` rational function).
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' published coefficients, kept verbatim.
pub fn tanh_small_f64<S: Simd>(s: S, x: S::f64s) -> S::f64s {
    const P: [f64; 3] = [
        -9.643_991_794_250_522_386_28e-1,
        -9.928_772_310_019_185_865_64e1,
        -1.614_687_684_417_084_479_52e3,
    ];
    const Q: [f64; 4] = [
        1.0,
        1.128_116_784_916_329_314_02e2,
        2.235_488_390_601_004_485_83e3,
        4.844_063_053_251_254_860_48e3,
    ];
    let z = s.mul_f64s(x, x);
    let ratio = s.div_f64s(horner::<S, f64>(s, z, &P), horner::<S, f64>(s, z, &Q));
    s.mul_add_e_f64s(s.mul_f64s(ratio, z), x, x)
}

/// The domain of [`exp_f32_in_range`]: where it gives [`exp_f32`]'s bits.
pub const EXP_IN_RANGE_F32: (f32, f32) = (EXP_F32.lo, EXP_F32.in_range_hi);
/// The domain of [`exp_f64_in_range`]: where it gives [`exp_f64`]'s bits.
pub const EXP_IN_RANGE_F64: (f64, f64) = (EXP_F64.lo, EXP_F64.in_range_hi);

/// `1 / (1 + e^-x)` on every lane.
///
/// e^-x is taken with -x clamped into the in-range exp's domain, which changes no result:
/// below it `1 + e^-x` rounds to 1 either way, and above it (x < -88 in f32) the result,
/// 0 or denormal before, is 0.
#[inline(always)]
pub fn sigmoid<S: Simd, T: Float>(s: S, x: T::V<S>) -> T::V<S> {
    let one = T::v_splat(s, T::ONE);
    let zero = T::v_splat(s, T::ZERO);
    let (lo, hi) = T::EXP_IN_RANGE;
    let z = T::v_sub(s, zero, x);
    let (lo, hi) = (T::v_splat(s, lo), T::v_splat(s, hi));
    let z = T::v_select(s, T::v_lt(s, z, lo), lo, z);
    let beyond = T::v_gt(s, z, hi);
    let e = T::v_exp_in_range(s, T::v_select(s, beyond, hi, z));
    T::v_select(s, beyond, zero, T::v_div(s, one, T::v_add(s, one, e)))
}

/// tanh on every lane.
///
/// For |x| >= [`TANH_SMALL`], `1 - 2 / (e^2|x| + 1)` with |x| clamped to half the in-range
/// exp's upper end (44 in f32): beyond it the result rounds to 1 either way.
#[inline(always)]
pub fn tanh<S: Simd, T: Float>(s: S, x: T::V<S>) -> T::V<S> {
    let one = T::v_splat(s, T::ONE);
    let two = T::v_splat(s, T::ONE + T::ONE);
    let ax = T::v_abs(s, x);
    let half_hi = T::v_splat(s, T::EXP_IN_RANGE.1 * T::from_f64(0.5));
    let clamped = T::v_select(s, T::v_gt(s, ax, half_hi), half_hi, ax);
    let e = T::v_exp_in_range(s, T::v_add(s, clamped, clamped));
    let large = T::v_sub(s, one, T::v_div(s, two, T::v_add(s, e, one)));
    let small = T::v_tanh_small(s, ax);
    let t = T::v_select(
        s,
        T::v_lt(s, ax, T::v_splat(s, T::from_f64(TANH_SMALL))),
        small,
        large,
    );
    // Evaluated on |x| and signed at the end: tanh is exactly odd, tanh(-0) = -0.
    T::v_copysign(s, t, x)
}

/// Applies `f` to each element of `x` through the SIMD path of `arch` (registers and a partial
/// tail), writing `out`. Used by tests, benches and the error sweep.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn map_slice<T: Float>(arch: pulp::Arch, f: VectorFn, x: &[T], out: &mut [T]) {
    assert_eq!(
        x.len(),
        out.len(),
        "map_slice: input and output lengths differ"
    );
    T::__kernel_map(arch, MapOp { f, x, out });
}

/// [`map_slice`]'s body, one SIMD call.
pub(crate) struct MapOp<'a, T> {
    f: VectorFn,
    x: &'a [T],
    out: &'a mut [T],
}
impl<T: Float> pulp::WithSimd for MapOp<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = crate::lanes::Lanes::<S, T>::new(s);
        let f = self.f;
        crate::lane_map!(l, [self.x], [self.out], |[x], [_]| [f.apply(l, x)]);
    }
}

/// The vector functions [`map_slice`] can apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorFn {
    /// e^x.
    Exp,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
}

impl VectorFn {
    #[inline(always)]
    fn apply<S: Simd, T: Float>(self, l: crate::lanes::Lanes<S, T>, x: T::V<S>) -> T::V<S> {
        match self {
            VectorFn::Exp => l.exp(x),
            VectorFn::Sigmoid => l.sigmoid(x),
            VectorFn::Tanh => l.tanh(x),
        }
    }

    /// The f64 reference from std.
    pub fn reference(self, x: f64) -> f64 {
        match self {
            VectorFn::Exp => x.exp(),
            VectorFn::Sigmoid => crate::reference::math::sigmoid(x),
            VectorFn::Tanh => x.tanh(),
        }
    }
}

/// The error of one vector function over a sweep of f32 inputs, against the f64 reference.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorReport {
    /// Inputs checked.
    pub checked: u64,
    /// Largest `|f - r| / |r|` over references `>= MIN_POSITIVE` in magnitude.
    pub max_rel: f64,
    /// The input where `max_rel` occurred.
    pub worst_rel_input: f32,
    /// Largest `|f - r|` over all finite results.
    pub max_abs: f64,
    /// Finite inputs that gave NaN (must be 0).
    pub nan_from_finite: u64,
    /// Results that overflowed (or not) where the reference did not (or did) (must be 0).
    pub overflow_mismatch: u64,
}

impl ErrorReport {
    fn merge(mut self, o: ErrorReport) -> ErrorReport {
        self.checked += o.checked;
        if o.max_rel > self.max_rel {
            self.max_rel = o.max_rel;
            self.worst_rel_input = o.worst_rel_input;
        }
        self.max_abs = self.max_abs.max(o.max_abs);
        self.nan_from_finite += o.nan_from_finite;
        self.overflow_mismatch += o.overflow_mismatch;
        self
    }
}

/// Measures `f` on every `stride`-th f32 bit pattern starting at `offset`, for all finite
/// inputs, through the SIMD path of `arch` (stride 1 covers all 2^32 patterns).
pub fn error_sweep(arch: pulp::Arch, f: VectorFn, stride: u32, offset: u32) -> ErrorReport {
    const CHUNK: usize = 1 << 14;
    let stride = u64::from(stride.max(1));
    let mut report = ErrorReport::default();
    let mut inputs = Vec::with_capacity(CHUNK);
    let mut outputs = vec![0f32; CHUNK];
    let mut bits = u64::from(offset);
    while bits <= u64::from(u32::MAX) {
        inputs.clear();
        while inputs.len() < CHUNK && bits <= u64::from(u32::MAX) {
            let x = f32::from_bits(bits as u32);
            if x.is_finite() {
                inputs.push(x);
            }
            bits += stride;
        }
        let out = &mut outputs[..inputs.len()];
        map_slice(arch, f, &inputs, out);
        for (&x, &y) in inputs.iter().zip(out.iter()) {
            report = report.merge(score(f, x, y));
        }
    }
    report
}

/// The error of one result `y = f(x)`.
fn score(f: VectorFn, x: f32, y: f32) -> ErrorReport {
    let r = f.reference(f64::from(x));
    let y64 = f64::from(y);
    let mut rep = ErrorReport {
        checked: 1,
        ..Default::default()
    };
    if y.is_nan() {
        rep.nan_from_finite = 1;
        return rep;
    }
    let overflows = r.abs() > f64::from(f32::MAX);
    if overflows != y.is_infinite() {
        // Rounding may legitimately overflow right at the edge: within 1 ulp of f32::MAX.
        let edge = (r.abs() - f64::from(f32::MAX)).abs() <= f64::from(f32::MAX) * 1.2e-7;
        rep.overflow_mismatch = u64::from(!edge);
        return rep;
    }
    if overflows {
        return rep;
    }
    rep.max_abs = (y64 - r).abs();
    if r.abs() >= f64::from(f32::MIN_POSITIVE) {
        rep.max_rel = (y64 - r).abs() / r.abs();
        rep.worst_rel_input = x;
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::available_archs;

    fn special<T: crate::Float>(arch: pulp::Arch) {
        let inputs: Vec<T> = [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.0,
            -0.0,
            1e30,
            -1e30,
        ]
        .iter()
        .map(|&v| T::from_f64(v))
        .collect();
        let run = |f| {
            let mut out = vec![T::ZERO; inputs.len()];
            map_slice(arch, f, &inputs, &mut out);
            out.iter().map(|v| v.to_f64()).collect::<Vec<_>>()
        };
        let exp = run(VectorFn::Exp);
        assert_eq!(&exp[..2], &[f64::INFINITY, 0.0]);
        assert!(exp[2].is_nan());
        assert_eq!(&exp[3..], &[1.0, 1.0, f64::INFINITY, 0.0]);
        let sig = run(VectorFn::Sigmoid);
        assert_eq!(&sig[..2], &[1.0, 0.0]);
        assert!(sig[2].is_nan());
        assert_eq!(&sig[3..], &[0.5, 0.5, 1.0, 0.0]);
        let tanh = run(VectorFn::Tanh);
        assert_eq!(&tanh[..2], &[1.0, -1.0]);
        assert!(tanh[2].is_nan());
        assert_eq!(&tanh[3..], &[0.0, 0.0, 1.0, -1.0]);
        assert!(tanh[4].is_sign_negative(), "tanh(-0) keeps the sign");
    }

    #[test]
    fn special_values_on_every_arch() {
        for arch in available_archs() {
            special::<f32>(arch);
            special::<f64>(arch);
        }
    }

    /// The unclamped formulas on the full exp, which `sigmoid` and `tanh` must reproduce.
    struct Unclamped<'a> {
        x: &'a [f32],
        out: [&'a mut [f32]; 3],
    }
    impl pulp::WithSimd for Unclamped<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let l = crate::lanes::Lanes::<S, f32>::new(s);
            let [a, b, c] = self.out;
            crate::lane_map!(l, [self.x], [a, b, c], |[x], [_, _, _]| {
                let one = l.one();
                let sigmoid = l.div(one, l.add(one, l.exp(l.sub(l.zero(), x))));
                let ax = T::v_abs(s, x);
                let e = l.exp(l.add(ax, ax));
                let large = l.sub(one, l.div(l.splat(2.0), l.add(e, one)));
                let small = T::v_tanh_small(s, ax);
                let small_mask = T::v_lt(s, ax, l.splat(TANH_SMALL as f32));
                let tanh = T::v_copysign(s, T::v_select(s, small_mask, small, large), x);
                [sigmoid, tanh, exp_f32_in_range(s, x)]
            });
        }
    }
    type T = f32;

    /// sigmoid and tanh give the unclamped formulas' bits (sigmoid below -88: 0 for a
    /// denormal), and the in-range exp gives exp's bits on its domain, on a strided sample
    /// of all f32 inputs and the domain's ends.
    #[test]
    fn clamped_exp_changes_no_result() {
        let stride = if cfg!(miri) { 1 << 24 } else { 4099 };
        let mut xs: Vec<f32> = (0..=u32::MAX / stride)
            .map(|i| f32::from_bits(i * stride + 5))
            .filter(|x| x.is_finite())
            .collect();
        let (lo, hi) = EXP_IN_RANGE_F32;
        xs.extend([
            lo,
            hi,
            -lo,
            -hi,
            hi / 2.0,
            -hi / 2.0,
            9.0,
            -17.0,
            0.625,
            -0.625,
        ]);
        for arch in available_archs() {
            let mut want = [
                vec![0.0; xs.len()],
                vec![0.0; xs.len()],
                vec![0.0; xs.len()],
            ];
            let [ws, wt, we] = &mut want;
            arch.dispatch(Unclamped {
                x: &xs,
                out: [ws, wt, we],
            });
            let (mut sig, mut tanh, mut exp) = (
                vec![0.0; xs.len()],
                vec![0.0; xs.len()],
                vec![0.0; xs.len()],
            );
            map_slice(arch, VectorFn::Sigmoid, &xs, &mut sig);
            map_slice(arch, VectorFn::Tanh, &xs, &mut tanh);
            map_slice(arch, VectorFn::Exp, &xs, &mut exp);
            let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            for (i, &x) in xs.iter().enumerate() {
                let flushed = x < -88.0 && want[0][i].abs() < f32::MIN_POSITIVE && sig[i] == 0.0;
                assert!(
                    same(sig[i], want[0][i]) || flushed,
                    "sigmoid({x}) on {arch:?}"
                );
                assert!(same(tanh[i], want[1][i]), "tanh({x}) on {arch:?}");
                if (lo..=hi).contains(&x) {
                    assert!(same(exp[i], want[2][i]), "exp_in_range({x}) on {arch:?}");
                }
            }
        }
    }

    /// The bounds documented in the module docs, on a strided sample of all f32 inputs
    /// (`examples/math_error.rs` sweeps all of them).
    #[test]
    fn f32_error_within_documented_bounds() {
        let stride = if cfg!(miri) { 1 << 24 } else { 4099 };
        for arch in available_archs() {
            for (f, rel, abs) in [
                (VectorFn::Exp, 1.3e-7, f64::INFINITY),
                (VectorFn::Sigmoid, 2.0e-7, 1e-7),
                (VectorFn::Tanh, 1.6e-7, 1e-7),
            ] {
                let r = error_sweep(arch, f, stride, 7);
                assert!(
                    r.checked > 1_000_000 || cfg!(miri),
                    "{f:?}: only {} inputs",
                    r.checked
                );
                assert_eq!(
                    r.nan_from_finite, 0,
                    "{f:?} on {arch:?}: NaN from a finite input"
                );
                assert_eq!(
                    r.overflow_mismatch, 0,
                    "{f:?} on {arch:?}: overflow mismatch"
                );
                assert!(
                    r.max_rel <= rel,
                    "{f:?} on {arch:?}: rel {:e} at {}",
                    r.max_rel,
                    r.worst_rel_input
                );
                if f != VectorFn::Exp {
                    assert!(r.max_abs <= abs, "{f:?} on {arch:?}: abs {:e}", r.max_abs);
                }
            }
        }
    }

    /// f64 lanes against std on a deterministic sample, including both tanh branches and the
    /// exp range ends.
    #[test]
    fn f64_error_within_bound() {
        let mut rng = crate::testing::SplitMix::new(11);
        let mut xs: Vec<f64> = (0..20_000)
            .map(|i| rng.uniform(if i % 2 == 0 { 2.0 } else { 700.0 }))
            .collect();
        xs.extend([
            0.6249999, 0.625, -0.625, 708.39, -708.39, 709.78, 1e-300, -1e-10,
        ]);
        for arch in available_archs() {
            for f in [VectorFn::Exp, VectorFn::Sigmoid, VectorFn::Tanh] {
                let mut out = vec![0.0; xs.len()];
                map_slice(arch, f, &xs, &mut out);
                for (&x, &y) in xs.iter().zip(&out) {
                    let r = f.reference(x);
                    if r.abs() < f64::MIN_POSITIVE {
                        assert!(y.abs() < 1e-300, "{f:?}({x}) = {y}, want {r}");
                        continue;
                    }
                    let rel = ((y - r) / r).abs();
                    assert!(
                        rel <= 6e-16,
                        "{f:?}({x}) on {arch:?}: {y} vs {r}, rel {rel:e}"
                    );
                }
            }
        }
    }
}
