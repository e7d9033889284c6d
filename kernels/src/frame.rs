//! Stack frames of unoptimized builds (compiled with debug assertions only).
//!
//! A kernel inlines its whole body (`#[inline(always)]`) into one function compiled for the
//! instruction set, so that every SIMD operation in it is compiled with the set enabled.
//! Optimized, LLVM lets the inlined calls share stack slots. Unoptimized (opt-level 0: this
//! crate in a user's debug build, unless they raise it) every inlined call keeps its own: the
//! packed product, with all its tile shapes inlined, had frames of 1.4-4.2 MB (AVX2-AVX-512,
//! f32-f64), past the 2 MiB stack of a spawned or rayon thread, and such a build aborted on
//! its first product off the main thread. With each tile in a function of its own (this
//! module), the largest frame is 0.3 MB and every cell runs forward and backward on threads
//! of 512 KiB.
//!
//! Debug assertions stand in for "unoptimized", which Rust cannot test for. Release builds
//! keep the inlined code as it was: the AVX2 product compiles to the same instructions
//! (compared by disassembly). Routed through the call structs there too, it did not: the
//! optimizer moved stack slots, and on Zen 4 `[8, 256] x [256, 1024]` ran 5% faster and
//! `[16, 256] x [256, 1024]` 5% slower.

use pulp::{Simd, WithSimd};

/// A call that [`framed`] runs in a function of its own.
pub(crate) trait FramedCall<S: Simd> {
    /// What the call returns.
    type Output;
    /// Runs the call (inlined into the function [`framed`] makes for it).
    fn call(self, s: S) -> Self::Output;
}

/// Runs `call` on `s` in a function of its own, compiled for the same instruction set
/// (pulp's `vectorize`), so that its stack slots are not added to its caller's.
#[inline(always)]
pub(crate) fn framed<S: Simd, C: FramedCall<S>>(s: S, call: C) -> C::Output {
    s.vectorize(Frame(s, call))
}

/// A [`FramedCall`] as pulp's `WithSimd` (the instruction set is the one `s` was made for).
struct Frame<S, C>(S, C);

impl<S: Simd, C: FramedCall<S>> WithSimd for Frame<S, C> {
    type Output = C::Output;
    #[inline(always)]
    fn with_simd<S2: Simd>(self, _: S2) -> C::Output {
        self.1.call(self.0)
    }
}
