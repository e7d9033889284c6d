//! A team of the pool's threads that stays together for a whole time loop, for the small
//! batches whose step product is split by columns (see [`crate::layout::splits_columns`]).
//!
//! Handing each step's pieces to the pool (a rayon `join` per step) costs a few
//! microseconds of wake-up and stealing per step, as much as the product itself at batch 1
//! and H = 256. Here every participant runs the loop from start to end: it claims the open
//! step's pieces (its own share first, so that each core keeps reading the same columns of
//! the weights from its own L2), and the participant that completes a step's last piece
//! runs the step's sequential part and opens the next step; the others spin until then.
//!
//! No participant ever waits for a piece that nobody has claimed: a participant waits only
//! when every piece of the open step is claimed, and a claimed piece is being computed by a
//! running thread, which never waits inside it. So the loop finishes even when some
//! participants never start (the pool busy elsewhere): the ones that run do all the work.
//! Which thread computes what never changes a result: each piece and each sequential part
//! is the same computation wherever it runs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

/// At most this many pieces per step.
pub(crate) const MAX_UNITS: usize = 16;

/// The value of `current` once the loop is over.
const DONE: usize = usize::MAX;

/// Keeps each counter on its own cache lines (two threads write them at every step).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicUsize);

/// The shared counters of one loop.
struct Team {
    /// The loop iteration whose pieces are open, or [`DONE`].
    current: Padded,
    /// Pieces of the open iteration completed.
    done: Padded,
    /// Per piece: 1 + the last iteration it was claimed for (claims only grow, so a
    /// participant that still looks at an earlier iteration cannot claim anything).
    claimed: [Padded; MAX_UNITS],
    units: usize,
    /// Set when a participant panics, so that the others stop waiting for it.
    failed: AtomicBool,
}

/// Sets `failed` if its participant unwinds.
struct PanicFlag<'a>(&'a AtomicBool);

impl Drop for PanicFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// Runs a loop whose iterations are `units` independent pieces followed by a sequential
/// part, on up to `participants` threads of the current rayon pool.
///
/// `first` is the first iteration (`None`: nothing to do). `unit(k, u)` computes piece `u`
/// of iteration `k` (concurrently with the other pieces); `finish(k)` runs after all of
/// iteration `k`'s pieces, on the thread that completed the last one, and returns the next
/// iteration, or `None` at the end. Allocates nothing.
pub(crate) fn run_team(
    participants: usize,
    first: Option<usize>,
    units: usize,
    unit: impl Fn(usize, usize) + Sync,
    finish: impl FnMut(usize) -> Option<usize> + Send,
) {
    assert!((1..=MAX_UNITS).contains(&units), "run_team: 1..=16 pieces");
    let Some(first) = first else {
        return;
    };
    let team = Team {
        current: Padded(AtomicUsize::new(first)),
        done: Padded::default(),
        claimed: Default::default(),
        units,
        failed: AtomicBool::new(false),
    };
    let finish = Mutex::new(finish);
    let work = |p: usize| team.work(p, participants, &unit, &finish);
    (0..participants.max(1))
        .into_par_iter()
        .with_max_len(1)
        .for_each(work);
}

impl Team {
    /// One participant's loop, `p` of `of`.
    fn work(
        &self,
        p: usize,
        of: usize,
        unit: &(impl Fn(usize, usize) + Sync),
        finish: &Mutex<impl FnMut(usize) -> Option<usize>>,
    ) {
        let _flag = PanicFlag(&self.failed);
        // This participant's share; the others' follow, in case they are late.
        let (start, end) = (p * self.units / of.max(1), (p + 1) * self.units / of.max(1));
        let share = end - start;
        loop {
            let k = self.current.0.load(Ordering::Acquire);
            if k == DONE || self.failed.load(Ordering::Acquire) {
                return;
            }
            let mut closed = false;
            for i in 0..self.units {
                // Every other iteration walks the share backwards, so that it starts with
                // the weights the last iteration read last, the likeliest to be in L2
                // still (measured on Zen 4, 2 threads: batch 1 at H = 256 3% faster, the
                // other inference cases unchanged).
                let u = if i < share && k % 2 == 1 {
                    end - 1 - i
                } else {
                    (start + i) % self.units
                };
                if self.claimed[u].0.fetch_max(k + 1, Ordering::AcqRel) > k {
                    continue;
                }
                unit(k, u);
                if self.done.0.fetch_add(1, Ordering::AcqRel) + 1 == self.units {
                    // The last piece of iteration k: run its sequential part, open the next.
                    self.done.0.store(0, Ordering::Relaxed);
                    let next = {
                        let mut finish = finish.lock().unwrap_or_else(|e| e.into_inner());
                        (*finish)(k)
                    };
                    self.current
                        .0
                        .store(next.unwrap_or(DONE), Ordering::Release);
                    closed = true;
                    break;
                }
            }
            if !closed {
                self.wait_past(k);
            }
        }
    }

    /// Spins until iteration `k` is closed (or a participant failed); yields to the OS
    /// after a while, in case the thread that closes it was descheduled.
    fn wait_past(&self, k: usize) {
        let mut spins = 0u32;
        while self.current.0.load(Ordering::Acquire) == k && !self.failed.load(Ordering::Acquire) {
            if spins < 1 << 14 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every piece of every iteration runs exactly once, each iteration's pieces before its
    /// sequential part, whatever the pool's size (including pools smaller than the team).
    #[test]
    fn every_piece_runs_once_before_its_iteration_closes() {
        for threads in [1, 2, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a pool");
            for (iters, units) in [(1, 1), (5, 3), (40, 16), (7, 2)] {
                let counts: Vec<AtomicUsize> =
                    (0..iters * units).map(|_| AtomicUsize::new(0)).collect();
                let mut closed = Vec::new();
                pool.install(|| {
                    run_team(
                        4,
                        Some(0),
                        units,
                        |k, u| {
                            counts[k * units + u].fetch_add(1, Ordering::Relaxed);
                        },
                        |k| {
                            let all_ran = (0..units)
                                .all(|u| counts[k * units + u].load(Ordering::Relaxed) == 1);
                            closed.push((k, all_ran));
                            (k + 1 < iters).then_some(k + 1)
                        },
                    )
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
                let expected: Vec<_> = (0..iters).map(|k| (k, true)).collect();
                assert_eq!(closed, expected, "threads {threads}, {iters} x {units}");
            }
        }
    }

    /// Iterations can be skipped (`finish` returns a later one), and `None` runs nothing.
    #[test]
    fn finish_chooses_the_next_iteration() {
        let seen = Mutex::new(Vec::new());
        run_team(
            2,
            Some(1),
            2,
            |k, _| seen.lock().expect("unpoisoned").push(k),
            |k| (k < 7).then_some(k + 3),
        );
        let mut seen = seen.into_inner().expect("unpoisoned");
        seen.sort();
        assert_eq!(seen, vec![1, 1, 4, 4, 7, 7]);
        run_team(2, None, 2, |_, _| panic!("nothing to run"), |_| None);
    }

    /// A panicking piece surfaces as a panic of the call instead of leaving the other
    /// participants waiting forever.
    #[test]
    fn a_panic_in_a_piece_does_not_hang_the_team() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| {
                run_team(
                    2,
                    Some(0),
                    4,
                    |k, u| assert!(!(k == 3 && u == 2), "piece failed"),
                    |k| (k < 10).then_some(k + 1),
                )
            })
        }));
        assert!(result.is_err());
    }
}
