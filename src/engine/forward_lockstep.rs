//! The forward time loops of several batch chunks of one direction, stepped together.
//!
//! Each chunk's fused step multiplies its 8-16 rows of h by the whole of `W_hh`; run one
//! chunk after the other, every chunk streams all of `W_hh` from L3 each step, 4 FLOPs per
//! byte at 8 rows. In lockstep every column block of the step's product is one grouped
//! product over the chunks ([`gemm_packed_group`]): each slice of `W_hh` meets all their
//! rows while it is in L1, so `W_hh` leaves L3 once per step for the whole group.
//!
//! Two neighbouring chunks of at most [`IN_PLACE_ROWS`] rows together (8 and 8) are one part
//! of the grouped product: their h side by side in one column-major A, their C one stacked
//! view. A 16-row part runs 6, 6 and 4-row tiles where two 8-row parts end each in a 2-row
//! one; with K = H short that tail costs: measured on Zen 4 (AVX2, step products in blocks of
//! 128 units, best of 2000), 4 x 8 rows at H = 256 226 -> 214 us, H = 512 859 -> 813 us,
//! H = 128 59.4 -> 55.6 us. End to end (`profile_case`, 1 thread, alternating): lstm H =
//! 128, B = 32, T = 100 training 39.1-39.5 -> 38.0-38.4 ms, inference 13.8-13.9 -> 13.3-13.5;
//! H = 256, B = 32, T = 64 inference 30.9-31.6 -> 30.5-31.0; H = 512, B = 16 and the char-rnn
//! within noise. A pair whose A outgrows L1 (H = 1024) is slower and stays two parts
//! ([`PAIRED_A_BYTES`]).
//!
//! A grouped product gives every chunk the bits of its own product (a row's sums do not
//! depend on which rows share its tile), and each chunk's pass, resets and padding run as in
//! its own loop, so the results are those of the chunks run one by one, whatever the grouping
//! or pairing (and hence the thread count).

use arrayvec::ArrayVec;
use fused_rnn_kernels::gemm::packed::group::{GroupPart, gemm_packed_group};
use fused_rnn_kernels::gemm::packed::{IN_PLACE_ROWS, panel_width};
use fused_rnn_kernels::gemm::transpose_into;
use fused_rnn_kernels::{Float, MatMut, MatRef};
use std::ops::Range;

use super::DirSpec;
use super::forward::{DirForward, product_target};
use super::forward_fused::BLOCK_PANELS;
use super::plan::LOCKSTEP_CHUNK_ROWS;
use crate::layout::{MAX_CHUNKS, block};

