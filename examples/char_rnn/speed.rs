//! Training speed in characters per second, measured as `char_rnn_torch.py` measures
//! PyTorch's: without the warm-up. The run's first step also allocates the buffers and
//! faults their pages in (20-30 ms more than a later step at the default size, a 0.3-0.5%
//! error on a 120-step run on 2 threads); the PyTorch script leaves its first 10 steps out.

use std::time::Duration;

/// The time of each training step of a run, summed apart from the first.
#[derive(Clone, Debug)]
pub struct Speed {
    chars_per_step: f64,
    first: Option<Duration>,
    rest: Duration,
    rest_steps: u64,
}

impl Speed {
    /// No steps yet; each step trains `chars_per_step` characters.
    pub fn new(chars_per_step: usize) -> Self {
        Speed {
            chars_per_step: chars_per_step as f64,
            first: None,
            rest: Duration::ZERO,
            rest_steps: 0,
        }
    }

    /// Adds a step that took `took`.
    pub fn add(&mut self, took: Duration) {
        if self.first.is_none() {
            self.first = Some(took);
        } else {
            self.rest += took;
            self.rest_steps += 1;
        }
    }

    /// Characters per second over the steps after the first; over the first alone in a run
    /// of one step; 0 before any.
    pub fn chars_per_s(&self) -> f64 {
        let (steps, time) = match (self.first, self.rest_steps) {
            (None, _) => return 0.0,
            (Some(first), 0) => (1, first),
            (_, n) => (n, self.rest),
        };
        steps as f64 * self.chars_per_step / time.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_counts_only_alone() {
        let mut s = Speed::new(100);
        assert_eq!(s.chars_per_s(), 0.0);
        s.add(Duration::from_millis(500));
        assert!((s.chars_per_s() - 200.0).abs() < 1e-9);
        s.add(Duration::from_millis(100));
        s.add(Duration::from_millis(300));
        // 2 steps of 100 characters in 0.4 s; the 0.5 s warm-up step is left out.
        assert!((s.chars_per_s() - 500.0).abs() < 1e-9);
    }
}
