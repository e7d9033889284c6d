//! Every module configuration against the naive f64 reference
//! (`fused_rnn_kernels::reference::module`): outputs, final states and every gradient, in f64
//! (to 1e-10) and f32 (to the scaled f32 tolerance), with and without per-sequence lengths
//! and resets, in both layouts.

use crate::common;

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
        matches_reference(&Case::random(config, shape, seed, lengths, resets))?;
    }
}

/// Ours in f64 (to 1e-10) and f32 against the f64 reference. f32: every value is O(1)
/// (inputs, weights and incoming gradients are bounded by 1), but sums over up to ~100
/// terms round, so allow a few hundred f32 ulps of O(1).
fn matches_reference(case: &Case) -> Result<(), TestCaseError> {
    let want = run_reference(case);
    compare(&run_ours::<f64>(case), &want, (1e-12, 1e-10))?;
    compare(&run_ours::<f32>(case), &want, (2e-5, 1e-4))
}

/// Shapes that take the parallel paths: several batch chunks (B >= 16) and, for small
/// batches, step products split by columns (G*H of at least two 32-wide panels).
fn chunked_config_and_shape() -> impl Strategy<Value = (fused_rnn::Config, fused_rnn::SeqShape)> {
    config_and_shape_from(vec![1, 2, 7, 16, 17, 24, 33], vec![16, 17, 33])
}

/// Shapes whose steps fuse the pointwise pass into the product, block by block (chunks of
/// 8 to 16 rows, H a multiple of the 32-wide f32 panel; 160 units make several blocks and
/// a short last one in f32 and in f64).
fn fused_config_and_shape() -> impl Strategy<Value = (fused_rnn::Config, fused_rnn::SeqShape)> {
    config_and_shape_from(vec![8, 9, 16, 17, 33], vec![32, 64, 160])
}

/// Any cell and layout on one of `batches` and `hiddens`.
fn config_and_shape_from(
    batches: Vec<usize>,
    hiddens: Vec<usize>,
) -> impl Strategy<Value = (fused_rnn::Config, fused_rnn::SeqShape)> {
    use fused_rnn::{CellKind, Config, SeqLayout, SeqShape};
    let cells = prop::sample::select(CellKind::ALL.to_vec());
    let batches = prop::sample::select(batches);
    let hiddens = prop::sample::select(hiddens);
    (
        cells,
        batches,
        hiddens,
        1usize..4,
        any::<bool>(),
        any::<bool>(),
        1usize..3,
        any::<bool>(),
    )
        .prop_map(
            |(cell, batch, hidden, steps, bidir, batch_major, layers, proj)| {
                let proj = if cell == CellKind::Lstm && proj { 5 } else { 0 };
                let layout = if batch_major {
                    SeqLayout::BatchMajor
                } else {
                    SeqLayout::TimeMajor
                };
                let config = Config::lstm(6, hidden)
                    .with_cell(cell)
                    .with_layers(layers)
                    .with_bidirectional(bidir)
                    .with_proj_size(proj)
                    .with_layout(layout);
                (config, SeqShape::new(steps, batch))
            },
        )
}

proptest! {
    #![proptest_config(fused_rnn_kernels::testing::cases(24))]

    #[test]
    fn chunked_and_split_paths_match_reference(
        (config, shape) in chunked_config_and_shape(),
        seed in any::<u64>(),
        lengths in any::<bool>(),
        resets in any::<bool>(),
    ) {
        matches_reference(&Case::random(config, shape, seed, lengths, resets))?;
    }

    #[test]
    fn fused_steps_match_reference(
        (config, shape) in fused_config_and_shape(),
        seed in any::<u64>(),
        lengths in any::<bool>(),
        resets in any::<bool>(),
    ) {
        matches_reference(&Case::random(config, shape, seed, lengths, resets))?;
    }
}
