//! The table and the JSON document.

use std::path::Path;

use super::Args;
use super::budget::{self, Budget};
use super::cases::Case;
use super::machine::Machine;
use super::timing::Run;

/// One case at one thread count, with the peers' median seconds when compared.
#[derive(Clone, Debug)]
pub struct Row {
    pub case: Case,
    pub threads: usize,
    pub run: Run,
    pub torch: Option<f64>,
    pub ort: Option<f64>,
    /// The training call's parts, each timed alone (`--budget`).
    pub budget: Option<Budget>,
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

/// Whether a row meets the project's target (README, Performance), from the exact times:
/// training at least 1.5x PyTorch's speed or 85% of the peak, whichever is lower; inference
/// at least 2x PyTorch's speed and no slower than onnxruntime. `None` when the peers it
/// needs were not run (a training case at 85% of the peak meets it whatever PyTorch does).
fn meets_target(r: &Row, peak: f64) -> Option<bool> {
    let speed = |peer: Option<f64>| peer.map(|p| p / r.run.median_s);
    let (torch, ort) = (speed(r.torch), speed(r.ort));
    if r.case.train {
        let of_peak = r.case.flops() / r.run.median_s / 1e9 / peak;
        match torch {
            _ if of_peak >= 0.85 => Some(true),
            Some(x) => Some(x >= 1.5),
            None => None,
        }
    } else {
        match (torch.map(|x| x >= 2.0), ort.map(|x| x >= 1.0)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }
    }
}

/// Prints the table: one line per case and thread count.
pub fn print(rows: &[Row], peaks: &[(usize, f64)], machine: &Machine) {
    println!("machine: {}", machine.describe());
    for (t, p) in peaks {
        println!("FMA peak, {t} thread(s): {p:.1} GFLOP/s");
    }
    println!(
        "{:22} {:5} {:>3} {:>11} {:>11} {:>11} {:>8} {:>7} {:>9} {:>8} {:>8} {:>6} {:>6}",
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
        "others",
        "target"
    );
    let mut tally = [[0usize; 2]; 2]; // [train, infer] x [met, judged]
    for r in rows {
        let gf = r.case.flops() / r.run.median_s / 1e9;
        // Three decimals: at two, 1.495x PyTorch reads as the 1.5x it misses.
        let ratio = |peer: Option<f64>| {
            peer.map_or("-".to_string(), |p| format!("{:.3}", p / r.run.median_s))
        };
        let target = meets_target(r, peak_of(peaks, r.threads));
        if let Some(met) = target {
            let t = &mut tally[usize::from(!r.case.train)];
            t[0] += usize::from(met);
            t[1] += 1;
        }
        println!(
            "{:22} {:5} {:>3} {:>11} {:>11} {:>11} {:8.1} {:6.1}% {:9.1} {:>8} {:>8} {:6.2} {:>6}",
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
            target.map_or("-", |met| if met { "met" } else { "miss" }),
        );
    }
    for (mode, [met, judged]) in ["training", "inference"].iter().zip(tally) {
        if judged > 0 {
            println!("target: {mode} met in {met} of {judged} case-thread rows");
        }
    }
    print_budgets(rows, peaks);
}

/// The `--budget` table: each training row's call against its parts alone (see
/// [`budget`]): the products, then the floor (the products, the packing once per update and
/// the pointwise passes), as fractions of the peak; the call's time beyond the floor; and each
/// product's GFLOP/s alone.
fn print_budgets(rows: &[Row], peaks: &[(usize, f64)]) {
    let with: Vec<(&Row, &Budget)> = rows
        .iter()
        .filter_map(|r| Some((r, r.budget.as_ref()?)))
        .collect();
    let Some((_, first)) = with.first() else {
        return;
    };
    println!(
        "budget: each training call against its parts alone (warm; the kernels' GEMMs; \
         floor = products + (packing + passes) / threads)"
    );
    print!(
        "{:22} {:>3} {:>11} {:>11} {:>9} {:>9} {:>7} {:>8} {:>8} {:>7}",
        "case",
        "thr",
        "call",
        "floor",
        "packing",
        "passes",
        "%peak",
        "%p prod",
        "%p floor",
        "beyond"
    );
    for p in &first.products {
        print!(" {:>10}", p.name);
    }
    println!("   (GFLOP/s alone)");
    for (r, b) in with {
        let of_peak = |s: f64| 100.0 * r.case.flops() / s / 1e9 / peak_of(peaks, r.threads);
        let floor = b.floor_s();
        print!(
            "{:22} {:>3} {:>11} {:>11} {:>9} {:>9} {:6.1}% {:7.1}% {:7.1}% {:6.1}%",
            r.case.name,
            r.threads,
            fmt_s(r.run.median_s),
            fmt_s(floor),
            fmt_s(b.besides.packing_s),
            b.besides.passes_s.map_or("-".to_string(), fmt_s),
            of_peak(r.run.median_s),
            of_peak(budget::total_s(&b.products)),
            of_peak(floor),
            100.0 * (r.run.median_s - floor) / r.run.median_s,
        );
        for p in &b.products {
            print!(" {:10.1}", p.flops() / p.call_s() / 1e9);
        }
        println!();
    }
}

/// Writes every row, the peaks and the machine as JSON.
pub fn write_json(
    path: &Path,
    rows: &[Row],
    peaks: &[(usize, f64)],
    (args, machine): (&Args, &Machine),
) -> std::io::Result<()> {
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
                "target_met": meets_target(r, peak_of(peaks, r.threads)),
                "budget": r.budget.as_ref().map(|b| serde_json::json!({
                    "products_s": budget::total_s(&b.products),
                    "packing_s": b.besides.packing_s,
                    "passes_s": b.besides.passes_s,
                    "floor_s": b.floor_s(),
                    "products": b.products.iter().map(|p| serde_json::json!({
                        "name": p.name, "count": p.count, "m": p.m, "k": p.k, "n": p.n,
                        "best_s": p.best_s, "gflops": p.flops() / p.call_s() / 1e9,
                    })).collect::<Vec<_>>(),
                })),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "about": "fused-rnn benchmark runner: per-call seconds (median/min/max), GFLOP/s with forward flops 2*T*B*(I+H)*G*H and train = 3x forward, fraction of the measured FMA peak, peak heap bytes of one call, and peers' median seconds from the same run.",
        "cpu": machine.model_name,
        "cpu_family": machine.family,
        "cpu_model": machine.model,
        "l2_kib_per_core": machine.l2_kib,
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "arch": format!("{:?}", fused_rnn_kernels::ArchKind::of(fused_rnn_kernels::arch())),
        "sizes": args.sizes.display().to_string(),
        "peers_interleaved": args.interleave,
        "fma_peak_gflops": peaks.iter().map(|(t, p)| (t.to_string(), serde_json::json!(p))).collect::<serde_json::Map<_, _>>(),
        "rows": rows_json,
    });
    std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fused_rnn::CellKind;

    /// A row of an LSTM case (H = I = 64, B = 8, T = 10) whose call takes `median_s`.
    fn row(train: bool, median_s: f64, torch: Option<f64>, ort: Option<f64>) -> Row {
        let case = Case {
            name: "case".into(),
            cell_name: "lstm".into(),
            cell: CellKind::Lstm,
            hidden: 64,
            input: 64,
            batch: 8,
            steps: 10,
            train,
        };
        let run = Run {
            median_s,
            min_s: median_s,
            max_s: median_s,
            samples: 1,
            peak_bytes: 0,
            other_cores: 0.0,
        };
        Row {
            case,
            threads: 1,
            run,
            torch,
            ort,
            budget: None,
        }
    }

    /// Training: 85% of the peak meets the target whatever PyTorch does; below it, 1.5x
    /// PyTorch's speed does, and 1.495x (which two decimals print as 1.50) does not.
    #[test]
    fn training_target_is_the_lower_bar() {
        let flops = row(true, 1.0, None, None).case.flops();
        let peak = flops / 1e9 / 0.80; // the case runs at 80% of this peak in 1 s
        assert_eq!(meets_target(&row(true, 1.0, None, None), peak), None);
        assert_eq!(
            meets_target(&row(true, 1.0, None, None), flops / 1e9 / 0.86),
            Some(true)
        );
        assert_eq!(
            meets_target(&row(true, 1.0, Some(1.5), None), peak),
            Some(true)
        );
        assert_eq!(
            meets_target(&row(true, 1.0, Some(1.495), None), peak),
            Some(false)
        );
        assert_eq!(
            meets_target(&row(true, 1.0, Some(1.0), None), flops / 1e9 / 0.90),
            Some(true)
        );
    }

    /// Inference: at least 2x PyTorch and no slower than onnxruntime; one failed bar is a
    /// miss even when the other peer was not run, and one met bar alone decides nothing.
    #[test]
    fn inference_target_needs_both_peers() {
        let infer = |torch, ort| meets_target(&row(false, 1.0, torch, ort), 100.0);
        assert_eq!(infer(Some(2.0), Some(1.0)), Some(true));
        assert_eq!(infer(Some(1.99), Some(5.0)), Some(false));
        assert_eq!(infer(Some(3.0), Some(0.99)), Some(false));
        assert_eq!(infer(Some(1.0), None), Some(false));
        assert_eq!(infer(Some(3.0), None), None);
        assert_eq!(infer(None, None), None);
    }
}
