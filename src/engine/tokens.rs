//! Layer 0 on token input ([`crate::Tokens`]): the embedding lookup fused into the input
//! projection and its gradients.
//!
//! Forward: `P = table W_ih^T` over the table's `V` rows, then each row of the gates takes
//! `P[id]`: `V` rows projected instead of `T * B`. Backward: `dP[v]` sums the input side's
//! gate gradients of the rows whose id is `v` (rows in a fixed order: deterministic), then
//! `dW_ih += dP^T table` and `dL/dtable = dP W_ih`, again over `V` rows. The same sums as
//! with the looked-up rows (`dW_ih = sum_r dG_r^T x_r`, grouped by id), in another order.
//!
//! When the table has at least as many rows as the call (a word-level vocabulary, a short
//! call), projecting it would cost more, and its `V x G*H` scratch could be hundreds of MB:
//! layer 0 then looks the rows up into a `T*B x I` scratch and runs as on x, and dL/dtable
//! sums dL/dx by id. Either way token input costs no more than looking the rows up first.

use std::cell::RefCell;

use fused_rnn_kernels::sums::{AddRowsOf, add_rows_of};
use fused_rnn_kernels::{Arch, CellKind, Float, Rows};

use arrayvec::ArrayVec;

use super::driver::{fill_rows, for_rows};
use super::plan::{pass_threads, run_tasks};
use super::products::{
    DirGrads, InputBlock, input_gradients, input_weight_gradients, project_inputs,
};
use super::{DirSpec, DirWeights};
use crate::config::Parallelism;
use crate::error::{Error, add, mul};
use crate::input::Tokens;
use crate::layout::{Carver, Dims, MAX_TASKS};

/// Whether layer 0 projects the table (fewer rows than the call's `T*B`) rather than the
/// looked-up rows.
fn projects_table(d: &Dims, vocab: usize) -> bool {
    vocab < d.steps * d.batch
}

/// Scratch a call with token input needs on top of the workspace: `P` (forward) or `dP`
/// and a reset-after GRU's input-side `dP_n` (backward), `V` rows each; or the looked-up
/// rows (then dL/dx), `T*B x I`.
pub(crate) fn scratch_len(d: &Dims, vocab: usize) -> Result<usize, Error> {
    if !projects_table(d, vocab) {
        return d.per_row(d.input);
    }
    let n = if d.cell == (CellKind::Gru { reset_after: true }) {
        d.hidden
    } else {
        0
    };
    mul(&[vocab, add(&[d.cell.gates() * d.hidden, n])?])
}

/// The looked-up rows `table[id]` of the call, chunk-major, in `scratch`.
fn look_up<'a, T: Float>(
    d: &Dims,
    threads: usize,
    tokens: &Tokens<'_, T>,
    scratch: &'a mut [T],
) -> &'a mut [T] {
    let i = d.input;
    let rows = &mut scratch[..d.steps * d.batch * i];
    fill_rows(d, threads, (&mut *rows, i), |user, row| {
        let id = tokens.ids[user];
        row.copy_from_slice(&tokens.table[id * i..(id + 1) * i]);
    });
    rows
}

/// `data` (the table, or the looked-up rows) as layer 0's one input block.
fn block<'a, T>(data: &'a [T], s: &DirSpec) -> [InputBlock<'a, T>; 1] {
    [InputBlock {
        data,
        col: 0,
        width: s.input,
    }]
}

/// The spec of layer 0's products over the table's rows.
fn table_spec(s: &DirSpec, vocab: usize) -> DirSpec {
    DirSpec {
        steps: vocab,
        batch: 1,
        ..*s
    }
}

/// `gates[row] = (table W_ih^T)[id of row]` for every chunk-major row of the call.
pub(crate) fn project_tokens<T: Float>(
    threads: (Arch, usize),
    (d, s): (&Dims, &DirSpec),
    w: &DirWeights<'_, T>,
    tokens: &Tokens<'_, T>,
    scratch: &mut [T],
    gates: &mut [T],
) {
    let (gh, vocab) = (s.gh(), tokens.vocab(s.input));
    if !projects_table(d, vocab) {
        let rows = look_up(d, threads.1, tokens, scratch);
        project_inputs(threads, s, w, &block(rows, s), gates);
        return;
    }
    let p = &mut scratch[..vocab * gh];
    project_inputs(
        threads,
        &table_spec(s, vocab),
        w,
        &block(tokens.table, s),
        p,
    );
    fill_rows(d, threads.1, (gates, gh), |user, row| {
        let id = tokens.ids[user];
        row.copy_from_slice(&p[id * gh..(id + 1) * gh]);
    });
}

