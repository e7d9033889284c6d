//! A loop of independent FMAs that runs at the core's peak: the benchmark runner divides
//! measured GFLOP/s by what this reaches on the same machine.

use pulp::{Arch, Simd, WithSimd};

/// Independent FMA chains the loop runs on an instruction set with `registers` vector
/// registers: enough to cover the FMA latency on two units (8-10 in flight), and all of
/// them held in registers. 24 chains on AVX2's 16 registers spilled to the stack and read
/// 18% under the peak (74.9 against 91.1 GFLOP/s for `../shared/bench/fma_peak.c`, which
/// runs 12, on a Zen 4 without AVX-512).
pub const fn chains(registers: usize) -> usize {
    if registers >= 32 { 24 } else { 12 }
}

/// Runs `iters` rounds of [`chains`] independent f32 FMA chains on `arch`'s registers and
/// returns (flops done, a checksum that keeps the work from being optimized away).
pub fn fma_loop(arch: Arch, iters: usize) -> (f64, f32) {
    struct Loop(usize);
    impl WithSimd for Loop {
        type Output = (f64, f32);
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> (f64, f32) {
            if chains(S::REGISTER_COUNT) == 24 {
                run::<S, 24>(s, self.0)
            } else {
                run::<S, 12>(s, self.0)
            }
        }
    }
    arch.dispatch(Loop(iters))
}

/// `iters` rounds of `N` chains.
#[inline(always)]
fn run<S: Simd, const N: usize>(s: S, iters: usize) -> (f64, f32) {
    let (a, b) = (s.splat_f32s(0.999_999_9), s.splat_f32s(1e-7));
    let mut acc = [s.splat_f32s(0.01); N];
    for (j, x) in acc.iter_mut().enumerate() {
        *x = s.splat_f32s(0.01 * (j as f32 + 1.0));
    }
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = s.mul_add_e_f32s(*x, a, b);
        }
    }
    let mut sum = acc[0];
    for x in &acc[1..] {
        sum = s.add_f32s(sum, *x);
    }
    let lanes = core::mem::size_of::<S::f32s>() / 4;
    ((iters * N * lanes * 2) as f64, s.reduce_sum_f32s(sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_flops_it_runs_and_keeps_the_result() {
        for arch in crate::available_archs() {
            let (flops, sum) = fma_loop(arch, 1000);
            // Some multiple of 2 flops x chains x lanes per round: 1000 rounds.
            assert!(flops >= 2.0 * 12.0 * 1000.0, "{flops}");
            assert_eq!(flops % 2000.0, 0.0);
            // Each chain converges towards b / (1 - a) = 1 from 0.01 * (j + 1): finite, positive.
            assert!(sum.is_finite() && sum > 0.0, "{sum}");
        }
    }
}
