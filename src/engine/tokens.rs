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

use fused_rnn_kernels::{Arch, CellKind, Float};

use super::driver::{fill_rows, for_rows};
use super::products::{
    DirGrads, InputBlock, input_gradients, input_weight_gradients, project_inputs,
};
use super::{DirSpec, DirWeights};
use crate::error::{Error, add, mul};
use crate::input::Tokens;
use crate::layout::{Carver, Dims};

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
    sum_by_id(d, tokens.ids, (g.dg, gh), dp);
    sum_by_id(d, tokens.ids, (g.d_an, n_w), dp_n);
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
    sum_by_id(d, tokens.ids, (rows, i), d_table);
}

/// `to[id] += from[row]` for every chunk-major row of `width` values (none for 0), rows in
/// a fixed order (deterministic).
fn sum_by_id<T: Float>(d: &Dims, ids: &[usize], (from, width): (&[T], usize), to: &mut [T]) {
    if width == 0 {
        return;
    }
    for_rows(d, |user, cm| {
        let (id, row) = (ids[user], &from[cm * width..(cm + 1) * width]);
        let sums = &mut to[id * width..(id + 1) * width];
        sums.iter_mut().zip(row).for_each(|(t, &f)| *t += f);
    });
}
