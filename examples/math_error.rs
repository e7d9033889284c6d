//! Measures the vector exp, sigmoid and tanh against f64 over every finite f32 input (all 2^32
//! bit patterns), on each instruction set this CPU has; the bounds in
//! `fused_rnn_kernels::math`'s docs come from this run.
//!
//! ```text
//! cargo run --release --example math_error            # every input (about a minute per path)
//! cargo run --release --example math_error -- 97      # every 97th bit pattern
//! cargo run --release --example math_error -- 1 avx512 # one instruction set only
//! ```

use fused_rnn_kernels::math::{VectorFn, error_sweep};
use fused_rnn_kernels::{ArchKind, available_archs};

fn main() {
    let stride: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let only = std::env::args().nth(2).and_then(|s| ArchKind::parse(&s));
    println!("stride {stride}: f32 inputs checked against the f64 reference");
    println!(
        "{:8} {:8} {:>12} {:>12} {:>14} {:>12} {:>6} {:>6}",
        "arch", "fn", "checked", "max rel", "worst input", "max abs", "NaN", "ovf"
    );
    for arch in available_archs() {
        if only.is_some_and(|k| k != ArchKind::of(arch)) {
            continue;
        }
        for f in [VectorFn::Exp, VectorFn::Sigmoid, VectorFn::Tanh] {
            let r = error_sweep(arch, f, stride, 0);
            println!(
                "{:8} {:8} {:>12} {:>12.3e} {:>14e} {:>12.3e} {:>6} {:>6}",
                format!("{:?}", ArchKind::of(arch)),
                format!("{f:?}"),
                r.checked,
                r.max_rel,
                r.worst_rel_input,
                r.max_abs,
                r.nan_from_finite,
                r.overflow_mismatch
            );
        }
    }
}
