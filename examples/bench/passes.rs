//! One step's pointwise passes, forward then back, as a training call runs them, on `B x H`
//! units (for `--budget`): an LSTM's, a GRU's (reset after, PyTorch's) and a vanilla RNN's.
//!
//! Each pass writes over its inputs as the call does (the gates, then their gradients), and
//! the next step starts from what the last one left: the passes take no branch on values,
//! so any finite values time the same (denormals are flushed inside the kernels).

use fused_rnn_kernels::pointwise::gru::{
    GruBwdPointwiseInPlace, GruFwdPointwise, gru_bwd_pointwise_in_place, gru_fwd_pointwise,
};
use fused_rnn_kernels::pointwise::lstm::{
    LstmBwdPointwiseInPlace, LstmFwdPointwise, lstm_bwd_pointwise_in_place, lstm_fwd_pointwise,
};
use fused_rnn_kernels::pointwise::rnn::{
    RnnBwdPointwise, RnnFwdPointwise, rnn_bwd_pointwise, rnn_fwd_pointwise,
};
use fused_rnn_kernels::{Arch, CellKind, Nonlinearity, Rows, RowsMut, arch};

use super::budget::data;

/// The buffers of one step's passes: `b` rows of `h` hidden units.
pub struct Passes {
    cell: CellKind,
    arch: Arch,
    b: usize,
    h: usize,
    /// `[B][G*H]`: the gates, then their gradients (in place, as training runs them).
    gates: Vec<f32>,
    /// `[B][G*H]`: a GRU's recurrent products; an RNN's gate gradients.
    other: Vec<f32>,
    bias: Vec<f32>,
    bias_hn: Vec<f32>,
    /// `[B][H]` each: the state entering the step (an LSTM's c, a GRU's h), the state out
    /// (c and h for an LSTM, h and `hn` for a GRU), the gradient arriving and the one
    /// passed back (dc or dh), and dL/dy.
    prev: Vec<f32>,
    out: Vec<f32>,
    out2: Vec<f32>,
    d_in: Vec<f32>,
    d_out: Vec<f32>,
    dy: Vec<f32>,
}

impl Passes {
    /// The passes of `cell`, or `None` for a GRU with the reset before its product (no
    /// runner case has one).
    pub fn new(cell: CellKind, b: usize, h: usize) -> Option<Self> {
        if cell == (CellKind::Gru { reset_after: false }) {
            return None;
        }
        let gh = cell.gates() * h;
        Some(Passes {
            cell,
            arch: arch(),
            b,
            h,
            gates: data(b * gh),
            other: data(b * gh),
            bias: data(gh),
            bias_hn: data(h),
            prev: data(b * h),
            out: vec![0.0; b * h],
            out2: vec![0.0; b * h],
            d_in: data(b * h),
            d_out: vec![0.0; b * h],
            dy: data(b * h),
        })
    }

    /// One step forward, then back.
    pub fn step(&mut self) {
        match self.cell {
            CellKind::Lstm => self.lstm(),
            CellKind::Gru { .. } => self.gru(),
            CellKind::Rnn(nonlinearity) => self.rnn(nonlinearity),
        }
    }

    fn lstm(&mut self) {
        let (arch, b, h) = (self.arch, self.b, self.h);
        lstm_fwd_pointwise(
            arch,
            LstmFwdPointwise {
                gates: RowsMut::contiguous(&mut self.gates, b, 4 * h),
                bias: &self.bias,
                c_prev: Rows::contiguous(&self.prev, b, h),
                c: RowsMut::contiguous(&mut self.out, b, h),
                h: RowsMut::contiguous(&mut self.out2, b, h),
            },
        );
        lstm_bwd_pointwise_in_place(
            arch,
            LstmBwdPointwiseInPlace {
                gates: RowsMut::contiguous(&mut self.gates, b, 4 * h),
                c_prev: Rows::contiguous(&self.prev, b, h),
                dh: Rows::contiguous(&self.d_in, b, h),
                dy: None,
                dc: Rows::contiguous(&self.out, b, h),
                dc_prev: RowsMut::contiguous(&mut self.d_out, b, h),
            },
        );
    }

    fn gru(&mut self) {
        let (arch, b, h) = (self.arch, self.b, self.h);
        // `out` is h_t, `out2` the saved `h W_hn^T + b_hn`; `d_out` takes dL/dh_{t-1}'s
        // direct part and `other`'s first H columns of each row the input side's dn.
        gru_fwd_pointwise(
            arch,
            GruFwdPointwise {
                gates: RowsMut::contiguous(&mut self.gates, b, 3 * h),
                hidden_gates: Rows::contiguous(&self.other, b, 3 * h),
                bias: &self.bias,
                bias_hn: &self.bias_hn,
                h_prev: Rows::contiguous(&self.prev, b, h),
                hn: RowsMut::contiguous(&mut self.out2, b, h),
                h: RowsMut::contiguous(&mut self.out, b, h),
            },
        );
        gru_bwd_pointwise_in_place(
            arch,
            GruBwdPointwiseInPlace {
                gates: RowsMut::contiguous(&mut self.gates, b, 3 * h),
                hn: Rows::contiguous(&self.out2, b, h),
                h_prev: Rows::contiguous(&self.prev, b, h),
                dh: Rows::contiguous(&self.d_in, b, h),
                dy: Some(Rows::contiguous(&self.dy, b, h)),
                d_an: RowsMut::new(&mut self.other, b, h, 3 * h),
                dh_prev: RowsMut::contiguous(&mut self.d_out, b, h),
            },
        );
    }

    fn rnn(&mut self, nonlinearity: Nonlinearity) {
        let (arch, b, h) = (self.arch, self.b, self.h);
        rnn_fwd_pointwise(
            arch,
            RnnFwdPointwise {
                gates: RowsMut::contiguous(&mut self.gates, b, h),
                bias: &self.bias,
                nonlinearity,
                h: RowsMut::contiguous(&mut self.out, b, h),
            },
        );
        rnn_bwd_pointwise(
            arch,
            RnnBwdPointwise {
                gates: Rows::contiguous(&self.gates, b, h),
                dh: Rows::contiguous(&self.d_in, b, h),
                dy: Some(Rows::contiguous(&self.dy, b, h)),
                nonlinearity,
                d_gates: RowsMut::contiguous(&mut self.other, b, h),
            },
        );
    }
}

/// Every cell a sizes file can name (see `cases.rs`), for the tests.
#[cfg(test)]
pub const RUNNER_CELLS: [CellKind; 4] = [
    CellKind::Lstm,
    CellKind::Gru { reset_after: true },
    CellKind::Rnn(Nonlinearity::Tanh),
    CellKind::Rnn(Nonlinearity::Relu),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cell the sizes files name gets its passes, each of which writes its outputs
    /// (a pass that ran nothing would leave the zeros it started with).
    #[test]
    fn every_runner_cell_has_passes_that_write_their_outputs() {
        for cell in RUNNER_CELLS {
            let mut p = Passes::new(cell, 3, 17).expect("passes");
            // An RNN's gate gradients go to `other`, which starts as data.
            p.other.fill(0.0);
            p.step();
            assert!(
                p.out.iter().any(|&v| v != 0.0),
                "{cell:?}: forward wrote nothing"
            );
            let backward_out = match cell {
                CellKind::Rnn(_) => &p.other,
                _ => &p.d_out,
            };
            assert!(
                backward_out.iter().any(|&v| v != 0.0),
                "{cell:?}: backward wrote nothing"
            );
        }
        assert!(Passes::new(CellKind::Gru { reset_after: false }, 3, 17).is_none());
    }
}
