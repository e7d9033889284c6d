//! Token input ([`Input::tokens`]): layer 0 fed by ids into a table gives what the looked-up
//! rows give (outputs, states, every parameter gradient), and dL/dtable is dL/dx summed by
//! id; the finite-difference check on the table; bad ids and tables; [`Tbptt::step_tokens`]
//! against [`Tbptt::step`] on the looked-up rows.

use crate::common;

use common::{
    Case, Outcome, cast, compare, config_and_shape, f32_may_cross_a_relu_kink, module_and_x,
    run_ours, train_on, with_masks,
};
use fused_rnn::gradcheck::{GradCheck, check_recurrent};
use fused_rnn::{
    Backward, CellKind, Config, Error, Float, Input, Recurrent, Reserve, SeqLayout, SeqShape,
    State, Tbptt, Truncation, Workspace,
};
use fused_rnn_kernels::testing::{SplitMix, check_close};
use proptest::prelude::*;

/// Time-major ids below `vocab` and a `[vocab, I]` table drawn from `seed`.
fn draw_tokens(case: &Case, vocab: usize, seed: u64) -> (Vec<usize>, Vec<f64>) {
    let mut rng = SplitMix::new(seed ^ 0x70C3);
    let rows = case.shape.steps * case.shape.batch;
    let ids = (0..rows)
        .map(|_| (rng.next_u64() % vocab as u64) as usize)
        .collect();
    (ids, rng.vec(vocab * case.config.input_size, 1.0))
}

/// `table[ids[r]]` for every row: the x the tokens stand for.
fn look_up(ids: &[usize], table: &[f64], width: usize) -> Vec<f64> {
    ids.iter()
        .flat_map(|&id| table[id * width..(id + 1) * width].iter().copied())
        .collect()
}

/// Runs `case` (its x ignored) through this crate in `T` on token input; `dx` of the outcome
/// is dL/dtable.
fn run_tokens<T: Float>(case: &Case, ids: &[usize], table: &[f64]) -> Outcome {
    let (t, b) = (case.shape.steps, case.shape.batch);
    // Ids in the module's layout: a batch-major module reads [B][T].
    let ids: Vec<usize> = match case.config.layout {
        SeqLayout::BatchMajor => (0..b)
            .flat_map(|s| (0..t).map(move |k| ids[k * b + s]))
            .collect(),
        SeqLayout::TimeMajor => ids.to_vec(),
    };
    let (module, _) = module_and_x::<T>(case);
    let table: Vec<T> = cast(table);
    let input = with_masks(case, Input::tokens(&ids, &table, case.shape));
    train_on(case, &module, input, table.len())
}

/// Whether `r` is a shape or argument error naming `arg`.
fn names(r: &Result<(), Error>, arg: &str) -> bool {
    match r {
        Err(Error::ShapeMismatch { arg: a, .. } | Error::InvalidArgument { arg: a, .. }) => {
            a == arg
        }
        _ => false,
    }
}

/// dL/dx rows summed by id: what dL/dtable must be.
fn scatter(dx: &[f64], ids: &[usize], vocab: usize, width: usize) -> Vec<f64> {
    let mut out = vec![0.0; vocab * width];
    for (row, &id) in dx.chunks_exact(width).zip(ids) {
        for (o, &v) in out[id * width..(id + 1) * width].iter_mut().zip(row) {
            *o += v;
        }
    }
    out
}

/// The case on tokens against the case on the looked-up rows, in `T`.
fn matches_rows<T: Float>(
    case: &Case,
    vocab: usize,
    seed: u64,
    tol: (f64, f64),
) -> Result<(), TestCaseError> {
    let (ids, table) = draw_tokens(case, vocab, seed);
    let rows = Case {
        x: look_up(&ids, &table, case.config.input_size),
        ..case.clone()
    };
    // A lower precision than the reference's may cross a ReLU kink differently on the two
    // paths (the table projected first rounds differently): compared in f64 only.
    if core::mem::size_of::<T>() < 8 && f32_may_cross_a_relu_kink(&rows) {
        return Ok(());
    }
    let mut want = run_ours::<T>(&rows);
    want.dx = scatter(&want.dx, &ids, vocab, case.config.input_size);
    compare(&run_tokens::<T>(&rows, &ids, &table), &want, tol)
}

