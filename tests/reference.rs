//! Every module configuration against the naive f64 reference
//! (`fused_rnn_kernels::reference::module`): outputs, final states and every gradient, in f64
//! (to 1e-10) and f32 (to the scaled f32 tolerance), with and without per-sequence lengths
//! and resets, in both layouts.

mod common;

use common::{Case, compare, config_and_shape, run_ours, run_reference};
use proptest::prelude::*;

proptest! {
    #![proptest_config(fused_rnn_kernels::testing::cases(160))]

    #[test]
    fn module_matches_reference(
        (config, shape) in config_and_shape(),
        seed in any::<u64>(),
        lengths in any::<bool>(),
        resets in any::<bool>(),
    ) {
        let case = Case::random(config, shape, seed, lengths, resets);
        let want = run_reference(&case);
        compare(&run_ours::<f64>(&case), &want, (1e-12, 1e-10))?;
        // f32: every value is O(1) (inputs, weights and incoming gradients are bounded by 1),
        // but sums over up to ~100 terms round, so allow a few hundred f32 ulps of O(1).
        compare(&run_ours::<f32>(&case), &want, (2e-5, 1e-4))?;
    }
}
