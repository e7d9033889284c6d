//! The text: the embedded default corpus (this crate's own Rust source, compiled in, so the
//! model learns to write Rust-looking text as Karpathy's char-rnn wrote C) or a UTF-8 file; its
//! character vocabulary; the split into training and validation; the parallel streams.

/// The source files of both crates, in path order.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "kernels/src/aligned.rs",
        include_str!("../../kernels/src/aligned.rs"),
    ),
    (
        "kernels/src/cell.rs",
        include_str!("../../kernels/src/cell.rs"),
    ),
    (
        "kernels/src/float.rs",
        include_str!("../../kernels/src/float.rs"),
    ),
    (
        "kernels/src/frame.rs",
        include_str!("../../kernels/src/frame.rs"),
    ),
    (
        "kernels/src/gemm/beside.rs",
        include_str!("../../kernels/src/gemm/beside.rs"),
    ),
    (
        "kernels/src/gemm/mod.rs",
        include_str!("../../kernels/src/gemm/mod.rs"),
    ),
    (
        "kernels/src/gemm/packed.rs",
        include_str!("../../kernels/src/gemm/packed.rs"),
    ),
    (
        "kernels/src/gemm/packed/frames.rs",
        include_str!("../../kernels/src/gemm/packed/frames.rs"),
    ),
    (
        "kernels/src/gemm/packed/group.rs",
        include_str!("../../kernels/src/gemm/packed/group.rs"),
    ),
    (
        "kernels/src/gemm/scratch.rs",
        include_str!("../../kernels/src/gemm/scratch.rs"),
    ),
    (
        "kernels/src/gemm/split.rs",
        include_str!("../../kernels/src/gemm/split.rs"),
    ),
    (
        "kernels/src/gemm/stacked.rs",
        include_str!("../../kernels/src/gemm/stacked.rs"),
    ),
    (
        "kernels/src/gemm/transpose.rs",
        include_str!("../../kernels/src/gemm/transpose.rs"),
    ),
    (
        "kernels/src/huge_pages.rs",
        include_str!("../../kernels/src/huge_pages.rs"),
    ),
    (
        "kernels/src/instances.rs",
        include_str!("../../kernels/src/instances.rs"),
    ),
    (
        "kernels/src/lanes.rs",
        include_str!("../../kernels/src/lanes.rs"),
    ),
    (
        "kernels/src/lib.rs",
        include_str!("../../kernels/src/lib.rs"),
    ),
    (
        "kernels/src/math.rs",
        include_str!("../../kernels/src/math.rs"),
    ),
    (
        "kernels/src/optim.rs",
        include_str!("../../kernels/src/optim.rs"),
    ),
    (
        "kernels/src/peak.rs",
        include_str!("../../kernels/src/peak.rs"),
    ),
    (
        "kernels/src/pointwise/gru.rs",
        include_str!("../../kernels/src/pointwise/gru.rs"),
    ),
    (
        "kernels/src/pointwise/lstm.rs",
        include_str!("../../kernels/src/pointwise/lstm.rs"),
    ),
    (
        "kernels/src/pointwise/mod.rs",
        include_str!("../../kernels/src/pointwise/mod.rs"),
    ),
    (
        "kernels/src/pointwise/rnn.rs",
        include_str!("../../kernels/src/pointwise/rnn.rs"),
    ),
    (
        "kernels/src/pointwise/units_tests.rs",
        include_str!("../../kernels/src/pointwise/units_tests.rs"),
    ),
    (
        "kernels/src/reference/gemm.rs",
        include_str!("../../kernels/src/reference/gemm.rs"),
    ),
    (
        "kernels/src/reference/gru.rs",
        include_str!("../../kernels/src/reference/gru.rs"),
    ),
    (
        "kernels/src/reference/lstm.rs",
        include_str!("../../kernels/src/reference/lstm.rs"),
    ),
    (
        "kernels/src/reference/math.rs",
        include_str!("../../kernels/src/reference/math.rs"),
    ),
    (
        "kernels/src/reference/mod.rs",
        include_str!("../../kernels/src/reference/mod.rs"),
    ),
    (
        "kernels/src/reference/module.rs",
        include_str!("../../kernels/src/reference/module.rs"),
    ),
    (
        "kernels/src/reference/optim.rs",
        include_str!("../../kernels/src/reference/optim.rs"),
    ),
    (
        "kernels/src/reference/rnn.rs",
        include_str!("../../kernels/src/reference/rnn.rs"),
    ),
    (
        "kernels/src/reference/seq.rs",
        include_str!("../../kernels/src/reference/seq.rs"),
    ),
    (
        "kernels/src/reference/sums.rs",
        include_str!("../../kernels/src/reference/sums.rs"),
    ),
    (
        "kernels/src/sums.rs",
        include_str!("../../kernels/src/sums.rs"),
    ),
    (
        "kernels/src/testing/alloc.rs",
        include_str!("../../kernels/src/testing/alloc.rs"),
    ),
    (
        "kernels/src/testing/mod.rs",
        include_str!("../../kernels/src/testing/mod.rs"),
    ),
    (
        "kernels/src/view.rs",
        include_str!("../../kernels/src/view.rs"),
    ),
    ("src/buffers.rs", include_str!("../../src/buffers.rs")),
    ("src/check.rs", include_str!("../../src/check.rs")),
    ("src/checkpoint.rs", include_str!("../../src/checkpoint.rs")),
    ("src/clip.rs", include_str!("../../src/clip.rs")),
    ("src/config.rs", include_str!("../../src/config.rs")),
    (
        "src/engine/backward.rs",
        include_str!("../../src/engine/backward.rs"),
    ),
    (
        "src/engine/backward_lockstep.rs",
        include_str!("../../src/engine/backward_lockstep.rs"),
    ),
    (
        "src/engine/driver.rs",
        include_str!("../../src/engine/driver.rs"),
    ),
    (
        "src/engine/forward.rs",
        include_str!("../../src/engine/forward.rs"),
    ),
    (
        "src/engine/forward_blocks.rs",
        include_str!("../../src/engine/forward_blocks.rs"),
    ),
    (
        "src/engine/forward_fused.rs",
        include_str!("../../src/engine/forward_fused.rs"),
    ),
    (
        "src/engine/forward_lockstep.rs",
        include_str!("../../src/engine/forward_lockstep.rs"),
    ),
    (
        "src/engine/forward_team.rs",
        include_str!("../../src/engine/forward_team.rs"),
    ),
    ("src/engine/mod.rs", include_str!("../../src/engine/mod.rs")),
    (
        "src/engine/plan.rs",
        include_str!("../../src/engine/plan.rs"),
    ),
    (
        "src/engine/products.rs",
        include_str!("../../src/engine/products.rs"),
    ),
    (
        "src/engine/team.rs",
        include_str!("../../src/engine/team.rs"),
    ),
    (
        "src/engine/tokens.rs",
        include_str!("../../src/engine/tokens.rs"),
    ),
    (
        "src/engine/unit_blocks.rs",
        include_str!("../../src/engine/unit_blocks.rs"),
    ),
    ("src/error.rs", include_str!("../../src/error.rs")),
    ("src/fold.rs", include_str!("../../src/fold.rs")),
    ("src/gradcheck.rs", include_str!("../../src/gradcheck.rs")),
    ("src/input.rs", include_str!("../../src/input.rs")),
    ("src/io.rs", include_str!("../../src/io.rs")),
    ("src/layout.rs", include_str!("../../src/layout.rs")),
    ("src/lib.rs", include_str!("../../src/lib.rs")),
    (
        "src/nn/embedding.rs",
        include_str!("../../src/nn/embedding.rs"),
    ),
    ("src/nn/linear.rs", include_str!("../../src/nn/linear.rs")),
    ("src/nn/loss.rs", include_str!("../../src/nn/loss.rs")),
    ("src/nn/mod.rs", include_str!("../../src/nn/mod.rs")),
    (
        "src/optim/adagrad.rs",
        include_str!("../../src/optim/adagrad.rs"),
    ),
    ("src/optim/adam.rs", include_str!("../../src/optim/adam.rs")),
    ("src/optim/mod.rs", include_str!("../../src/optim/mod.rs")),
    ("src/params.rs", include_str!("../../src/params.rs")),
    ("src/phases.rs", include_str!("../../src/phases.rs")),
    ("src/prepared.rs", include_str!("../../src/prepared.rs")),
    ("src/recurrent.rs", include_str!("../../src/recurrent.rs")),
    ("src/state.rs", include_str!("../../src/state.rs")),
    ("src/tbptt.rs", include_str!("../../src/tbptt.rs")),
];

