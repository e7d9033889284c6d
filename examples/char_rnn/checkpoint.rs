//! A training run in one safetensors file: parameters (PyTorch's names under `embed.`,
//! `rnn.`, `head.`), optimizer moments, the state carried into the next window, and as JSON
//! metadata the model's shape, the vocabulary and where training stands. Written atomically
//! (`fused_rnn::checkpoint`), so a crash never leaves a half-written file behind.

use fused_rnn::State;
use fused_rnn::checkpoint::Checkpoint;
use serde_json::json;

use crate::corpus::Text;
use crate::model::{CharModel, ModelConfig};
use crate::train::{Optim, TrainOptions, Trainer};

/// Marks our files (and their layout's version).
const FORMAT: &str = "fused-rnn char-rnn 1";

/// Saves `t` to `path` atomically.
pub fn save(t: &Trainer, path: &std::path::Path) -> Result<(), String> {
    let mut ck = Checkpoint::<f32>::new();
    let names = t.model.param_names();
    let shapes = shapes(&t.model);
    for ((name, shape), data) in names.iter().zip(&shapes).zip(t.model.params()) {
        ck.push(name.clone(), shape, data.to_vec());
    }
    // The optimizer's per-parameter state, by kind, and its step count.
    type Moments<'a> = Vec<(&'a str, &'a Vec<Vec<f32>>)>;
    let (kinds, steps): (Moments<'_>, u64) = match &t.optim {
        Optim::Adam(a) => (vec![("m", &a.m), ("v", &a.v)], a.steps),
        Optim::Adagrad(a) => (vec![("sum_sq", &a.sum_sq)], a.steps),
    };
    for (kind, state) in kinds {
        for ((name, shape), data) in names.iter().zip(&shapes).zip(state) {
            ck.push(format!("optim.{kind}.{name}"), shape, data.clone());
        }
    }
    let carried = t.carried();
    ck.push("carried.h", &[carried.h.len()], carried.h.clone());
    ck.push("carried.c", &[carried.c.len()], carried.c.clone());
    let c = &t.model.config;
    let o = &t.opts;
    let meta = [
        ("format", FORMAT.to_string()),
        ("model", json!({"cell": c.cell, "layers": c.layers, "hidden": c.hidden, "embed": c.embed, "vocab": c.vocab}).to_string()),
        ("vocab", serde_json::to_string(&t.text.vocab.iter().collect::<String>()).expect("a string")),
        ("train", json!({
            "batch": o.batch, "seq": o.seq, "lr": o.lr, "clip": o.clip, "optimizer": o.optimizer, "seed": o.seed,
            "step": t.step, "pos": t.pos, "optim_steps": steps, "dropout_seed": t.dropout_seed(),
        }).to_string()),
    ];
    ck.metadata = meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    ck.save(path)
        .map_err(|e| format!("cannot write the checkpoint: {e}"))
}

/// The parameters' shapes, in the order of `CharModel::params_mut`.
fn shapes(m: &CharModel) -> Vec<Vec<usize>> {
    let c = &m.config;
    let mut out = vec![vec![c.vocab, c.embed]];
    out.extend(m.rnn.params().iter().map(|t| t.shape().to_vec()));
    out.push(vec![c.vocab, c.hidden]);
    out.push(vec![c.vocab]);
    out
}

/// What a checkpoint holds, before it meets a text.
pub struct Saved {
    pub model: CharModel,
    pub vocab: Vec<char>,
    pub opts: TrainOptions,
    optim: Optim,
    step: u64,
    pos: usize,
    dropout_seed: u64,
    carried: (Vec<f32>, Vec<f32>),
}

fn meta_json(ck: &Checkpoint<f32>, key: &str) -> Result<serde_json::Value, String> {
    let text = ck.meta(key).map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| format!("checkpoint metadata {key}: {e}"))
}

fn field<T: serde::de::DeserializeOwned>(v: &serde_json::Value, key: &str) -> Result<T, String> {
    serde_json::from_value(v[key].clone())
        .map_err(|e| format!("checkpoint metadata field {key}: {e}"))
}

/// Reads a checkpoint file.
pub fn load(path: &std::path::Path) -> Result<Saved, String> {
    let bad = |e: String| format!("{}: not a usable char-rnn checkpoint: {e}", path.display());
    let ck = Checkpoint::<f32>::load(path).map_err(|e| bad(e.to_string()))?;
    from_checkpoint(ck).map_err(bad)
}