proptest! {
    #![proptest_config(fused_rnn_kernels::testing::cases(96))]

    /// Every cell, 1-3 layers, either direction count and layout, projections, lengths and
    /// resets; vocabularies smaller than the number of rows (the table projected) and not
    /// (the rows looked up).
    #[test]
    fn token_input_matches_looked_up_rows(
        (config, shape) in config_and_shape(),
        seed in any::<u64>(),
        vocab in 1usize..12,
        lengths in any::<bool>(),
        resets in any::<bool>(),
    ) {
        let case = Case::random(config, shape, seed, lengths, resets);
        matches_rows::<f64>(&case, vocab, seed, (1e-12, 1e-10))?;
        matches_rows::<f32>(&case, vocab, seed, (2e-5, 1e-4))?;
    }
}

/// Batches that split into several chunks (chunk-major rows differ from the caller's).
#[test]
fn chunked_batches_match_looked_up_rows() {
    for (k, cell) in CellKind::ALL.into_iter().enumerate() {
        for (batch, bidir, layout) in [
            (17, false, SeqLayout::TimeMajor),
            (33, true, SeqLayout::BatchMajor),
        ] {
            let config = Config::lstm(5, 32)
                .with_cell(cell)
                .with_layers(2)
                .with_bidirectional(bidir)
                .with_layout(layout);
            let case = Case::random(config, SeqShape::new(3, batch), k as u64, true, false);
            matches_rows::<f64>(&case, 7, k as u64, (1e-12, 1e-10)).unwrap();
            matches_rows::<f32>(&case, 40, k as u64, (2e-5, 1e-4)).unwrap();
        }
    }
}

/// The finite-difference check (f64) on every parameter, the table, h0 and c0, with the
/// table projected (V = 5 < 6 rows) and looked up (V = 9).
#[test]
fn token_input_passes_the_gradient_check() {
    for (k, (cell, vocab)) in CellKind::ALL
        .into_iter()
        .flat_map(|c| [(c, 5), (c, 9)])
        .enumerate()
    {
        let config = Config::lstm(3, 4)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(k % 2 == 1);
        let shape = SeqShape::new(3, 2);
        let case = Case::random(config.clone(), shape, k as u64, false, false);
        let (ids, table) = draw_tokens(&case, vocab, k as u64);
        let module = Recurrent::new(config.clone(), case.params.clone()).expect("valid");
        let state = State {
            h: case.h0.clone(),
            c: case.c0.clone(),
        };
        let opts = GradCheck {
            seed: k as u64,
            ..GradCheck::default()
        };
        let input = Input::tokens(&ids, &table, shape);
        let report = check_recurrent(&module, input, &state, &opts).expect("runs");
        let relu = cell == CellKind::Rnn(fused_rnn::Nonlinearity::Relu);
        let kinks_allowed = if relu { report.checked / 10 } else { 0 };
        assert!(
            report.checked + report.nonsmooth >= case.params.num_elements() + table.len(),
            "{report}"
        );
        assert!(report.nonsmooth <= kinks_allowed, "{report}");
        assert!(report.max_rel_error <= 1e-6, "{config:?}: {report}");
    }
}

