//! The module-level passes: layers bottom-up (forward) or top-down (backward), each layer's
//! directions, dropout between layers, and the batch-major transposes of x and dx.
//!
//! Arguments are validated by the caller ([`crate::Recurrent`]); here buffers are carved
//! into regions with the lengths of [`crate::layout`], so a slip is a panic, never a silent
//! overlap.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::backward::{BwdScratch, DirBackward, TapeRef};
use super::forward::{DirForward, Tape};
use super::{DirSpec, Masks, SeqView, SeqViewMut, seq_strides};
use crate::config::Config;
use crate::input::SeqShape;
use crate::layout::{
    BwdScratchLens, Carver, Dims, ReserveLayout, TapeLens, WorkspaceLens, block, gemm_a_len,
};
use crate::params::Params;
use crate::prepared::Prepared;
use crate::state::State;
use fused_rnn_kernels::{Arch, CellKind, Float, MatMut, MatRef};

/// What every pass of one call shares.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a, T> {
    pub config: &'a Config,
    pub params: &'a Params<T>,
    /// The weights prepared for this pass (see [`crate::prepared`]).
    pub prepared: &'a Prepared<T>,
    pub arch: Arch,
    pub shape: SeqShape,
    pub masks: Masks<'a>,
}

impl<T: Float> Call<'_, T> {
    fn dims(&self) -> Dims {
        Dims::new(self.config, self.shape)
    }
    fn spec(&self, layer: usize, dir: usize) -> DirSpec {
        DirSpec::of(self.config, layer, dir, self.shape.steps, self.shape.batch)
    }
    /// The range of (layer, dir)'s rows in a `[L*D][B][width]` state buffer.
    fn state_range(&self, layer: usize, dir: usize, width: usize) -> std::ops::Range<usize> {
        block(
            layer * self.config.directions() + dir,
            self.shape.batch,
            width,
        )
    }
}

/// Splits a tape buffer into its regions.
fn carve_tape<'a, T>(buf: &'a mut [T], lens: &TapeLens) -> Tape<'a, T> {
    let mut c = Carver::new(buf);
    Tape {
        gates: c.take(lens.gates),
        h: c.take(lens.h),
        c: c.take(lens.c),
        extra: c.take(lens.extra),
        positions: lens.positions,
        extra_slots: lens.extra_slots,
    }
}

/// The read-only regions of a training tape.
fn tape_ref<'a, T>(buf: &'a [T], lens: &TapeLens) -> TapeRef<'a, T> {
    let (gates, rest) = buf.split_at(lens.gates);
    let (h, rest) = rest.split_at(lens.h);
    let (c, rest) = rest.split_at(lens.c);
    TapeRef {
        gates,
        h,
        c,
        extra: &rest[..lens.extra],
    }
}

/// Copies `[outer][inner][width]` into `[inner][outer][width]` (batch- to time-major, or back).
fn transpose_seq<T: Copy>(src: &[T], dst: &mut [T], outer: usize, inner: usize, width: usize) {
    for o in 0..outer {
        for i in 0..inner {
            let from = (o * inner + i) * width;
            let to = (i * outer + o) * width;
            dst[to..to + width].copy_from_slice(&src[from..from + width]);
        }
    }
}

/// The layer-0 input as time-major rows: `x` itself, or its transpose written into `buf`.
fn time_major_input<'a, T: Float>(x: &'a [T], d: &Dims, buf: &'a mut [T]) -> &'a [T] {
    if d.batch_major {
        transpose_seq(x, buf, d.batch, d.steps, d.input);
        buf
    } else {
        x
    }
}

/// A layer's output buffer, `D*Hout` wide: the caller's `y` (in its layout) or an internal
/// time-major buffer.
struct OutBuf<'a, T> {
    data: &'a mut [T],
    batch_major: bool,
}

