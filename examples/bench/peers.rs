//! PyTorch and onnxruntime on the same cases: runs the project's reference scripts
//! (`bench_torch.py`, `bench_ort.py`) with the same sizes file and thread counts, and reads
//! their JSON.

use std::path::PathBuf;
use std::process::Command;

use super::Args;
use super::report::Row;

/// A reference implementation.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Torch,
    Ort,
}

impl Peer {
    fn script(self) -> &'static str {
        match self {
            Peer::Torch => "bench_torch.py",
            Peer::Ort => "bench_ort.py",
        }
    }
}

/// Which cases and thread counts a peer's script runs.
#[derive(Clone, Copy, Debug)]
pub enum Only<'a> {
    /// Those of the command line (`--cases`, `--threads`).
    Args,
    /// One case at one thread count (`--interleave`).
    Row(&'a str, usize),
}

/// Runs the peer's script and stores its median seconds in every row it timed. On failure
/// (script or Python missing, PyTorch not installed) prints why and leaves the rows alone.
pub fn attach(rows: &mut [Row], peer: Peer, args: &Args, only: Only<'_>) {
    let script = args.scripts.join(peer.script());
    let out = std::env::temp_dir().join(format!(
        "fused-rnn-{}-{}.json",
        peer.script(),
        std::process::id()
    ));
    let sizes = std::fs::canonicalize(&args.sizes).unwrap_or_else(|_| args.sizes.clone());
    let (cases, threads) = selection(args, only);
    let mut cmd = Command::new(&args.python);
    cmd.arg(&script)
        .args([
            "--threads",
            &threads.join(","),
            "--min-time",
            &args.min_time.to_string(),
        ])
        .args(["--min-samples", &args.min_samples.to_string(), "--out"])
        .arg(&out)
        .env("BENCH_SIZES", &sizes)
        .current_dir(args.scripts.clone());
    if !cases.is_empty() {
        cmd.args(["--cases", &cases.join(",")]);
    }
    if let Peer::Torch = peer {
        cmd.arg("--no-native-lstm");
    }
    eprintln!("running {} (this takes a while) ...", script.display());
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            return eprintln!(
                "warning: {} failed ({status}); no {peer:?} comparison",
                script.display()
            );
        }
        Err(e) => {
            return eprintln!(
                "warning: could not run {}: {e}; no {peer:?} comparison",
                args.python
            );
        }
    }
    match read(&out) {
        Ok(doc) => {
            for row in rows.iter_mut() {
                let median =
                    doc["results"][&row.case.name]["threads"][row.threads.to_string()]["median_s"]
                        .as_f64();
                match peer {
                    Peer::Torch => row.torch = median,
                    Peer::Ort => row.ort = median,
                }
            }
        }
        Err(e) => eprintln!("warning: {}: {e}", out.display()),
    }
    let _ = std::fs::remove_file(&out);
}

/// The `--cases` (empty: all) and `--threads` a peer's script gets.
fn selection(args: &Args, only: Only<'_>) -> (Vec<String>, Vec<String>) {
    match only {
        Only::Args => (
            args.cases.clone(),
            args.threads.iter().map(usize::to_string).collect(),
        ),
        Only::Row(case, threads) => (vec![case.to_string()], vec![threads.to_string()]),
    }
}

fn read(path: &PathBuf) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_row_runs_its_case_at_its_thread_count_alone() {
        let args = Args::parse_from(["bench", "--threads", "1,2", "--cases", "a,b"]);
        let all = selection(&args, Only::Args);
        assert_eq!(
            all,
            (vec!["a".into(), "b".into()], vec!["1".into(), "2".into()])
        );
        let one = selection(&args, Only::Row("b", 2));
        assert_eq!(one, (vec!["b".to_string()], vec!["2".to_string()]));
    }
}