#[test]
fn bad_tokens_are_errors_and_write_nothing() {
    let lstm = Recurrent::<f32>::with_seed(Config::lstm(3, 4), 0).unwrap();
    let shape = SeqShape::new(2, 2);
    let table = vec![0.5f32; 4 * 3];
    let mut ws = Workspace::new();
    let run = |input: Input<'_, f32>, ws: &mut Workspace<f32>| {
        let (mut state, mut y) = (lstm.zero_state(2), vec![7.0f32; 2 * 2 * 4]);
        let r = lstm.forward(input, &mut state, &mut y, ws);
        assert!(y.iter().all(|&v| v == 7.0), "y written on error");
        r
    };
    let bad_id = run(Input::tokens(&[0, 1, 4, 2], &table, shape), &mut ws);
    assert!(names(&bad_id, "ids"), "{bad_id:?}");
    let short = run(Input::tokens(&[0, 1, 2], &table, shape), &mut ws);
    assert!(names(&short, "ids"));
    let ragged = run(Input::tokens(&[0, 1, 2, 3], &table[..11], shape), &mut ws);
    assert!(names(&ragged, "table"));
    let empty = run(Input::tokens(&[0, 0, 0, 0], &[], shape), &mut ws);
    assert!(names(&empty, "table"));
    let x = [0.0f32; 12];
    let both = Input {
        x: &x,
        ..Input::tokens(&[0, 1, 2, 3], &table, shape)
    };
    assert!(names(&run(both, &mut ws), "x"));
    // Backward's dx is dL/dtable: `[V, I]`.
    let input = Input::tokens(&[0, 1, 2, 3], &table, shape);
    let (mut state, mut y, mut reserve) = (lstm.zero_state(2), vec![0.0; 16], Reserve::new());
    lstm.forward_train(input, &mut state, &mut y, &mut reserve, &mut ws)
        .unwrap();
    let (mut grads, mut d_state, mut dx) = (lstm.zero_grads(), lstm.zero_state(2), vec![0.0; 12]);
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx[..11]),
        grads: &mut grads,
    };
    let r = lstm.backward(input, &y, &mut reserve, out, &mut ws);
    assert!(names(&r, "dx"), "{r:?}");
}

/// `Tbptt::step_tokens` against `Tbptt::step` on the looked-up rows: the same losses,
/// gradients and carried states window after window, and dL/dtable is the rows' dx summed
/// by id (TBPTT(k, k), where the two see the same steps).
#[test]
fn tbptt_on_tokens_matches_tbptt_on_rows() {
    for (k, cell) in CellKind::ALL.into_iter().enumerate() {
        let config = Config::lstm(3, 5).with_cell(cell).with_layers(2);
        let module = Recurrent::<f64>::with_seed(config.clone(), k as u64).unwrap();
        let (batch, vocab, window) = (3, 6, 4);
        let mut rng = SplitMix::new(k as u64);
        let table = rng.vec(vocab * 3, 1.0);
        let ids: Vec<usize> = (0..3 * window * batch)
            .map(|_| (rng.next_u64() % vocab as u64) as usize)
            .collect();
        for trunc in [
            Truncation::windows(window),
            Truncation::new(2, window).unwrap(),
        ] {
            let mut on_rows = Tbptt::new(&module, batch, trunc).unwrap();
            let mut on_tokens = Tbptt::new(&module, batch, trunc).unwrap();
            for new in ids.chunks(trunc.k1() * batch) {
                let (mut g_rows, mut g_tokens) = (module.zero_grads(), module.zero_grads());
                // Any fixed dL/dy; the loss value only has to come back.
                let loss = |y: &[f64], dy: &mut [f64]| {
                    for (i, d) in dy.iter_mut().enumerate() {
                        *d = (i % 5) as f64 * 0.1 - 0.2;
                    }
                    y.iter().map(|v| v * v).sum::<f64>()
                };
                let x = look_up(new, &table, 3);
                let l_rows = on_rows.step(&module, &x, &mut g_rows, loss).unwrap();
                let mut d_table = vec![f64::NAN; table.len()];
                let l_tokens = on_tokens
                    .step_tokens(&module, (new, &table), &mut g_tokens, &mut d_table, loss)
                    .unwrap();
                check_close("loss", &[l_tokens], &[l_rows], (1e-12, 1e-10)).unwrap();
                for (a, b) in g_tokens.iter().zip(g_rows.iter()) {
                    check_close(a.name(), a.data(), b.data(), (1e-12, 1e-10)).unwrap();
                }
                let (s_t, s_r) = (on_tokens.state(), on_rows.state());
                check_close("h", &s_t.h, &s_r.h, (1e-12, 1e-10)).unwrap();
                check_close("c", &s_t.c, &s_r.c, (1e-12, 1e-10)).unwrap();
                if trunc.k1() == trunc.k2() {
                    let want = scatter(on_rows.dx(), new, vocab, 3);
                    check_close("d_table", &d_table, &want, (1e-12, 1e-10)).unwrap();
                }
                assert!(on_tokens.dx().is_empty());
            }
        }
    }
}

