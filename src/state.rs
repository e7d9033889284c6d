//! [`State`]: the hidden state a module carries between calls (and its gradient).

use crate::config::Config;
use crate::error::{Error, check_len};
use fused_rnn_kernels::Float;

/// The recurrent state of every layer and direction, PyTorch's `h_n` / `c_n`:
///
/// * `h`: `[num_layers * directions, batch, Hout]` (Hout = `proj_size` if set, else
///   `hidden_size`), layer-major, forward direction before reverse;
/// * `c`: `[num_layers * directions, batch, hidden_size]` for an LSTM, empty otherwise.
///
/// `forward` reads the initial state from it and leaves the final state in it, so
/// consecutive calls continue a sequence (truncated BPTT: the state carries forward, its
/// gradient does not). In `backward`'s [`Backward::d_state`](crate::Backward), the same
/// layout holds dL/d(final state) going in and dL/d(initial state) coming out.
#[derive(Clone, Debug, PartialEq)]
pub struct State<T> {
    /// Hidden states.
    pub h: Vec<T>,
    /// Cell states (LSTM only, else empty).
    pub c: Vec<T>,
}

impl<T: Float> State<T> {
    /// Zeros for `batch` sequences (PyTorch's default when no state is passed).
    pub fn zeros(config: &Config, batch: usize) -> Self {
        let (h, c) = Self::lens(config, batch);
        State {
            h: vec![T::ZERO; h],
            c: vec![T::ZERO; c],
        }
    }

    /// The lengths of `h` and `c` for `batch` sequences.
    pub fn lens(config: &Config, batch: usize) -> (usize, usize) {
        let rows = config.num_layers * config.directions() * batch;
        let c = if config.cell.has_cell_state() {
            rows * config.hidden_size
        } else {
            0
        };
        (rows * config.state_size(), c)
    }

    /// Sets every element to zero (drops the history, keeps the buffers).
    pub fn reset(&mut self) {
        self.h.fill(T::ZERO);
        self.c.fill(T::ZERO);
    }

    /// Checks the lengths for `batch` sequences; `what` names the argument in the error.
    pub(crate) fn check(
        &self,
        config: &Config,
        batch: usize,
        what: [&'static str; 2],
    ) -> Result<(), Error> {
        let (h, c) = Self::lens(config, batch);
        check_len(what[0], h, self.h.len())?;
        check_len(what[1], c, self.c.len())
    }
}
