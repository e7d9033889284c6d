//! Softmax cross-entropy, fused with its gradient: `dL/dlogits = (softmax - onehot) / rows`.

use rayon::prelude::*;

use crate::error::{Error, check_len};
use crate::fold::{LANES, fold_lanes};
use fused_rnn_kernels::Float;
use fused_rnn_kernels::math::{VectorFn, map_slice};

/// Classes per call of the vector exp: a row's exps are taken in pieces of this many
/// through the kernels' SIMD exp (Cephes', within 6e-16 of std's in f64). Calling std's
/// exp per class was most of this function's time: 2048 rows of 97 classes (a char-rnn
/// step, `cargo bench --bench blocks`) 1.33 -> 0.52 ms.
const EXP_PIECE: usize = 64;

/// The mean cross-entropy (in nats) of `logits` (`[rows, classes]`) against `targets`
/// (`[rows]`), PyTorch's `CrossEntropyLoss` with mean reduction; writes its gradient with
/// respect to the logits into `d_logits`. Computed in f64 from the row's maximum, so large
/// logits do not overflow; on the current rayon pool in pieces of rows cut by the rows
/// alone, so the result is the same for any thread count.
///
/// # Errors
/// A length that is not `rows * classes`, or a target not below `classes`; nothing is
/// written then.
pub fn softmax_cross_entropy<T: Float>(
    logits: &[T],
    classes: usize,
    targets: &[usize],
    d_logits: &mut [T],
) -> Result<f64, Error> {
    if classes == 0 {
        return Err(Error::ZeroDim { arg: "classes" });
    }
    let rows = targets.len();
    check_len("logits", rows.saturating_mul(classes), logits.len())?;
    check_len("d_logits", logits.len(), d_logits.len())?;
    if let Some(i) = targets.iter().position(|&t| t >= classes) {
        return Err(Error::invalid(
            "targets",
            format!("targets[{i}] = {} is not below {classes}", targets[i]),
        ));
    }
    let scale = 1.0 / rows.max(1) as f64;
    // Pieces of rows on the current rayon pool; their losses summed in piece order, and the
    // pieces cut by the rows alone, so the result is the same for any thread count.
    let piece = rows.div_ceil(MAX_PIECES).max(PIECE_ROWS);
    let pieces = rows.div_ceil(piece);
    if pieces <= 1 {
        return Ok(rows_loss(logits, classes, targets, d_logits, scale) * scale);
    }
    let mut partial = [0.0f64; MAX_PIECES];
    partial[..pieces]
        .par_iter_mut()
        .zip(logits.par_chunks(piece * classes))
        .zip(d_logits.par_chunks_mut(piece * classes))
        .zip(targets.par_chunks(piece))
        .for_each(|(((out, l), d), t)| *out = rows_loss(l, classes, t, d, scale));
    Ok(partial[..pieces].iter().sum::<f64>() * scale)
}

/// The most pieces [`softmax_cross_entropy`] cuts its rows into.
const MAX_PIECES: usize = 32;

/// The fewest rows of a piece (a char-rnn step's 2048 rows take 0.42 ms on one thread).
const PIECE_ROWS: usize = 128;

/// The summed cross-entropy of some rows, their gradients (times `scale`) into `d_logits`.
fn rows_loss<T: Float>(
    logits: &[T],
    classes: usize,
    targets: &[usize],
    d_logits: &mut [T],
    scale: f64,
) -> f64 {
    let arch = fused_rnn_kernels::arch();
    // `v - max` and its exp, a piece of a row at a time (on the stack: nothing allocated).
    let (mut shifted, mut e) = ([0.0f64; EXP_PIECE], [0.0f64; EXP_PIECE]);
    let mut total = 0.0;
    for ((row, d_row), &target) in logits
        .chunks_exact(classes)
        .zip(d_logits.chunks_exact_mut(classes))
        .zip(targets)
    {
        let max = row_max(row);
        // One exp per class: e^(v - max) waits in `d_row` until the sum is known; the
        // target's is kept in f64 for p - 1 below.
        let (mut sums, mut e_target) = ([0.0; LANES], 0.0);
        for (piece, (vals, d)) in row
            .chunks(EXP_PIECE)
            .zip(d_row.chunks_mut(EXP_PIECE))
            .enumerate()
        {
            let n = vals.len();
            for (x, &v) in shifted.iter_mut().zip(vals) {
                *x = v.to_f64() - max;
            }
            map_slice(arch, VectorFn::Exp, &shifted[..n], &mut e[..n]);
            for (d, &ej) in d.iter_mut().zip(&e[..n]) {
                *d = T::from_f64(ej);
            }
            fold_lanes(&mut sums, &e[..n], |a, b| a + b);
            if let Some(j) = target.checked_sub(piece * EXP_PIECE).filter(|&j| j < n) {
                e_target = e[j];
            }
        }
        let sum: f64 = sums.iter().sum();
        total += sum.ln() + max - row[target].to_f64();
        let to_grad = scale / sum;
        for d in d_row.iter_mut() {
            *d = T::from_f64(d.to_f64() * to_grad);
        }
        // p - 1 from the target's e in f64 (not its copy in T), so it keeps its digits when
        // p is near 1.
        d_row[target] = T::from_f64((e_target / sum - 1.0) * scale);
    }
    total
}

/// The largest value of `row` in f64 (NaNs ignored, as `f64::max` does), in lanes (see
/// [`crate::fold`]).
fn row_max<T: Float>(row: &[T]) -> f64 {
    let mut lanes = [f64::NEG_INFINITY; LANES];
    fold_lanes(&mut lanes, row, f64::max);
    lanes.into_iter().fold(f64::NEG_INFINITY, f64::max)
}

