//! A growable buffer whose elements start on a cache line.
//!
//! The microkernels load the packed weights a full register (64 bytes with AVX-512) at a
//! time. A `Vec` of f32 starts wherever the allocator puts it (16 bytes past a page for a
//! large one), and then every such load straddles two cache lines. Measured on Ice Lake
//! (1 thread, criterion, three alternating pairs): the step product `16 x 512 x 2048` 63-73
//! GFLOP/s with the packed weight 16 bytes past a line against 85-101 with it on a line, the
//! input projection `400 x 512 x 2048` 80-86 against 92-101. (Measured only there: the Zen 4
//! the kernels were first tuned on ran without it, and its gain there is not measured.)
//!
//! A buffer of [`huge_pages::MIN_BYTES`] or more is allocated afresh and advised onto huge
//! pages before it is written, and collapsed onto them after (see [`huge_pages`]): the packed
//! weights a step streams from L3 then cost no TLB misses.

use crate::huge_pages;

/// The alignment, in bytes, of an [`AlignedBuf`]'s first element: one cache line.
pub const ALIGN_BYTES: usize = 64;

/// A buffer of `T` whose visible elements start at a multiple of [`ALIGN_BYTES`]: a `Vec`
/// with a cache line of slack, viewed from its first aligned element.
///
/// ```
/// use fused_rnn_kernels::aligned::{ALIGN_BYTES, AlignedBuf};
///
/// let mut buf = AlignedBuf::<f32>::new();
/// buf.resize(1000);
/// assert_eq!(buf.as_slice().len(), 1000);
/// assert_eq!(buf.as_slice().as_ptr() as usize % ALIGN_BYTES, 0);
/// ```
#[derive(Debug, Default)]
pub struct AlignedBuf<T> {
    data: Vec<T>,
    len: usize,
}

/// A clone holds the same elements (a derived clone would copy the storage to an address
/// that can need another offset, and the elements would shift).
impl<T: Clone> Clone for AlignedBuf<T> {
    fn clone(&self) -> Self {
        let mut data = storage(self.data.len());
        data.extend_from_slice(&self.data);
        realign(&mut data, offset(&self.data));
        if data.len().saturating_mul(core::mem::size_of::<T>()) >= huge_pages::MIN_BYTES {
            huge_pages::collapse(&mut data);
        }
        AlignedBuf {
            data,
            len: self.len,
        }
    }
}

impl<T> AlignedBuf<T> {
    /// An empty buffer (allocates nothing).
    pub const fn new() -> Self {
        AlignedBuf {
            data: Vec::new(),
            len: 0,
        }
    }

    /// Its length in elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements, from the first cache-line boundary of the storage.
    pub fn as_slice(&self) -> &[T] {
        let at = offset(&self.data);
        &self.data[at..at + self.len]
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let at = offset(&self.data);
        &mut self.data[at..at + self.len]
    }
}

impl<T: Clone + Default> AlignedBuf<T> {
    /// Makes the buffer `len` elements long, keeping the first `min(len, old len)` elements
    /// (those past them are unspecified). The allocation only grows, so once it has held its
    /// largest length, resizing allocates nothing.
    pub fn resize(&mut self, len: usize) {
        let need = len + slack::<T>();
        if self.data.len() < need {
            let was = offset(&self.data);
            if self.data.capacity() == 0 {
                // A first allocation: advised before it is touched. (A larger one reallocates
                // in place of the old, as a `Vec` does, and is collapsed below: a fresh copy
                // beside the old one would raise the peak memory by the old size.)
                self.data = storage(need);
            }
            self.data.resize(need, T::default());
            realign(&mut self.data, was);
            if need.saturating_mul(core::mem::size_of::<T>()) >= huge_pages::MIN_BYTES {
                huge_pages::collapse(&mut self.data);
            }
        }
        self.len = len;
    }
}

/// An empty vector with room for `capacity` elements, on huge pages where it is large
/// enough for them (see [`huge_pages`]).
fn storage<T>(capacity: usize) -> Vec<T> {
    let mut data = Vec::with_capacity(capacity);
    if capacity.saturating_mul(core::mem::size_of::<T>()) >= huge_pages::MIN_BYTES {
        huge_pages::advise(data.spare_capacity_mut());
    }
    data
}

