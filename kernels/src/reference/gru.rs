//! Reference twins of [`crate::pointwise::gru`].

use super::math::sigmoid;
use crate::pointwise::gru::{
    GruBwdPointwise, GruBwdPointwiseGates, GruBwdPointwiseOut, GruFwdPointwise,
    GruFwdPointwiseGates, GruFwdPointwiseOut,
};

/// Reference for [`crate::pointwise::gru::gru_fwd_pointwise`].
///
/// # Panics
/// If the views disagree in shape.
pub fn gru_fwd_pointwise(args: GruFwdPointwise<'_, f64>) {
    let (rows, h) = args.check();
    let GruFwdPointwise {
        mut gates,
        hidden_gates,
        bias,
        bias_hn,
        h_prev,
        mut hn,
        h: mut h_out,
    } = args;
    for row in 0..rows {
        for j in 0..h {
            let x = |k: usize| gates.row(row)[k * h + j];
            let hg = |k: usize| hidden_gates.row(row)[k * h + j];
            let r = sigmoid(x(0) + hg(0) + bias[j]);
            let z = sigmoid(x(1) + hg(1) + bias[h + j]);
            let hn_j = hg(2) + bias_hn[j];
            let n = (x(2) + bias[2 * h + j] + r * hn_j).tanh();
            let hp = h_prev.row(row)[j];
            for (k, act) in [r, z, n].into_iter().enumerate() {
                gates.row_mut(row)[k * h + j] = act;
            }
            hn.row_mut(row)[j] = hn_j;
            h_out.row_mut(row)[j] = (1.0 - z) * n + z * hp;
        }
    }
}

/// Reference for [`crate::pointwise::gru::gru_bwd_pointwise`].
///
/// # Panics
/// If the views disagree in shape.
pub fn gru_bwd_pointwise(args: GruBwdPointwise<'_, f64>) {
    let (rows, h) = args.check();
    let GruBwdPointwise {
        gates,
        hn,
        h_prev,
        dh,
        dy,
        mut d_gates,
        mut d_an,
        mut dh_prev,
    } = args;
    for row in 0..rows {
        for j in 0..h {
            let g = |k: usize| gates.row(row)[k * h + j];
            let (r, z, n) = (g(0), g(1), g(2));
            let dh = dh.row(row)[j] + dy.map_or(0.0, |dy| dy.row(row)[j]);
            let dan = dh * (1.0 - z) * (1.0 - n * n);
            let dar = dan * hn.row(row)[j] * r * (1.0 - r);
            let daz = dh * (h_prev.row(row)[j] - n) * z * (1.0 - z);
            for (k, d) in [dar, daz, dan * r].into_iter().enumerate() {
                d_gates.row_mut(row)[k * h + j] = d;
            }
            d_an.row_mut(row)[j] = dan;
            dh_prev.row_mut(row)[j] = dh * z;
        }
    }
}

/// Reference for [`crate::pointwise::gru::gru_fwd_pointwise_gates`].
///
/// # Panics
/// If the views disagree in shape.
pub fn gru_fwd_pointwise_gates(args: GruFwdPointwiseGates<'_, f64>) {
    let (rows, h) = args.check();
    let GruFwdPointwiseGates {
        mut gates,
        hidden_gates,
        bias,
        h_prev,
        mut rh,
    } = args;
    for row in 0..rows {
        for j in 0..h {
            let r = sigmoid(gates.row(row)[j] + hidden_gates.row(row)[j] + bias[j]);
            let z = sigmoid(gates.row(row)[h + j] + hidden_gates.row(row)[h + j] + bias[h + j]);
            gates.row_mut(row)[j] = r;
            gates.row_mut(row)[h + j] = z;
            rh.row_mut(row)[j] = r * h_prev.row(row)[j];
        }
    }
}

/// Reference for [`crate::pointwise::gru::gru_fwd_pointwise_out`].
///
/// # Panics
/// If the views disagree in shape.
pub fn gru_fwd_pointwise_out(args: GruFwdPointwiseOut<'_, f64>) {
    let (rows, h) = args.check();
    let GruFwdPointwiseOut {
        mut gates,
        hidden_n,
        bias,
        bias_hn,
        h_prev,
        h: mut h_out,
    } = args;
    for row in 0..rows {
        for j in 0..h {
            let z = gates.row(row)[h + j];
            let pre = gates.row(row)[2 * h + j] + bias[2 * h + j] + hidden_n.row(row)[j];
            let n = (pre + bias_hn[j]).tanh();
            gates.row_mut(row)[2 * h + j] = n;
            h_out.row_mut(row)[j] = (1.0 - z) * n + z * h_prev.row(row)[j];
        }
    }
}

/// Reference for [`crate::pointwise::gru::gru_bwd_pointwise_out`].
///
/// # Panics
/// If the views disagree in shape.
pub fn gru_bwd_pointwise_out(args: GruBwdPointwiseOut<'_, f64>) {
    let (rows, h) = args.check();
    let GruBwdPointwiseOut {
        gates,
        h_prev,
        dh,
        dy,
        mut d_gates,
        mut dh_prev,
    } = args;
    for row in 0..rows {
        for j in 0..h {
            let (z, n) = (gates.row(row)[h + j], gates.row(row)[2 * h + j]);
            let dh = dh.row(row)[j] + dy.map_or(0.0, |dy| dy.row(row)[j]);
            d_gates.row_mut(row)[h + j] = dh * (h_prev.row(row)[j] - n) * z * (1.0 - z);
            d_gates.row_mut(row)[2 * h + j] = dh * (1.0 - z) * (1.0 - n * n);
            dh_prev.row_mut(row)[j] = dh * z;
        }
    }
}

/// Reference for [`crate::pointwise::gru::gru_bwd_pointwise_gates`].
///
/// # Panics
/// If the views disagree in shape.
pub fn gru_bwd_pointwise_gates(args: GruBwdPointwiseGates<'_, f64>) {
    let (rows, h) = args.check();
    let GruBwdPointwiseGates {
        gates,
        h_prev,
        d_rh,
        mut d_gates,
        mut dh_prev,
    } = args;
    for row in 0..rows {
        for j in 0..h {
            let r = gates.row(row)[j];
            let d = d_rh.row(row)[j];
            d_gates.row_mut(row)[j] = d * h_prev.row(row)[j] * r * (1.0 - r);
            dh_prev.row_mut(row)[j] += d * r;
        }
    }
}
