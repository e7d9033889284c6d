//! The unit-range passes (`*_fwd_pointwise_units`) against the whole passes: run on ranges
//! that cover `0..H` in any order, they must give bitwise what one pass gives, and leave
//! units outside their range alone.

use core::ops::Range;

use proptest::prelude::*;
use pulp::Arch;

use super::gru::{GruFwdPointwise, gru_fwd_pointwise, gru_fwd_pointwise_units};
use super::lstm::{LstmFwdPointwise, lstm_fwd_pointwise, lstm_fwd_pointwise_units};
use super::rnn::{RnnFwdPointwise, rnn_fwd_pointwise, rnn_fwd_pointwise_units};
use crate::available_archs;
use crate::cell::Nonlinearity;
use crate::float::Float;
use crate::testing::{SplitMix, cast, size_nonzero};
use crate::view::{Rows, RowsMut};

/// (B, H, cut points as fractions of H, seed of the values).
type Case = (usize, usize, Vec<f64>, u64);

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..4,
        size_nonzero(),
        prop::collection::vec(0.0f64..1.0, 0..4),
        any::<u64>(),
    )
}

/// The ranges between the sorted cut points, last first (order must not matter).
fn ranges(h: usize, cuts: &[f64]) -> Vec<Range<usize>> {
    let mut at: Vec<usize> = cuts.iter().map(|f| (f * h as f64) as usize).collect();
    at.push(0);
    at.push(h);
    at.sort_unstable();
    let mut out: Vec<_> = at.windows(2).map(|w| w[0]..w[1]).collect();
    out.reverse();
    out
}

/// Values in `[-6, 6)`, so that some gates saturate.
fn values<T: Float>(rng: &mut SplitMix, n: usize) -> Vec<T> {
    cast(&rng.vec(n, 6.0))
}

/// Runs `pass(units)` over `0..H` whole and over the case's ranges on copies of the same
/// outputs (filled with a sentinel) and compares them bitwise.
fn same_bits<T: Float>(
    (h, cuts): (usize, &[f64]),
    outputs: &[Vec<T>],
    pass: impl Fn(&mut [Vec<T>], Option<Range<usize>>),
) -> Result<(), TestCaseError> {
    let mut whole = outputs.to_vec();
    pass(&mut whole, None);
    let mut parts = outputs.to_vec();
    for units in ranges(h, cuts) {
        pass(&mut parts, Some(units));
    }
    for (k, (w, p)) in whole.iter().zip(&parts).enumerate() {
        let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(w), bits(p), "output {} differs", k);
    }
    Ok(())
}

fn lstm<T: Float>(arch: Arch, (b, h, cuts, seed): &Case) -> Result<(), TestCaseError> {
    let (b, h) = (*b, *h);
    let mut rng = SplitMix::new(*seed);
    let (bias, c_prev) = (values::<T>(&mut rng, 4 * h), values::<T>(&mut rng, b * h));
    let outputs = [
        values::<T>(&mut rng, b * 4 * h),
        vec![T::NAN; b * h],
        vec![T::NAN; b * h],
    ];
    same_bits((h, cuts), &outputs, |out, units| {
        let [gates, c, hh] = out else { unreachable!() };
        let args = LstmFwdPointwise {
            gates: RowsMut::contiguous(gates, b, 4 * h),
            bias: &bias,
            c_prev: Rows::contiguous(&c_prev, b, h),
            c: RowsMut::contiguous(c, b, h),
            h: RowsMut::contiguous(hh, b, h),
        };
        match units {
            Some(units) => lstm_fwd_pointwise_units(arch, args, units),
            None => lstm_fwd_pointwise(arch, args),
        }
    })
}

fn rnn<T: Float>(arch: Arch, (b, h, cuts, seed): &Case) -> Result<(), TestCaseError> {
    let (b, h) = (*b, *h);
    let mut rng = SplitMix::new(*seed);
    let bias = values::<T>(&mut rng, h);
    let outputs = [values::<T>(&mut rng, b * h), vec![T::NAN; b * h]];
    for nonlinearity in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        same_bits((h, cuts), &outputs, |out, units| {
            let [gates, hh] = out else { unreachable!() };
            let args = RnnFwdPointwise {
                gates: RowsMut::contiguous(gates, b, h),
                bias: &bias,
                nonlinearity,
                h: RowsMut::contiguous(hh, b, h),
            };
            match units {
                Some(units) => rnn_fwd_pointwise_units(arch, args, units),
                None => rnn_fwd_pointwise(arch, args),
            }
        })?;
    }
    Ok(())
}

fn gru<T: Float>(arch: Arch, (b, h, cuts, seed): &Case) -> Result<(), TestCaseError> {
    let (b, h) = (*b, *h);
    let mut rng = SplitMix::new(*seed);
    let (bias, bias_hn) = (values::<T>(&mut rng, 3 * h), values::<T>(&mut rng, h));
    let (hidden, h_prev) = (
        values::<T>(&mut rng, b * 3 * h),
        values::<T>(&mut rng, b * h),
    );
    let outputs = [
        values::<T>(&mut rng, b * 3 * h),
        vec![T::NAN; b * h],
        vec![T::NAN; b * h],
    ];
    same_bits((h, cuts), &outputs, |out, units| {
        let [gates, hn, hh] = out else { unreachable!() };
        let args = GruFwdPointwise {
            gates: RowsMut::contiguous(gates, b, 3 * h),
            hidden_gates: Rows::contiguous(&hidden, b, 3 * h),
            bias: &bias,
            bias_hn: &bias_hn,
            h_prev: Rows::contiguous(&h_prev, b, h),
            hn: RowsMut::contiguous(hn, b, h),
            h: RowsMut::contiguous(hh, b, h),
        };
        match units {
            Some(units) => gru_fwd_pointwise_units(arch, args, units),
            None => gru_fwd_pointwise(arch, args),
        }
    })
}

proptest! {
    #![proptest_config(crate::testing::cases(64))]

    #[test]
    fn unit_ranges_give_the_whole_pass(case in case()) {
        for arch in available_archs() {
            lstm::<f32>(arch, &case)?;
            lstm::<f64>(arch, &case)?;
            rnn::<f32>(arch, &case)?;
            rnn::<f64>(arch, &case)?;
            gru::<f32>(arch, &case)?;
            gru::<f64>(arch, &case)?;
        }
    }
}

#[test]
#[should_panic(expected = "outside 0..4")]
fn units_past_h_are_refused() {
    let (mut gates, mut h) = (vec![0.0f32; 4], vec![0.0f32; 4]);
    rnn_fwd_pointwise_units(
        Arch::new(),
        RnnFwdPointwise {
            gates: RowsMut::contiguous(&mut gates, 1, 4),
            bias: &[0.0; 4],
            nonlinearity: Nonlinearity::Tanh,
            h: RowsMut::contiguous(&mut h, 1, 4),
        },
        2..5,
    );
}
