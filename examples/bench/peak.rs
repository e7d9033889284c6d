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
