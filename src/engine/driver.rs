//! The module-level passes: layers bottom-up (forward) or top-down (backward); in each layer
//! the products over all rows ([`super::products`]) and the time loops of every direction and
//! batch chunk as independent tasks ([`super::plan`]); dropout between layers; and the
//! reordering of the caller's x, y, dy and dx to and from chunk-major rows.
//!
//! Arguments are validated by the caller ([`crate::Recurrent`]); buffers are carved into
//! regions with the lengths of [`crate::layout`], so a slip is a panic, never a silent
//! overlap.

use arrayvec::ArrayVec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::backward::{BwdScratch, DirBackward, TapeRef};
use super::backward_lockstep::{back_in_lockstep, run_back_lockstep};
use super::forward::{DirForward, Tape};
use super::forward_lockstep::{run_lockstep, steps_in_lockstep};
use super::plan::{StepScratch, gemm_threads, lockstep_groups, pass_threads, run_tasks};
use super::products::{DirGrads, InputBlock, input_gradients, project_inputs, weight_gradients};
use super::tokens::{TokenGradsOut, project_tokens, token_gradients};
use super::{DirSpec, Masks, StepRows};
use crate::config::{Config, Parallelism};
use crate::input::{SeqShape, Tokens};
use crate::layout::{
    Carver, Dims, MAX_CHUNKS, MAX_TASKS, ReserveLayout, TapeLens, WorkspaceLens, bias_sums_width,
    bwd_task_len, fwd_task_len,
};
use crate::params::Params;
use crate::phases::{Phase, Timer, timed};
use crate::prepared::Prepared;
use crate::state::State;
use fused_rnn_kernels::{Arch, CellKind, Float};

/// What every pass of one call shares.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a, T> {
    pub config: &'a Config,
    pub params: &'a Params<T>,
    /// The weights prepared for this pass (see [`crate::prepared`]).
    pub prepared: &'a Prepared<T>,
    pub arch: Arch,
    pub par: Parallelism,
    pub shape: SeqShape,
    /// The whole call's masks.
    pub masks: Masks<'a>,
}

impl<T: Float> Call<'_, T> {
    fn dims(&self) -> Dims {
        Dims::new(self.config, self.shape)
    }
    /// A direction over the whole batch (for the products over all rows).
    fn spec(&self, layer: usize, dir: usize) -> DirSpec {
        DirSpec::of(self.config, layer, dir, self.shape.steps, self.shape.batch)
    }
}

/// One item per batch chunk; fixed capacity, so a call allocates nothing.
type PerChunk<X> = ArrayVec<X, MAX_CHUNKS>;
/// One item per direction.
type PerDir<X> = ArrayVec<X, 2>;

/// Layer 0's token input and the scratch its products take (see [`super::tokens`]).
pub(crate) type TokenInput<'a, T> = (Tokens<'a, T>, &'a mut [T]);

/// Splits `buf` into chunk regions of `per_seq * chunk_len` elements each.
fn chunk_regions<'a, T>(buf: &'a mut [T], d: &Dims, per_seq: usize) -> PerChunk<&'a mut [T]> {
    let mut c = Carver::new(buf);
    (0..d.chunks)
        .map(|k| c.take(per_seq * d.chunk(k).len()))
        .collect()
}

/// The read-only twin of [`chunk_regions`].
fn chunk_slices<'a, T>(buf: &'a [T], d: &Dims, per_seq: usize) -> PerChunk<&'a [T]> {
    let mut rest = buf;
    (0..d.chunks)
        .map(|k| {
            let (head, tail) = rest.split_at(per_seq * d.chunk(k).len());
            rest = tail;
            head
        })
        .collect()
}

/// A direction's tape split into its chunks' tapes.
fn chunk_tapes<'a, T>(buf: &'a mut [T], lens: &TapeLens, d: &Dims) -> PerChunk<Tape<'a, T>> {
    let mut c = Carver::new(buf);
    let per = |len: usize| len / d.batch.max(1);
    let gates = chunk_regions(c.take(lens.gates), d, per(lens.gates));
    let h = chunk_regions(c.take(lens.h), d, per(lens.h));
    let cc = chunk_regions(c.take(lens.c), d, per(lens.c));
    let extra = chunk_regions(c.take(lens.extra), d, per(lens.extra));
    gates
        .into_iter()
        .zip(h)
        .zip(cc)
        .zip(extra)
        .map(|(((gates, h), c), extra)| Tape {
            gates,
            h,
            c,
            extra,
            positions: lens.positions,
            extra_slots: lens.extra_slots,
            training: lens.training,
        })
        .collect()
}

