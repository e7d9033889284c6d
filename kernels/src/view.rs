//! Checked views of rows in a flat buffer: [`Rows`] and [`RowsMut`].
//!
//! A view is `rows` rows of `cols` elements, row `r` starting at `r * stride`. The bounds are
//! checked once when the view is made, so kernels index rows without re-checking layouts, and
//! the same kernel serves time-major, batch-major and strided (bidirectional) buffers.

/// Read-only rows of a buffer (see the module docs).
#[derive(Debug)]
pub struct Rows<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<T> Clone for Rows<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Rows<'_, T> {}

/// Whether `rows` rows of `cols` elements at `stride` fit in `len` elements.
fn fits(len: usize, rows: usize, cols: usize, stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    (rows - 1)
        .checked_mul(stride)
        .and_then(|x| x.checked_add(cols))
        .is_some_and(|end| end <= len)
}

impl<'a, T> Rows<'a, T> {
    /// Rows `r * stride .. r * stride + cols` of `data` for `r < rows`.
    ///
    /// # Panics
    /// If the last row ends past `data`.
    #[track_caller]
    pub fn new(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, stride),
            "Rows::new: {rows} rows of {cols} at stride {stride} exceed {} elements",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            stride,
        }
    }
    /// Rows packed back to back (`stride == cols`).
    ///
    /// # Panics
    /// If `data` is shorter than `rows * cols`.
    #[track_caller]
    pub fn contiguous(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols)
    }
    /// Row `r`.
    ///
    /// # Panics
    /// If `r >= rows`.
    #[inline]
    #[track_caller]
    pub fn row(&self, r: usize) -> &'a [T] {
        assert!(r < self.rows, "Rows::row: row {r} of {}", self.rows);
        let start = r * self.stride;
        &self.data[start..start + self.cols]
    }
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// The number of elements in a row.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The distance between row starts.
    pub fn stride(&self) -> usize {
        self.stride
    }
}

/// Mutable rows of a buffer (see the module docs). Rows never overlap: `stride >= cols`
/// whenever there is more than one row.
#[derive(Debug)]
pub struct RowsMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T> RowsMut<'a, T> {
    /// Rows `r * stride .. r * stride + cols` of `data` for `r < rows`.
    ///
    /// # Panics
    /// If the last row ends past `data`, or rows would overlap.
    #[track_caller]
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, stride),
            "RowsMut::new: {rows} rows of {cols} at stride {stride} exceed {} elements",
            data.len()
        );
        assert!(rows <= 1 || stride >= cols, "RowsMut::new: rows overlap");
        Self {
            data,
            rows,
            cols,
            stride,
        }
    }
    /// Rows packed back to back (`stride == cols`).
    ///
    /// # Panics
    /// If `data` is shorter than `rows * cols`.
    #[track_caller]
    pub fn contiguous(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols)
    }
    /// Row `r`.
    ///
    /// # Panics
    /// If `r >= rows`.
    #[inline]
    #[track_caller]
    pub fn row_mut(&mut self, r: usize) -> &mut [T] {
        assert!(r < self.rows, "RowsMut::row_mut: row {r} of {}", self.rows);
        let start = r * self.stride;
        &mut self.data[start..start + self.cols]
    }
    /// Row `r`, read-only.
    ///
    /// # Panics
    /// If `r >= rows`.
    #[inline]
    #[track_caller]
    pub fn row(&self, r: usize) -> &[T] {
        assert!(r < self.rows, "RowsMut::row: row {r} of {}", self.rows);
        let start = r * self.stride;
        &self.data[start..start + self.cols]
    }
    /// A read-only view of the same rows.
    pub fn as_rows(&self) -> Rows<'_, T> {
        Rows {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            stride: self.stride,
        }
    }
    /// A shorter-lived mutable view of the same rows.
    pub fn reborrow(&mut self) -> RowsMut<'_, T> {
        RowsMut {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            stride: self.stride,
        }
    }
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// The number of elements in a row.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The distance between row starts.
    pub fn stride(&self) -> usize {
        self.stride
    }
}