/// Moves the elements that started at offset `was` of `data` (before it moved) to its
/// current aligned offset.
fn realign<T>(data: &mut [T], was: usize) {
    let now = offset(data);
    if now > was {
        data.rotate_right(now - was);
    } else {
        data.rotate_left(was - now);
    }
}

/// Elements of slack that let any start be moved to a cache-line boundary.
fn slack<T>() -> usize {
    ALIGN_BYTES / core::mem::size_of::<T>().max(1)
}

/// Elements from the start of `data` to its first aligned element (0 if there is none: an
/// empty buffer, or a platform where `align_offset` declines, which only costs speed).
fn offset<T>(data: &[T]) -> usize {
    match data.as_ptr().align_offset(ALIGN_BYTES) {
        at if at <= slack::<T>() && at <= data.len() => at,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes 0, 1, 2, ... into `xs`.
    fn count_up<T: From<u8>>(xs: &mut [T]) {
        for (i, x) in xs.iter_mut().enumerate() {
            *x = T::from(i as u8);
        }
    }

    #[test]
    fn starts_on_a_cache_line_at_every_length() {
        let mut buf = AlignedBuf::<f32>::new();
        assert!(buf.as_slice().is_empty());
        for len in [1, 3, 16, 17, 1000, 5, 100_000, 7] {
            buf.resize(len);
            assert_eq!(buf.as_slice().len(), len);
            assert_eq!(buf.as_mut_slice().as_ptr() as usize % ALIGN_BYTES, 0);
        }
        let mut wide = AlignedBuf::<f64>::new();
        wide.resize(33);
        assert_eq!(wide.as_slice().as_ptr() as usize % ALIGN_BYTES, 0);
    }

    #[test]
    fn a_clone_holds_the_same_values_on_a_cache_line() {
        let mut buf = AlignedBuf::<f32>::new();
        buf.resize(37);
        count_up(buf.as_mut_slice());
        // Clones land at various addresses; each must show the values from index 0.
        for _ in 0..8 {
            let copy = buf.clone();
            assert_eq!(copy.as_slice(), buf.as_slice());
            assert_eq!(copy.as_slice().as_ptr() as usize % ALIGN_BYTES, 0);
        }
    }

    #[test]
    fn keeps_its_values_when_it_shrinks_or_grows() {
        let mut buf = AlignedBuf::<f64>::new();
        buf.resize(10);
        count_up(buf.as_mut_slice());
        buf.resize(8);
        assert_eq!(buf.as_slice(), &[0., 1., 2., 3., 4., 5., 6., 7.]);
        // Growing reallocates (usually to another offset from a cache line).
        for len in [1000, 100_000, 1 << 20] {
            buf.resize(len);
            assert_eq!(&buf.as_slice()[..8], &[0., 1., 2., 3., 4., 5., 6., 7.]);
            assert_eq!(buf.as_slice().as_ptr() as usize % ALIGN_BYTES, 0);
        }
    }

    /// Past [`huge_pages::MIN_BYTES`] growing and cloning take the huge-page storage path:
    /// the same values, on a cache line.
    #[test]
    fn a_buffer_on_huge_pages_keeps_its_values() {
        let mut buf = AlignedBuf::<f32>::new();
        buf.resize(1000);
        count_up(buf.as_mut_slice());
        let large = 3 * huge_pages::MIN_BYTES / core::mem::size_of::<f32>() + 5;
        buf.resize(large);
        assert_eq!(&buf.as_slice()[..4], &[0., 1., 2., 3.]);
        assert_eq!(buf.as_slice().as_ptr() as usize % ALIGN_BYTES, 0);
        buf.as_mut_slice()[large - 1] = 7.0;
        let copy = buf.clone();
        assert_eq!(copy.as_slice(), buf.as_slice());
        assert_eq!(copy.as_slice().as_ptr() as usize % ALIGN_BYTES, 0);
    }
}
