//! How work is cut and run: tasks over directions and batch chunks, and the per-step product
//! that small batches split by columns.
//!
//! Every cut that could change a result depends only on the shapes (see [`crate::layout`]);
//! the column split of a small batch's step product also depends on the threads (none on
//! one thread), but computes every column exactly as the whole product does, so results are
//! bitwise the same for any thread count.

use rayon::prelude::*;

use arrayvec::ArrayVec;

use crate::config::Parallelism;
use crate::layout::{Dims, MAX_TASKS, chunk_range, splits_columns};
use fused_rnn_kernels::gemm::packed::{PackedRef, gemm_packed, panel_width};
use fused_rnn_kernels::gemm::transpose_into;
use fused_rnn_kernels::{Arch, Float, MatMut, MatRef};

/// Runs `f` on every task, on the current rayon pool or in order. Tasks are taken out of a
/// slice (rayon splits slices with `join`, which allocates nothing).
pub(crate) fn run_tasks<X: Send>(
    par: Parallelism,
    tasks: &mut [Option<X>],
    f: impl Fn(X) + Sync + Send,
) {
    let run = |slot: &mut Option<X>| {
        if let Some(task) = slot.take() {
            f(task);
        }
    };
    match par {
        Parallelism::Sequential => tasks.iter_mut().for_each(run),
        Parallelism::Rayon => tasks.par_iter_mut().with_max_len(1).for_each(run),
    }
}

/// The most sequences a lockstep group aims for: at 64 rows a step product does 32 FLOPs per
/// byte of `W_hh`, enough that L3 keeps up, while the group's rows of A (up to 200 KiB
/// packed) stay in L2 as every slice of `W_hh` meets them.
pub(crate) const LOCKSTEP_ROWS: usize = 64;

/// The most rows a chunk may have to step in lockstep: beyond it a chunk's own product
/// reuses `W_hh` enough (and [`gemm_packed_group`](fused_rnn_kernels::gemm::packed::group)
/// takes parts of at most 240 rows).
pub(crate) const LOCKSTEP_CHUNK_ROWS: usize = 32;

/// Groups per direction for `threads` threads: as many as the threads a direction gets (one
/// on one thread), more when the batch passes [`LOCKSTEP_ROWS`] per group, never more than
/// the chunks.
pub(crate) fn groups_per_dir(threads: usize, d: &Dims) -> usize {
    let by_threads = threads.div_ceil(d.dirs);
    let by_rows = d.batch.div_ceil(LOCKSTEP_ROWS);
    by_threads.max(by_rows).clamp(1, d.chunks.max(1))
}

/// Cuts the tasks of a layer (`dirs` runs of `d.chunks` chunk tasks, direction by direction)
/// into [`groups_per_dir`] groups of consecutive chunks of one direction, each run as one
/// task, its chunks in lockstep (see [`super::forward_lockstep`]): a chunk's step product
/// alone streams all of `W_hh` for a few rows, a group's streams it once for all their
/// rows. Grouping only changes the order of independent work, never a result.
pub(crate) fn lockstep_groups<'t, X>(
    tasks: &'t mut [Option<X>],
    d: &Dims,
    par: Parallelism,
) -> ArrayVec<Option<&'t mut [Option<X>]>, MAX_TASKS> {
    let per_dir = groups_per_dir(pool_threads(par), d);
    let mut groups = ArrayVec::new();
    let mut rest = tasks;
    while !rest.is_empty() {
        let len = d.chunks.min(rest.len());
        let (dir, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        let mut dir_rest = dir;
        for g in 0..per_dir {
            let len = chunk_range(d.chunks, per_dir, g).len();
            let (group, tail) = std::mem::take(&mut dir_rest).split_at_mut(len);
            dir_rest = tail;
            groups.push(Some(group));
        }
    }
    groups
}

/// Threads for a large product: the whole current pool, or this thread.
pub(crate) fn gemm_threads(par: Parallelism) -> usize {
    match par {
        Parallelism::Sequential => 1,
        Parallelism::Rayon => 0,
    }
}

