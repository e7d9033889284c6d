//! The products over all steps of a direction, outside the time loops: the input projection
//! (forward), the weight gradients and dL/dx (backward). They run on the whole thread pool
//! (`threads` 0) or this thread (1), split by rows of the result, never within a sum, so
//! their results do not depend on the thread count; and they allocate nothing once each
//! thread has packed one block (see `fused_rnn_kernels::gemm`).
//!
//! A layer's input is a list of column blocks, all with the same chunk-major rows: the
//! layer-0 input `[T*B][I]`, or for upper layers one `[T*B][Hout]` block per direction of the
//! layer below (their concatenation is PyTorch's `[forward, reverse]` input).

use fused_rnn_kernels::gemm::beside::{Beside, gemm_beside};
use fused_rnn_kernels::sums::{AddRows, add_rows};
use fused_rnn_kernels::{Arch, Float, MatMut, MatRef, Rows, gemm, gemm_prepacked, gemm_stacked};

use arrayvec::ArrayVec;

use super::{DirSpec, DirWeights, mat};
use crate::layout::{Dims, MAX_CHUNKS, bias_sums_width};
use crate::params::LayerParamsMut;

/// One column block of a layer's input: `[T*B][width]` rows, starting at input column `col`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InputBlock<'a, T> {
    pub data: &'a [T],
    pub col: usize,
    pub width: usize,
}

/// `gates = X W_ih^T` over all rows (no bias: the pointwise pass adds it), against `W_ih^T`
/// packed for inference, or packed a slice at a time in training (see [`crate::prepared`]).
pub(crate) fn project_inputs<T: Float>(
    (arch, threads): (Arch, usize),
    s: &DirSpec,
    w: &DirWeights<'_, T>,
    input: &[InputBlock<'_, T>],
    gates: &mut [T],
) {
    let rows = s.steps * s.batch;
    let w_ih = MatRef::row_major(w.w_ih, s.gh(), s.input, s.input);
    for (i, blk) in input.iter().enumerate() {
        let beta = if i == 0 { T::ZERO } else { T::ONE };
        let x = mat(blk.data, rows, blk.width);
        let gates = MatMut::row_major(&mut *gates, rows, s.gh(), s.gh());
        match w.w_ih_t {
            Some(w_ih_t) => gemm_prepacked(
                arch,
                threads,
                x,
                w_ih_t.rows(blk.col, blk.width),
                beta,
                gates,
            ),
            None => {
                let w_t = w_ih.cols_range(blk.col, blk.width).t();
                gemm(arch, threads, x, w_t, beta, gates)
            }
        }
    }
}

/// What a direction's backward left for the products over all rows.
pub(crate) struct DirGrads<'a, T> {
    /// `[T*B][G*H]` gate gradients (the recurrent side for a reset-after GRU).
    pub dg: &'a [T],
    /// `[T*B][H]` the input side of a reset-after GRU's n.
    pub d_an: &'a [T],
    /// `[T*B][P]` dL/dh of a projected LSTM.
    pub dh_all: &'a [T],
    /// The direction's training tape: h `[(T+1)*B][Hout]` and extra `[T*B][H]`.
    pub h: &'a [T],
    pub extra: &'a [T],
    /// `[chunks][`[`bias_sums_width`]`]`: each chunk's column sums of dG (then of `d_an`),
    /// summed by its backward pass (see [`super::backward::BwdScratch::bias_sums`]).
    pub bias_sums: &'a [T],
}

impl<T: Float> DirGrads<'_, T> {
    /// The input side's gate gradients: (all gates but a reset-after GRU's n, then n).
    fn input_side(&self, s: &DirSpec) -> (MatRef<'_, T>, Option<MatRef<'_, T>>) {
        let (rows, gh, h) = (s.steps * s.batch, s.gh(), s.hidden);
        let dg = mat(self.dg, rows, gh);
        match s.cell {
            fused_rnn_kernels::CellKind::Gru { reset_after: true } => {
                (dg.cols_range(0, 2 * h), Some(mat(self.d_an, rows, h)))
            }
            _ => (dg, None),
        }
    }
}

