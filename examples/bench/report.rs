//! The table and the JSON document.

use std::path::Path;

use super::Args;
use super::cases::Case;
use super::timing::Run;

/// One case at one thread count, with the peers' median seconds when compared.
#[derive(Clone, Debug)]
pub struct Row {
    pub case: Case,
    pub threads: usize,
    pub run: Run,
    pub torch: Option<f64>,
    pub ort: Option<f64>,
}

fn fmt_s(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:8.3} s")
    } else if s >= 1e-3 {
        format!("{:7.3} ms", s * 1e3)
    } else {
        format!("{:7.1} us", s * 1e6)
    }
}

fn peak_of(peaks: &[(usize, f64)], threads: usize) -> f64 {
    peaks
        .iter()
        .find(|(t, _)| *t == threads)
        .map_or(f64::NAN, |p| p.1)
}

/// Prints the table: one line per case and thread count.
pub fn print(rows: &[Row], peaks: &[(usize, f64)]) {
    for (t, p) in peaks {
        println!("FMA peak, {t} thread(s): {p:.1} GFLOP/s");
    }
    println!(
        "{:22} {:5} {:>3} {:>11} {:>11} {:>11} {:>8} {:>6} {:>9} {:>8} {:>8} {:>6}",
        "case",
        "mode",
        "thr",
        "median",
        "min",
        "max",
        "GFLOP/s",
        "%peak",
        "mem MiB",
        "x torch",
        "x ort",
        "others"
    );
    for r in rows {
        let gf = r.case.flops() / r.run.median_s / 1e9;
        let ratio = |peer: Option<f64>| {
            peer.map_or("-".to_string(), |p| format!("{:.2}", p / r.run.median_s))
        };
        println!(
            "{:22} {:5} {:>3} {:>11} {:>11} {:>11} {:8.1} {:5.0}% {:9.1} {:>8} {:>8} {:6.2}",
            r.case.name,
            if r.case.train { "train" } else { "infer" },
            r.threads,
            fmt_s(r.run.median_s),
            fmt_s(r.run.min_s),
            fmt_s(r.run.max_s),
            gf,
            100.0 * gf / peak_of(peaks, r.threads),
            r.run.peak_bytes as f64 / (1 << 20) as f64,
            ratio(r.torch),
            ratio(r.ort),
            r.run.other_cores,
        );
    }
}

/// Writes every row, the peaks and the machine as JSON.
pub fn write_json(
    path: &Path,
    rows: &[Row],
    peaks: &[(usize, f64)],
    args: &Args,
) -> std::io::Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let rows_json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let gf = r.case.flops() / r.run.median_s / 1e9;
            serde_json::json!({
                "case": r.case.name, "cell": r.case.cell_name, "mode": if r.case.train { "train" } else { "infer" },
                "hidden": r.case.hidden, "input": r.case.input, "batch": r.case.batch, "steps": r.case.steps,
                "threads": r.threads, "flops": r.case.flops(),
                "median_s": r.run.median_s, "min_s": r.run.min_s, "max_s": r.run.max_s, "samples": r.run.samples,
                "gflops_median": gf, "peak_fraction": gf / peak_of(peaks, r.threads),
                "peak_bytes": r.run.peak_bytes, "other_cores": r.run.other_cores,
                "torch_median_s": r.torch, "speedup_vs_torch": r.torch.map(|t| t / r.run.median_s),
                "ort_median_s": r.ort, "speedup_vs_ort": r.ort.map(|t| t / r.run.median_s),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "about": "fused-rnn benchmark runner: per-call seconds (median/min/max), GFLOP/s with forward flops 2*T*B*(I+H)*G*H and train = 3x forward, fraction of the measured FMA peak, peak heap bytes of one call, and peers' median seconds from the same run.",
        "cpu": cpu,
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "arch": format!("{:?}", fused_rnn_kernels::ArchKind::of(fused_rnn_kernels::arch())),
        "sizes": args.sizes.display().to_string(),
        "fma_peak_gflops": peaks.iter().map(|(t, p)| (t.to_string(), serde_json::json!(p))).collect::<serde_json::Map<_, _>>(),
        "rows": rows_json,
    });
    std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
}
