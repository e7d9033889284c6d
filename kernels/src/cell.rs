//! The cell kinds, their gate counts and PyTorch's gate order, written down once.

/// The activation of a vanilla RNN (PyTorch's `nonlinearity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Nonlinearity {
    /// `h' = tanh(...)` (PyTorch's default).
    #[default]
    Tanh,
    /// `h' = max(0, ...)`; its derivative at exactly 0 is taken as 0, as PyTorch does.
    Relu,
}

/// A recurrent cell: what one step computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// Vanilla RNN, one gate: `h' = act(W_ih x + b_ih + W_hh h + b_hh)`.
    Rnn(Nonlinearity),
    /// LSTM, gates i, f, g, o: `c' = f*c + i*g`, `h' = o*tanh(c')`.
    Lstm,
    /// GRU, gates r, z, n. `reset_after: true` is PyTorch's and cuDNN's form (ONNX
    /// `linear_before_reset=1`): `n = tanh(W_in x + b_in + r*(W_hn h + b_hn))`. `false` is
    /// Cho et al. (2014), Keras `reset_after=False`, the ONNX default:
    /// `n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)`.
    Gru {
        /// Whether the reset gate multiplies after the recurrent product.
        reset_after: bool,
    },
}

impl CellKind {
    /// Gates per hidden unit: 1 (RNN), 3 (GRU), 4 (LSTM).
    pub const fn gates(self) -> usize {
        match self {
            CellKind::Rnn(_) => 1,
            CellKind::Gru { .. } => 3,
            CellKind::Lstm => 4,
        }
    }
    /// Whether the cell carries a cell state `c` beside `h` (LSTM only).
    pub const fn has_cell_state(self) -> bool {
        matches!(self, CellKind::Lstm)
    }
    /// A short name: `lstm`, `gru`, `gru_reset_before`, `rnn_tanh`, `rnn_relu`.
    pub const fn name(self) -> &'static str {
        match self {
            CellKind::Rnn(Nonlinearity::Tanh) => "rnn_tanh",
            CellKind::Rnn(Nonlinearity::Relu) => "rnn_relu",
            CellKind::Lstm => "lstm",
            CellKind::Gru { reset_after: true } => "gru",
            CellKind::Gru { reset_after: false } => "gru_reset_before",
        }
    }
    /// All cell kinds, for tests that cover each.
    pub const ALL: [CellKind; 5] = [
        CellKind::Rnn(Nonlinearity::Tanh),
        CellKind::Rnn(Nonlinearity::Relu),
        CellKind::Lstm,
        CellKind::Gru { reset_after: true },
        CellKind::Gru { reset_after: false },
    ];
}

/// PyTorch's gate order: the row blocks of `weight_ih` / `weight_hh` and the column blocks of
/// every gate buffer. Gate `k` of a cell with hidden size H occupies `k*H .. (k+1)*H`.
pub mod gate {
    /// LSTM input gate.
    pub const LSTM_I: usize = 0;
    /// LSTM forget gate.
    pub const LSTM_F: usize = 1;
    /// LSTM cell candidate.
    pub const LSTM_G: usize = 2;
    /// LSTM output gate.
    pub const LSTM_O: usize = 3;
    /// GRU reset gate.
    pub const GRU_R: usize = 0;
    /// GRU update gate.
    pub const GRU_Z: usize = 1;
    /// GRU candidate.
    pub const GRU_N: usize = 2;
}
