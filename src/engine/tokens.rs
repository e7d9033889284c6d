//! Layer 0 on token input ([`crate::Tokens`]): the embedding lookup fused into the input
//! projection and its gradients.
//!
//! Forward: `P = table W_ih^T` over the table's `V` rows, then each row of the gates takes
//! `P[id]`: `V` rows projected instead of `T * B`. Backward: `dP[v]` sums the input side's
//! gate gradients of the rows whose id is `v` (rows in a fixed order: deterministic), then
//! `dW_ih += dP^T table` and `dL/dtable = dP W_ih`, again over `V` rows. The same sums as
//! with the looked-up rows (`dW_ih = sum_r dG_r^T x_r`, grouped by id), in another order.

use fused_rnn_kernels::{Arch, CellKind, Float};

use super::driver::for_rows;
use super::products::{
    DirGrads, InputBlock, input_gradients, input_weight_gradients, project_inputs,
};
use super::{DirSpec, DirWeights};
use crate::error::{Error, add, mul};
use crate::input::Tokens;
use crate::layout::{Carver, Dims};

/// Scratch a call with token input needs on top of the workspace: `P` (forward) or `dP`
/// and a reset-after GRU's input-side `dP_n` (backward), `V` rows each.
pub(crate) fn scratch_len(d: &Dims, vocab: usize) -> Result<usize, Error> {
    let n = if d.cell == (CellKind::Gru { reset_after: true }) {
        d.hidden
    } else {
        0
    };
    mul(&[vocab, add(&[d.cell.gates() * d.hidden, n])?])
}

/// The spec of layer 0's products over the table's rows.
fn table_spec(s: &DirSpec, vocab: usize) -> DirSpec {
    DirSpec {
        steps: vocab,
        batch: 1,
        ..*s
    }
}

/// The table as layer 0's one input block.
fn table_block<'a, T>(tokens: &Tokens<'a, T>, s: &DirSpec) -> [InputBlock<'a, T>; 1] {
    [InputBlock {
        data: tokens.table,
        col: 0,
        width: s.input,
    }]
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
    let p = &mut scratch[..vocab * gh];
    project_inputs(
        threads,
        &table_spec(s, vocab),
        w,
        &table_block(tokens, s),
        p,
    );
    for_rows(d, |user, cm| {
        let id = tokens.ids[user];
        gates[cm * gh..(cm + 1) * gh].copy_from_slice(&p[id * gh..(id + 1) * gh]);
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
    let n_w = if s.cell == (CellKind::Gru { reset_after: true }) {
        h
    } else {
        0
    };
    let mut c = Carver::new(scratch);
    let (dp, dp_n) = (c.take(vocab * gh), c.take(vocab * n_w));
    dp.fill(T::ZERO);
    dp_n.fill(T::ZERO);
    for_rows(d, |user, cm| {
        let id = tokens.ids[user];
        let (from, to) = (
            &g.dg[cm * gh..(cm + 1) * gh],
            &mut dp[id * gh..(id + 1) * gh],
        );
        to.iter_mut().zip(from).for_each(|(t, &f)| *t += f);
        if n_w > 0 {
            let from = &g.d_an[cm * h..(cm + 1) * h];
            let to = &mut dp_n[id * h..(id + 1) * h];
            to.iter_mut().zip(from).for_each(|(t, &f)| *t += f);
        }
    });
    let sv = table_spec(s, vocab);
    let gv = DirGrads {
        dg: dp,
        d_an: dp_n,
        dh_all: &[],
        h: &[],
        extra: &[],
    };
    input_weight_gradients(threads, &sv, &table_block(tokens, s), &gv, out.w_ih);
    if let Some(d_table) = out.d_table {
        input_gradients(threads, &sv, w, &gv, &mut [d_table], out.add);
    }
}
