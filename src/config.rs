//! What a recurrent module computes: [`Config`], and the call-independent options
//! [`SeqLayout`] and [`Parallelism`].

use crate::error::Error;
pub use fused_rnn_kernels::{CellKind, Nonlinearity};

/// How sequences are laid out in the input and output buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SeqLayout {
    /// `[T, B, F]`: all sequences' step 0, then step 1, ... (PyTorch's default).
    #[default]
    TimeMajor,
    /// `[B, T, F]`: each sequence's steps together (PyTorch's `batch_first=True`). The caller
    /// never copies: inputs are read and outputs written in this layout.
    BatchMajor,
}

/// How a call uses threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Parallelism {
    /// One thread.
    Sequential,
    /// The current rayon pool. Sums are cut only by the shapes (batch chunks), never split
    /// across threads, and reductions run in a fixed order, so results are bitwise the same
    /// for any thread count.
    #[default]
    Rayon,
}

/// The configuration of a recurrent module, PyTorch's `nn.LSTM` / `nn.GRU` / `nn.RNN`
/// arguments: build one with [`Config::lstm`], [`Config::gru`] or [`Config::rnn`] and the
/// `with_*` methods.
///
/// ```
/// use fused_rnn::{Config, SeqLayout};
/// let config = Config::lstm(64, 128).with_layers(2).with_layout(SeqLayout::BatchMajor);
/// assert_eq!(config.output_size(), 128);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The cell.
    pub cell: CellKind,
    /// Features per input step (I).
    pub input_size: usize,
    /// Hidden units per layer and direction (H).
    pub hidden_size: usize,
    /// Stacked layers (PyTorch `num_layers`), at least 1.
    pub num_layers: usize,
    /// Whether the layers have `bias_ih` and `bias_hh` (PyTorch `bias`).
    pub bias: bool,
    /// Whether each layer also runs from the last step to the first (PyTorch
    /// `bidirectional`): outputs are `[forward, reverse]` on the feature axis.
    pub bidirectional: bool,
    /// LSTM projection size P (PyTorch `proj_size`), 0 for none: `h = W_hr (o * tanh(c))`.
    pub proj_size: usize,
    /// Dropout probability on every layer's output but the last, in `forward_train` only.
    pub dropout: f64,
    /// The input and output layout.
    pub layout: SeqLayout,
    /// Threads.
    pub parallelism: Parallelism,
}

impl Config {
    fn new(cell: CellKind, input_size: usize, hidden_size: usize) -> Self {
        Config {
            cell,
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            bidirectional: false,
            proj_size: 0,
            dropout: 0.0,
            layout: SeqLayout::TimeMajor,
            parallelism: Parallelism::Rayon,
        }
    }
    /// An LSTM (PyTorch `nn.LSTM(input_size, hidden_size)`).
    pub fn lstm(input_size: usize, hidden_size: usize) -> Self {
        Self::new(CellKind::Lstm, input_size, hidden_size)
    }
    /// A GRU with PyTorch's reset-after form (`nn.GRU(input_size, hidden_size)`); see
    /// [`Config::with_reset_after`].
    pub fn gru(input_size: usize, hidden_size: usize) -> Self {
        Self::new(CellKind::Gru { reset_after: true }, input_size, hidden_size)
    }
    /// A vanilla tanh RNN (`nn.RNN(input_size, hidden_size)`); see
    /// [`Config::with_nonlinearity`].
    pub fn rnn(input_size: usize, hidden_size: usize) -> Self {
        Self::new(CellKind::Rnn(Nonlinearity::Tanh), input_size, hidden_size)
    }
    /// The same shape with another cell.
    pub fn with_cell(mut self, cell: CellKind) -> Self {
        self.cell = cell;
        self
    }
    /// Stacked layers.
    pub fn with_layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }
    /// Biases on or off.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// Bidirectional or not.
    pub fn with_bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }
    /// LSTM projection size (0 for none).
    pub fn with_proj_size(mut self, proj_size: usize) -> Self {
        self.proj_size = proj_size;
        self
    }
    /// Dropout between layers while training.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }
    /// Input and output layout.
    pub fn with_layout(mut self, layout: SeqLayout) -> Self {
        self.layout = layout;
        self
    }
    /// Threads.
    pub fn with_parallelism(mut self, parallelism: Parallelism) -> Self {
        self.parallelism = parallelism;
        self
    }
    /// For a GRU, where the reset gate acts.
    ///
    /// * `true` (default): after the recurrent product,
    ///   `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`, as PyTorch, cuDNN and ONNX with
    ///   `linear_before_reset=1` compute it; one recurrent product per step.
    /// * `false`: before it, `n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)`, the form of Cho
    ///   et al., "Learning Phrase Representations using RNN Encoder-Decoder" (2014,
    ///   <https://arxiv.org/abs/1406.1078>), Keras `reset_after=False` and the ONNX default;
    ///   it needs a second product per step, after r is known.
    ///
    /// Both use PyTorch's parameter names and shapes. No effect on other cells.
    pub fn with_reset_after(mut self, reset_after: bool) -> Self {
        if let CellKind::Gru { .. } = self.cell {
            self.cell = CellKind::Gru { reset_after };
        }
        self
    }
    /// For a vanilla RNN, the activation (PyTorch `nonlinearity`). No effect on other cells.
    pub fn with_nonlinearity(mut self, nonlinearity: Nonlinearity) -> Self {
        if let CellKind::Rnn(_) = self.cell {
            self.cell = CellKind::Rnn(nonlinearity);
        }
        self
    }

    /// 2 if bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }
    /// The width of h per direction: P when projected, else H.
    pub fn state_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }
    /// The width of an output step: directions times [`Config::state_size`].
    pub fn output_size(&self) -> usize {
        self.directions() * self.state_size()
    }
    /// The input width of layer `layer`.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.output_size()
        }
    }

    /// The number of parameter elements (every tensor of [`crate::params`] together), as
    /// PyTorch's `sum(p.numel() for p in module.parameters())`; computed without allocating,
    /// so a size read from an untrusted file can be checked before anything is built.
    ///
    /// ```
    /// use fused_rnn::Config;
    /// // 4 gates * 20 * (10 + 20 + 2 biases)
    /// assert_eq!(Config::lstm(10, 20).num_parameters()?, 2560);
    /// # Ok::<(), fused_rnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Config::validate`], or [`Error::SizeOverflow`].
    pub fn num_parameters(&self) -> Result<usize, Error> {
        self.validate()?;
        crate::params::expected_tensors(self).try_fold(0usize, |total, spec| {
            crate::error::add(&[total, crate::error::mul(&spec.shape)?])
        })
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::ZeroDim`] for a zero size or layer count; [`Error::InvalidArgument`] for a
    /// projection on a non-LSTM cell, a projection not smaller than the hidden size (as
    /// PyTorch requires), or a dropout outside `[0, 1)`.
    pub fn validate(&self) -> Result<(), Error> {
        for (arg, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if v == 0 {
                return Err(Error::ZeroDim { arg });
            }
        }
        if self.proj_size > 0 && self.cell != CellKind::Lstm {
            return Err(Error::invalid(
                "proj_size",
                "projection is defined for LSTM only",
            ));
        }
        if self.proj_size >= self.hidden_size && self.proj_size > 0 {
            return Err(Error::invalid(
                "proj_size",
                format!(
                    "{} must be smaller than hidden_size {}",
                    self.proj_size, self.hidden_size
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(
                "dropout",
                format!("{} is not in [0, 1)", self.dropout),
            ));
        }
        Ok(())
    }
}
