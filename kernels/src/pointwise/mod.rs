//! The fused pointwise passes, one per cell and direction (oneDNN's "postgemm").
//!
//! Forward, a pass reads a step's gate pre-activations (the input and recurrent products,
//! biases not yet added), applies the gates and writes the new state and what backward needs.
//! Backward, it turns dL/dh (and dL/dc) into the gate gradients that the weight GEMMs use.
//! Every pass is one struct of checked [`Rows`](crate::Rows) views, run by a safe function
//! that takes the instruction set (the forward passes also on a range of hidden units, for
//! the fused step); its f64 twin with the same arguments lives at the same path under
//! [`crate::reference`].
//!
//! Outputs are flushed to zero below the smallest normal number (see
//! [`crate::lanes::Lanes::flush`]).

pub mod gru;
pub mod lstm;
pub mod rnn;

use core::ops::Range;

use pulp::{Arch, Simd, WithSimd};

/// A forward pass that can run on a range of hidden units alone: the fused step runs it on
/// each column block of the recurrent product right after the block is computed, while the
/// block is still in cache (see `*_fwd_pointwise_units`).
pub(crate) trait UnitPass {
    /// Hidden units of the pass (H).
    fn hidden(&self) -> usize;
    /// Runs the pass on units `units` of every row (checked by the caller).
    fn run_units<S: Simd>(self, s: S, units: Range<usize>);
    /// Runs `units` on `arch` through its body compiled in this crate (`crate::instances`).
    fn dispatch(arch: Arch, units: Units<Self>)
    where
        Self: Sized;
}

/// A pass on a range of hidden units, dispatched as one SIMD call.
pub(crate) struct Units<P> {
    pass: P,
    units: Range<usize>,
}

impl<P: UnitPass> WithSimd for Units<P> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        self.pass.run_units(s, self.units)
    }
}

/// Runs a forward pass on hidden units `units`, or on all of them, after checking its views
/// and the range (the body of every `*_fwd_pointwise` and `*_fwd_pointwise_units`).
#[track_caller]
pub(crate) fn run_on_units<P: UnitPass>(
    arch: Arch,
    name: &str,
    pass: P,
    units: Option<Range<usize>>,
) {
    let h = pass.hidden();
    let units = units.unwrap_or(0..h);
    assert!(
        units.start <= units.end && units.end <= h,
        "{name}: units {units:?} outside 0..{h}"
    );
    P::dispatch(arch, Units { pass, units })
}

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

#[cfg(test)]
mod units_tests;
