//! The integration tests, one module per subject, built as one test binary: every binary
//! compiles the generic engine for both float types again (30-40 s each on 2 cores), so one
//! binary instead of twelve is minutes off every `cargo test`. `tests/allocations.rs` stays
//! its own binary: it installs a counting global allocator.
//!
//! Run one subject with a filter: `cargo test --test integration reference::`.

mod common;

// The char-rnn example's modules, compiled as they are at this crate's root, where their
// `crate::` paths point (see `char_rnn`).
#[allow(dead_code)]
#[path = "../../examples/char_rnn/checkpoint.rs"]
mod checkpoint;
#[allow(dead_code)]
#[path = "../../examples/char_rnn/corpus.rs"]
mod corpus;
#[allow(dead_code)]
#[path = "../../examples/char_rnn/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../../examples/char_rnn/sample.rs"]
mod sample;
#[allow(dead_code)]
#[path = "../../examples/char_rnn/speed.rs"]
mod speed;
#[allow(dead_code)]
#[path = "../../examples/char_rnn/train.rs"]
mod train;

mod buffers;
mod char_rnn;
mod determinism;
mod errors;
mod gradcheck;
mod gradcheck_model;
mod pytorch_golden;
mod reference;
mod robustness;
mod safetensors_io;
mod tbptt;
mod thread_safety;
mod tokens;