impl<T> OutBuf<'_, T> {
    /// Direction `dir`'s `[T][B][Hout]` window.
    fn view(&mut self, d: &Dims, dir: usize) -> SeqViewMut<'_, T> {
        let (step_stride, batch_stride) =
            seq_strides(self.batch_major, d.steps, d.batch, d.out_width());
        SeqViewMut {
            data: self.data,
            width: d.hout,
            step_stride,
            batch_stride,
            offset: dir * d.hout,
        }
    }
}

/// Direction `dir`'s read-only `[T][B][Hout]` window of a `D*Hout`-wide buffer.
fn dir_view<'a, T>(data: &'a [T], d: &Dims, batch_major: bool, dir: usize) -> SeqView<'a, T> {
    let (step_stride, batch_stride) = seq_strides(batch_major, d.steps, d.batch, d.out_width());
    SeqView {
        data,
        batch: d.batch,
        width: d.hout,
        step_stride,
        batch_stride,
        offset: dir * d.hout,
    }
}

/// The per-direction forward scratch (see [`crate::layout::fwd_scratch_len`]).
struct FwdScratch<'a, T> {
    h0: &'a mut [T],
    c0: &'a mut [T],
    products: &'a mut [T],
    gemm_a: &'a mut [T],
}

fn carve_fwd_scratch<'a, T: Float>(buf: &'a mut [T], d: &Dims) -> FwdScratch<'a, T> {
    let (b, h) = (d.batch, d.hidden);
    let mut c = Carver::new(buf);
    let gru = matches!(d.cell, CellKind::Gru { .. });
    FwdScratch {
        h0: c.take(b * d.hout),
        c0: c.take(if d.has_c() { b * h } else { 0 }),
        products: c.take(if gru { b * 3 * h } else { 0 }),
        gemm_a: c.take(gemm_a_len(d)),
    }
}

/// One direction of one layer forward over `input` (`[T*B, in]`, time-major): outputs into
/// `out`, the final state into `state`.
#[allow(clippy::too_many_arguments)]
fn forward_dir<T: Float>(
    call: &Call<'_, T>,
    (layer, dir): (usize, usize),
    input: &[T],
    tape: Tape<'_, T>,
    out: &mut OutBuf<'_, T>,
    state: &mut State<T>,
    scratch: &mut [T],
) {
    let d = call.dims();
    let spec = call.spec(layer, dir);
    let FwdScratch {
        h0,
        c0,
        products,
        gemm_a,
    } = carve_fwd_scratch(scratch, &d);
    // The initial state is copied: the loop reads it for resets while `state` gets the final.
    let (hr, cr) = (
        call.state_range(layer, dir, d.hout),
        call.state_range(layer, dir, d.hidden),
    );
    h0.copy_from_slice(&state.h[hr.clone()]);
    if d.has_c() {
        c0.copy_from_slice(&state.c[cr.clone()]);
    }
    let (w, step) = call.prepared.dir(call.params, layer, dir);
    let x = MatRef::row_major(input, d.steps * d.batch, spec.input, spec.input);
    let y = out.view(&d, dir);
    let run = DirForward {
        spec,
        arch: call.arch,
        w,
        step,
        gemm_a,
        x,
        masks: call.masks,
        h0,
        c0,
        y,
        tape,
        scratch: products,
    };
    let (h_n, c_n) = run.run();
    state.h[hr].copy_from_slice(h_n);
    if d.has_c() {
        state.c[cr].copy_from_slice(c_n);
    }
}

