//! The model: embedding -> stacked recurrent layers -> linear head, all `fused_rnn` building
//! blocks, with its gradients and the flat parameter lists an optimizer takes.

use fused_rnn::nn::{Embedding, Linear};
use fused_rnn::{CellKind, Config, Grads, Nonlinearity, Recurrent};

/// The shape of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// `lstm`, `gru` or `rnn`.
    pub cell: String,
    pub layers: usize,
    pub hidden: usize,
    pub embed: usize,
    pub vocab: usize,
}

impl ModelConfig {
    /// The number of parameter elements, computed without allocating.
    pub fn num_parameters(&self) -> Result<usize, String> {
        let rnn = self
            .recurrent()?
            .num_parameters()
            .map_err(|e| e.to_string())?;
        [
            self.vocab.checked_mul(self.embed),
            self.vocab.checked_mul(self.hidden),
            Some(self.vocab),
        ]
        .into_iter()
        .try_fold(rnn, |total, n| total.checked_add(n?))
        .ok_or_else(|| "the model's sizes overflow".to_string())
    }

    /// The recurrent core's configuration.
    pub fn recurrent(&self) -> Result<Config, String> {
        let cell = match self.cell.as_str() {
            "lstm" => CellKind::Lstm,
            "gru" => CellKind::Gru { reset_after: true },
            "rnn" => CellKind::Rnn(Nonlinearity::Tanh),
            other => return Err(format!("unknown cell {other:?} (lstm, gru or rnn)")),
        };
        Ok(Config::lstm(self.embed, self.hidden)
            .with_cell(cell)
            .with_layers(self.layers))
    }
}

/// The parameters.
#[derive(Clone, Debug)]
pub struct CharModel {
    pub config: ModelConfig,
    pub embed: Embedding<f32>,
    pub rnn: Recurrent<f32>,
    pub head: Linear<f32>,
}

/// Gradients of every parameter, shaped like the model's.
#[derive(Clone, Debug)]
pub struct ModelGrads {
    pub embed: Embedding<f32>,
    pub rnn: Grads<f32>,
    pub head: Linear<f32>,
}

impl CharModel {
    /// A freshly initialized model (PyTorch's initializations), seeded.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Self, String> {
        let rnn_config = config.recurrent()?;
        let e = |e: fused_rnn::Error| e.to_string();
        Ok(CharModel {
            embed: Embedding::new(config.vocab, config.embed, seed).map_err(e)?,
            rnn: Recurrent::with_seed(rnn_config, seed.wrapping_add(1)).map_err(e)?,
            head: Linear::new(config.hidden, config.vocab, seed.wrapping_add(2)).map_err(e)?,
            config,
        })
    }

    /// Zero gradients.
    pub fn zero_grads(&self) -> ModelGrads {
        ModelGrads {
            embed: Embedding::zeros(self.config.vocab, self.config.embed).expect("valid sizes"),
            rnn: self.rnn.zero_grads(),
            head: Linear::zeros(self.config.hidden, self.config.vocab).expect("valid sizes"),
        }
    }

    /// Every parameter slice, in a fixed order (the optimizer's state follows it).
    pub fn params(&self) -> Vec<&[f32]> {
        let mut out: Vec<&[f32]> = vec![&self.embed.weight];
        out.extend(self.rnn.params().iter().map(|t| t.data()));
        out.push(&self.head.weight);
        out.push(&self.head.bias);
        out
    }

    /// The parameters, writable, in the order of [`CharModel::params`].
    pub fn params_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out: Vec<&mut [f32]> = vec![&mut self.embed.weight];
        out.extend(self.rnn.tensors_mut().map(|t| t.data_mut()));
        out.push(&mut self.head.weight);
        out.push(&mut self.head.bias);
        out
    }

    /// The parameters' names, in the order of [`CharModel::params_mut`].
    pub fn param_names(&self) -> Vec<String> {
        let mut out = vec!["embed.weight".to_string()];
        out.extend(
            self.rnn
                .params()
                .iter()
                .map(|t| format!("rnn.{}", t.name())),
        );
        out.push("head.weight".into());
        out.push("head.bias".into());
        out
    }
}

impl ModelGrads {
    /// Every gradient slice, in the order of [`CharModel::params_mut`].
    pub fn slices_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out: Vec<&mut [f32]> = vec![&mut self.embed.weight];
        out.extend(self.rnn.iter_mut().map(|t| t.data_mut()));
        out.push(&mut self.head.weight);
        out.push(&mut self.head.bias);
        out
    }

    /// Zeroes every gradient.
    pub fn zero(&mut self) {
        for s in self.slices_mut() {
            s.fill(0.0);
        }
    }
}