/// Splits a direction's read-only training tape into its chunks' tapes: its gates (empty
/// where backward writes the gate gradients over them, see
/// [`Dims::gate_grads_in_reserve`]) and the rest of the tape after them.
fn chunk_tape_refs<'a, T>(
    (gates, rest): (&'a [T], &'a [T]),
    lens: &TapeLens,
    d: &Dims,
) -> PerChunk<TapeRef<'a, T>> {
    let per = |len: usize| len / d.batch.max(1);
    let (h, rest) = rest.split_at(lens.h);
    let (c, rest) = rest.split_at(lens.c);
    let extra = &rest[..lens.extra];
    let [g, h, c, e] = [gates, h, c, extra].map(|r| chunk_slices(r, d, per(r.len())));
    g.into_iter()
        .zip(h)
        .zip(c)
        .zip(e)
        .map(|(((gates, h), c), extra)| TapeRef { gates, h, c, extra })
        .collect()
}

/// Copies the caller's x (`[T][B][I]` or `[B][T][I]`) into chunk-major rows, or borrows it
/// when it already is (time-major with one chunk).
fn x_chunk_major<'a, T: Float>(x: &'a [T], d: &Dims, buf: &'a mut [T]) -> &'a [T] {
    if !d.reorders_input() {
        return x;
    }
    for_rows(d, |user, cm| {
        buf[cm * d.input..(cm + 1) * d.input]
            .copy_from_slice(&x[user * d.input..(user + 1) * d.input])
    });
    buf
}

/// Layer 0's input rows in chunk-major order ([`x_chunk_major`]), or none for token input
/// (its layer 0 reads the table; see [`super::tokens`]).
fn layer0_rows<'a, T: Float>(x: &'a [T], tokens: bool, d: &Dims, buf: &'a mut [T]) -> &'a [T] {
    if tokens {
        &[]
    } else {
        x_chunk_major(x, d, buf)
    }
}

/// The scratch token input takes at the end of the workspace (none without).
pub(crate) fn token_scratch<T>(d: &Dims, tokens: Option<&Tokens<'_, T>>) -> usize {
    tokens.map_or(0, |t| {
        super::tokens::scratch_len(d, t.vocab(d.input)).expect("sizes were checked")
    })
}

/// Calls `f(user_row, chunk_major_row)` for every (step, sequence), where `user_row` indexes
/// the caller's layout.
pub(super) fn for_rows(d: &Dims, mut f: impl FnMut(usize, usize)) {
    for k in 0..d.chunks {
        let start = d.steps * d.chunk(k).start;
        chunk_rows(d, k, |user, i| f(user, start + i));
    }
}

/// Calls `f(user_row, i)` for the rows of chunk `k`, `i` counting them in chunk-major order.
fn chunk_rows(d: &Dims, k: usize, mut f: impl FnMut(usize, usize)) {
    let r = d.chunk(k);
    for t in 0..d.steps {
        for (j, b) in r.clone().enumerate() {
            let user = if d.batch_major {
                b * d.steps + t
            } else {
                t * d.batch + b
            };
            f(user, t * r.len() + j);
        }
    }
}

/// Fills every chunk-major row of `out` (`width` values each) as `f(user_row, row)`, chunk
/// by chunk, on the pool's threads (`threads` 0) when `out` is large ([`pass_threads`]).
pub(super) fn fill_rows<T: Float>(
    d: &Dims,
    threads: usize,
    (out, width): (&mut [T], usize),
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let par = if pass_threads(threads, out.len()) > 1 {
        Parallelism::Rayon
    } else {
        Parallelism::Sequential
    };
    let mut tasks: ArrayVec<Option<(usize, &mut [T])>, MAX_CHUNKS> = ArrayVec::new();
    let mut rest = out;
    for k in 0..d.chunks {
        let len = d.steps * d.chunk(k).len() * width;
        let (rows, tail) = std::mem::take(&mut rest).split_at_mut(len);
        tasks.push(Some((k, rows)));
        rest = tail;
    }
    run_tasks(par, &mut tasks, |(k, rows)| {
        chunk_rows(d, k, |user, i| {
            f(user, &mut rows[i * width..(i + 1) * width])
        });
    });
}

/// Writes per-direction chunk-major blocks (`[T*B][Hout]` each) into the caller's
/// `[.., D*Hout]` buffer.
fn blocks_to_user<T: Float>(d: &Dims, blocks: &[&mut [T]], user: &mut [T]) {
    let (w, full) = (d.hout, d.dirs * d.hout);
    for_rows(d, |u, cm| {
        for (dir, blk) in blocks.iter().enumerate() {
            user[u * full + dir * w..u * full + (dir + 1) * w]
                .copy_from_slice(&blk[cm * w..(cm + 1) * w]);
        }
    });
}

