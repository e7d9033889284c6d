//! What the classic demonstrations share: a recurrent core with a linear readout, trained
//! with Adam and global-norm clipping, read out at every step or at each sequence's last
//! step (per-sequence lengths, no padding work).
//!
//! Included by the examples with `#[path = "common/demo.rs"] mod demo;`.

#![allow(dead_code)]

use fused_rnn::clip::clip_grad_norm;
use fused_rnn::nn::{Linear, softmax_cross_entropy};
use fused_rnn::optim::{Adam, Optimizer};
use fused_rnn::{Backward, Config, Grads, Input, Recurrent, Reserve, SeqShape, State, Workspace};

/// A recurrent core and a linear readout from its last layer's outputs.
pub struct Model {
    pub rnn: Recurrent<f32>,
    pub head: Linear<f32>,
    rnn_grads: Grads<f32>,
    head_grads: Linear<f32>,
    adam: Adam<f32>,
    clip: f32,
    reserve: Reserve<f32>,
    ws: Workspace<f32>,
}

/// Where the readout reads.
#[derive(Clone, Copy, Debug)]
pub enum Readout<'a> {
    /// Every step: `[T*B]` rows, time-major.
    Every,
    /// Each sequence's last step (`lengths[b] - 1`, or T - 1 without lengths): `[B]` rows.
    Last(Option<&'a [usize]>),
}

impl Model {
    /// A model of `config` with `outputs` readout features.
    pub fn new(config: Config, outputs: usize, lr: f64, seed: u64) -> Self {
        let rnn = Recurrent::with_seed(config, seed).expect("a valid configuration");
        let head = Linear::new(rnn.config().output_size(), outputs, seed ^ 7).expect("valid sizes");
        Model {
            rnn_grads: rnn.zero_grads(),
            head_grads: Linear::zeros(head.inputs(), head.outputs()).expect("valid sizes"),
            rnn,
            head,
            adam: Adam::new(lr),
            clip: 1.0,
            reserve: Reserve::new(),
            ws: Workspace::new(),
        }
    }

    /// Adds `bias` to the forget gates' input bias of an LSTM (every layer): the common
    /// initialization of Gers et al. (2000) and Jozefowicz et al. (2015) that lets an LSTM
    /// remember from the start.
    pub fn with_forget_bias(mut self, bias: f32) -> Self {
        let h = self.rnn.config().hidden_size;
        for t in self.rnn.tensors_mut() {
            if t.name().starts_with("bias_ih") {
                t.data_mut()[h..2 * h].iter_mut().for_each(|b| *b += bias);
            }
        }
        self
    }

    /// The readout rows of `y` (`[T][B][H]`) for `readout`, as (row in y) per output row.
    fn rows(readout: Readout<'_>, shape: SeqShape) -> Vec<usize> {
        match readout {
            Readout::Every => (0..shape.steps * shape.batch).collect(),
            Readout::Last(lengths) => (0..shape.batch)
                .map(|b| {
                    let last = lengths.map_or(shape.steps, |l| l[b]).max(1) - 1;
                    last * shape.batch + b
                })
                .collect(),
        }
    }

    /// Outputs of the readout (`[rows][outputs]`) for `x` (`[T][B][I]`) from `state`.
    pub fn predict(
        &mut self,
        x: &[f32],
        shape: SeqShape,
        lengths: Option<&[usize]>,
        readout: Readout<'_>,
        state: &mut State<f32>,
    ) -> Vec<f32> {
        let h = self.rnn.config().output_size();
        let mut y = vec![0.0; shape.steps * shape.batch * h];
        let input = with_lengths(x, shape, lengths);
        self.rnn
            .forward(input, state, &mut y, &mut self.ws)
            .expect("shapes fit");
        let rows = Self::rows(readout, shape);
        self.head_of(&y, h, &rows).1
    }

    /// The readout rows of `y` (width `h`) and the head's outputs on them.
    fn head_of(&self, y: &[f32], h: usize, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let picked: Vec<f32> = rows
            .iter()
            .flat_map(|&r| y[r * h..(r + 1) * h].iter().copied())
            .collect();
        let mut out = vec![0.0; rows.len() * self.head.outputs()];
        self.head.forward(&picked, &mut out).expect("shapes fit");
        (picked, out)
    }