/// A row's pieces share the sum's lanes (see [`fold_lanes`]).
const _: () = assert!(EXP_PIECE.is_multiple_of(LANES));

/// `probs = softmax(logits / temperature)` for one row (for sampling).
///
/// # Errors
/// A non-positive or non-finite temperature, or `probs` of another length.
pub fn softmax<T: Float>(logits: &[T], temperature: f64, probs: &mut [f64]) -> Result<(), Error> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Error::invalid(
            "temperature",
            format!("{temperature} is not a positive number"),
        ));
    }
    check_len("probs", logits.len(), probs.len())?;
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v.to_f64()));
    for (p, &v) in probs.iter_mut().zip(logits) {
        *p = ((v.to_f64() - max) / temperature).exp();
    }
    let sum: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= sum);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_cost_log_classes() {
        let logits = [0.0f64; 8];
        let mut d = [0.0; 8];
        let loss = softmax_cross_entropy(&logits, 4, &[1, 3], &mut d).unwrap();
        assert!((loss - 4f64.ln()).abs() < 1e-15);
        // (1/4 - onehot) / 2.
        assert_eq!(
            d,
            [0.125, -0.375, 0.125, 0.125, 0.125, 0.125, 0.125, -0.375]
        );
    }

    /// Holds `(loss, d_logits)` to the textbook in f64: the mean of `log sum e^v - v_target`
    /// to 1e-12, each `(e^v / sum e^v - onehot) / rows` to 3e-7 relative.
    fn check_against_textbook(
        logits: &[f32],
        classes: usize,
        targets: &[usize],
        (loss, d): (f64, &[f32]),
    ) {
        let rows = targets.len() as f64;
        let mut want_loss = 0.0;
        for (r, &t) in targets.iter().enumerate() {
            let row: Vec<f64> = logits[r * classes..(r + 1) * classes]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let sum: f64 = row.iter().map(|v| v.exp()).sum();
            want_loss += (sum.ln() - row[t]) / rows;
            for (j, v) in row.iter().enumerate() {
                let onehot = if j == t { 1.0 } else { 0.0 };
                let want = (v.exp() / sum - onehot) / rows;
                let got = f64::from(d[r * classes + j]);
                assert!(
                    (got - want).abs() <= 3e-7 * want.abs(),
                    "row {r} class {j}: {got} against {want}"
                );
            }
        }
        assert!((loss - want_loss).abs() <= 1e-12 * want_loss);
    }

    /// f32 logits: the loss to f64 rounding and every gradient to a few f32 roundings of
    /// the textbook `(e^v / sum e^v - onehot) / rows` in f64, also for a target near p = 1
    /// (where p - 1 cancels).
    #[test]
    fn f32_matches_the_textbook_in_f64() {
        let classes = 7;
        let mut logits: Vec<f32> = (0..5 * classes)
            .map(|k| 4.0 * (0.77 * k as f32).sin())
            .collect();
        logits.extend([9.0f32, 0.5, -1.0, 0.0, 2.0, -3.0, 1.0]);
        let targets = [0, 3, 6, 2, 5, 0];
        let mut d = vec![0.0f32; logits.len()];
        let loss = softmax_cross_entropy(&logits, classes, &targets, &mut d).unwrap();
        check_against_textbook(&logits, classes, &targets, (loss, &d));
        // The confident row's target: p = 0.9984, its gradient about -2.7e-4.
        assert!(d[5 * classes] < -2e-4 && d[5 * classes] > -3e-4);
    }

    /// 1000 rows, cut into pieces run on the pool: the textbook's loss and gradients, and
    /// the same bits on pools of 1, 2 and 3 threads.
    #[test]
    fn rows_in_pieces_match_the_textbook_on_any_pool() {
        let (rows, classes) = (1000, 7);
        let logits: Vec<f32> = (0..rows * classes)
            .map(|k| 4.0 * (0.37 * k as f32).sin())
            .collect();
        let targets: Vec<usize> = (0..rows).map(|r| (r * 5 + r / 3) % classes).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut d = vec![0.0f32; rows * classes];
            let loss =
                pool.install(|| softmax_cross_entropy(&logits, classes, &targets, &mut d).unwrap());
            (loss, d)
        };
        let (loss, d) = run(1);
        check_against_textbook(&logits, classes, &targets, (loss, &d));
        for threads in [2, 3] {
            let (l, g) = run(threads);
            assert_eq!(l.to_bits(), loss.to_bits(), "{threads} threads");
            assert!(g.iter().zip(&d).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn huge_logits_stay_finite() {
        let logits = [1e30f32, -1e30, 0.0];
        let mut d = [0.0; 3];
        let loss = softmax_cross_entropy(&logits, 3, &[1], &mut d).unwrap();
        assert!(loss.is_finite() && loss > 1e29);
        assert!(d.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn bad_targets_and_lengths_are_errors() {
        let mut d = [5.0f32; 4];
        assert!(softmax_cross_entropy(&[0.0; 4], 2, &[0, 2], &mut d).is_err());
        assert!(softmax_cross_entropy(&[0.0; 4], 2, &[0], &mut d).is_err());
        assert_eq!(d, [5.0; 4]);
        let mut p = [0.0; 3];
        assert!(softmax(&[1.0f32, 2.0, 3.0], 0.0, &mut p).is_err());
        softmax(&[1.0f32, 2.0, 3.0], 0.5, &mut p).unwrap();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-15 && p[2] > p[1]);
    }
}