/// Splits `D` blocks of `len` off a buffer.
fn dir_blocks<T>(buf: &mut [T], dirs: usize, len: usize) -> PerDir<&mut [T]> {
    let mut c = Carver::new(buf);
    (0..dirs).map(|_| c.take(len)).collect()
}

/// Read-only views of a layer's output blocks.
fn views<'a, T>(blocks: &'a [&mut [T]]) -> PerDir<&'a [T]> {
    blocks.iter().map(|b| &**b).collect()
}

/// A layer's input as column blocks: the layer-0 input, or the layer below's directions.
fn input_blocks<'a, T>(
    x: &'a [T],
    below: Option<PerDir<&'a [T]>>,
    d: &Dims,
) -> PerDir<InputBlock<'a, T>> {
    match below {
        None => [InputBlock {
            data: x,
            col: 0,
            width: d.input,
        }]
        .into_iter()
        .collect(),
        Some(blocks) => blocks
            .into_iter()
            .enumerate()
            .map(|(dir, data)| InputBlock {
                data,
                col: dir * d.hout,
                width: d.hout,
            })
            .collect(),
    }
}

/// The state rows of one layer, split by direction and chunk: `[dir][chunk]`.
fn state_rows<'a, T>(
    buf: &'a mut [T],
    d: &Dims,
    layer: usize,
    width: usize,
) -> PerDir<PerChunk<&'a mut [T]>> {
    if width == 0 {
        return (0..d.dirs)
            .map(|_| (0..d.chunks).map(|_| &mut [][..]).collect())
            .collect();
    }
    let per_dir = d.batch * width;
    let layer_rows = &mut buf[layer * d.dirs * per_dir..(layer + 1) * d.dirs * per_dir];
    dir_blocks(layer_rows, d.dirs, per_dir)
        .into_iter()
        .map(|b| chunk_regions(b, d, width))
        .collect()
}

/// One forward task: a direction's chunk of sequences through all steps.
struct FwdTask<'a, T> {
    dir: usize,
    chunk: usize,
    tape: Tape<'a, T>,
    y: &'a mut [T],
    state_h: &'a mut [T],
    state_c: &'a mut [T],
    scratch: &'a mut [T],
}

