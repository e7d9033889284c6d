//! The benchmark runner: every case of a sizes file at each thread count, with time per
//! iteration (median, min, max), GFLOP/s, the fraction of this machine's FMA peak (measured
//! here), the peak memory of the training path, and, with `--compare-torch` /
//! `--compare-ort`, PyTorch's and onnxruntime's times on the same cases in the same run.
//!
//! ```text
//! cargo run --release --example bench -- --threads 1,2
//! cargo run --release --example bench -- --threads 1,2 --compare-torch --compare-ort --json bench.json
//! cargo run --release --example bench -- --compare-torch --compare-ort --interleave  # peers row by row
//! cargo run --release --example bench -- --threads 1 --budget  # each training call's parts alone
//! ```
//!
//! The reference scripts live in the project's `shared/bench/` (set `--scripts`); they need
//! PyTorch and onnxruntime, installed once with
//! `python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install -r shared/bench/requirements.txt`
//! (then `--python /tmp/bench-venv/bin/python`). Benchmark on an idle machine and compare
//! ratios from one run: absolute times drift between runs on shared machines.

mod budget;
mod cases;
mod machine;
mod passes;
mod peak;
mod peers;
mod report;
mod timing;

use std::path::PathBuf;

use clap::Parser;

#[global_allocator]
static ALLOC: fused_rnn_kernels::testing::alloc::Counting =
    fused_rnn_kernels::testing::alloc::Counting;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "fused-rnn benchmark runner (see the example's docs)")]
struct Args {
    /// Thread counts, comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads: Vec<usize>,
    /// The sizes file (DeepBench cases).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/sizes.json"))]
    sizes: PathBuf,
    /// Only these cases (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Minimum timed seconds per case and thread count.
    #[arg(long, default_value_t = 1.0)]
    min_time: f64,
    /// Minimum samples per case and thread count.
    #[arg(long, default_value_t = 7)]
    min_samples: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also run PyTorch (bench_torch.py) on the same cases and print our speed over its.
    #[arg(long)]
    compare_torch: bool,
    /// Also run onnxruntime (bench_ort.py) on the infer cases.
    #[arg(long)]
    compare_ort: bool,
    /// Folder of bench_torch.py / bench_ort.py.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench"))]
    scripts: PathBuf,
    /// The Python that has PyTorch (and onnxruntime).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Use this FMA peak (GFLOP/s per thread count, e.g. `1=114,2=224`) instead of measuring.
    #[arg(long, value_delimiter = ',')]
    peak: Vec<String>,
    /// Run PyTorch and onnxruntime right after ours on each case and thread count, instead
    /// of on all cases after ours: on a shared machine whose speed drifts over minutes, the
    /// three then meet the same conditions (each script starts once per row: about 10 s
    /// more per row).
    #[arg(long)]
    interleave: bool,
    /// Also time each training row's parts alone, right after the row (see `budget`): the
    /// call against a floor made of its products, its weights' packing and its
    /// pointwise passes, each at its best.
    #[arg(long)]
    budget: bool,
}

/// Runs the peers asked for on `rows` (see [`peers::attach`]).
fn compare(rows: &mut [report::Row], args: &Args, only: peers::Only<'_>) {
    if args.compare_torch {
        peers::attach(rows, peers::Peer::Torch, args, only);
    }
    // onnxruntime runs the inference cases only.
    let ort_rows = match only {
        peers::Only::Row(..) => rows.iter().any(|r| !r.case.train),
        peers::Only::Args => true,
    };
    if args.compare_ort && ort_rows {
        peers::attach(rows, peers::Peer::Ort, args, only);
    }
}

fn main() {
    let args = Args::parse();
    let cases = match cases::load(&args.sizes, &args.cases) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let peaks = peak::peaks(&args.threads, &args.peak);
    let mut rows = Vec::new();
    for &threads in &args.threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        for case in &cases {
            eprintln!("[fused-rnn t={threads}] {} ...", case.name);
            let run = pool.install(|| timing::run_case(case, args.min_time, args.min_samples));
            let budget = (args.budget && case.train)
                .then(|| pool.install(|| budget::measure(case, args.min_time, args.min_samples)));
            let mut row = report::Row {
                case: case.clone(),
                threads,
                run,
                torch: None,
                ort: None,
                budget,
            };
            if args.interleave {
                let only = peers::Only::Row(&case.name, threads);
                compare(std::slice::from_mut(&mut row), &args, only);
            }
            rows.push(row);
        }
    }
    if !args.interleave {
        compare(&mut rows, &args, peers::Only::Args);
    }
    // Measured again after the cases (a given peak stays as given): see `peak::higher`.
    let peaks = peak::higher(&peaks, &peak::peaks(&args.threads, &args.peak));
    let machine = machine::Machine::detect();
    report::print(&rows, &peaks, &machine);
    if let Some(path) = &args.json
        && let Err(e) = report::write_json(path, &rows, &peaks, (&args, &machine))
    {
        eprintln!("error: {}: {e}", path.display());
        std::process::exit(1);
    }
}