/// Inference. Workspace: `[x_tm][layer io A][layer io B][tape][scratch]`; directions run one
/// after the other on one inference tape, layer outputs alternate between A and B, the last
/// layer writes `y`.
pub(crate) fn forward<T: Float>(
    call: &Call<'_, T>,
    x: &[T],
    state: &mut State<T>,
    y: &mut [T],
    ws: &mut [T],
) {
    let d = call.dims();
    let lens = WorkspaceLens::new(&d).expect("sizes were checked");
    let tape_lens = TapeLens::new(&d, false).expect("sizes were checked");
    let mut c = Carver::new(ws);
    let x_buf = c.take(lens.x_tm);
    let (io_a, io_b) = c.take(lens.layer_io).split_at_mut(lens.layer_io / 2);
    let tape_buf = c.take(lens.infer_tape);
    let scratch = c.take(lens.fwd_scratch);
    let x_tm = time_major_input(x, &d, x_buf);
    for layer in 0..d.layers {
        // Layer k reads A if k is odd, B if even (k > 0); writes the other, or y if last.
        let (read, write) = if layer % 2 == 1 {
            (&*io_a, &mut *io_b)
        } else {
            (&*io_b, &mut *io_a)
        };
        let input = if layer == 0 { x_tm } else { read };
        let mut out = if layer + 1 == d.layers {
            OutBuf {
                data: &mut *y,
                batch_major: d.batch_major,
            }
        } else {
            OutBuf {
                data: write,
                batch_major: false,
            }
        };
        for dir in 0..d.dirs {
            let tape = carve_tape(&mut *tape_buf, &tape_lens);
            forward_dir(call, (layer, dir), input, tape, &mut out, state, scratch);
        }
    }
}

