//! The benchmark cases of `benches/sizes.json` (a copy of the project's shared DeepBench
//! shapes) and their FLOP counts.
#![allow(dead_code)]

use fused_rnn::{CellKind, Config, Nonlinearity};

/// One case: a single layer, one direction, time-major, f32.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub cell: CellKind,
    pub hidden: usize,
    pub input: usize,
    pub batch: usize,
    pub steps: usize,
    pub train: bool,
}

impl Case {
    pub fn config(&self) -> Config {
        Config::lstm(self.input, self.hidden).with_cell(self.cell)
    }
    /// `2 * T * B * (I + H) * G * H` forward; training is three times that.
    pub fn flops(&self) -> u64 {
        let f = 2
            * self.steps
            * self.batch
            * (self.input + self.hidden)
            * self.cell.gates()
            * self.hidden;
        (if self.train { 3 * f } else { f }) as u64
    }
}

pub fn parse_cell(name: &str) -> CellKind {
    match name {
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru { reset_after: true },
        "gru_reset_before" => CellKind::Gru { reset_after: false },
        "rnn_tanh" => CellKind::Rnn(Nonlinearity::Tanh),
        "rnn_relu" => CellKind::Rnn(Nonlinearity::Relu),
        other => panic!("unknown cell {other}"),
    }
}

/// The cases of a sizes file (`BENCH_SIZES` overrides the default path).
pub fn cases() -> Vec<Case> {
    let path = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/benches/sizes.json").into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("sizes file parses");
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let n = |k: &str| c[k].as_u64().expect(k) as usize;
            Case {
                name: c["name"].as_str().expect("name").into(),
                cell: parse_cell(c["cell"].as_str().expect("cell")),
                hidden: n("hidden"),
                input: n("input"),
                batch: n("batch"),
                steps: n("steps"),
                train: c["mode"].as_str() == Some("train"),
            }
        })
        .collect()
}
