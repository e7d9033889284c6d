//! Test helpers shared by both crates' tests (feature `testing`): proptest strategies biased
//! toward the sizes that break SIMD code, values that saturate the gates, a seeded generator,
//! NaN-filled buffers, and the tolerance check `|x - r| <= abs + rel * |r|`.

pub mod alloc;

use proptest::prelude::*;

use crate::float::Float;

/// A proptest config with `default` cases, unless `PROPTEST_CASES` asks for another count
/// (for deep runs: `PROPTEST_CASES=5000 cargo test --release`).
pub fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Lengths that stress register tails for every instruction set: 0, 1, L-1, L, L+1, 2L+3 for
/// L in {4, 8, 16} (f64 and f32 registers), 63, 64, 65, plus any length up to 70.
pub fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => prop::sample::select(vec![1usize, 3, 4, 5, 7, 8, 9, 11, 15, 16, 17, 19, 35, 63, 64, 65]),
        1 => Just(0usize),
        2 => 1usize..70,
    ]
}

/// Like [`size`] but never 0.
pub fn size_nonzero() -> impl Strategy<Value = usize> {
    size().prop_map(|n| n.max(1))
}

/// A value of moderate size, or now and then one that saturates sigmoid and tanh.
pub fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -3.0f64..3.0,
        1 => -30.0f64..30.0,
        1 => prop::sample::select(vec![-100.0, -20.0, 20.0, 100.0, 0.0]),
    ]
}

/// `n` values from [`value`].
pub fn values(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(value(), n)
}

/// A deterministic generator (SplitMix64) for tests that need bulk values from a seed.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-scale, scale)`.
    pub fn uniform(&mut self, scale: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (2.0 * unit - 1.0) * scale
    }
    /// `n` values uniform in `[-scale, scale)`.
    pub fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(scale)).collect()
    }
}

/// `n` NaNs: an output buffer that proves the code under test wrote every element it should.
pub fn nan_filled<T: Float>(n: usize) -> Vec<T> {
    vec![T::NAN; n]
}

/// Converts f64 test values to `T`.
pub fn cast<T: Float>(x: &[f64]) -> Vec<T> {
    x.iter().map(|&v| T::from_f64(v)).collect()
}

/// Converts `T` results to f64.
pub fn widen<T: Float>(x: &[T]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64()).collect()
}

/// The tolerances for comparing a `T` kernel with its f64 reference: `(abs, rel)`.
///
/// f32: rel 1e-5 (DESIGN.md), abs 1e-6 for values that cancel to near 0 (a few f32 ulps of
/// the O(1) terms they came from). f64: rel 1e-12, abs 1e-13.
pub fn tolerance<T: Float>() -> (f64, f64) {
    if T::EPSILON.to_f64() > 1e-10 {
        (1e-6, 1e-5)
    } else {
        (1e-13, 1e-12)
    }
}

/// [`tolerance`] with the absolute part scaled by `1 + max |input|` over the given inputs.
///
/// A kernel's f32 error is a few ulps of its *inputs*, not of its result: inputs are rounded
/// to f32, pre-activations are sums that can cancel to near 0, and a saturated gate's
/// derivative `1 - a^2` or `a(1 - a)` is computed from a rounded activation and cancels too.
pub fn scaled_tolerance<T: Float>(incoming: &[&[f64]]) -> (f64, f64) {
    let (abs, rel) = tolerance::<T>();
    let max = incoming
        .iter()
        .flat_map(|x| x.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    (abs * (1.0 + max), rel)
}

/// [`tolerance`] with the absolute part scaled by `(1 + max |a|) * (1 + max |b|)`: for
/// results that multiply two unbounded inputs (GRU's `dh * (h_prev - n)` and `dan * hn`),
/// whose rounding errors then multiply too.
pub fn product_tolerance<T: Float>(a: &[&[f64]], b: &[&[f64]]) -> (f64, f64) {
    let max = |g: &[&[f64]]| {
        g.iter()
            .flat_map(|x| x.iter())
            .fold(0.0f64, |m, v| m.max(v.abs()))
    };
    let (abs, rel) = tolerance::<T>();
    (abs * (1.0 + max(a)) * (1.0 + max(b)), rel)
}

/// The first index where `|got - want| > abs + rel * |want|`, with both values; NaN must
/// match NaN.
pub fn first_mismatch(got: &[f64], want: &[f64], abs: f64, rel: f64) -> Option<(usize, f64, f64)> {
    assert_eq!(got.len(), want.len(), "first_mismatch: lengths differ");
    got.iter().zip(want).enumerate().find_map(|(i, (&g, &w))| {
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else if w.is_infinite() || g.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= abs + rel * w.abs()
        };
        (!ok).then_some((i, g, w))
    })
}

/// Fails the proptest case with `name`, the index and both values when `got` and `want`
/// differ beyond `(abs, rel)`.
pub fn check_close(
    name: &str,
    got: &[f64],
    want: &[f64],
    (abs, rel): (f64, f64),
) -> Result<(), TestCaseError> {
    match first_mismatch(got, want, abs, rel) {
        None => Ok(()),
        Some((i, g, w)) => Err(TestCaseError::fail(format!(
            "{name}[{i}]: got {g:e}, want {w:e} (|diff| {:e} > {abs:e} + {rel:e}*|want|)",
            (g - w).abs()
        ))),
    }
}

/// Panics with `name`, the index and both values when `got` and `want` differ beyond
/// `(abs, rel)`.
#[track_caller]
pub fn assert_close(name: &str, got: &[f64], want: &[f64], tol: (f64, f64)) {
    if let Err(e) = check_close(name, got, want, tol) {
        panic!("{e}");
    }
}

/// A NaN-filled buffer of `rows` rows of `cols` at stride `cols + pad`, with `data` (`rows *
/// cols` values, row-major) written into the rows: the padding stays NaN, so a kernel that
/// writes outside its rows is caught by [`assert_padding_nan`].
pub fn padded<T: Float>(data: &[f64], rows: usize, cols: usize, pad: usize) -> Vec<T> {
    let stride = cols + pad;
    let mut buf = nan_filled::<T>(rows * stride);
    for r in 0..rows {
        for c in 0..cols {
            buf[r * stride + c] = T::from_f64(data[r * cols + c]);
        }
    }
    buf
}

/// The rows of a [`padded`] buffer, packed and widened to f64.
pub fn unpad<T: Float>(buf: &[T], rows: usize, cols: usize, pad: usize) -> Vec<f64> {
    let stride = cols + pad;
    (0..rows)
        .flat_map(|r| {
            buf[r * stride..r * stride + cols]
                .iter()
                .map(|v| v.to_f64())
        })
        .collect()
}

/// Fails unless every padding element of a [`padded`] buffer is still NaN.
pub fn assert_padding_nan<T: Float>(
    name: &str,
    buf: &[T],
    rows: usize,
    cols: usize,
    pad: usize,
) -> Result<(), TestCaseError> {
    let stride = cols + pad;
    for r in 0..rows {
        for c in cols..stride {
            prop_assert!(
                buf[r * stride + c].is_nan(),
                "{name}: padding ({r}, {c}) was written"
            );
        }
    }
    Ok(())
}
