//! A loop of independent FMAs that runs at the core's peak: the benchmark runner divides
//! measured GFLOP/s by what this reaches on the same machine.

use pulp::{Arch, Simd, WithSimd};

/// Runs `iters` rounds of 24 independent f32 FMA chains on `arch`'s registers and returns
/// (flops done, a checksum that keeps the work from being optimized away).
pub fn fma_loop(arch: Arch, iters: usize) -> (f64, f32) {
    struct Loop(usize);
    impl WithSimd for Loop {
        type Output = (f64, f32);
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> (f64, f32) {
            let (a, b) = (s.splat_f32s(0.999_999_9), s.splat_f32s(1e-7));
            let mut acc = [s.splat_f32s(0.01); 24];
            for (j, x) in acc.iter_mut().enumerate() {
                *x = s.splat_f32s(0.01 * (j as f32 + 1.0));
            }
            for _ in 0..self.0 {
                for x in acc.iter_mut() {
                    *x = s.mul_add_e_f32s(*x, a, b);
                }
            }
            let mut sum = acc[0];
            for x in &acc[1..] {
                sum = s.add_f32s(sum, *x);
            }
            let lanes = core::mem::size_of::<S::f32s>() / 4;
            ((self.0 * 24 * lanes * 2) as f64, s.reduce_sum_f32s(sum))
        }
    }
    arch.dispatch(Loop(iters))
}
