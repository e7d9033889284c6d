//! Training: the text in `batch` parallel streams, truncated BPTT in windows of `seq`
//! characters with the state carried (detached) across windows, softmax cross-entropy on
//! every step, clipping by global norm, Adam or Adagrad. The recipe of
//! `../shared/bench/char_rnn_torch.py`.

use fused_rnn::clip::clip_grad_norm;
use fused_rnn::nn::softmax_cross_entropy;
use fused_rnn::optim::{Adagrad, Adam, Optimizer};
use fused_rnn::{Input, SeqShape, State, Tbptt, Truncation, Workspace};

use crate::corpus::{Streams, Text};
use crate::model::{CharModel, ModelGrads};

/// The training recipe (the model's shape is a [`crate::model::ModelConfig`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Parallel streams.
    pub batch: usize,
    /// Characters per window.
    pub seq: usize,
    pub lr: f64,
    /// Global-norm clipping threshold.
    pub clip: f64,
    /// `adam` or `adagrad`.
    pub optimizer: String,
    pub seed: u64,
}

/// The optimizer and its state.
#[derive(Clone, Debug, PartialEq)]
pub enum Optim {
    Adam(Adam<f32>),
    Adagrad(Adagrad<f32>),
}

impl Optim {
    /// A fresh optimizer of the kind named.
    pub fn new(name: &str, lr: f64) -> Result<Self, String> {
        match name {
            "adam" => Ok(Optim::Adam(Adam::new(lr))),
            "adagrad" => Ok(Optim::Adagrad(Adagrad::new(lr))),
            other => Err(format!("unknown optimizer {other:?} (adam or adagrad)")),
        }
    }
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]]) -> Result<(), String> {
        match self {
            Optim::Adam(o) => o.step(params, grads),
            Optim::Adagrad(o) => o.step(params, grads),
        }
        .map_err(|e| e.to_string())
    }
}

/// A training run: the model, its optimizer, where it is in the text, and the buffers.
pub struct Trainer {
    pub model: CharModel,
    pub optim: Optim,
    pub opts: TrainOptions,
    pub text: Text,
    /// Updates done.
    pub step: u64,
    /// The next window's first step in every stream.
    pub pos: usize,
    grads: ModelGrads,
    tbptt: Tbptt<f32>,
    ids: Vec<usize>,
    targets: Vec<usize>,
    logits: Vec<f32>,
    d_logits: Vec<f32>,
}

impl Trainer {
    /// A run from the start of `text`.
    pub fn new(model: CharModel, text: Text, opts: TrainOptions) -> Result<Self, String> {
        if opts.batch == 0 || opts.seq == 0 {
            return Err("batch and seq must be at least 1".into());
        }
        let streams = Streams::new(text.split().0, opts.batch);
        if streams.len < opts.seq + 1 {
            return Err(format!(
                "the training text ({} characters) is too short for {} streams of {} + 1 characters",
                text.split().0.len(),
                opts.batch,
                opts.seq
            ));
        }
        let tbptt = Tbptt::new(&model.rnn, opts.batch, Truncation::windows(opts.seq))
            .map_err(|e| e.to_string())?;
        let rows = opts.batch * opts.seq;
        let v = model.config.vocab;
        Ok(Trainer {
            grads: model.zero_grads(),
            optim: Optim::new(&opts.optimizer, opts.lr)?,
            tbptt,
            ids: vec![0; rows],
            targets: vec![0; rows],
            logits: vec![0.0; rows * v],
            d_logits: vec![0.0; rows * v],
            model,
            opts,
            text,
            step: 0,
            pos: 0,
        })
    }

    /// The state carried into the next window.
    pub fn carried(&self) -> &State<f32> {
        self.tbptt.state()
    }

    /// Restores a checkpoint's carried state and dropout seed.
    pub fn restore(&mut self, state: &State<f32>, dropout_seed: u64) -> Result<(), String> {
        self.tbptt.set_state(state).map_err(|e| e.to_string())?;
        self.tbptt.set_dropout_seed(dropout_seed);
        Ok(())
    }