/// Runs one layer's forward: the projections, then every direction and chunk as a task.
/// `tapes[dir]` are the directions' tape buffers, `outputs[dir]` their `[T*B][Hout]` blocks.
fn forward_layer<T: Float>(
    call: &Call<'_, T>,
    layer: usize,
    input: &[InputBlock<'_, T>],
    (tapes, tape_lens): (PerDir<&mut [T]>, &TapeLens),
    outputs: &mut [&mut [T]],
    state: &mut State<T>,
    (scratch, mut tokens): (&mut [T], Option<TokenInput<'_, T>>),
) {
    let d = call.dims();
    let mut tasks = ArrayVec::<Option<FwdTask<'_, T>>, MAX_TASKS>::new();
    let mut states_h = state_rows(&mut state.h, &d, layer, d.hout);
    let mut states_c = state_rows(
        &mut state.c,
        &d,
        layer,
        if d.has_c() { d.hidden } else { 0 },
    );
    let mut sc = Carver::new(scratch);
    for (dir, (tape, out)) in tapes.into_iter().zip(outputs.iter_mut()).enumerate() {
        let spec = call.spec(layer, dir);
        let (w, _) = call.prepared.dir(call.params, layer, dir);
        let threads = (call.arch, gemm_threads(call.par));
        let gates = &mut tape[..tape_lens.gates];
        timed(Phase::ForwardProjection, || match &mut tokens {
            Some((tokens, buf)) => project_tokens(threads, (&d, &spec), &w, tokens, buf, gates),
            None => project_inputs(threads, &spec, &w, input, gates),
        });
        let ys = chunk_regions(out, &d, d.steps * d.hout);
        let (hs, cs) = (
            std::mem::take(&mut states_h[dir]),
            std::mem::take(&mut states_c[dir]),
        );
        let chunks = chunk_tapes(tape, tape_lens, &d)
            .into_iter()
            .zip(ys)
            .zip(hs)
            .zip(cs)
            .enumerate();
        for (chunk, (((tape, y), state_h), state_c)) in chunks {
            let scratch = sc.take(fwd_task_len(&d, d.chunk(chunk).len()));
            tasks.push(Some(FwdTask {
                dir,
                chunk,
                tape,
                y,
                state_h,
                state_c,
                scratch,
            }));
        }
    }
    let mut groups = lockstep_groups(&mut tasks, &d, call.par);
    timed(Phase::ForwardLoops, || {
        run_tasks(call.par, &mut groups, |group| {
            run_forward_group(call, layer, group)
        })
    });
}

/// Runs a group of forward tasks (chunks of one direction): in lockstep where their steps
/// allow it (see [`super::forward_lockstep`]), else one after the other.
fn run_forward_group<T: Float>(
    call: &Call<'_, T>,
    layer: usize,
    group: &mut [Option<FwdTask<'_, T>>],
) {
    let mut runs = PerChunk::new();
    let mut states = PerChunk::new();
    for task in group.iter_mut().filter_map(Option::take) {
        let (run, state_h, state_c) = dir_forward(call, layer, task);
        runs.push(run);
        states.push((state_h, state_c));
    }
    if steps_in_lockstep(&runs) {
        run_lockstep(&mut runs);
        for (run, (state_h, state_c)) in runs.into_iter().zip(states) {
            let (h_n, c_n) = run.finals();
            state_h.copy_from_slice(h_n);
            state_c.copy_from_slice(c_n);
        }
        return;
    }
    for (run, (state_h, state_c)) in runs.into_iter().zip(states) {
        let (h_n, c_n) = run.run();
        state_h.copy_from_slice(h_n);
        state_c.copy_from_slice(c_n);
    }
}

/// A forward task's time loop, and where its final state goes: `(run, h_n, c_n)`.
fn dir_forward<'a, T: Float>(
    call: &Call<'a, T>,
    layer: usize,
    task: FwdTask<'a, T>,
) -> (DirForward<'a, T>, &'a mut [T], &'a mut [T]) {
    let d = call.dims();
    let range = d.chunk(task.chunk);
    let bc = range.len();
    let spec = DirSpec {
        batch: bc,
        ..call.spec(layer, task.dir)
    };
    let mut c = Carver::new(task.scratch);
    let (h0, c0) = (c.take(bc * d.hout), c.take(bc * d.hidden));
    let products = c.take(if matches!(d.cell, CellKind::Gru { .. }) {
        bc * 3 * d.hidden
    } else {
        0
    });
    let rest = c.take(fwd_task_len(&d, bc) - bc * (d.hout + d.hidden) - products.len());
    let (a, staging) = rest.split_at_mut(step_gemm(&d, bc));
    // The initial state is copied: the loop reads it for resets while the final is written.
    h0.copy_from_slice(task.state_h);
    let c0 = &mut c0[..task.state_c.len()];
    c0.copy_from_slice(task.state_c);
    let (w, step) = call.prepared.dir(call.params, layer, task.dir);
    let run = DirForward {
        spec,
        arch: call.arch,
        par: call.par,
        w,
        step,
        masks: call.masks.chunk(range),
        h0,
        c0,
        y: task.y,
        tape: task.tape,
        products,
        scratch: StepScratch { a, staging },
    };
    (run, task.state_h, task.state_c)
}

/// The step GEMM's part of a task's scratch (see [`crate::layout`]).
fn step_gemm(d: &Dims, rows: usize) -> usize {
    let k = d.gh().max(d.hout);
    fused_rnn_kernels::gemm::packed::a_scratch_len(rows, k).max(rows * k)
}

/// Inference. Workspace: `[x_cm][blocks A][blocks B][tapes][tasks][tokens]`; layer outputs
/// alternate between the two sets of blocks (one set for a single layer), the last layer's
/// go to `y`. (`tokens`: token input's scratch, [`token_scratch`]; x_cm is then unused.)
pub(crate) fn forward<T: Float>(
    call: &Call<'_, T>,
    (x, tokens): (&[T], Option<Tokens<'_, T>>),
    state: &mut State<T>,
    y: &mut [T],
    ws: &mut [T],
) {
    let d = call.dims();
    let lens = WorkspaceLens::new(&d).expect("sizes were checked");
    let tape_lens = TapeLens::new(&d, false).expect("sizes were checked");
    let mut c = Carver::new(ws);
    let x_buf = c.take(lens.x_cm);
    let block = lens.block_set / d.dirs;
    let mut set_a = dir_blocks(c.take(lens.block_set), d.dirs, block);
    let second = if lens.infer_sets > 1 { block } else { 0 };
    let mut set_b = dir_blocks(c.take(d.dirs * second), d.dirs, second);
    let tape_buf = c.take(lens.infer_tapes);
    let tasks = c.take(lens.fwd_tasks);
    let token_buf = c.take(token_scratch(&d, tokens.as_ref()));
    let x = timed(Phase::ForwardInputRows, || {
        layer0_rows(x, tokens.is_some(), &d, x_buf)
    });
    for layer in 0..d.layers {
        // Layer k writes set A if k is even, B if odd, and reads the other.
        let (out, below) = if layer % 2 == 0 {
            (&mut set_a, &set_b)
        } else {
            (&mut set_b, &set_a)
        };
        let input = input_blocks(x, (layer > 0).then(|| views(below)), &d);
        let tapes = dir_blocks(&mut *tape_buf, d.dirs, tape_lens.total().expect("checked"));
        let tok = tokens.filter(|_| layer == 0).map(|t| (t, &mut *token_buf));
        forward_layer(
            call,
            layer,
            &input,
            (tapes, &tape_lens),
            out,
            state,
            (tasks, tok),
        );
    }
    let top = if (d.layers - 1).is_multiple_of(2) {
        &set_a
    } else {
        &set_b
    };
    timed(Phase::ForwardOutputs, || {
        blocks_to_user(&d, &top[..d.dirs], y)
    });
}

/// Training. The reserve holds every layer's tapes, the inputs of upper layers and their
/// dropout masks (see [`crate::layout`]); the workspace `[x_cm][top outputs][tasks][tokens]`.
pub(crate) fn forward_train<T: Float>(
    call: &Call<'_, T>,
    (x, tokens): (&[T], Option<Tokens<'_, T>>),
    state: &mut State<T>,
    y: &mut [T],
    reserve: &mut [T],
    dropout_seed: u64,
    ws: &mut [T],
) {
    let d = call.dims();
    let lens = WorkspaceLens::new(&d).expect("sizes were checked");
    let rl = ReserveLayout::new(&d).expect("sizes were checked");
    let tape_len = rl.tape.total().expect("sizes were checked");
    let mut c = Carver::new(ws);
    let x_buf = c.take(lens.x_cm);
    let mut top = dir_blocks(c.take(lens.block_set), d.dirs, rl.out_block);
    let tasks = c.take(lens.fwd_tasks);
    let token_buf = c.take(token_scratch(&d, tokens.as_ref()));
    let x = timed(Phase::ForwardInputRows, || {
        layer0_rows(x, tokens.is_some(), &d, x_buf)
    });
    let mut rest = Carver::new(reserve);
    let mut below = PerDir::<&mut [T]>::new();
    for layer in 0..d.layers {
        let last = layer + 1 == d.layers;
        let tapes = (0..d.dirs).map(|_| rest.take(tape_len)).collect();
        let mut outputs = if last {
            std::mem::take(&mut top)
        } else {
            dir_blocks(rest.take(d.dirs * rl.out_block), d.dirs, rl.out_block)
        };
        let masks = if !last && d.dropout {
            dir_blocks(rest.take(d.dirs * rl.out_block), d.dirs, rl.out_block)
        } else {
            PerDir::new()
        };
        let input = input_blocks(x, (layer > 0).then(|| views(&below)), &d);
        let tok = tokens.filter(|_| layer == 0).map(|t| (t, &mut *token_buf));
        forward_layer(
            call,
            layer,
            &input,
            (tapes, &rl.tape),
            &mut outputs,
            state,
            (tasks, tok),
        );
        // Ends the borrow of `below` (ArrayVec has drop glue) before it is replaced.
        drop(input);
        for (dir, (out, mask)) in outputs.iter_mut().zip(masks).enumerate() {
            let seed = dropout_seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add((layer * d.dirs + dir) as u64);
            apply_dropout(out, mask, call.config.dropout, seed);
        }
        if last {
            timed(Phase::ForwardOutputs, || {
                blocks_to_user(&d, &outputs[..d.dirs], y)
            });
        } else {
            below = outputs;
        }
    }
}

/// PyTorch's dropout: each element is zeroed with probability `p`, the rest are scaled by
/// `1 / (1 - p)`; `mask` keeps the factor for backward.
fn apply_dropout<T: Float>(data: &mut [T], mask: &mut [T], p: f64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let keep = T::from_f64(1.0 / (1.0 - p));
    for (x, m) in data.iter_mut().zip(mask.iter_mut()) {
        *m = if rng.random::<f64>() < p {
            T::ZERO
        } else {
            keep
        };
        *x *= *m;
    }
}

/// The caller's outputs of `backward`.
pub(crate) struct BackwardOut<'a, T> {
    pub d_state: &'a mut State<T>,
    pub dx: Option<&'a mut [T]>,
    pub grads: &'a mut Params<T>,
}

/// One backward task: a direction's chunk of sequences through all steps, last to first.
struct BwdTask<'a, T> {
    dir: usize,
    chunk: usize,
    tape: TapeRef<'a, T>,
    dy: StepRows<'a, T>,
    dg: &'a mut [T],
    d_an: &'a mut [T],
    dh_all: &'a mut [T],
    d_h: &'a mut [T],
    d_c: &'a mut [T],
    bias_sums: &'a mut [T],
    scratch: &'a mut [T],
}

/// Runs a group of backward tasks (chunks of one direction): in lockstep where their steps
/// allow it (see [`super::backward_lockstep`]), else one after the other.
fn run_backward_group<T: Float>(
    call: &Call<'_, T>,
    layer: usize,
    group: &mut [Option<BwdTask<'_, T>>],
) {
    let runs: PerChunk<DirBackward<'_, T>> = group
        .iter_mut()
        .filter_map(Option::take)
        .map(|task| dir_backward(call, layer, task))
        .collect();
    if back_in_lockstep(&runs) {
        run_back_lockstep(runs);
    } else {
        runs.into_iter().for_each(DirBackward::run);
    }
}

/// A backward task's time loop.
fn dir_backward<'a, T: Float>(
    call: &Call<'a, T>,
    layer: usize,
    task: BwdTask<'a, T>,
) -> DirBackward<'a, T> {
    let d = call.dims();
    let range = d.chunk(task.chunk);
    let bc = range.len();
    let spec = DirSpec {
        batch: bc,
        ..call.spec(layer, task.dir)
    };
    let mut c = Carver::new(task.scratch);
    let dh = c.take(2 * bc * d.hout);
    let dc = c.take(if d.has_c() { 2 * bc * d.hidden } else { 0 });
    let reset_before = d.cell == (CellKind::Gru { reset_after: false });
    let step = c.take(if reset_before || d.proj > 0 {
        bc * d.hidden
    } else {
        0
    });
    let a = c.take(step_gemm(&d, bc));
    let staging_len = bwd_task_len(&d, bc) - dh.len() - dc.len() - step.len() - a.len();
    let staging = c.take(staging_len);
    let (_, step_w) = call.prepared.dir(call.params, layer, task.dir);
    DirBackward {
        spec,
        arch: call.arch,
        par: call.par,
        step: step_w,
        masks: call.masks.chunk(range),
        tape: task.tape,
        dy: task.dy,
        d_h: task.d_h,
        d_c: task.d_c,
        scratch: BwdScratch {
            dg: task.dg,
            d_an: task.d_an,
            dh_all: task.dh_all,
            dh,
            dc,
            step,
            bias_sums: task.bias_sums,
            product: StepScratch { a, staging },
        },
    }
}

/// dL/dy of one direction's chunk `range`, read in place: the top layer's from the caller's
/// `[.., D*Hout]` rows, a lower layer's from its chunk-major block.
fn dy_rows<'a, T>(
    d: &Dims,
    range: std::ops::Range<usize>,
    dir: usize,
    source: DySource<'a, T>,
) -> StepRows<'a, T> {
    let (b0, bc, w) = (range.start, range.len(), d.hout);
    let full = d.dirs * w;
    // The caller's rows hold every direction side by side; a block holds one.
    let at_dir = dir * w;
    let (data, first, step, stride) = match source {
        DySource::User(dy) if d.batch_major => {
            (dy, b0 * d.steps * full + at_dir, full, d.steps * full)
        }
        DySource::User(dy) => (dy, b0 * full + at_dir, d.batch * full, full),
        DySource::Block(blk) => (blk, d.steps * b0 * w, bc * w, w),
    };
    StepRows {
        data,
        first,
        step,
        stride,
        rows: bc,
        cols: w,
    }
}

