//! The sums of [`crate::sums`], one element at a time.

use crate::float::Float;
use crate::view::Rows;

/// `acc += each row`, row by row (see [`crate::sums::AddRows`]).
pub fn add_rows<T: Float>(acc: &mut [T], rows: Rows<'_, T>) {
    for r in 0..rows.rows() {
        for (a, &x) in acc.iter_mut().zip(rows.row(r)) {
            *a += x;
        }
    }
}

/// `acc += rows.row(i)` for each `i` of `order`, in order (see [`crate::sums::AddRowsOf`]).
pub fn add_rows_of<T: Float>(acc: &mut [T], rows: Rows<'_, T>, order: &[usize]) {
    for &r in order {
        for (a, &x) in acc.iter_mut().zip(rows.row(r)) {
            *a += x;
        }
    }
}