/// Training. The reserve holds every layer's tapes, the inputs of upper layers and the
/// dropout masks (see [`crate::layout`]); the workspace holds `[x_tm][scratch]`.
pub(crate) fn forward_train<T: Float>(
    call: &Call<'_, T>,
    x: &[T],
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
    let x_buf = c.take(lens.x_tm);
    let scratch = c.take(lens.fwd_scratch);
    let x_tm = time_major_input(x, &d, x_buf);
    for layer in 0..d.layers {
        let (below, here) = reserve.split_at_mut(rl.layer_start[layer]);
        // Layer k > 0 reads the input layer k-1 left at the end of its part of the reserve.
        let input: &[T] = if layer == 0 {
            x_tm
        } else {
            let prev_in = rl.layer_start[layer - 1] + d.dirs * tape_len;
            &below[prev_in..prev_in + rl.next_input]
        };
        let mut carver = Carver::new(here);
        let tapes: Vec<&mut [T]> = (0..d.dirs).map(|_| carver.take(tape_len)).collect();
        let last = layer + 1 == d.layers;
        let next_input = if last {
            None
        } else {
            Some(carver.take(rl.next_input))
        };
        let mask = if !last && d.dropout {
            Some(carver.take(rl.next_input))
        } else {
            None
        };
        let mut out = match next_input {
            None => OutBuf {
                data: &mut *y,
                batch_major: d.batch_major,
            },
            Some(data) => OutBuf {
                data,
                batch_major: false,
            },
        };
        for (dir, tape) in tapes.into_iter().enumerate() {
            forward_dir(
                call,
                (layer, dir),
                input,
                carve_tape(tape, &rl.tape),
                &mut out,
                state,
                scratch,
            );
        }
        if let Some(mask) = mask {
            let seed = dropout_seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(layer as u64);
            apply_dropout(out.data, mask, call.config.dropout, seed);
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

/// Backward through every layer, top-down. Workspace:
/// `[x_tm][dx_tm][layer io A][layer io B][backward scratch][forward scratch]`.
pub(crate) fn backward<T: Float>(
    call: &Call<'_, T>,
    x: &[T],
    dy: &[T],
    reserve: &[T],
    out: BackwardOut<'_, T>,
    ws: &mut [T],
) {
    let d = call.dims();
    let lens = WorkspaceLens::new(&d).expect("sizes were checked");
    let rl = ReserveLayout::new(&d).expect("sizes were checked");
    let bl = BwdScratchLens::new(&d).expect("sizes were checked");
    let tape_len = rl.tape.total().expect("sizes were checked");
    let BackwardOut {
        d_state,
        mut dx,
        grads,
    } = out;
    let mut c = Carver::new(ws);
    let x_buf = c.take(lens.x_tm);
    let dx_tm_buf = c.take(if dx.is_some() { lens.dx_tm } else { 0 });
    let (io_a, io_b) = c.take(lens.layer_io).split_at_mut(lens.layer_io / 2);
    let bwd_buf = c.take(lens.bwd_scratch);
    let fwd_scratch = c.take(lens.fwd_scratch);
    let x_tm = time_major_input(x, &d, x_buf);
    let rows = d.steps * d.batch;
    for layer in (0..d.layers).rev() {
        let top = layer + 1 == d.layers;
        // Layer k reads its output gradient from A if (L-1-k) is odd, B if even (k < L-1),
        // and writes its input gradient into the other.
        let (read, write) = if (d.layers - 1 - layer) % 2 == 1 {
            (&mut *io_a, &mut *io_b)
        } else {
            (&mut *io_b, &mut *io_a)
        };
        let (dy_data, dy_batch_major): (&[T], bool) = if top {
            (dy, d.batch_major)
        } else {
            (&*read, false)
        };
        let input: &[T] = if layer == 0 {
            x_tm
        } else {
            let prev_in = rl.layer_start[layer - 1] + d.dirs * tape_len;
            &reserve[prev_in..prev_in + rl.next_input]
        };
        let in_width = call.config.layer_input_size(layer);
        let d_input: Option<&mut [T]> = match (layer, dx.as_deref_mut()) {
            (0, None) => None,
            (0, Some(dx)) => Some(if d.batch_major { &mut *dx_tm_buf } else { dx }),
            _ => Some(&mut write[..rows * in_width]),
        };
        let mut d_input = d_input;
        for dir in 0..d.dirs {
            let spec = call.spec(layer, dir);
            let tape_at = rl.layer_start[layer] + dir * tape_len;
            let tape = tape_ref(&reserve[tape_at..tape_at + tape_len], &rl.tape);
            let FwdScratch { gemm_a, .. } = carve_fwd_scratch(&mut *fwd_scratch, &d);
            let mut sc = Carver::new(&mut *bwd_buf);
            let scratch = BwdScratch {
                dg: sc.take(bl.dg),
                d_an: sc.take(bl.d_an),
                dh: sc.take(bl.dh),
                dc: sc.take(bl.dc),
                step: sc.take(bl.step),
                dh_all: sc.take(bl.dh_all),
                gemm_a,
            };
            let (hr, cr) = (
                call.state_range(layer, dir, d.hout),
                call.state_range(layer, dir, d.hidden),
            );
            let (w, step) = call.prepared.dir(call.params, layer, dir);
            let d_c = if d.has_c() {
                &mut d_state.c[cr]
            } else {
                &mut [][..]
            };
            let run = DirBackward {
                spec,
                arch: call.arch,
                w,
                step,
                x: MatRef::row_major(input, rows, in_width, in_width),
                masks: call.masks,
                tape,
                dy: dir_view(dy_data, &d, dy_batch_major, dir),
                d_h: &mut d_state.h[hr],
                d_c,
                grads: grads.layer_mut(layer, dir),
                dx: d_input
                    .as_deref_mut()
                    .map(|buf| (MatMut::row_major(buf, rows, in_width, in_width), dir > 0)),
                scratch,
            };
            run.run();
        }
        // Through the dropout that produced this layer's input.
        if layer > 0 && d.dropout {
            let mask_at = rl.layer_start[layer - 1] + d.dirs * tape_len + rl.next_input;
            let mask = &reserve[mask_at..mask_at + rl.next_input];
            if let Some(g) = d_input {
                for (g, &m) in g.iter_mut().zip(mask) {
                    *g *= m;
                }
            }
        }
    }
    if let (true, Some(dx)) = (d.batch_major, dx) {
        transpose_seq(dx_tm_buf, dx, d.steps, d.batch, d.input);
    }
}

#[cfg(test)]
mod tests {
    use super::transpose_seq;

    #[test]
    fn transpose_round_trip() {
        let (outer, inner, width) = (3, 4, 2);
        let src: Vec<u32> = (0..24).collect();
        let mut mid = vec![0; 24];
        let mut back = vec![0; 24];
        transpose_seq(&src, &mut mid, outer, inner, width);
        assert_eq!(&mid[..4], &[0, 1, 8, 9]);
        transpose_seq(&mid, &mut back, inner, outer, width);
        assert_eq!(back, src);
    }
}