/// Whether `runs` (chunks of one direction) step in lockstep: more than one, each of at most
/// [`LOCKSTEP_CHUNK_ROWS`] rows and each of whose steps fuses (see [`DirForward::fuses_steps`]).
pub(crate) fn steps_in_lockstep<T: Float>(runs: &[DirForward<'_, T>]) -> bool {
    runs.len() > 1
        && runs
            .iter()
            .all(|r| (1..=LOCKSTEP_CHUNK_ROWS).contains(&r.spec.batch) && r.fuses_steps())
}

/// Runs every step of `runs` in lockstep (see the module docs); `runs` must pass
/// [`steps_in_lockstep`].
pub(crate) fn run_lockstep<T: Float>(runs: &mut [DirForward<'_, T>]) {
    debug_assert!(steps_in_lockstep(runs));
    runs.iter_mut().for_each(DirForward::start);
    let s = runs[0].spec;
    for k in 0..s.steps {
        let t = s.time(k);
        let (entry, exit) = runs[0].positions(t);
        // A chunk whose sequences are all padding at `t` skips the step, as alone.
        let active: ArrayVec<bool, MAX_CHUNKS> =
            runs.iter().map(|r| !r.masks.all_inactive(t)).collect();
        for (r, _) in runs.iter_mut().zip(&active).filter(|(_, a)| **a) {
            r.apply_resets(t, entry);
        }
        let parts = product_parts(runs, &active);
        for part in &parts {
            gather_columns(&mut runs[part.clone()], entry);
        }
        let units = BLOCK_PANELS * panel_width::<T>();
        for u0 in (0..s.hidden).step_by(units) {
            let block_units = u0..(u0 + units).min(s.hidden);
            block_products(runs, &parts, t, block_units.clone());
            for (r, _) in runs.iter_mut().zip(&active).filter(|(_, a)| **a) {
                r.pointwise_units(t, entry, exit, block_units.clone());
            }
        }
        for (r, &a) in runs.iter_mut().zip(&active) {
            if a {
                r.project(t, exit);
            }
            r.hold_padding(t, entry, exit);
            r.write_outputs(t, exit);
        }
    }
}

/// The most bytes of a paired part's A (16 rows of h, column-major): every tile of the part
/// streams all of it for each sub-panel, so it must stay in L1 (32 KiB on Zen 4). Measured
/// there, 1 thread, alternating, B = 32 inference (the chunks of 8 unpaired, paired): H =
/// 256 (A 16 KiB) 32.2 -> 31.3 ms, H = 512 (32 KiB) 45.3-45.9 -> 44.8-45.3, H = 1024 (64
/// KiB) 181-183 -> 181-201, slower: not paired.
const PAIRED_A_BYTES: usize = 32 << 10;

/// The active chunks as the parts of a step's grouped products: one chunk, or two neighbours
/// of at most [`IN_PLACE_ROWS`] rows together when the first's scratch holds both's h and
/// their A fits [`PAIRED_A_BYTES`].
fn product_parts<T: Float>(
    runs: &[DirForward<'_, T>],
    active: &[bool],
) -> ArrayVec<Range<usize>, MAX_CHUNKS> {
    let hout = runs[0].spec.hout;
    let mut parts = ArrayVec::new();
    let mut i = 0;
    while i < runs.len() {
        if !active[i] {
            i += 1;
            continue;
        }
        let rows = |r: &DirForward<'_, T>| r.spec.batch;
        let pairs = i + 1 < runs.len()
            && active[i + 1]
            && rows(&runs[i]) + rows(&runs[i + 1]) <= IN_PLACE_ROWS
            && runs[i].scratch.a.len() >= (rows(&runs[i]) + rows(&runs[i + 1])) * hout
            && IN_PLACE_ROWS * hout * size_of::<T>() <= PAIRED_A_BYTES;
        let end = if pairs { i + 2 } else { i + 1 };
        parts.push(i..end);
        i = end;
    }
    parts
}

/// The h entering the step of every chunk of a part, side by side and column-major, in the
/// first chunk's scratch (as [`block_products`] reads it).
fn gather_columns<T: Float>(part: &mut [DirForward<'_, T>], entry: usize) {
    let hout = part[0].spec.hout;
    let ld: usize = part.iter().map(|r| r.spec.batch).sum();
    let (first, rest) = part.split_first_mut().expect("a part has a chunk");
    let buf = &mut first.scratch.a[..ld * hout];
    let mut r0 = 0;
    for (b, h) in std::iter::once((first.spec.batch, &*first.tape.h))
        .chain(rest.iter().map(|r| (r.spec.batch, &*r.tape.h)))
    {
        let h_prev = MatRef::row_major(&h[block(entry, b, hout)], b, hout, hout);
        transpose_into(h_prev, &mut buf[r0..], ld);
        r0 += b;
    }
}

/// The step products' columns of hidden units `units` in every gate block, for every part:
/// one grouped product per gate.
fn block_products<T: Float>(
    runs: &mut [DirForward<'_, T>],
    parts: &[Range<usize>],
    t: usize,
    units: Range<usize>,
) {
    let s = runs[0].spec;
    let (h, hout, nr) = (s.hidden, s.hout, panel_width::<T>());
    let (arch, w) = (runs[0].arch, runs[0].step.first);
    for gate in 0..s.cell.gates() {
        let col0 = gate * h + units.start;
        let panels = col0 / nr..(col0 + units.len()).div_ceil(nr);
        let mut beta = T::ZERO;
        let mut group: ArrayVec<GroupPart<'_, T>, MAX_CHUNKS> = ArrayVec::new();
        let (mut rest, mut taken) = (&mut runs[..], 0);
        for part in parts {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(part.start - taken);
            let (these, tail) = tail.split_at_mut(part.len());
            (rest, taken) = (tail, part.end);
            let rows: usize = these.iter().map(|r| r.spec.batch).sum();
            let (first, second) = these.split_first_mut().expect("a part has a chunk");
            let cols = (col0, units.len());
            let (mut c, part_beta) =
                target_block(&first.spec, (first.tape.gates, first.products), t, cols);
            if let Some(r) = second.first_mut() {
                let (lower, _) = target_block(&r.spec, (r.tape.gates, r.products), t, cols);
                c = MatMut::stacked(c, lower);
            }
            beta = part_beta;
            group.push(GroupPart {
                a: MatRef::new(&first.scratch.a[..rows * hout], rows, hout, 1, rows),
                c,
                scratch: &mut [],
            });
        }
        gemm_packed_group(arch, &mut group, w.panels(panels.clone()), beta);
    }
}

/// Columns `col0..col0 + width` of a chunk's step product target, and its beta.
fn target_block<'x, T: Float>(
    s: &DirSpec,
    (gates, products): (&'x mut [T], &'x mut [T]),
    t: usize,
    (col0, width): (usize, usize),
) -> (MatMut<'x, T>, T) {
    let (b, gh) = (s.batch, s.gh());
    let (target, beta) = product_target(s, t, gates, products);
    (MatMut::new(&mut target[col0..], b, width, gh, 1), beta)
}
