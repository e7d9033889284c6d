//! Reference twins of [`crate::pointwise::rnn`].

use super::math::relu;
use crate::cell::Nonlinearity;
use crate::pointwise::rnn::{RnnBwdPointwise, RnnFwdPointwise};

/// Reference for [`crate::pointwise::rnn::rnn_fwd_pointwise`].
///
/// # Panics
/// If the views disagree in shape.
pub fn rnn_fwd_pointwise(args: RnnFwdPointwise<'_, f64>) {
    let (rows, h) = args.check();
    let RnnFwdPointwise {
        mut gates,
        bias,
        nonlinearity,
        h: mut h_out,
    } = args;
    for r in 0..rows {
        for (j, &b) in bias.iter().enumerate().take(h) {
            let a = gates.row(r)[j] + b;
            let act = match nonlinearity {
                Nonlinearity::Tanh => a.tanh(),
                Nonlinearity::Relu => relu(a),
            };
            gates.row_mut(r)[j] = act;
            h_out.row_mut(r)[j] = act;
        }
    }
}

/// Reference for [`crate::pointwise::rnn::rnn_bwd_pointwise`].
///
/// # Panics
/// If the views disagree in shape.
pub fn rnn_bwd_pointwise(args: RnnBwdPointwise<'_, f64>) {
    let (rows, h) = args.check();
    let RnnBwdPointwise {
        gates,
        dh,
        dy,
        nonlinearity,
        mut d_gates,
    } = args;
    for r in 0..rows {
        for j in 0..h {
            let out = gates.row(r)[j];
            let dh = dh.row(r)[j] + dy.map_or(0.0, |dy| dy.row(r)[j]);
            d_gates.row_mut(r)[j] = match nonlinearity {
                Nonlinearity::Tanh => dh * (1.0 - out * out),
                Nonlinearity::Relu if out <= 0.0 => 0.0,
                Nonlinearity::Relu => dh,
            };
        }
    }
}
