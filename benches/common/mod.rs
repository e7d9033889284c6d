//! The benchmark cases of `benches/sizes.json` (a copy of the project's shared DeepBench
//! shapes), read by the bench runner's own loader so both measure the same cases.
#![allow(dead_code)]

#[path = "../../examples/bench/cases.rs"]
mod loader;

pub use loader::Case;

/// The cases of a sizes file (`BENCH_SIZES` overrides the default path).
pub fn cases() -> Vec<Case> {
    let path = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/benches/sizes.json").into());
    loader::load(std::path::Path::new(&path), &[]).unwrap_or_else(|e| panic!("{e}"))
}