/// The embedded corpus: every source file, each preceded by a comment naming it.
pub fn embedded() -> String {
    SOURCES
        .iter()
        .map(|(path, text)| format!("// ---- {path} ----\n{text}\n"))
        .collect()
}

/// A text as character ids over its sorted vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    /// The distinct characters, sorted; id `i` is `vocab[i]`.
    pub vocab: Vec<char>,
    /// The text as ids.
    pub ids: Vec<usize>,
}

impl Text {
    /// Builds the vocabulary from the text itself.
    ///
    /// # Errors
    /// An empty text.
    pub fn new(text: &str) -> Result<Self, String> {
        let mut vocab: Vec<char> = text.chars().collect();
        vocab.sort_unstable();
        vocab.dedup();
        Self::with_vocab(text, vocab)
    }

    /// Encodes `text` over a given vocabulary (a checkpoint's).
    ///
    /// # Errors
    /// An empty text, or a character the vocabulary lacks.
    pub fn with_vocab(text: &str, vocab: Vec<char>) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the text is empty".into());
        }
        let ids = text
            .chars()
            .map(|c| {
                vocab.binary_search(&c).map_err(|_| {
                    format!(
                        "character {c:?} is not in the vocabulary of {} characters",
                        vocab.len()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Text { vocab, ids })
    }

    /// Reads a UTF-8 file.
    ///
    /// # Errors
    /// An unreadable, non-UTF-8 or empty file, with its path.
    pub fn read(path: &std::path::Path) -> Result<String, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| format!("{}: not UTF-8 text ({e})", path.display()))?;
        if text.is_empty() {
            return Err(format!("{}: the file is empty", path.display()));
        }
        Ok(text)
    }

    /// The first 90% for training, the last 10% for validation (as char_rnn_torch.py).
    pub fn split(&self) -> (&[usize], &[usize]) {
        self.ids.split_at(self.ids.len() * 9 / 10)
    }
}

/// `ids` cut into `batch` parallel streams of equal length (the rest dropped), read
/// time-major: step `t` of stream `b` is `ids[b * len + t]`.
#[derive(Clone, Debug)]
pub struct Streams<'a> {
    ids: &'a [usize],
    batch: usize,
    /// Steps per stream.
    pub len: usize,
}

impl<'a> Streams<'a> {
    /// The streams of `ids`.
    pub fn new(ids: &'a [usize], batch: usize) -> Self {
        Streams {
            ids,
            batch,
            len: ids.len() / batch.max(1),
        }
    }

    /// Steps `pos..pos + steps` of every stream into `out` (`[steps][batch]`).
    pub fn window(&self, pos: usize, steps: usize, out: &mut [usize]) {
        for t in 0..steps {
            for b in 0..self.batch {
                out[t * self.batch + b] = self.ids[b * self.len + pos + t];
            }
        }
    }
}
