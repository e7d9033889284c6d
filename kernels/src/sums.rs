//! Sums of rows into an accumulator, a register of columns at a time: the bias gradients
//! (each step's gate-gradient rows, a linear layer's output gradients) and the sums of rows
//! by token id. As plain Rust, compiled for baseline x86-64 (SSE2, 4 lanes), the char-rnn's
//! per-step bias sums alone took about 0.4 ms of a 108 ms training step.
//!
//! Each column adds the rows in their order, one rounded addition at a time, as the scalar
//! loop does, so the sums have the bits of their reference ([`crate::reference::sums`]) on
//! every instruction set.

use pulp::{Arch, Simd, WithSimd};

use crate::float::Float;
use crate::view::Rows;

/// Registers of the accumulator held across the rows at a time.
const BLOCK: usize = 8;

/// `acc[j] += rows[0][j]`, then `+= rows[1][j]`, ... for every column `j`.
pub struct AddRows<'a, T> {
    /// The sums, one per column, added to in place.
    pub acc: &'a mut [T],
    /// The rows to add, each as long as `acc`.
    pub rows: Rows<'a, T>,
}

impl<T: Float> WithSimd for AddRows<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let AddRows { acc, rows } = self;
        add_each(s, acc, rows.rows(), |r| rows.row(r));
    }
}

/// `acc[j] += rows.row(order[0])[j]`, then `+= rows.row(order[1])[j]`, ... for every column
/// `j`: [`AddRows`] over a list of the rows, in the list's order (rows may repeat). The sums
/// of rows by token id: each id's rows are read where they lie, its sums held in registers
/// across them, instead of the sums being read and written back for every row.
pub struct AddRowsOf<'a, T> {
    /// The sums, one per column, added to in place.
    pub acc: &'a mut [T],
    /// The rows to pick from, each as long as `acc`.
    pub rows: Rows<'a, T>,
    /// The rows to add, by index into `rows`, in order.
    pub order: &'a [usize],
}

impl<T: Float> WithSimd for AddRowsOf<'_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let AddRowsOf { acc, rows, order } = self;
        add_each(s, acc, order.len(), |i| rows.row(order[i]));
    }
}

/// `acc += row(0)`, then `row(1)`, ... `row(n - 1)`, a block of registers at a time.
#[inline(always)]
fn add_each<'r, S: Simd, T: Float + 'r>(
    s: S,
    acc: &mut [T],
    n: usize,
    row: impl Fn(usize) -> &'r [T],
) {
    let (regs, tail) = T::v_split_mut::<S>(acc);
    let full = regs.len();
    // Whole blocks at a fixed length, so that the held registers stay in registers (a slice
    // copy of a variable length is a call to memcpy, two a block: on Zen 4 one row of 1024
    // f32 took 0.4 us to add, 23 cycles a register).
    let whole = full / BLOCK * BLOCK;
    for k0 in (0..whole).step_by(BLOCK) {
        let block = &mut regs[k0..k0 + BLOCK];
        let mut held: [T::V<S>; BLOCK] = core::array::from_fn(|i| block[i]);
        for r in 0..n {
            let x = &T::v_split::<S>(row(r)).0[k0..k0 + BLOCK];
            for (h, &x) in held.iter_mut().zip(x) {
                *h = T::v_add(s, *h, x);
            }
        }
        block.copy_from_slice(&held);
    }
    let rest = &mut regs[whole..];
    if rest.is_empty() && tail.is_empty() {
        return;
    }
    let mut held = [T::v_splat(s, T::ZERO); BLOCK];
    held[..rest.len()].copy_from_slice(rest);
    for r in 0..n {
        let x = &T::v_split::<S>(row(r)).0[whole..full];
        for (h, &x) in held.iter_mut().zip(x) {
            *h = T::v_add(s, *h, x);
        }
    }
    rest.copy_from_slice(&held[..rest.len()]);
    let start = full * T::lanes::<S>();
    for r in 0..n {
        for (a, &x) in tail.iter_mut().zip(&row(r)[start..]) {
            *a += x;
        }
    }
}

/// Runs an [`AddRows`] on `arch`.
///
/// # Panics
/// If the rows and `acc` differ in length.
#[track_caller]
pub fn add_rows<T: Float>(arch: Arch, op: AddRows<'_, T>) {
    assert!(
        op.rows.rows() == 0 || op.rows.cols() == op.acc.len(),
        "add_rows: rows of {} columns into {} sums",
        op.rows.cols(),
        op.acc.len()
    );
    T::__kernel_add_rows(arch, op);
}

