//! The machine's FMA peak, measured with the kernels' FMA loop on 1..n threads at once.

use std::time::Instant;

/// GFLOP/s at each thread count: given with `--peak 1=114,2=224`, else measured.
pub fn peaks(threads: &[usize], given: &[String]) -> Vec<(usize, f64)> {
    threads
        .iter()
        .map(|&t| {
            let from_arg = given.iter().find_map(|g| {
                let (k, v) = g.split_once('=')?;
                (k.trim().parse::<usize>().ok()? == t)
                    .then(|| v.trim().parse::<f64>().ok())
                    .flatten()
            });
            (t, from_arg.unwrap_or_else(|| measure(t)))
        })
        .collect()
}

/// Per thread count, the higher of two measurements of the peak (taken before and after the
/// cases): on a shared machine a neighbour's burst only ever lowers a measurement, and a low
/// peak would overstate every row's fraction of it. (A run on a 2-core Zen 3 measured 152.5
/// GFLOP/s on 2 threads before its cases; the same loop gave 189.6-196.9 minutes later.)
pub fn higher(first: &[(usize, f64)], second: &[(usize, f64)]) -> Vec<(usize, f64)> {
    first
        .iter()
        .map(|&(t, p)| {
            let again = second.iter().find(|&&(u, _)| u == t).map_or(p, |&(_, q)| q);
            (t, p.max(again))
        })
        .collect()
}

/// The FMA loop on `threads` threads at once, best of 5 runs of about 0.2 s.
fn measure(threads: usize) -> f64 {
    let arch = fused_rnn_kernels::arch();
    let iters = 20_000_000;
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let flops: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| s.spawn(|| fused_rnn_kernels::peak::fma_loop(arch, iters)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("FMA loop").0)
                .sum()
        });
        best = best.max(flops / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_higher_peak_of_each_thread_count() {
        let first = [(1, 99.0), (2, 152.5)];
        let second = [(1, 97.6), (2, 196.3)];
        assert_eq!(higher(&first, &second), vec![(1, 99.0), (2, 196.3)]);
        // A thread count the second measurement lacks keeps the first.
        assert_eq!(higher(&first, &second[..1]), vec![(1, 99.0), (2, 152.5)]);
    }

    #[test]
    fn a_given_peak_is_used_as_given() {
        let given = ["1=114".to_string(), "2=224.5".to_string()];
        assert_eq!(peaks(&[1, 2], &given), vec![(1, 114.0), (2, 224.5)]);
    }
}