/// The fewest values a memory-bound pass outside the time loops (the token gather) splits
/// over the pool for: below, waking the other threads costs more than their share saves
/// (measured on Zen 4: the bias sums of `[3200, 512]`, a pass of this kind before they
/// moved into the backward steps, slower on 2 threads than on one).
pub(crate) const PAR_PASS_ELEMS: usize = 1 << 21;

/// Threads for such a pass over `elems` values: the pool's (`threads` 0) when the pass is
/// large enough, else one.
pub(crate) fn pass_threads(threads: usize, elems: usize) -> usize {
    if threads == 0 && elems >= PAR_PASS_ELEMS {
        rayon::current_num_threads()
    } else {
        1
    }
}

/// Threads that can share a step's product: the pool's, or one when sequential.
pub(crate) fn pool_threads(par: Parallelism) -> usize {
    match par {
        Parallelism::Sequential => 1,
        Parallelism::Rayon => rayon::current_num_threads(),
    }
}

/// Scratch of a step product: `gemm_packed`'s for A (or A's transpose when split), and the
/// staging of a split product's column ranges (`rows * n`).
#[derive(Debug)]
pub(crate) struct StepScratch<'a, T> {
    pub a: &'a mut [T],
    pub staging: &'a mut [T],
}

/// `C <- A W + beta C` for one step (`beta` is 0 or 1; C is `[rows][n]`, packed rows).
///
/// A batch chunk of 8 or more rows is one product. Fewer rows (a small batch, where the
/// chunks cannot split the work) are split into ranges of panels of W, each computed in its
/// own part of `staging` (on the pool's threads when parallel) and then copied into C. With
/// `beta` 1 a part starts from a copy of its columns of C, so that it adds the product's
/// K blocks onto C in the order the whole product does. Each column range is computed with
/// the same arithmetic as in the whole product, so whether to split (by the shape, and
/// never on one thread, where splitting only costs) does not change a bit of the result.
pub(crate) fn step_product<T: Float>(
    run: (Arch, Parallelism),
    a: MatRef<'_, T>,
    w: PackedRef<'_, T>,
    beta: T,
    c: &mut [T],
    scratch: &mut StepScratch<'_, T>,
) {
    step_product_walk(run, (a, w, false), beta, c, scratch);
}

/// Few rows (at most this many) against a `W` of at most [`BACKWARDS_WALK_BYTES`] take
/// every other step's product in ranges of [`BACKWARDS_WALK_PANELS`] panels, last range
/// first ([`step_product_walk`]).
const BACKWARDS_WALK_ROWS: usize = 4;

/// The largest packed `W` walked backwards every other step: one that a core's L2 (1-2 MiB)
/// could hold much of. A larger one streams from L3 either way; one of less than an eighth
/// of this stays in L2 either way.
const BACKWARDS_WALK_BYTES: usize = 2 << 20;

/// Panels per range of a backwards walk (128 KiB of `W` at H = 256 in f32).
const BACKWARDS_WALK_PANELS: usize = 4;

