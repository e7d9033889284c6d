//! A matrix whose rows lie in separate blocks of memory, stacked one under the other: the
//! B of [`super::gemm_stacked`]. A training tape keeps each batch chunk's states in a region
//! of its own, so a weight gradient's `H_prev` over all chunks is such a stack; one product
//! over the stack makes one pass over C per slice of K instead of one per chunk.

use super::MatRef;

/// Rows `k0..k0 + k` and columns `c0..c0 + n` of the blocks of rows in `blocks`, stacked in
/// order (block 0's rows first). Every block has the same number of columns.
#[derive(Debug)]
pub(crate) struct StackedRows<'b, 'a, T> {
    blocks: &'b [MatRef<'a, T>],
    k0: usize,
    k: usize,
    c0: usize,
    n: usize,
}

impl<T> Clone for StackedRows<'_, '_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for StackedRows<'_, '_, T> {}

impl<'b, 'a, T> StackedRows<'b, 'a, T> {
    /// The whole stack of `blocks` (no blocks: `0 x n`, `n` being 0 too).
    ///
    /// # Panics
    /// If the blocks' column counts differ.
    #[track_caller]
    pub(crate) fn new(blocks: &'b [MatRef<'a, T>]) -> Self {
        let n = blocks.first().map_or(0, |b| b.cols());
        assert!(
            blocks.iter().all(|b| b.cols() == n),
            "stacked rows: blocks of different widths"
        );
        let k = blocks.iter().map(|b| b.rows()).sum();
        StackedRows {
            blocks,
            k0: 0,
            k,
            c0: 0,
            n,
        }
    }

    /// Rows in the view.
    pub(crate) fn rows(&self) -> usize {
        self.k
    }

    /// Columns in the view.
    pub(crate) fn cols(&self) -> usize {
        self.n
    }

    /// Rows `start..start + len` of the view.
    pub(crate) fn rows_range(self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.k, "stacked rows: rows out of range");
        StackedRows {
            k0: self.k0 + start,
            k: len,
            ..self
        }
    }

    /// Columns `start..start + len` of the view.
    pub(crate) fn cols_range(self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.n, "stacked rows: columns out of range");
        StackedRows {
            c0: self.c0 + start,
            n: len,
            ..self
        }
    }

    /// The part of each block inside the view, in order, with the row of the view where it
    /// starts. Blocks wholly outside the view are skipped.
    pub(crate) fn pieces(self) -> impl Iterator<Item = (usize, MatRef<'a, T>)> + 'b {
        let (lo, hi) = (self.k0, self.k0 + self.k);
        let (c0, n) = (self.c0, self.n);
        self.blocks
            .iter()
            .scan(0, |start, b| {
                let at = *start;
                *start += b.rows();
                Some((at, *b))
            })
            .filter_map(move |(at, b)| {
                let (from, to) = (lo.max(at), hi.min(at + b.rows()));
                (from < to).then(|| {
                    (
                        from - lo,
                        b.rows_range(from - at, to - from).cols_range(c0, n),
                    )
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view's pieces cover its rows once, in order, each from the block that holds it.
    #[test]
    fn pieces_cover_the_view_in_order() {
        let (a, b, c) = ([1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11, 12]);
        let blocks = [
            MatRef::row_major(&a[..], 3, 2, 2),
            MatRef::row_major(&b[..], 1, 2, 2),
            MatRef::row_major(&c[..], 2, 2, 2),
        ];
        let all = StackedRows::new(&blocks);
        assert_eq!((all.rows(), all.cols()), (6, 2));
        let view = all.rows_range(2, 3).cols_range(1, 1);
        let got: Vec<(usize, Vec<i32>)> = view
            .pieces()
            .map(|(at, m)| (at, (0..m.rows()).map(|i| *m.at(i, 0)).collect()))
            .collect();
        assert_eq!(got, vec![(0, vec![6]), (1, vec![8]), (2, vec![10])]);
        assert_eq!(all.rows_range(4, 0).pieces().count(), 0);
    }

    #[test]
    #[should_panic(expected = "different widths")]
    fn blocks_of_different_widths_are_refused() {
        let (a, b) = ([0.0f32; 4], [0.0f32; 3]);
        let blocks = [
            MatRef::row_major(&a[..], 2, 2, 2),
            MatRef::row_major(&b[..], 1, 3, 3),
        ];
        let _ = StackedRows::new(&blocks);
    }
}
