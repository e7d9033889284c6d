//! Folding values into a few independent running results, so that a reduction (a sum, a
//! maximum) is not one chain of dependent operations: the compiler keeps the lanes in
//! vector registers. Element `j` always goes to lane `j % LANES`, and the lanes are
//! combined in order by the caller: a fixed order, the same result every run.
//!
//! One running f64 sum was a chain of dependent additions: clipping's norm over the
//! char-rnn's 0.89 M gradients took about 1 ms that way, and the softmax cross-entropy's
//! maximum and sum of 2048 rows of 97 classes 489 us against 415 in lanes.

use fused_rnn_kernels::Float;

/// Lanes of a fold.
pub(crate) const LANES: usize = 8;

/// `lanes[j % LANES] = f(lanes[j % LANES], values[j])` for every `j` in order. Lanes
/// carried across calls stay aligned when each call's `values` (but the last) is a multiple
/// of [`LANES`] long.
#[inline(always)]
pub(crate) fn fold_lanes<T: Float>(
    lanes: &mut [f64; LANES],
    values: &[T],
    f: impl Fn(f64, f64) -> f64,
) {
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l = f(*l, v.to_f64());
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l = f(*l, v.to_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_goes_to_its_lane_in_order() {
        let values: Vec<f64> = (0..19).map(f64::from).collect();
        let mut lanes = [0.0; LANES];
        fold_lanes(&mut lanes, &values, |a, b| a + b);
        for (i, &l) in lanes.iter().enumerate() {
            let want: f64 = values.iter().skip(i).step_by(LANES).sum();
            assert_eq!(l, want, "lane {i}");
        }
        // Order within a lane: a fold that is not commutative sees its values in turn.
        let mut last = [-1.0; LANES];
        fold_lanes(&mut last, &values, |_, b| b);
        assert_eq!(last[0], 16.0);
        assert_eq!(last[2], 18.0);
        assert_eq!(last[3], 11.0);
    }
}