/// Runs an [`AddRowsOf`] on `arch`.
///
/// # Panics
/// If the rows and `acc` differ in length, or an index of `order` is not a row.
#[track_caller]
pub fn add_rows_of<T: Float>(arch: Arch, op: AddRowsOf<'_, T>) {
    assert!(
        op.order.is_empty() || op.rows.cols() == op.acc.len(),
        "add_rows_of: rows of {} columns into {} sums",
        op.rows.cols(),
        op.acc.len()
    );
    if let Some(&r) = op.order.iter().find(|&&r| r >= op.rows.rows()) {
        panic!("add_rows_of: row {r} of {}", op.rows.rows());
    }
    T::__kernel_add_rows_of(arch, op);
}

/// `acc += v`, element by element: [`add_rows`] with one row.
///
/// # Panics
/// If `acc` and `v` differ in length.
#[track_caller]
pub fn add_slice<T: Float>(arch: Arch, acc: &mut [T], v: &[T]) {
    let rows = Rows::contiguous(v, 1, v.len());
    add_rows(arch, AddRows { acc, rows });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::sums as naive;
    use proptest::prelude::*;

    fn bits<T: Float>(v: &[T]) -> Vec<u64> {
        v.iter().map(|x| x.to_f64().to_bits()).collect()
    }

    /// `rows` rows of `cols` at a stride of `cols + pad`, plus the starting sums, added by
    /// [`add_rows`] (`order` none) or by [`add_rows_of`] in `order`.
    fn case<T: Float>(
        values: &[f64],
        (rows, cols, pad): (usize, usize, usize),
        order: Option<&[usize]>,
    ) {
        let at = |i: usize| T::from_f64(values[i % values.len()] * (1.0 + i as f64 / 7.0));
        let stride = cols + pad;
        let data: Vec<T> = (0..rows * stride).map(at).collect();
        let acc0: Vec<T> = (0..cols).map(|j| at(j + 3)).collect();
        let view = Rows::new(&data, rows, cols, stride);
        let mut want = acc0.clone();
        match order {
            None => naive::add_rows(&mut want, view),
            Some(order) => naive::add_rows_of(&mut want, view, order),
        }
        for arch in crate::available_archs() {
            let mut acc = acc0.clone();
            let acc_ref = &mut acc;
            match order {
                None => add_rows(
                    arch,
                    AddRows {
                        acc: acc_ref,
                        rows: view,
                    },
                ),
                Some(order) => add_rows_of(
                    arch,
                    AddRowsOf {
                        acc: acc_ref,
                        rows: view,
                        order,
                    },
                ),
            }
            assert_eq!(bits(&acc), bits(&want), "{arch:?}");
        }
    }

    /// Values of mixed magnitudes for [`case`].
    fn values() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(
            prop_oneof![-1e-6f64..1e-6, -10.0f64..10.0, -1e30f64..1e30],
            1..40,
        )
    }

    proptest! {
        /// The bits of the scalar loop on every instruction set, at every width (1, odd,
        /// non-multiples of the register, several blocks), for 0 to 9 rows of values of
        /// mixed magnitudes and strided rows.
        #[test]
        fn sums_have_the_references_bits(
            values in values(),
            rows in 0usize..10,
            (cols, pad) in (1usize..300, 0usize..3),
        ) {
            case::<f32>(&values, (rows, cols, pad), None);
            case::<f64>(&values, (rows, cols, pad), None);
        }

        /// [`add_rows_of`]: the same, the rows taken in a random order with repeats.
        #[test]
        fn sums_of_listed_rows_have_the_references_bits(
            values in values(),
            rows in 1usize..10,
            (cols, pad) in (1usize..300, 0usize..3),
            picks in prop::collection::vec(0usize..1000, 0..14),
        ) {
            let order: Vec<usize> = picks.iter().map(|p| p % rows).collect();
            case::<f32>(&values, (rows, cols, pad), Some(&order));
            case::<f64>(&values, (rows, cols, pad), Some(&order));
        }
    }

    #[test]
    #[should_panic(expected = "add_rows_of: row 2 of 2")]
    fn a_listed_row_past_the_last_is_refused() {
        let data = [1.0f32; 6];
        let mut acc = [0.0f32; 3];
        let rows = Rows::new(&data, 2, 3, 3);
        let op = AddRowsOf {
            acc: &mut acc,
            rows,
            order: &[0, 2],
        };
        add_rows_of(crate::arch(), op);
    }

    #[test]
    #[should_panic(expected = "add_rows: rows of 3 columns into 2 sums")]
    fn rows_of_another_width_are_refused() {
        let data = [1.0f32; 6];
        let mut acc = [0.0f32; 2];
        let rows = Rows::new(&data, 2, 3, 3);
        add_rows(
            crate::arch(),
            AddRows {
                acc: &mut acc,
                rows,
            },
        );
    }
}