/// Where [`token_gradients`] adds its results: `dW_ih`, and dL/dtable when asked for
/// (`add`: onto a first direction's).
pub(crate) struct TokenGradsOut<'a, T> {
    pub w_ih: &'a mut [T],
    pub d_table: Option<&'a mut [T]>,
    pub add: bool,
}

/// `dW_ih += dP^T table` and `d_table (+)= dP W_ih`, `dP` the gate gradients `g` (chunk-major
/// rows) summed by id.
pub(crate) fn token_gradients<T: Float>(
    threads: (Arch, usize),
    (d, s): (&Dims, &DirSpec),
    (w, tokens): (&DirWeights<'_, T>, &Tokens<'_, T>),
    g: &DirGrads<'_, T>,
    out: TokenGradsOut<'_, T>,
    scratch: &mut [T],
) {
    let (gh, h, vocab) = (s.gh(), s.hidden, tokens.vocab(s.input));
    if !projects_table(d, vocab) {
        return row_gradients(threads, (d, s), (w, tokens), g, out, scratch);
    }
    let n_w = if s.cell == (CellKind::Gru { reset_after: true }) {
        h
    } else {
        0
    };
    let mut c = Carver::new(scratch);
    let (dp, dp_n) = (c.take(vocab * gh), c.take(vocab * n_w));
    dp.fill(T::ZERO);
    dp_n.fill(T::ZERO);
    sum_by_id(threads.1, d, tokens.ids, (g.dg, gh), dp);
    sum_by_id(threads.1, d, tokens.ids, (g.d_an, n_w), dp_n);
    let sv = table_spec(s, vocab);
    let gv = DirGrads {
        dg: dp,
        d_an: dp_n,
        dh_all: &[],
        h: &[],
        extra: &[],
        bias_sums: &[],
    };
    input_weight_gradients(threads, &sv, &block(tokens.table, s), &gv, out.w_ih);
    if let Some(d_table) = out.d_table {
        input_gradients(threads, &sv, w, &gv, &mut [d_table], out.add);
    }
}

/// [`token_gradients`] on the looked-up rows: `dW_ih += dG^T X`, then dL/dx into the same
/// scratch (X is read by then) and its rows summed by id into `d_table`.
fn row_gradients<T: Float>(
    threads: (Arch, usize),
    (d, s): (&Dims, &DirSpec),
    (w, tokens): (&DirWeights<'_, T>, &Tokens<'_, T>),
    g: &DirGrads<'_, T>,
    out: TokenGradsOut<'_, T>,
    scratch: &mut [T],
) {
    let i = d.input;
    let rows = look_up(d, threads.1, tokens, scratch);
    input_weight_gradients(threads, s, &block(rows, s), g, out.w_ih);
    let Some(d_table) = out.d_table else {
        return;
    };
    input_gradients(threads, s, w, g, &mut [&mut *rows], false);
    if !out.add {
        d_table.fill(T::ZERO);
    }
    sum_by_id(threads.1, d, tokens.ids, (rows, i), d_table);
}

/// `to[id] += from[row]` for every chunk-major row of `width` values (none for 0), rows in
/// a fixed order (deterministic). A large pass runs on the pool's threads (`threads` 0, see
/// [`pass_threads`]), each summing the rows of its own range of ids (cut so that the ranges
/// have about as many rows each): every id's sum is then in the same row order whatever
/// the threads, so the bits are too.
fn sum_by_id<T: Float + Send + Sync>(
    threads: usize,
    d: &Dims,
    ids: &[usize],
    (from, width): (&[T], usize),
    to: &mut [T],
) {
    if width == 0 {
        return;
    }
    let parts = pass_threads(threads, from.len()).min(MAX_TASKS);
    if parts <= 1 {
        return sum_ids_in(d, ids, (from, width), (to, 0));
    }
    let vocab = to.len() / width;
    let mut tasks: ArrayVec<Option<(&mut [T], usize)>, MAX_TASKS> = ArrayVec::new();
    let (mut rest, mut first) = (to, 0);
    for part in 1..=parts {
        let end = if part == parts {
            vocab
        } else {
            id_with_rows_below(ids, first, vocab, ids.len() * part / parts)
        };
        let (own, tail) = std::mem::take(&mut rest).split_at_mut((end - first) * width);
        tasks.push(Some((own, first)));
        (rest, first) = (tail, end);
    }
    run_tasks(Parallelism::Rayon, &mut tasks, |sums| {
        sum_ids_in(d, ids, (from, width), sums)
    });
}

