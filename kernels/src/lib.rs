//! The kernels behind [`fused-rnn`](https://docs.rs/fused-rnn): every line of `unsafe`, all
//! SIMD and all GEMM calls of the project live here, each fast kernel next to its naive
//! reference.
//!
//! * [`pointwise`]: the fused per-step passes ("postgemm" in oneDNN's terms) that turn gate
//!   pre-activations into the new state, and their backward passes, for LSTM, GRU (reset
//!   after or before the recurrent product) and vanilla RNN (tanh, relu).
//! * [`math`]: vector exp, sigmoid and tanh with documented error bounds.
//! * [`gemm`](mod@gemm): `C <- alpha A B + beta C` behind checked strided views.
//! * [`optim`]: Adam's and Adagrad's updates, register by register.
//! * [`sums`]: sums of rows (bias gradients), register by register.
//! * [`reference`](mod@reference): naive f64 twins of every kernel, straight from the equations, plus whole
//!   sequence references; tests, benches and fuzz targets import them from here.
//!
//! The instruction set is chosen once per process by [`arch`]: the best pulp finds (AVX-512,
//! AVX2+FMA, scalar), unless the environment variable `FUSED_RNN_FORCE_ARCH` names one
//! (`scalar`, `avx2`, `avx512`); tests run the whole suite a second time with `scalar`.

pub mod aligned;
pub mod cell;
pub mod float;
#[cfg(debug_assertions)]
mod frame;
pub mod gemm;
pub mod huge_pages;
mod instances;
pub mod lanes;
pub mod math;
pub mod optim;
pub mod peak;
pub mod pointwise;
pub mod reference;
pub mod sums;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod view;

pub use cell::{CellKind, Nonlinearity};
pub use float::Float;
pub use gemm::{MatMut, MatRef, gemm, gemm_prepacked, gemm_stacked};
pub use pulp::Arch;
pub use view::{Rows, RowsMut};

use std::sync::OnceLock;

/// The name of the environment variable that forces an instruction set.
pub const FORCE_ARCH_VAR: &str = "FUSED_RNN_FORCE_ARCH";

/// The instruction sets the kernels dispatch to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchKind {
    /// Plain scalar code, one lane.
    Scalar,
    /// x86-64-v3: AVX2 with FMA, 8 f32 lanes.
    Avx2,
    /// x86-64-v4: AVX-512, 16 f32 lanes.
    Avx512,
}

impl ArchKind {
    /// The kind of a pulp `Arch`.
    pub fn of(arch: Arch) -> Self {
        match arch {
            #[cfg(target_arch = "x86_64")]
            Arch::V4(_) => ArchKind::Avx512,
            #[cfg(target_arch = "x86_64")]
            Arch::V3(_) => ArchKind::Avx2,
            _ => ArchKind::Scalar,
        }
    }

    /// Parses the names accepted in [`FORCE_ARCH_VAR`].
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(ArchKind::Scalar),
            "avx2" | "v3" | "x86-v3" => Some(ArchKind::Avx2),
            "avx512" | "v4" | "x86-v4" => Some(ArchKind::Avx512),
            _ => None,
        }
    }
}

/// Builds the `Arch` of a kind, or `None` if this CPU lacks it.
pub fn arch_of_kind(kind: ArchKind) -> Option<Arch> {
    match kind {
        ArchKind::Scalar => Some(Arch::Scalar),
        #[cfg(target_arch = "x86_64")]
        ArchKind::Avx2 => pulp::x86::V3::try_new().map(Arch::V3),
        #[cfg(target_arch = "x86_64")]
        ArchKind::Avx512 => pulp::x86::V4::try_new().map(Arch::V4),
        #[cfg(not(target_arch = "x86_64"))]
        _ => None,
    }
}

/// What `FUSED_RNN_FORCE_ARCH` asks for, read once: `Ok(None)` when unset or empty (as a
/// shell's `FUSED_RNN_FORCE_ARCH= cmd` means), `Err(value)` when it names no known
/// instruction set or one this CPU lacks.
pub fn forced_arch() -> Result<Option<ArchKind>, String> {
    static FORCED: OnceLock<Result<Option<ArchKind>, String>> = OnceLock::new();
    FORCED
        .get_or_init(|| forced_by(std::env::var(FORCE_ARCH_VAR).ok().as_deref()))
        .clone()
}

/// [`forced_arch`] for the variable's value (`None`: unset).
fn forced_by(value: Option<&str>) -> Result<Option<ArchKind>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => match ArchKind::parse(v) {
            Some(kind) if arch_of_kind(kind).is_some() => Ok(Some(kind)),
            _ => Err(v.to_string()),
        },
    }
}

/// The instruction set every kernel uses, chosen once per process: the one
/// `FUSED_RNN_FORCE_ARCH` forces, else the best available. Under Miri, always scalar.
///
/// # Panics
/// If `FUSED_RNN_FORCE_ARCH` is set to a value that names no instruction set this CPU has:
/// a forced run must never silently test another path.
pub fn arch() -> Arch {
    static ARCH: OnceLock<Arch> = OnceLock::new();
    *ARCH.get_or_init(|| {
        if cfg!(miri) {
            return Arch::Scalar;
        }
        match forced_arch() {
            Ok(Some(kind)) => arch_of_kind(kind).expect("checked by forced_arch"),
            Ok(None) => Arch::new(),
            Err(v) => panic!("{FORCE_ARCH_VAR}={v:?}: not scalar, avx2 or avx512 on this CPU"),
        }
    })
}

/// The instruction sets this CPU can run, best last (for tests that cover every path).
pub fn available_archs() -> Vec<Arch> {
    [ArchKind::Scalar, ArchKind::Avx2, ArchKind::Avx512]
        .into_iter()
        .filter_map(arch_of_kind)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// matrixmultiply's idea: a run that forces an instruction set must really use it.
    #[test]
    fn ensure_forced_arch_used() {
        match forced_arch() {
            Ok(Some(kind)) => assert_eq!(ArchKind::of(arch()), kind),
            Ok(None) => assert_eq!(ArchKind::of(arch()), ArchKind::of(Arch::new())),
            Err(v) => panic!("{FORCE_ARCH_VAR}={v:?} is not usable here"),
        }
    }

    #[test]
    fn an_empty_value_means_unset_and_an_unknown_one_is_refused() {
        assert_eq!(forced_by(None), Ok(None));
        assert_eq!(forced_by(Some("")), Ok(None));
        assert_eq!(forced_by(Some("  ")), Ok(None));
        assert_eq!(forced_by(Some("Scalar")), Ok(Some(ArchKind::Scalar)));
        assert_eq!(forced_by(Some("sse")), Err("sse".to_string()));
    }

    #[test]
    fn parse_names() {
        assert_eq!(ArchKind::parse("Scalar"), Some(ArchKind::Scalar));
        assert_eq!(ArchKind::parse("avx512"), Some(ArchKind::Avx512));
        assert_eq!(ArchKind::parse("sse"), None);
    }
}