/// What a checkpoint's tensors and metadata describe (every size checked against the file
/// before anything is allocated for it).
pub fn from_checkpoint(mut ck: Checkpoint<f32>) -> Result<Saved, String> {
    let bad = |e: String| e;
    if ck.meta("format").ok() != Some(FORMAT) {
        return Err(bad(format!("format is not {FORMAT:?}")));
    }
    let (m, t) = (
        meta_json(&ck, "model").map_err(bad)?,
        meta_json(&ck, "train").map_err(bad)?,
    );
    let vocab: String = serde_json::from_str(ck.meta("vocab").map_err(|e| bad(e.to_string()))?)
        .map_err(|e| bad(e.to_string()))?;
    let vocab: Vec<char> = vocab.chars().collect();
    let config = ModelConfig {
        cell: field(&m, "cell").map_err(bad)?,
        layers: field(&m, "layers").map_err(bad)?,
        hidden: field(&m, "hidden").map_err(bad)?,
        embed: field(&m, "embed").map_err(bad)?,
        vocab: field(&m, "vocab").map_err(bad)?,
    };
    if vocab.len() != config.vocab || !vocab.windows(2).all(|w| w[0] < w[1]) {
        return Err(bad("the vocabulary does not match the model".into()));
    }
    let opts = TrainOptions {
        batch: field(&t, "batch").map_err(bad)?,
        seq: field(&t, "seq").map_err(bad)?,
        lr: field(&t, "lr").map_err(bad)?,
        clip: field(&t, "clip").map_err(bad)?,
        optimizer: field(&t, "optimizer").map_err(bad)?,
        seed: field(&t, "seed").map_err(bad)?,
    };
    // A corrupt size must not make us allocate what the file cannot hold.
    let held: usize = ck.tensors.iter().map(|t| t.2.len()).sum();
    if config.num_parameters()? > held {
        return Err(bad(
            "the model is larger than the tensors the file holds".into()
        ));
    }
    let mut model = CharModel::new(config, 0).map_err(bad)?;
    let (names, shapes) = (model.param_names(), shapes(&model));
    for ((name, shape), dst) in names.iter().zip(&shapes).zip(model.params_mut()) {
        dst.copy_from_slice(&ck.take(name, shape).map_err(|e| bad(e.to_string()))?);
    }
    let optim_steps: u64 = field(&t, "optim_steps").map_err(bad)?;
    let mut optim = Optim::new(&opts.optimizer, opts.lr).map_err(bad)?;
    let mut moments = |kind: &str| -> Result<Vec<Vec<f32>>, String> {
        if optim_steps == 0 {
            return Ok(Vec::new());
        }
        names
            .iter()
            .zip(&shapes)
            .map(|(n, s)| {
                ck.take(&format!("optim.{kind}.{n}"), s)
                    .map_err(|e| bad(e.to_string()))
            })
            .collect()
    };
    match &mut optim {
        Optim::Adam(a) => {
            a.m = moments("m")?;
            a.v = moments("v")?;
            a.steps = optim_steps;
        }
        Optim::Adagrad(a) => {
            a.sum_sq = moments("sum_sq")?;
            a.steps = optim_steps;
        }
    }
    let (hl, cl) = State::<f32>::lens(model.rnn.config(), opts.batch);
    let carried = (
        ck.take("carried.h", &[hl])
            .map_err(|e| bad(e.to_string()))?,
        ck.take("carried.c", &[cl])
            .map_err(|e| bad(e.to_string()))?,
    );
    Ok(Saved {
        model,
        vocab,
        opts,
        optim,
        step: field(&t, "step").map_err(bad)?,
        pos: field(&t, "pos").map_err(bad)?,
        dropout_seed: field(&t, "dropout_seed").map_err(bad)?,
        carried,
    })
}

impl Saved {
    /// The run continued on `text` (encoded over the checkpoint's vocabulary).
    pub fn resume(self, text: &str) -> Result<Trainer, String> {
        let text = Text::with_vocab(text, self.vocab)
            .map_err(|e| format!("cannot resume on this text: {e}"))?;
        let mut t = Trainer::new(self.model, text, self.opts)?;
        t.optim = self.optim;
        t.step = self.step;
        t.pos = self.pos;
        let mut state = t.model.rnn.zero_state(t.opts.batch);
        state.h = self.carried.0;
        state.c = self.carried.1;
        t.restore(&state, self.dropout_seed)?;
        Ok(t)
    }
}
