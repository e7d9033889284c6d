//! The textbook triple loop.

use crate::float::Float;
use crate::gemm::{MatMut, MatRef};

/// `C <- alpha * A * B + beta * C` with BLAS semantics (`beta == 0` does not read C),
/// accumulating each dot product in f64.
///
/// # Panics
/// If the shapes disagree.
#[track_caller]
pub fn gemm<T: Float>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, mut c: MatMut<'_, T>) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    assert!(
        b.rows() == k && c.rows() == m && c.cols() == n,
        "reference gemm: shapes"
    );
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|p| a.at(i, p).to_f64() * b.at(p, j).to_f64())
                .sum();
            let out = c.at_mut(i, j);
            let prior = if beta == T::ZERO {
                0.0
            } else {
                beta.to_f64() * out.to_f64()
            };
            *out = T::from_f64(alpha.to_f64() * dot + prior);
        }
    }
}
