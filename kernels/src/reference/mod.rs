//! Naive f64 twins of every kernel, straight from the equations: clarity over speed, no
//! hoisted GEMMs, no reuse. Each pointwise reference takes the same argument struct as its
//! kernel (in f64) minus the instruction set; [`seq`] is the whole-sequence reference the
//! layer tests and fuzz targets compare against. There is exactly one copy of each.

pub mod gemm;
pub mod gru;
pub mod lstm;
pub mod math;
pub mod module;
pub mod optim;
pub mod rnn;
pub mod seq;
pub mod sums;
