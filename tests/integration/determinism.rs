//! Results are bitwise the same for any thread count: rayon pools of 1, 2, 3 and 4 threads
//! and `Parallelism::Sequential` give identical outputs, states and gradients, on shapes that
//! take every parallel path (batch chunks, column-split step products, both directions).

use crate::common;

use fused_rnn::{CellKind, Config, Parallelism, SeqLayout, SeqShape};

/// Every output of a training step, and of an inference call, as bits.
fn bits(case: &common::Case) -> Vec<u64> {
    let out = common::run_ours::<f32>(case);
    let mut all: Vec<u64> = common::run_ours_inference::<f32>(case)
        .iter()
        .map(|x| x.to_bits())
        .collect();
    for v in [&out.y, &out.h_n, &out.c_n, &out.dx, &out.dh0, &out.dc0] {
        all.extend(v.iter().map(|x| x.to_bits()));
    }
    for (_, g) in &out.grads {
        all.extend(g.iter().map(|x| x.to_bits()));
    }
    all
}

fn same_for_every_pool(config: Config, shape: SeqShape, seed: u64) {
    let case = common::Case::random(
        config.clone().with_parallelism(Parallelism::Sequential),
        shape,
        seed,
        true,
        true,
    );
    let reference = bits(&case);
    for threads in [1, 2, 3, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let parallel = common::Case {
            config: config.clone().with_parallelism(Parallelism::Rayon),
            ..case.clone()
        };
        let got = pool.install(|| bits(&parallel));
        assert!(
            got == reference,
            "{:?} B={} on {threads} threads differs from sequential",
            config.cell,
            shape.batch
        );
    }
}

#[test]
fn bitwise_identical_across_thread_counts() {
    for (i, cell) in CellKind::ALL.into_iter().enumerate() {
        for batch in [1, 5, 16, 40] {
            let config = Config::lstm(24, 48)
                .with_cell(cell)
                .with_layers(2)
                .with_bidirectional(true);
            same_for_every_pool(
                config,
                SeqShape::new(7, batch),
                i as u64 * 10 + batch as u64,
            );
        }
    }
}

/// Batches of several chunks whose steps fuse (H a multiple of the 32-wide panel): a
/// thread's chunks step in lockstep, their step products grouped (`engine::forward_lockstep`,
/// `engine::backward_lockstep`), so the groups differ with the pool (one of all 5 chunks
/// sequentially; 1 to 5 chunks per group on 1-4 threads, one or two directions), and so do
/// the pairs of 8-row chunks whose forward products run as one 16-row part, with lengths and
/// resets that leave some chunks all padding at some steps (and so unpaired).
#[test]
fn bitwise_identical_when_chunks_step_in_lockstep() {
    for (i, cell) in CellKind::ALL.into_iter().enumerate() {
        for bidirectional in [false, true] {
            let config = Config::lstm(24, 64)
                .with_cell(cell)
                .with_layers(2)
                .with_bidirectional(bidirectional);
            same_for_every_pool(config, SeqShape::new(6, 40), 700 + i as u64);
        }
    }
}

/// A call big enough that the passes over all its rows split over the pool (the bias
/// gradients' column sums: `T*B*G*H` of at least 2^21 values, `engine::plan::PAR_PASS_ELEMS`),
/// each column summed in row order whoever sums it.
#[test]
fn bitwise_identical_when_passes_over_all_rows_split() {
    let config = Config::lstm(3, 32);
    same_for_every_pool(config, SeqShape::new(128, 128), 11);
}

/// Small batches with a step product big enough to split (`K * G*H >= 2^17`): a team of
/// threads runs the forward steps in column pieces (a reset-before GRU and the backward
/// split each step across the pool instead), with gate blocks on 32-wide panel boundaries
/// (H = 544) and across them (H = 536). Both H are past the product's 512-deep K block, so
/// a product that adds onto what C holds (beta 1) does so block by block.
#[test]
fn bitwise_identical_when_small_batch_steps_are_split() {
    for (i, cell) in CellKind::ALL.into_iter().enumerate() {
        for hidden in [544, 536] {
            for batch in [1, 3] {
                let config = Config::lstm(16, hidden).with_cell(cell);
                let seed = i as u64 * 100 + hidden as u64 + batch as u64;
                same_for_every_pool(config, SeqShape::new(4, batch), seed);
            }
        }
    }
    let projected = Config::lstm(16, 256).with_proj_size(128);
    same_for_every_pool(projected, SeqShape::new(4, 2), 3);
}

/// Small LSTM batches whose team pieces are blocks of 64 units with all their gates (H a
/// multiple of 64; see `engine::forward_blocks`): 3 blocks (fewer than the pieces of a
/// 2-thread team) and 9 (pieces of unequal size), with lengths and resets, training and
/// inference.
#[test]
fn bitwise_identical_when_small_lstm_steps_run_by_unit_blocks() {
    for hidden in [192, 576] {
        for batch in [1, 3] {
            let config = Config::lstm(16, hidden);
            same_for_every_pool(
                config,
                SeqShape::new(5, batch),
                hidden as u64 + batch as u64,
            );
        }
    }
}

#[test]
fn bitwise_identical_with_projection_batch_major_and_dropout() {
    let config = Config::lstm(20, 40)
        .with_proj_size(24)
        .with_layers(3)
        .with_dropout(0.3)
        .with_layout(SeqLayout::BatchMajor);
    for batch in [3, 24] {
        same_for_every_pool(config.clone(), SeqShape::new(6, batch), 99);
    }
}

#[test]
fn same_seed_same_results_across_runs() {
    let config = Config::gru(12, 40).with_layers(2);
    let case = common::Case::random(config, SeqShape::new(9, 18), 5, true, false);
    assert!(bits(&case) == bits(&case));
}

/// Large enough for every product to run threaded inside the gemm crate.
#[test]
fn bitwise_identical_at_a_benchmark_like_size() {
    same_for_every_pool(Config::lstm(64, 128), SeqShape::new(10, 64), 7);
}
