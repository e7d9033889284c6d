//! Reference twins of [`crate::pointwise::lstm`].

use super::math::sigmoid;
use crate::pointwise::lstm::{LstmBwdPointwise, LstmFwdPointwise};

/// Reference for [`crate::pointwise::lstm::lstm_fwd_pointwise`].
///
/// # Panics
/// If the views disagree in shape.
pub fn lstm_fwd_pointwise(args: LstmFwdPointwise<'_, f64>) {
    let (rows, h) = args.check();
    let LstmFwdPointwise {
        mut gates,
        bias,
        c_prev,
        mut c,
        h: mut h_out,
    } = args;
    for r in 0..rows {
        for j in 0..h {
            let a = |k: usize| gates.row(r)[k * h + j] + bias[k * h + j];
            let (i, f, g, o) = (sigmoid(a(0)), sigmoid(a(1)), a(2).tanh(), sigmoid(a(3)));
            let c_new = f * c_prev.row(r)[j] + i * g;
            for (k, act) in [i, f, g, o].into_iter().enumerate() {
                gates.row_mut(r)[k * h + j] = act;
            }
            c.row_mut(r)[j] = c_new;
            h_out.row_mut(r)[j] = o * c_new.tanh();
        }
    }
}

/// Reference for [`crate::pointwise::lstm::lstm_bwd_pointwise`].
///
/// # Panics
/// If the views disagree in shape.
pub fn lstm_bwd_pointwise(args: LstmBwdPointwise<'_, f64>) {
    let (rows, h) = args.check();
    let LstmBwdPointwise {
        gates,
        c_prev,
        dh,
        dy,
        dc,
        mut dc_prev,
        mut d_gates,
    } = args;
    for r in 0..rows {
        for j in 0..h {
            let gate = |k: usize| gates.row(r)[k * h + j];
            let (i, f, g, o) = (gate(0), gate(1), gate(2), gate(3));
            let dh = dh.row(r)[j] + dy.map_or(0.0, |dy| dy.row(r)[j]);
            let tc = (f * c_prev.row(r)[j] + i * g).tanh();
            let dc_total = dc.row(r)[j] + dh * o * (1.0 - tc * tc);
            let da = [
                dc_total * g * i * (1.0 - i),
                dc_total * c_prev.row(r)[j] * f * (1.0 - f),
                dc_total * i * (1.0 - g * g),
                dh * tc * o * (1.0 - o),
            ];
            for (k, d) in da.into_iter().enumerate() {
                d_gates.row_mut(r)[k * h + j] = d;
            }
            dc_prev.row_mut(r)[j] = dc_total * f;
        }
    }
}
