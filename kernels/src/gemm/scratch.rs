//! Per-thread packing buffers for the products whose callers give no scratch: the blocks of
//! A and the slices of B that [`super::gemm`] and [`super::gemm_prepacked`] pack.
//!
//! Each thread keeps one buffer per slot and element type, grown on first use and reused
//! after, so a training loop allocates nothing once its threads have run one product each
//! (at most `MC x KC` for A, a slice of [`super::slice_k`] rows of B). A call that finds its
//! slot taken, which happens when a thread waiting inside a product steals another
//! product's task from rayon, packs into a temporary buffer instead.

use crate::aligned::AlignedBuf;
use crate::float::Float;

/// Which buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    /// Blocks of A (one per part of a row split).
    A = 0,
    /// Slices of B (shared by the parts, packed by the calling thread).
    B = 1,
    /// The columns of C that a column split's later parts compute (see
    /// [`super::split::for_col_parts`]).
    C = 2,
}

/// Runs `f` on `len` elements of this thread's `slot` buffer (contents unspecified).
pub(crate) fn with_scratch<T: Float, R>(
    slot: Slot,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    T::scratch_slots().with(|slots| match slots[slot as usize].try_borrow_mut() {
        Ok(mut buf) => {
            buf.resize(len);
            f(buf.as_mut_slice())
        }
        Err(_) => {
            let mut own = AlignedBuf::new();
            own.resize(len);
            f(own.as_mut_slice())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_use_of_a_slot_gets_its_own_buffer() {
        with_scratch::<f32, _>(Slot::A, 4, |outer| {
            outer.fill(1.0);
            with_scratch::<f32, _>(Slot::A, 4, |inner| inner.fill(2.0));
            assert_eq!(outer, &[1.0; 4]);
        });
    }
}
