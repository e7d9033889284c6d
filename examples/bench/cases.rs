//! The cases of a sizes file.

use std::path::Path;

use fused_rnn::{CellKind, Config, Nonlinearity};

/// One case: a single layer, one direction, time-major, f32.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub cell_name: String,
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
    pub fn flops(&self) -> f64 {
        let f = 2.0
            * (self.steps
                * self.batch
                * (self.input + self.hidden)
                * self.cell.gates()
                * self.hidden) as f64;
        if self.train { 3.0 * f } else { f }
    }
}

/// Loads the cases of `path`, keeping only `only` if given.
pub fn load(path: &Path, only: &[String]) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let list = doc["cases"]
        .as_array()
        .ok_or_else(|| format!("{}: no \"cases\" array", path.display()))?;
    let mut out = Vec::new();
    for c in list {
        let field = |k: &str| {
            c[k].as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| format!("case {c}: no {k}"))
        };
        let name = c["name"]
            .as_str()
            .ok_or("a case without a name")?
            .to_string();
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let cell_name = c["cell"]
            .as_str()
            .ok_or("a case without a cell")?
            .to_string();
        let cell = match cell_name.as_str() {
            "lstm" => CellKind::Lstm,
            "gru" => CellKind::Gru { reset_after: true },
            "rnn_tanh" => CellKind::Rnn(Nonlinearity::Tanh),
            "rnn_relu" => CellKind::Rnn(Nonlinearity::Relu),
            other => return Err(format!("case {name}: unknown cell {other}")),
        };
        out.push(Case {
            name,
            cell_name,
            cell,
            hidden: field("hidden")?,
            input: field("input")?,
            batch: field("batch")?,
            steps: field("steps")?,
            train: c["mode"].as_str() == Some("train"),
        });
    }
    if out.is_empty() {
        return Err("no cases selected".into());
    }
    Ok(out)
}
