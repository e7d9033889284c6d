//! The fused pointwise passes, one per cell and direction (oneDNN's "postgemm").
//!
//! Forward, a pass reads a step's gate pre-activations (the input and recurrent products,
//! biases not yet added), applies the gates and writes the new state and what backward needs.
//! Backward, it turns dL/dh (and dL/dc) into the gate gradients that the weight GEMMs use.
//! Every pass is one `WithSimd` struct of checked [`Rows`](crate::Rows) views, run by a safe
//! function that takes the instruction set; its f64 twin with the same arguments lives at the
//! same path under [`crate::reference`].
//!
//! Outputs are flushed to zero below the smallest normal number (see
//! [`crate::lanes::Lanes::flush`]).

pub mod gru;
pub mod lstm;
pub mod rnn;

/// Splits a gate row `[G*H]` into its `G` gate blocks of `H`.
#[inline(always)]
pub(crate) fn split_gates<const G: usize, T>(row: &[T], h: usize) -> [&[T]; G] {
    core::array::from_fn(|k| &row[k * h..(k + 1) * h])
}

/// Splits a mutable gate row `[G*H]` into its `G` gate blocks of `H`.
#[inline(always)]
pub(crate) fn split_gates_mut<const G: usize, T>(row: &mut [T], h: usize) -> [&mut [T]; G] {
    let mut rest = &mut row[..G * h];
    core::array::from_fn(|_| {
        let (head, tail) = core::mem::take(&mut rest).split_at_mut(h);
        rest = tail;
        head
    })
}

/// Asserts that a view has `rows` rows of `cols` (kernel argument checks).
#[track_caller]
pub(crate) fn check_shape(name: &str, rows: usize, cols: usize, want_rows: usize, want: usize) {
    assert!(
        rows == want_rows && cols == want,
        "{name}: {rows}x{cols}, expected {want_rows}x{want}"
    );
}