/// A TBPTT(k1, k2) span keeps older steps of one kind: feeding the other is refused.
#[test]
fn tbptt_refuses_to_mix_rows_and_tokens_in_a_span() {
    let module = Recurrent::<f32>::with_seed(Config::lstm(2, 3), 0).unwrap();
    let mut tbptt = Tbptt::new(&module, 1, Truncation::new(1, 3).unwrap()).unwrap();
    let table = [0.1f32, 0.2, 0.3, 0.4];
    let mut grads = module.zero_grads();
    let mut d_table = [0.0f32; 4];
    tbptt
        .step_tokens(&module, (&[1], &table), &mut grads, &mut d_table, |_, _| ())
        .unwrap();
    let r = tbptt.step(&module, &[0.5, 0.5], &mut grads, |_, _| ());
    assert!(names(&r, "x"), "{r:?}");
    let bad = tbptt.step_tokens(&module, (&[2], &table), &mut grads, &mut d_table, |_, _| ());
    assert!(names(&bad, "ids"), "{bad:?}");
    tbptt.reset();
    tbptt
        .step(&module, &[0.5, 0.5], &mut grads, |_, _| ())
        .unwrap();
}

/// Token input gives the same bits on any thread count, as rows do (see `determinism`):
/// the table's product, the gather and the sums by id run in a fixed order.
#[test]
fn token_input_is_bitwise_identical_across_thread_counts() {
    // 280 rows: a table of 30 is projected, one of 300 looked up.
    for (k, (cell, vocab)) in CellKind::ALL
        .into_iter()
        .flat_map(|c| [(c, 30), (c, 300)])
        .enumerate()
    {
        let config = Config::lstm(24, 48)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(true);
        same_bits_on_every_pool(config, SeqShape::new(7, 40), vocab, k as u64);
    }
}

/// Every output and gradient of token input as bits.
fn outcome_bits(o: &Outcome) -> Vec<u64> {
    let grads = o.grads.iter().flat_map(|(_, g)| g.iter());
    [&o.y, &o.h_n, &o.c_n, &o.dx, &o.dh0, &o.dc0]
        .into_iter()
        .flatten()
        .chain(grads)
        .map(|x| x.to_bits())
        .collect()
}

/// Token input on a random case of `config` gives the same bits under rayon pools of 1 to 4
/// threads as sequentially.
fn same_bits_on_every_pool(config: Config, shape: SeqShape, vocab: usize, seed: u64) {
    use fused_rnn::Parallelism;
    let sequential = config.clone().with_parallelism(Parallelism::Sequential);
    let case = Case::random(sequential, shape, seed, true, true);
    let (ids, table) = draw_tokens(&case, vocab, seed);
    let want = outcome_bits(&run_tokens::<f32>(&case, &ids, &table));
    for threads in [1, 2, 3, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let parallel = Case {
            config: config.clone().with_parallelism(Parallelism::Rayon),
            ..case.clone()
        };
        let got = pool.install(|| outcome_bits(&run_tokens::<f32>(&parallel, &ids, &table)));
        assert!(
            got == want,
            "{:?} on {threads} threads differs from sequential",
            config.cell
        );
    }
}

/// A token call big enough that the gather of the table's projected rows splits over the
/// pool (`T*B*G*H` of 2^21 values): the same bits on any thread count.
#[test]
fn a_large_token_gather_is_bitwise_identical_across_thread_counts() {
    same_bits_on_every_pool(Config::lstm(4, 32), SeqShape::new(128, 128), 30, 5);
}