    /// One Adam step on `loss(outputs, d_outputs) -> value` of the readout from a zero
    /// state; returns the loss. With `d_final`, also the final state's gradient enters.
    pub fn train(
        &mut self,
        x: &[f32],
        shape: SeqShape,
        lengths: Option<&[usize]>,
        readout: Readout<'_>,
        loss: impl FnOnce(&[f32], &mut [f32]) -> f64,
    ) -> f64 {
        let h = self.rnn.config().output_size();
        let mut y = vec![0.0; shape.steps * shape.batch * h];
        let input = with_lengths(x, shape, lengths);
        let mut state = self.rnn.zero_state(shape.batch);
        self.rnn
            .forward_train(input, &mut state, &mut y, &mut self.reserve, &mut self.ws)
            .expect("shapes fit");
        let rows = Self::rows(readout, shape);
        let (picked, out) = self.head_of(&y, h, &rows);
        let mut d_out = vec![0.0; out.len()];
        let value = loss(&out, &mut d_out);
        self.rnn_grads.fill(0.0);
        self.head_grads.weight.fill(0.0);
        self.head_grads.bias.fill(0.0);
        let mut d_picked = vec![0.0; picked.len()];
        self.head
            .backward(&picked, &d_out, Some(&mut d_picked), &mut self.head_grads)
            .expect("shapes fit");
        let mut dy = vec![0.0; y.len()];
        for (i, &r) in rows.iter().enumerate() {
            for (d, &g) in dy[r * h..(r + 1) * h]
                .iter_mut()
                .zip(&d_picked[i * h..(i + 1) * h])
            {
                *d += g;
            }
        }
        let mut d_state = self.rnn.zero_state(shape.batch);
        let out = Backward {
            d_state: &mut d_state,
            dx: None,
            grads: &mut self.rnn_grads,
        };
        self.rnn
            .backward(input, &dy, &mut self.reserve, out, &mut self.ws)
            .expect("shapes fit");
        self.update();
        value
    }

    /// Clips and applies the gradients.
    fn update(&mut self) {
        let mut grads: Vec<&mut [f32]> = self.rnn_grads.iter_mut().map(|t| t.data_mut()).collect();
        grads.push(&mut self.head_grads.weight);
        grads.push(&mut self.head_grads.bias);
        clip_grad_norm(&mut grads, self.clip);
        let grads: Vec<&[f32]> = grads.into_iter().map(|g| &*g).collect();
        let mut params: Vec<&mut [f32]> = self.rnn.tensors_mut().map(|t| t.data_mut()).collect();
        params.push(&mut self.head.weight);
        params.push(&mut self.head.bias);
        self.adam.step(&mut params, &grads).expect("fixed shapes");
    }
}

fn with_lengths<'a>(x: &'a [f32], shape: SeqShape, lengths: Option<&'a [usize]>) -> Input<'a, f32> {
    let input = Input::new(x, shape);
    match lengths {
        Some(l) => input.with_lengths(l),
        None => input,
    }
}

/// Mean squared error of `pred` against `target`, and its gradient.
pub fn mse(pred: &[f32], target: &[f32], d: &mut [f32]) -> f64 {
    let n = pred.len() as f64;
    let mut total = 0.0;
    for ((p, t), d) in pred.iter().zip(target).zip(d.iter_mut()) {
        let e = f64::from(p - t);
        total += e * e;
        *d = (2.0 * e / n) as f32;
    }
    total / n
}

/// Softmax cross-entropy over `classes` (see `fused_rnn::nn`), as a loss closure's body.
pub fn cross_entropy(logits: &[f32], classes: usize, targets: &[usize], d: &mut [f32]) -> f64 {
    softmax_cross_entropy(logits, classes, targets, d).expect("targets in range")
}

/// The index of the largest value of each row.
pub fn argmax_rows(values: &[f32], width: usize) -> Vec<usize> {
    values
        .chunks_exact(width)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
        })
        .collect()
}

/// Writes a one-hot row for `id` of `width` into `out`.
pub fn one_hot(out: &mut [f32], id: usize) {
    out.fill(0.0);
    out[id] = 1.0;
}