/// Where a layer's dL/dy lies.
#[derive(Clone, Copy)]
enum DySource<'a, T> {
    /// The caller's dy (the top layer).
    User(&'a [T]),
    /// One direction's chunk-major block (a lower layer: the dL/dx of the layer above).
    Block(&'a [T]),
}

/// Backward through every layer, top-down. Workspace:
/// `[x_cm, then dx_cm][blocks A][blocks B][gate gradients][tasks][tokens]`, with as many block
/// sets as the layers below the top need (the top layer reads dy in place).
pub(crate) fn backward<T: Float>(
    call: &Call<'_, T>,
    (x, tokens): (&[T], Option<Tokens<'_, T>>),
    dy: &[T],
    reserve: &mut [T],
    out: BackwardOut<'_, T>,
    ws: &mut [T],
) {
    let d = call.dims();
    let lens = WorkspaceLens::new(&d).expect("sizes were checked");
    let rl = ReserveLayout::new(&d).expect("sizes were checked");
    let tape_len = rl.tape.total().expect("sizes were checked");
    let threads = (call.arch, gemm_threads(call.par));
    let BackwardOut {
        d_state,
        mut dx,
        grads,
    } = out;
    let mut c = Carver::new(ws);
    // x in chunk-major order, and once layer 0's weight gradients have read it, its dx.
    let x_buf = c.take(lens.x_cm);
    let set_len = |k: usize| if lens.bwd_sets > k { rl.out_block } else { 0 };
    let mut set_a = dir_blocks(c.take(d.dirs * set_len(0)), d.dirs, set_len(0));
    let mut set_b = dir_blocks(c.take(d.dirs * set_len(1)), d.dirs, set_len(1));
    let per_dir = |w: usize| d.per_row(w).expect("checked");
    let an_w = if d.cell == (CellKind::Gru { reset_after: true }) {
        d.hidden
    } else {
        0
    };
    // The gate gradients: over the saved gates, or in a workspace buffer of their own.
    let in_reserve = d.gate_grads_in_reserve();
    let dg_len = if in_reserve { 0 } else { per_dir(d.gh()) };
    let mut dg_all = dir_blocks(c.take(d.dirs * dg_len), d.dirs, dg_len);
    let mut an_all = dir_blocks(c.take(d.dirs * per_dir(an_w)), d.dirs, per_dir(an_w));
    let mut dh_all = dir_blocks(c.take(d.dirs * per_dir(d.proj)), d.dirs, per_dir(d.proj));
    let bias_len = d.chunks * bias_sums_width(&d);
    let mut bias_all = dir_blocks(c.take(d.dirs * bias_len), d.dirs, bias_len);
    let tasks_buf = c.take(lens.bwd_tasks);
    let token_buf = c.take(token_scratch(&d, tokens.as_ref()));
    // Token input has no rows of x: layer 0 reads the table (and dx is dL/dtable).
    let reorders = d.reorders_input() && tokens.is_none();
    timed(Phase::BackwardInputRows, || {
        if reorders {
            x_chunk_major(x, &d, &mut *x_buf);
        }
    });
    for layer in (0..d.layers).rev() {
        // Layer k writes its dx into A if (L-1-k) is even, B if odd, and reads its dy from the
        // other (the layer above wrote it there), or from the caller's dy at the top.
        let (dys, dxs) = if (d.layers - 1 - layer).is_multiple_of(2) {
            (&set_b, &mut set_a)
        } else {
            (&set_a, &mut set_b)
        };
        let top = layer + 1 == d.layers;
        // The layers below (their outputs are this one's input) and this layer's tapes,
        // each cut into its gates (which may take the gate gradients) and the rest.
        let (lower, this_layer) = reserve.split_at_mut(rl.layer_start(layer));
        let lower: &[T] = lower;
        let mut tapes_left = Carver::new(this_layer);
        let mut layer_tapes: PerDir<(&mut [T], &[T])> = (0..d.dirs)
            .map(|_| {
                let (gates, rest) = tapes_left.take(tape_len).split_at_mut(rl.tape.gates);
                (gates, &*rest)
            })
            .collect();
        let below = (layer > 0).then(|| {
            let at = rl.outputs_at(layer - 1, d.dirs);
            (0..d.dirs)
                .map(|dir| &lower[at + dir * rl.out_block..][..rl.out_block])
                .collect()
        });
        let x_rows: &[T] = if reorders { &*x_buf } else { x };
        let input = input_blocks(x_rows, below, &d);
        // The time loops of every direction and chunk.
        let mut tasks = ArrayVec::<Option<BwdTask<'_, T>>, MAX_TASKS>::new();
        {
            let mut sh = state_rows(&mut d_state.h, &d, layer, d.hout);
            let mut sc_rows = state_rows(
                &mut d_state.c,
                &d,
                layer,
                if d.has_c() { d.hidden } else { 0 },
            );
            let mut scratch = Carver::new(&mut *tasks_buf);
            let grads_out = dg_all
                .iter_mut()
                .zip(an_all.iter_mut())
                .zip(dh_all.iter_mut())
                .zip(bias_all.iter_mut())
                .zip(layer_tapes.iter_mut());
            for (dir, ((((dg_dir, an_dir), pr_dir), bias_dir), (gates, rest))) in
                grads_out.enumerate().take(d.dirs)
            {
                let (tape_gates, dg_dir): (&[T], &mut [T]) = if in_reserve {
                    (&[], &mut **gates)
                } else {
                    (&**gates, &mut **dg_dir)
                };
                let tapes = chunk_tape_refs((tape_gates, rest), &rl.tape, &d);
                let source = if top {
                    DySource::User(dy)
                } else {
                    DySource::Block(&*dys[dir])
                };
                let dg = chunk_regions(dg_dir, &d, d.steps * d.gh());
                let an = chunk_regions(an_dir, &d, d.steps * an_w);
                let pr = chunk_regions(pr_dir, &d, d.steps * d.proj);
                let (hs, cs) = (
                    std::mem::take(&mut sh[dir]),
                    std::mem::take(&mut sc_rows[dir]),
                );
                let mut sums = Carver::new(bias_dir);
                let parts = tapes
                    .into_iter()
                    .zip(dg)
                    .zip(an)
                    .zip(pr)
                    .zip(hs)
                    .zip(cs)
                    .enumerate();
                for (chunk, (((((tape, dg), d_an), dh_all), d_h), d_c)) in parts {
                    let bias_sums = sums.take(bias_sums_width(&d));
                    let range = d.chunk(chunk);
                    let scratch = scratch.take(bwd_task_len(&d, range.len()));
                    tasks.push(Some(BwdTask {
                        dir,
                        chunk,
                        tape,
                        dy: dy_rows(&d, range, dir, source),
                        dg,
                        d_an,
                        dh_all,
                        d_h,
                        d_c,
                        bias_sums,
                        scratch,
                    }));
                }
            }
        }
        let mut groups = lockstep_groups(&mut tasks, &d, call.par);
        timed(Phase::BackwardLoops, || {
            run_tasks(call.par, &mut groups, |group| {
                run_backward_group(call, layer, group)
            })
        });
        drop(groups);
        drop(tasks); // Releases the gradient buffers the tasks borrowed.
        // The products over all rows, direction by direction in a fixed order: every weight
        // gradient first (layer 0's read x), then dx (layer 0's may overwrite x's copy).
        let dir_grads = |dir: usize| {
            let (gates, rest) = &layer_tapes[dir];
            DirGrads {
                dg: if in_reserve { gates } else { &*dg_all[dir] },
                d_an: &*an_all[dir],
                dh_all: &*dh_all[dir],
                h: &rest[..rl.tape.h],
                extra: &rest[rest.len() - rl.tape.extra..],
                bias_sums: &*bias_all[dir],
            }
        };
        let layer_tokens = tokens.filter(|_| layer == 0);
        let weights_timer = Timer::start(Phase::BackwardWeightGradients);
        for dir in 0..d.dirs {
            let spec = call.spec(layer, dir);
            let g = dir_grads(dir);
            let grads = grads.layer_mut(layer, dir);
            if let Some(tokens) = &layer_tokens {
                let (w, _) = call.prepared.dir(call.params, layer, dir);
                let out = TokenGradsOut {
                    w_ih: &mut *grads.w_ih,
                    d_table: dx.as_deref_mut(),
                    add: dir > 0,
                };
                token_gradients(threads, (&d, &spec), (&w, tokens), &g, out, token_buf);
            }
            let rows = layer_tokens.is_none().then_some(&input[..]);
            weight_gradients(threads, (&d, &spec), rows, &g, grads);
        }
        weights_timer.stop();
        // Ends the borrow of x's copy (ArrayVec has drop glue) before dx overwrites it.
        drop(input);
        let input_timer = Timer::start(Phase::BackwardInputGradients);
        for dir in 0..d.dirs {
            let spec = call.spec(layer, dir);
            let (w, _) = call.prepared.dir(call.params, layer, dir);
            let g = dir_grads(dir);
            let add = dir > 0;
            if layer > 0 {
                let mut targets: PerDir<&mut [T]> = dxs.iter_mut().map(|b| &mut **b).collect();
                input_gradients(threads, &spec, &w, &g, &mut targets, add);
            } else if let (None, Some(dx_user)) = (&layer_tokens, dx.as_deref_mut()) {
                let target = if reorders { &mut *x_buf } else { dx_user };
                input_gradients(threads, &spec, &w, &g, &mut [target], add);
            }
        }
        input_timer.stop();
        // Through the dropout that produced this layer's input.
        if layer > 0 && d.dropout {
            let at = rl.outputs_at(layer - 1, d.dirs) + d.dirs * rl.out_block;
            for (dir, blk) in dxs.iter_mut().enumerate().take(d.dirs) {
                let mask = &lower[at + dir * rl.out_block..at + (dir + 1) * rl.out_block];
                for (g, &m) in blk.iter_mut().zip(mask) {
                    *g *= m;
                }
            }
        }
    }
    let _rows_timer = Timer::start(Phase::BackwardInputGradientRows);
    if let (true, Some(dx)) = (reorders, dx) {
        for_rows(&d, |user, cm| {
            dx[user * d.input..(user + 1) * d.input]
                .copy_from_slice(&x_buf[cm * d.input..(cm + 1) * d.input])
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_major_rows_visit_every_row_once() {
        for (steps, batch, bm) in [(3, 17, false), (4, 16, true), (2, 5, false)] {
            let config = Config::lstm(2, 2).with_layout(if bm {
                crate::SeqLayout::BatchMajor
            } else {
                crate::SeqLayout::TimeMajor
            });
            let d = Dims::new(&config, SeqShape::new(steps, batch));
            let (mut seen_u, mut seen_c) = (vec![0; steps * batch], vec![0; steps * batch]);
            for_rows(&d, |u, c| {
                seen_u[u] += 1;
                seen_c[c] += 1;
            });
            assert!(seen_u.iter().chain(&seen_c).all(|&n| n == 1));
        }
    }
}
