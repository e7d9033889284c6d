//! Where a call's time goes, phase by phase: with the `phase-timers` feature, every
//! `forward`, `forward_train` and `backward` records on the calling thread how long each of
//! its phases took (the input projection, the time loops, the weight gradients, the copies
//! of x, y and dx between the caller's layout and the chunks'), layer by layer, and [`take`]
//! hands the records over. Every phase is recorded, at about zero where it has nothing to do
//! (x already in the chunks' order, no dx asked for). Without the feature nothing is timed
//! (the timers compile to the calls themselves) and [`take`] returns nothing.
//!
//! For profiling beside the benchmark runner's `--budget`, which times each part alone: the
//! phases show which part runs slower inside a call. `examples/profile_case.rs` prints their
//! medians over its iterations:
//!
//! ```text
//! cargo run --release --features phase-timers --example profile_case -- lstm 256 32 64 train 40 0
//! ```

use std::time::Duration;

/// A phase of a layer call, in the order a call runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// The caller's x copied into the chunks' row order (forward).
    ForwardInputRows,
    /// A layer's input projection, `x W_ih^T + b` for every step at once (or, for token
    /// input, the table's rows gathered); one record per direction.
    ForwardProjection,
    /// A layer's time loops: every step's recurrent product and pointwise pass.
    ForwardLoops,
    /// The top layer's output copied into the caller's layout.
    ForwardOutputs,
    /// The caller's x copied into the chunks' row order again (backward).
    BackwardInputRows,
    /// A layer's backward time loops: every step's gate gradients and `dh` product.
    BackwardLoops,
    /// A layer's weight and bias gradients (for token input, the table's too).
    BackwardWeightGradients,
    /// A layer's input gradients: the lower layer's dL/dy, or at the bottom the caller's
    /// dx (or the table's gradient rows, for token input: part of the weight gradients).
    BackwardInputGradients,
    /// dL/dx copied into the caller's layout.
    BackwardInputGradientRows,
}

/// The phases timed on this thread since the last call, in the order they ran, and clears
/// them: one record per call for the copies of x, y and dx, per layer for the rest (all
/// directions together), per layer and direction for the projection. Records accumulate
/// until taken, so a long run with the feature on should take them now and then. Empty
/// without the `phase-timers` feature.
pub fn take() -> Vec<(Phase, Duration)> {
    imp::take()
}

/// Runs `f`, recording its time as `phase` (with the feature).
#[inline(always)]
pub(crate) fn timed<R>(phase: Phase, f: impl FnOnce() -> R) -> R {
    imp::timed(phase, f)
}

/// Records the time from [`Timer::start`] to [`Timer::stop`] (or its drop) as a phase (with
/// the feature), for phases that are loops with borrows a closure would hold.
pub(crate) struct Timer {
    _started: imp::Started,
}

impl Timer {
    /// Starts timing `phase`.
    #[inline(always)]
    pub(crate) fn start(phase: Phase) -> Self {
        Timer {
            _started: imp::Started::now(phase),
        }
    }

    /// Ends the phase here (else at the end of the scope).
    #[inline(always)]
    pub(crate) fn stop(self) {}
}

#[cfg(feature = "phase-timers")]
mod imp {
    use super::Phase;
    use std::cell::RefCell;
    use std::time::{Duration, Instant};

    thread_local! {
        static RECORDS: RefCell<Vec<(Phase, Duration)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn take() -> Vec<(Phase, Duration)> {
        RECORDS.with(|r| std::mem::take(&mut *r.borrow_mut()))
    }

    pub(super) fn timed<R>(phase: Phase, f: impl FnOnce() -> R) -> R {
        let _started = Started::now(phase);
        f()
    }

    /// A phase being timed; recorded when dropped.
    pub(super) struct Started(Phase, Instant);

    impl Started {
        pub(super) fn now(phase: Phase) -> Self {
            Started(phase, Instant::now())
        }
    }

    impl Drop for Started {
        fn drop(&mut self) {
            let took = self.1.elapsed();
            RECORDS.with(|r| r.borrow_mut().push((self.0, took)));
        }
    }
}

#[cfg(not(feature = "phase-timers"))]
mod imp {
    use super::Phase;
    use std::time::Duration;

    pub(super) fn take() -> Vec<(Phase, Duration)> {
        Vec::new()
    }

    #[inline(always)]
    pub(super) fn timed<R>(_: Phase, f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Nothing to time.
    pub(super) struct Started;

    impl Started {
        #[inline(always)]
        pub(super) fn now(_: Phase) -> Self {
            Started
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backward, Config, Input, Recurrent, Reserve, SeqShape, Workspace};

    /// One training step of a 2-layer LSTM, time-major at batch 16: two chunks of 8, so x,
    /// y and dx are copied between the caller's order and theirs.
    fn train_step() {
        let lstm = Recurrent::<f64>::with_seed(Config::lstm(4, 5).with_layers(2), 1).unwrap();
        let shape = SeqShape::new(6, 16);
        let x = vec![0.3; 6 * 16 * 4];
        let mut y = vec![0.0; 6 * 16 * 5];
        let (mut state, mut reserve, mut ws) =
            (lstm.zero_state(16), Reserve::new(), Workspace::new());
        lstm.forward_train(
            Input::new(&x, shape),
            &mut state,
            &mut y,
            &mut reserve,
            &mut ws,
        )
        .unwrap();
        let (mut grads, mut d_state, mut dx) =
            (lstm.zero_grads(), lstm.zero_state(16), vec![0.0; x.len()]);
        let out = Backward {
            d_state: &mut d_state,
            dx: Some(&mut dx),
            grads: &mut grads,
        };
        lstm.backward(Input::new(&x, shape), &y, &mut reserve, out, &mut ws)
            .unwrap();
    }

    /// With the feature: each layer's phases once per call, in order, then cleared.
    #[cfg(feature = "phase-timers")]
    #[test]
    fn a_training_step_records_each_layers_phases() {
        let _ = take();
        train_step();
        let got: Vec<Phase> = take().into_iter().map(|(p, _)| p).collect();
        use Phase::*;
        let mut want = vec![ForwardInputRows];
        for _layer in 0..2 {
            want.extend([ForwardProjection, ForwardLoops]);
        }
        want.extend([ForwardOutputs, BackwardInputRows]);
        // Each layer's input gradients: the lower layer's dL/dy, or the caller's dx.
        for _layer in (0..2).rev() {
            want.extend([
                BackwardLoops,
                BackwardWeightGradients,
                BackwardInputGradients,
            ]);
        }
        want.push(BackwardInputGradientRows);
        assert_eq!(got, want);
        assert!(take().is_empty());
    }

    /// Without the feature nothing is recorded.
    #[cfg(not(feature = "phase-timers"))]
    #[test]
    fn nothing_is_recorded_without_the_feature() {
        train_step();
        assert!(take().is_empty());
    }
}
