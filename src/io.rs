//! Parameters (and gradients) in safetensors files, PyTorch's names and shapes.
//!
//! A `torch.nn.LSTM` / `GRU` / `RNN` `state_dict` saved with
//! `safetensors.torch.save_file(module.state_dict(), path)` loads as it is, any number of
//! layers and directions, with or without biases and projection:
//!
//! ```no_run
//! # fn main() -> Result<(), fused_rnn::Error> {
//! let (config, params) = fused_rnn::io::load_params_file::<f32>("lstm.safetensors", None)?;
//! let _lstm = fused_rnn::Recurrent::new(config, params)?;
//! # Ok(()) }
//! ```
//!
//! The configuration is read from the tensors: G rows per hidden unit tell the cell (4 LSTM,
//! 3 GRU, 1 RNN), `weight_hr_l0` the projection, `_reverse` the directions, `bias_*` the
//! biases. What the tensors cannot tell (relu or tanh, a GRU's reset-before form) comes from
//! the file's metadata when this crate wrote it, else the PyTorch defaults apply (tanh,
//! reset after); pass `expected` to check a file against a known configuration instead.
//! Files are written atomically: a temporary file, fsync, rename.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use ::safetensors::tensor::{Dtype, TensorView};

use crate::checkpoint::Checkpoint;
use crate::config::{CellKind, Config, Nonlinearity};
use crate::error::Error;
use crate::params::Params;
use fused_rnn_kernels::Float;

/// The metadata key holding this crate's configuration, as JSON.
pub const CONFIG_KEY: &str = "fused_rnn.config";

fn format(msg: impl Into<String>) -> Error {
    Error::Format(msg.into())
}

/// Reads parameters from safetensors bytes (see the module docs). With `expected`, the file
/// must hold exactly that configuration's tensors.
///
/// # Errors
/// [`Error::Format`] for bytes that are not a valid safetensors file or tensors of another
/// dtype than F32/F64; [`Error::InvalidArgument`] naming a missing, unexpected or misshapen
/// tensor.
pub fn load_params<T: Float>(
    bytes: &[u8],
    expected: Option<&Config>,
) -> Result<(Config, Params<T>), Error> {
    // One reader of safetensors bytes for the crate: the checkpoint's.
    let Checkpoint { tensors, metadata } = Checkpoint::from_bytes(bytes)?;
    let config = match expected {
        Some(config) => config.clone(),
        None => infer_config(&tensors, metadata.get(CONFIG_KEY))?,
    };
    let params = Params::from_named(&config, tensors)?;
    Ok((config, params))
}

/// [`load_params`] from a file.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read, else as [`load_params`].
pub fn load_params_file<T: Float>(
    path: impl AsRef<Path>,
    expected: Option<&Config>,
) -> Result<(Config, Params<T>), Error> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    load_params(&bytes, expected)
}

/// Serializes parameters (or gradients) with their PyTorch names, in `T`'s dtype, with the
/// configuration in the metadata.
///
/// # Errors
/// [`Error::InvalidArgument`] if `params` are not `config`'s tensors.
pub fn save_params<T: Float>(params: &Params<T>, config: &Config) -> Result<Vec<u8>, Error> {
    params.check(config, "params")?;
    let mut metadata = HashMap::new();
    metadata.insert(CONFIG_KEY.to_string(), config_json(config));
    serialize(
        params.iter().map(|t| (t.name(), t.shape(), t.data())),
        metadata,
    )
}

/// [`save_params`] into a file, atomically (see [`write_atomic`]).
///
/// # Errors
/// As [`save_params`], or [`Error::Io`].
pub fn save_params_file<T: Float>(
    path: impl AsRef<Path>,
    params: &Params<T>,
    config: &Config,
) -> Result<(), Error> {
    write_atomic(path.as_ref(), &save_params(params, config)?)
}

/// Serializes named tensors (name, shape, data) with string metadata.
///
/// # Errors
/// [`Error::Format`] naming a tensor name used twice.
pub fn serialize<'a, T: Float>(
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [T])>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, Error> {
    let dtype = if T::NAME == "f32" {
        Dtype::F32
    } else {
        Dtype::F64
    };
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, data)| {
            // One buffer per tensor, filled in place (a vector per element made 2.7 million
            // allocations for the char-rnn's 10.8 MB checkpoint).
            let mut bytes = Vec::with_capacity(data.len() * dtype.bitsize() / 8);
            match dtype {
                Dtype::F32 => data
                    .iter()
                    .for_each(|v| bytes.extend_from_slice(&(v.to_f64() as f32).to_le_bytes())),
                _ => data
                    .iter()
                    .for_each(|v| bytes.extend_from_slice(&v.to_f64().to_le_bytes())),
            }
            (name.to_string(), shape.to_vec(), bytes)
        })
        .collect();
    // The safetensors writer panics on a repeated name (0.8.0): refuse it first.
    let mut names: Vec<&str> = owned.iter().map(|t| t.0.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format(format!("{}: tensor name used twice", w[0])));
    }
    let views = owned
        .iter()
        .map(|(n, s, b)| TensorView::new(dtype, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format(e.to_string()))?;
    ::safetensors::serialize(views, Some(metadata)).map_err(|e| format(e.to_string()))
}

