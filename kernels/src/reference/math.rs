//! Scalar f64 activations and their derivatives, as the equations write them.

/// The logistic sigmoid `1 / (1 + e^-x)`, evaluated without overflow for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `max(0, x)`, keeping NaN.
pub fn relu(x: f64) -> f64 {
    if x < 0.0 { 0.0 } else { x }
}