    /// The next window's dropout seed.
    pub fn dropout_seed(&self) -> u64 {
        self.tbptt.dropout_seed()
    }

    /// One update on the next window; returns its mean loss in nats per character.
    pub fn train_step(&mut self) -> Result<f64, String> {
        let streams = Streams::new(self.text.split().0, self.opts.batch);
        // Past the end of the streams: start over from a zero state (a new epoch).
        if self.pos + self.opts.seq + 1 > streams.len {
            self.pos = 0;
            self.tbptt.reset();
        }
        let (seq, batch) = (self.opts.seq, self.opts.batch);
        streams.window(self.pos, seq, &mut self.ids);
        streams.window(self.pos + 1, seq, &mut self.targets);
        let e = |e: fused_rnn::Error| e.to_string();
        let m = &mut self.model;
        self.grads.zero();
        let (head, head_grads) = (&m.head, &mut self.grads.head);
        let (logits, d_logits, targets) = (&mut self.logits, &mut self.d_logits, &self.targets);
        let vocab = m.config.vocab;
        // The embedding lookup runs fused into the first layer (token input): its gradient
        // comes back as dL/dtable, the embedding's weight gradient.
        let loss = self
            .tbptt
            .step_tokens(
                &m.rnn,
                (&self.ids, &m.embed.weight),
                &mut self.grads.rnn,
                &mut self.grads.embed.weight,
                |y, dy| -> Result<f64, fused_rnn::Error> {
                    head.forward(y, logits)?;
                    let loss = softmax_cross_entropy(logits, vocab, targets, d_logits)?;
                    head.backward(y, d_logits, Some(dy), head_grads)?;
                    Ok(loss)
                },
            )
            .map_err(e)?
            .map_err(e)?;
        let mut grads = self.grads.slices_mut();
        clip_grad_norm(&mut grads, self.opts.clip as f32);
        let grads: Vec<&[f32]> = grads.into_iter().map(|g| &*g).collect();
        self.optim.step(&mut m.params_mut(), &grads)?;
        self.pos += seq;
        self.step += 1;
        debug_assert_eq!(self.ids.len(), seq * batch);
        Ok(loss)
    }

    /// The mean loss (nats per character) over the validation text, in windows of `seq`
    /// from a zero state carried across windows, as char_rnn_torch.py measures it (fewer
    /// streams or shorter windows when the validation text is short).
    pub fn evaluate(&self) -> Result<f64, String> {
        let valid = self.text.split().1;
        if valid.len() < 2 {
            return Err(format!(
                "the validation text ({} characters) is too short",
                valid.len()
            ));
        }
        let batch = self
            .opts
            .batch
            .min(valid.len() / (self.opts.seq + 1))
            .max(1);
        let streams = Streams::new(valid, batch);
        let seq = self.opts.seq.min(streams.len - 1);
        let m = &self.model;
        let (v, hout) = (m.config.vocab, m.config.hidden);
        let rows = seq * batch;
        let (mut ids, mut targets) = (vec![0; rows], vec![0; rows]);
        let mut y = vec![0.0; rows * hout];
        let (mut logits, mut d_logits) = (vec![0.0; rows * v], vec![0.0; rows * v]);
        let mut state = m.rnn.zero_state(batch);
        let mut ws = Workspace::new();
        let (mut total, mut count) = (0.0, 0usize);
        let err = |e: fused_rnn::Error| e.to_string();
        let mut pos = 0;
        while pos + seq < streams.len {
            streams.window(pos, seq, &mut ids);
            streams.window(pos + 1, seq, &mut targets);
            let input = Input::tokens(&ids, &m.embed.weight, SeqShape::new(seq, batch));
            m.rnn
                .forward(input, &mut state, &mut y, &mut ws)
                .map_err(err)?;
            m.head.forward(&y, &mut logits).map_err(err)?;
            total += softmax_cross_entropy(&logits, v, &targets, &mut d_logits).map_err(err)?;
            count += 1;
            pos += seq;
        }
        Ok(total / count.max(1) as f64)
    }
}