/// Reads the elements of one tensor as `T`.
///
/// # Errors
/// [`Error::Format`] naming the tensor if its dtype is not F32 or F64.
pub fn to_floats<T: Float>(name: &str, view: &TensorView<'_>) -> Result<Vec<T>, Error> {
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => Ok(data
            .chunks_exact(4)
            .map(|b| T::from_f64(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))))
            .collect()),
        Dtype::F64 => Ok(data
            .chunks_exact(8)
            .map(|b| {
                T::from_f64(f64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            })
            .collect()),
        other => Err(format(format!(
            "{name}: dtype {other:?}, expected F32 or F64"
        ))),
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one: a
/// temporary file beside it, fsync, rename, then fsync of the folder.
///
/// # Errors
/// [`Error::Io`] naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| Error::Io {
        path: path.display().to_string(),
        message: "not a file name".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the folder is synced (best effort: some
        // filesystems refuse to open folders).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        io_error(path, e)
    })
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// This crate's configuration as metadata JSON.
fn config_json(c: &Config) -> String {
    serde_json::json!({
        "cell": c.cell.name(),
        "input_size": c.input_size,
        "hidden_size": c.hidden_size,
        "num_layers": c.num_layers,
        "bias": c.bias,
        "bidirectional": c.bidirectional,
        "proj_size": c.proj_size,
        "dropout": c.dropout,
    })
    .to_string()
}

fn cell_of_name(name: &str) -> Option<CellKind> {
    CellKind::ALL.into_iter().find(|c| c.name() == name)
}

/// The configuration the tensors describe (see the module docs); `meta` is this crate's
/// metadata JSON when present.
fn infer_config<T>(
    tensors: &[(String, Vec<usize>, Vec<T>)],
    meta: Option<&String>,
) -> Result<Config, Error> {
    let shape = |name: &str| tensors.iter().find(|t| t.0 == name).map(|t| t.1.as_slice());
    let two_d = |name: &'static str| -> Result<(usize, usize), Error> {
        match shape(name) {
            Some([r, c]) => Ok((*r, *c)),
            Some(s) => Err(Error::invalid(
                name,
                format!("shape {s:?}, expected 2 dimensions"),
            )),
            None => Err(Error::invalid(name, "missing tensor (no layer 0 found)")),
        }
    };
    let (gh, input_size) = two_d("weight_ih_l0")?;
    let (gh2, hout) = two_d("weight_hh_l0")?;
    if gh2 != gh {
        return Err(Error::invalid(
            "weight_hh_l0",
            format!("{gh2} rows, but weight_ih_l0 has {gh}"),
        ));
    }
    let (hidden, proj) = match shape("weight_hr_l0") {
        Some([p, h]) => (*h, *p),
        Some(s) => {
            return Err(Error::invalid(
                "weight_hr_l0",
                format!("shape {s:?}, expected [P, H]"),
            ));
        }
        None => (hout, 0),
    };
    if hidden == 0 || gh % hidden != 0 {
        return Err(Error::invalid(
            "weight_ih_l0",
            format!("{gh} rows is not a whole number of gates of {hidden}"),
        ));
    }
    let cell = match gh / hidden {
        4 => CellKind::Lstm,
        3 => CellKind::Gru { reset_after: true },
        1 => CellKind::Rnn(Nonlinearity::Tanh),
        g => {
            return Err(Error::invalid(
                "weight_ih_l0",
                format!("{g} gates per unit: not an RNN, GRU or LSTM"),
            ));
        }
    };
    let layer_of = |name: &str| -> Option<usize> {
        let rest = name.split("_l").nth(1)?;
        rest.trim_end_matches("_reverse").parse().ok()
    };
    let num_layers = tensors
        .iter()
        .filter_map(|t| layer_of(&t.0))
        .max()
        .map_or(1, |l| l + 1);
    let mut config = Config::lstm(input_size, hidden)
        .with_cell(cell)
        .with_layers(num_layers)
        .with_bidirectional(tensors.iter().any(|t| t.0.ends_with("_reverse")))
        .with_bias(tensors.iter().any(|t| t.0.starts_with("bias_")))
        .with_proj_size(proj);
    // What shapes cannot tell, from this crate's own metadata.
    if let Some(json) = meta.and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok()) {
        if let Some(c) = json["cell"].as_str().and_then(cell_of_name)
            && c.gates() == cell.gates()
        {
            config.cell = c;
        }
        if let Some(p) = json["dropout"].as_f64() {
            config.dropout = p;
        }
    }
    Ok(config)
}