/// The smallest id in `lo..=hi` with at least `rows` of `ids` below it (`hi` if none).
fn id_with_rows_below(ids: &[usize], lo: usize, hi: usize, rows: usize) -> usize {
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ids.iter().filter(|&&id| id < mid).count() >= rows {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

thread_local! {
    /// [`sum_ids_in`]'s rows sorted by id, kept for the next call (no allocation once it has
    /// grown to a call's size).
    static BY_ID: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// [`sum_by_id`] on this thread for the ids `first..` that `sums` holds the rows of.
///
/// The rows are sorted by id first (a counting sort, each id's rows in chunk-major order),
/// then each id's sums take its rows in one pass, held in registers across them: adding
/// each row as it comes read and wrote back a row of sums every time (the char-rnn's
/// 2048 rows of 1024 gate gradients: 0.5-0.7 ms a step on Zen 4 with AVX-512 where the
/// rows alone read in 0.12).
fn sum_ids_in<T: Float>(
    d: &Dims,
    ids: &[usize],
    (from, width): (&[T], usize),
    (sums, first): (&mut [T], usize),
) {
    let held = sums.len() / width;
    let id_of = |user: usize| ids[user].checked_sub(first).filter(|&k| k < held);
    BY_ID.with_borrow_mut(|buf| {
        let rows = from.len() / width;
        buf.clear();
        buf.resize(held + 1 + rows, 0);
        // starts[k + 1] counts id k's rows, then (summed) is where they begin in `order`,
        // and each placed row moves its id's start on: starts[k] ends at id k's end.
        let (starts, order) = buf.split_at_mut(held + 1);
        for_rows(d, |user, _| {
            if let Some(k) = id_of(user) {
                starts[k + 1] += 1;
            }
        });
        for k in 0..held {
            starts[k + 1] += starts[k];
        }
        for_rows(d, |user, cm| {
            if let Some(k) = id_of(user) {
                order[starts[k]] = cm;
                starts[k] += 1;
            }
        });
        let arch = fused_rnn_kernels::arch();
        let rows = Rows::new(from, rows, width, width);
        let mut begin = 0;
        for (k, acc) in sums.chunks_exact_mut(width).enumerate() {
            let order = &order[begin..starts[k]];
            add_rows_of(arch, AddRowsOf { acc, rows, order });
            begin = starts[k];
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, SeqShape};

    /// Sums by id on the pool (large enough to split: `PAR_PASS_ELEMS` values) have the bits
    /// of one thread for 2 and 3 threads, with ids skewed as characters are, and some never
    /// seen.
    #[test]
    fn sums_by_id_on_the_pool_have_the_bits_of_one_thread() {
        let (steps, batch, width, vocab) = (64, 40, 1024, 97);
        let d = Dims::new(&Config::lstm(8, 8), SeqShape::new(steps, batch));
        let rows = steps * batch;
        assert!(rows * width >= super::super::plan::PAR_PASS_ELEMS);
        let ids: Vec<usize> = (0..rows)
            .map(|r| ((r * 7919) % 1000).pow(2) / 12_000 % (vocab - 3))
            .collect();
        let from: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 7919) % 1999) as f32 / 1999.0 - 0.5)
            .collect();
        let run = |threads: usize, pool: usize| {
            let mut to = vec![0.25f32; vocab * width];
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(pool)
                .build()
                .unwrap();
            pool.install(|| sum_by_id(threads, &d, &ids, (&from, width), &mut to));
            to.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        let want = run(1, 1);
        assert!(want.iter().any(|&b| b != 0.25f32.to_bits()));
        for pool in [2, 3] {
            assert!(run(0, pool) == want, "{pool} threads");
        }
    }

    #[test]
    fn id_ranges_hold_about_equal_rows() {
        let ids = [0, 0, 0, 0, 1, 2, 2, 5];
        assert_eq!(id_with_rows_below(&ids, 0, 6, 4), 1);
        assert_eq!(id_with_rows_below(&ids, 0, 6, 5), 2);
        assert_eq!(id_with_rows_below(&ids, 0, 6, 8), 6);
        assert_eq!(id_with_rows_below(&ids, 3, 6, 7), 3);
    }
}