/// Adds this direction's weight and bias gradients into `grads`.
///
/// `dW_ih[:, block] += dG^T X_block`; `dW_hh += sum over chunks of dG_c^T H_prev,c` (the
/// states entering a chunk's steps are contiguous; a reset-before GRU's n block uses `r*h`);
/// `dW_hr += dL/dh^T (o tanh c)`; biases are column sums of the gate gradients.
/// `input: None` leaves `dW_ih` to the caller (token input, see [`super::tokens`]).
pub(crate) fn weight_gradients<T: Float>(
    (arch, threads): (Arch, usize),
    (d, s): (&Dims, &DirSpec),
    input: Option<&[InputBlock<'_, T>]>,
    g: &DirGrads<'_, T>,
    grads: LayerParamsMut<'_, T>,
) {
    let (rows, h, hout, gh) = (s.steps * s.batch, s.hidden, s.hout, s.gh());
    let acc_t = |lhs, rhs, out: &mut [T], ld| acc_t((arch, threads), lhs, rhs, out, ld);
    let (x_side, x_side_n) = g.input_side(s);
    let split = x_side.cols();
    let reset_before = s.cell == (fused_rnn_kernels::CellKind::Gru { reset_after: false });
    let recurrent = if reset_before { 2 * h } else { gh };
    // Where both weights' products multiply the same dG^T (an LSTM or RNN on one block of
    // input), they share each packed block of it (`gemm_beside`). A GRU's sides share only
    // the r and z columns; sharing those (n's rows as products of their own, H_prev then
    // packed twice) measured no faster (gru_h512_b32_t187, 1 and 2 threads, 3 pairs each).
    let shared = match input {
        Some([blk]) if split == recurrent && x_side_n.is_none() => Some(*blk),
        _ => None,
    };
    if let (Some(input), None) = (input, shared) {
        input_weight_gradients((arch, threads), s, input, g, &mut *grads.w_ih);
    }
    let dg = mat(g.dg, rows, gh);
    let positions = s.steps + 1;
    let first = s.entry(0).min(s.entry(s.steps.saturating_sub(1)));
    // Chunk c's states entering steps 0..T: positions first..first+T of its region. The
    // gate gradients' rows are chunk-major too, so dG (all rows) meets the chunks' states
    // stacked: one product, one pass over dW_hh per slice of K rather than per chunk.
    let h_prev: ArrayVec<MatRef<'_, T>, MAX_CHUNKS> = (0..d.chunks)
        .map(|c| {
            let range = d.chunk(c);
            let bc = range.len();
            let at = (positions * range.start + first * bc) * hout;
            mat(&g.h[at..at + s.steps * bc * hout], s.steps * bc, hout)
        })
        .collect();
    let w_hh = MatMut::new(grads.w_hh, recurrent, hout, hout, 1);
    let dg_t = dg.cols_range(0, recurrent).t();
    match shared {
        Some(blk) => {
            let x = [mat(blk.data, rows, blk.width)];
            let w_ih = MatMut::new(&mut grads.w_ih[blk.col..], gh, blk.width, s.input, 1);
            let mut products = [
                Beside { b: &x, c: w_ih },
                Beside {
                    b: &h_prev,
                    c: w_hh,
                },
            ];
            gemm_beside(arch, threads, dg_t, &mut products, T::ONE);
        }
        None => gemm_stacked(arch, threads, dg_t, &h_prev, T::ONE, w_hh),
    }
    if reset_before {
        acc_t(
            dg.cols_range(2 * h, h),
            mat(g.extra, rows, h),
            &mut grads.w_hh[2 * h * h..],
            h,
        );
    }
    if let (Some(dw_hr), true) = (grads.w_hr, s.proj > 0) {
        acc_t(mat(g.dh_all, rows, hout), mat(g.extra, rows, h), dw_hr, h);
    }
    if let (Some(db_ih), Some(db_hh)) = (grads.b_ih, grads.b_hh) {
        // The biases' gradients are the column sums of dG (and d_an): the chunks' sums, added
        // in chunk order. The input side's gates are the first `split` columns of dG: one
        // pass adds them to both biases.
        let width = bias_sums_width(d);
        let sums =
            |from: usize, cols: usize| MatRef::new(&g.bias_sums[from..], d.chunks, cols, width, 1);
        let (db_ih, db_ih_n) = db_ih.split_at_mut(split);
        column_sums(arch, sums(0, gh), db_ih, db_hh);
        if width > gh {
            column_sums(arch, sums(gh, width - gh), db_ih_n, &mut []);
        }
    }
}

/// `out += lhs^T rhs` for a block of `out` (rows of lhs^T, columns of rhs, row stride ld).
fn acc_t<T: Float>(
    (arch, threads): (Arch, usize),
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    out: &mut [T],
    ld: usize,
) {
    let c = MatMut::new(out, lhs.cols(), rhs.cols(), ld, 1);
    gemm(arch, threads, lhs.t(), rhs, T::ONE, c);
}

/// `dW_ih[:, block] += dG^T X_block` for every block of the input (and a reset-after GRU's
/// n rows from its input side), over the `s.steps * s.batch` rows of `g` and `input`.
pub(crate) fn input_weight_gradients<T: Float>(
    threads: (Arch, usize),
    s: &DirSpec,
    input: &[InputBlock<'_, T>],
    g: &DirGrads<'_, T>,
    w_ih: &mut [T],
) {
    let (rows, in_size) = (s.steps * s.batch, s.input);
    let (x_side, x_side_n) = g.input_side(s);
    let split = x_side.cols();
    for blk in input {
        let x = mat(blk.data, rows, blk.width);
        acc_t(threads, x_side, x, &mut w_ih[blk.col..], in_size);
        if let Some(dan) = x_side_n {
            acc_t(
                threads,
                dan,
                x,
                &mut w_ih[split * in_size + blk.col..],
                in_size,
            );
        }
    }
}

/// `dX_block (+)= dG W_ih[:, block]` for every block of this direction's input (`add`: the
/// second direction of a layer adds to the first's).
pub(crate) fn input_gradients<T: Float>(
    (arch, threads): (Arch, usize),
    s: &DirSpec,
    w: &DirWeights<'_, T>,
    g: &DirGrads<'_, T>,
    dx: &mut [&mut [T]],
    add: bool,
) {
    let rows = s.steps * s.batch;
    let (x_side, x_side_n) = g.input_side(s);
    let split = x_side.cols();
    let w_ih = MatRef::row_major(w.w_ih, s.gh(), s.input, s.input);
    // One block for layer 0's input, one per direction of the layer below's.
    let width = s.input / dx.len().max(1);
    for (i, out) in dx.iter_mut().enumerate() {
        let cols = w_ih.cols_range(i * width, width);
        let beta = if add { T::ONE } else { T::ZERO };
        let c = MatMut::row_major(out, rows, width, width);
        gemm(arch, threads, x_side, cols.rows_range(0, split), beta, c);
        if let Some(dan) = x_side_n {
            let c = MatMut::row_major(out, rows, width, width);
            gemm(
                arch,
                threads,
                dan,
                cols.rows_range(split, s.hidden),
                T::ONE,
                c,
            );
        }
    }
}

/// `first += sum over rows of m[.., ..first.len()]` and the same for `all` (either may be the
/// shorter, or empty), each column in row order (a fixed order: deterministic).
fn column_sums<T: Float>(arch: Arch, m: MatRef<'_, T>, first: &mut [T], all: &mut [T]) {
    for acc in [first, all] {
        debug_assert!(acc.len() <= m.cols());
        let rows = Rows::new(m.data(), m.rows(), acc.len(), m.row_stride());
        add_rows(arch, AddRows { acc, rows });
    }
}