/// [`step_product`], with `backwards` asking every other step (the caller alternates it) to
/// walk `W` from its end when few rows stream it whole: a step then starts with what the
/// step before read last, the part of `W` still in L2. Walking the same way every step,
/// the oldest lines of a `W` about the size of L2 are always the next ones read, and all
/// of it streams from L3. Each column's arithmetic is the same either way (a column's bits
/// do not depend on the range it is computed in), so the direction changes no result.
/// Measured on Zen 4 (AVX-512, 1 thread), `[1, 256] x [256, 1024]` repeated: 13.2 us a
/// product walking forwards, 12.0 alternating in ranges of 4 panels (8: 12.1, 16: 12.4, 32:
/// 14.1); `[1, 512] x [512, 2048]` (4 MiB) 49.6 and 50.2.
pub(crate) fn step_product_walk<T: Float>(
    (arch, par): (Arch, Parallelism),
    (a, w, backwards): (MatRef<'_, T>, PackedRef<'_, T>, bool),
    beta: T,
    c: &mut [T],
    scratch: &mut StepScratch<'_, T>,
) {
    let (rows, n) = (a.rows(), w.n());
    let panels = w.panel_count();
    let w_bytes = w.k() * n * core::mem::size_of::<T>();
    if backwards
        && rows <= BACKWARDS_WALK_ROWS
        && panels > BACKWARDS_WALK_PANELS
        && (BACKWARDS_WALK_BYTES / 8..=BACKWARDS_WALK_BYTES).contains(&w_bytes)
        && !splits_step(rows, w, par)
    {
        let nr = panel_width::<T>();
        for p0 in (0..panels).step_by(BACKWARDS_WALK_PANELS).rev() {
            let range = w.panels(p0..(p0 + BACKWARDS_WALK_PANELS).min(panels));
            let col0 = p0 * nr;
            let c = MatMut::new(&mut c[col0..], rows, range.n(), n, 1);
            gemm_packed(arch, a, range, beta, c, scratch.a);
        }
        return;
    }
    if !splits_step(rows, w, par) {
        gemm_packed(
            arch,
            a,
            w,
            beta,
            MatMut::row_major(c, rows, n, n),
            scratch.a,
        );
        return;
    }
    let a_cm = columns_view(a, scratch.a);
    let per = panels.div_ceil(16);
    let block = rows * per * panel_width::<T>();
    let staging = &mut scratch.staging[..rows * n];
    let c_in: &[T] = c;
    let range = |(i, out): (usize, &mut [T])| {
        if beta != T::ZERO {
            part_of(c_in, (rows, n), i * per * panel_width::<T>(), out);
        }
        part_product(arch, a_cm, w, (per, i), beta, out)
    };
    match par {
        Parallelism::Sequential => staging.chunks_mut(block).enumerate().for_each(range),
        Parallelism::Rayon => staging.par_chunks_mut(block).enumerate().for_each(range),
    }
    gather_parts(staging.chunks(block), (rows, n), c);
}

/// Whether a step product of `rows` rows against `w` is split into column ranges shared by
/// the pool's threads (see [`step_product`]).
pub(crate) fn splits_step<T: Float>(rows: usize, w: PackedRef<'_, T>, par: Parallelism) -> bool {
    splits_columns(rows, w.k(), w.n()) && w.panel_count() >= 2 && pool_threads(par) > 1
}

/// A as the column ranges of a split product read it: column by column, so a single row
/// as it is, more rows transposed once into `buf`.
pub(crate) fn columns_view<'a, T: Float>(a: MatRef<'a, T>, buf: &'a mut [T]) -> MatRef<'a, T> {
    let (rows, k) = (a.rows(), a.cols());
    if rows == 1 {
        return a;
    }
    let t = &mut buf[..rows * k];
    transpose_into(a, t, rows);
    MatRef::new(&*t, rows, k, 1, rows)
}

/// Part `i` of a split product (panels `i * per..` of W) into `out`, `[rows][cols]`:
/// `out <- A W_part + beta out`.
pub(crate) fn part_product<T: Float>(
    arch: Arch,
    a_cm: MatRef<'_, T>,
    w: PackedRef<'_, T>,
    (per, i): (usize, usize),
    beta: T,
    out: &mut [T],
) {
    let part = w.panels(i * per..((i + 1) * per).min(w.panel_count()));
    let (rows, cols) = (a_cm.rows(), part.n());
    gemm_packed(
        arch,
        a_cm,
        part,
        beta,
        MatMut::row_major(&mut out[..rows * cols], rows, cols, cols),
        &mut [],
    );
}

/// Copies the columns `col0..` of C (`[rows][n]`) that a part (`[rows][cols]`) covers into it.
pub(crate) fn part_of<T: Float>(c: &[T], (rows, n): (usize, usize), col0: usize, part: &mut [T]) {
    let cols = part.len() / rows;
    for (r, dst) in part.chunks_exact_mut(cols).enumerate() {
        dst.copy_from_slice(&c[r * n + col0..][..cols]);
    }
}

