//! Loading from arbitrary bytes: PyTorch `state_dict`s through safetensors
//! (`fused_rnn::io::load_params`), generic checkpoints (`Checkpoint::from_bytes`) and the
//! char-rnn job's checkpoints. Each must give an error or a valid result, never a panic, an
//! out-of-bounds access or an allocation the file cannot justify; what loads must save and
//! load again to the same thing.

#![no_main]
#![allow(dead_code)]

// The char-rnn job's loader, compiled as the example compiles it.
#[path = "../../examples/char_rnn/checkpoint.rs"]
mod checkpoint;
#[path = "../../examples/char_rnn/corpus.rs"]
mod corpus;
#[path = "../../examples/char_rnn/model.rs"]
mod model;
#[path = "../../examples/char_rnn/train.rs"]
mod train;

use fused_rnn::checkpoint::Checkpoint;
use fused_rnn::io::{load_params, save_params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((config, params)) = load_params::<f32>(data, None) {
        assert!(
            params.matches(&config),
            "loaded tensors that do not fit {config:?}"
        );
        let bytes = save_params(&params, &config).expect("what loaded saves");
        let (config2, params2) = load_params::<f32>(&bytes, None).expect("what saved loads");
        assert_eq!(config2, config);
        assert!(
            same_bits(&params, &params2),
            "the round trip changed a value"
        );
    }
    if let Ok(ck) = Checkpoint::<f64>::from_bytes(data)
        && let Ok(bytes) = ck.to_bytes()
    {
        let back = Checkpoint::<f64>::from_bytes(&bytes).expect("what saved loads");
        assert_eq!(back.metadata, ck.metadata);
        assert_eq!(back.tensors.len(), ck.tensors.len());
    }
    if let Ok(ck) = Checkpoint::<f32>::from_bytes(data) {
        let _ = checkpoint::from_checkpoint(ck);
    }
});

/// Bitwise equality of two parameter sets (NaN payloads included).
fn same_bits(a: &fused_rnn::Params<f32>, b: &fused_rnn::Params<f32>) -> bool {
    a.iter().zip(b.iter()).all(|(x, y)| {
        x.name() == y.name()
            && x.shape() == y.shape()
            && x.data()
                .iter()
                .map(|v| v.to_bits())
                .eq(y.data().iter().map(|v| v.to_bits()))
    })
}