/// Copies the parts of a split product, in column order, each `[rows][cols]`, into C
/// (`[rows][n]`).
pub(crate) fn gather_parts<'p, T: Float>(
    parts: impl Iterator<Item = &'p [T]>,
    (rows, n): (usize, usize),
    c: &mut [T],
) {
    let mut col0 = 0;
    for part in parts {
        let cols = part.len() / rows;
        for (r, src) in part.chunks_exact(cols).enumerate() {
            c[r * n + col0..][..cols].copy_from_slice(src);
        }
        col0 += cols;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, SeqShape};

    fn dims(batch: usize, bidirectional: bool) -> Dims {
        let config = Config::lstm(4, 4).with_bidirectional(bidirectional);
        Dims::new(&config, SeqShape::new(3, batch))
    }

    /// Sizes of the groups `lockstep_groups` cuts, direction by direction.
    fn group_sizes(batch: usize, bidirectional: bool, threads: usize) -> Vec<usize> {
        let d = dims(batch, bidirectional);
        let mut tasks: Vec<Option<usize>> = (0..d.dirs * d.chunks).map(Some).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            lockstep_groups(&mut tasks, &d, Parallelism::Rayon)
                .iter()
                .map(|g| g.as_ref().map_or(0, |g| g.len()))
                .collect()
        })
    }

    #[test]
    fn groups_follow_threads_and_rows() {
        // One thread: every chunk of a direction in one group, up to 64 sequences.
        assert_eq!(group_sizes(64, false, 1), [8]);
        assert_eq!(group_sizes(40, true, 1), [5, 5]);
        // Two threads, one direction: a group each; two directions: a group per direction.
        assert_eq!(group_sizes(32, false, 2), [2, 2]);
        assert_eq!(group_sizes(40, false, 2), [2, 3]);
        assert_eq!(group_sizes(32, true, 2), [4, 4]);
        // More threads than chunks: one chunk each.
        assert_eq!(group_sizes(16, false, 4), [1, 1]);
        // Past 64 sequences per group, more groups (128 sequences, 16 chunks: two of 8).
        assert_eq!(group_sizes(128, false, 1), [8, 8]);
        // A batch of one chunk.
        assert_eq!(group_sizes(5, false, 2), [1]);
    }

    #[test]
    fn sequential_is_one_group_per_direction() {
        let d = dims(48, true);
        let mut tasks: Vec<Option<usize>> = (0..d.dirs * d.chunks).map(Some).collect();
        let groups = lockstep_groups(&mut tasks, &d, Parallelism::Sequential);
        let sizes: Vec<usize> = groups.iter().map(|g| g.as_ref().unwrap().len()).collect();
        assert_eq!(sizes, [6, 6]);
    }

    /// A backwards walk (ranges of panels, last first) gives the bits of the forward one:
    /// 1 to 4 rows, a last panel cut short, beta 0 and 1, f32 and f64.
    #[test]
    fn a_backwards_walk_keeps_the_bits() {
        use fused_rnn_kernels::gemm::packed::{a_scratch_len, pack, packed_len};
        fn case<T: Float>(rows: usize, k: usize, n: usize, beta: T) {
            let value = |i: usize| T::from_f64(((i * 7919) % 1000) as f64 / 500.0 - 1.0);
            let w: Vec<T> = (0..k * n).map(value).collect();
            let a: Vec<T> = (0..rows * k).map(|i| value(i + 3)).collect();
            let c0: Vec<T> = (0..rows * n).map(|i| value(i + 5)).collect();
            let mut packed = vec![T::ZERO; packed_len::<T>(k, n)];
            let w = pack(MatRef::row_major(&w, k, n, n), &mut packed);
            let run = |backwards: bool| {
                let (mut c, mut sa) = (c0.clone(), vec![T::ZERO; a_scratch_len(rows, k)]);
                let mut scratch = StepScratch {
                    a: &mut sa,
                    staging: &mut [],
                };
                let a = MatRef::row_major(&a, rows, k, k);
                let run = (fused_rnn_kernels::arch(), Parallelism::Sequential);
                step_product_walk(run, (a, w, backwards), beta, &mut c, &mut scratch);
                c.iter().map(|v| v.to_f64().to_bits()).collect::<Vec<_>>()
            };
            let w_bytes = k * n * size_of::<T>();
            assert!((BACKWARDS_WALK_BYTES / 8..=BACKWARDS_WALK_BYTES).contains(&w_bytes));
            assert!(run(true) == run(false), "{rows}x{k}x{n}");
        }
        for rows in 1..=BACKWARDS_WALK_ROWS {
            case::<f32>(rows, 256, 1000, 1.0);
            case::<f32>(rows, 200, 1024, 0.0);
            case::<f64>(rows, 128, 1000, 1.0);
        }
    }
}
