//! Parameters through safetensors: files PyTorch saved load with the configuration they
//! describe and give PyTorch's outputs; our files round-trip bit for bit; bad files are
//! errors that name the tensor, and never panic.
//!
//! The PyTorch files and their expected outputs come from `fixtures/make_safetensors.py`.

use std::collections::HashMap;
use std::path::PathBuf;

use fused_rnn::io::{load_params, load_params_file, save_params, save_params_file};
use fused_rnn::{
    CellKind, Config, Error, Input, Nonlinearity, Params, Recurrent, SeqShape, Workspace,
};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/safetensors")
}

fn expected() -> HashMap<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The configuration a fixture's module had in PyTorch.
fn config_of(e: &Value) -> Config {
    let cell = match e["cell"].as_str().unwrap() {
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru { reset_after: true },
        _ => CellKind::Rnn(Nonlinearity::Tanh),
    };
    let n = |k: &str| e[k].as_u64().unwrap() as usize;
    Config::lstm(n("input_size"), n("hidden_size"))
        .with_cell(cell)
        .with_layers(n("num_layers"))
        .with_bidirectional(e["bidirectional"].as_bool().unwrap())
        .with_bias(e["bias"].as_bool().unwrap())
        .with_proj_size(n("proj_size"))
}

#[test]
fn pytorch_files_load_with_their_configuration_and_give_pytorchs_outputs() {
    let all = expected();
    assert_eq!(all.len(), 4);
    for (name, e) in &all {
        let path = fixtures().join(format!("{name}.safetensors"));
        let (config, params) = load_params_file::<f64>(&path, None).unwrap();
        assert_eq!(config, config_of(e), "{name}: inferred configuration");
        // The same file checked against the known configuration.
        load_params_file::<f64>(&path, Some(&config)).unwrap();
        let m = Recurrent::new(config.clone(), params).unwrap();
        let shape = SeqShape::new(
            e["steps"].as_u64().unwrap() as usize,
            e["batch"].as_u64().unwrap() as usize,
        );
        let x = floats(&e["x"]);
        let mut y = vec![0.0; shape.steps * shape.batch * config.output_size()];
        let mut state = m.zero_state(shape.batch);
        m.forward(
            Input::new(&x, shape),
            &mut state,
            &mut y,
            &mut Workspace::new(),
        )
        .unwrap();
        // f32 files were run in f32 by PyTorch; we run their (exact) values in f64.
        let tol = if e["dtype"] == "f32" { 2e-6 } else { 1e-13 };
        for (i, (a, b)) in y.iter().zip(floats(&e["y"])).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{name}: y[{i}] = {a}, PyTorch {b}"
            );
        }
    }
}

#[test]
fn pytorch_f32_files_load_as_f32() {
    let path = fixtures().join("lstm_stacked_bidir_proj.safetensors");
    let (_, p32) = load_params_file::<f32>(&path, None).unwrap();
    let (_, p64) = load_params_file::<f64>(&path, None).unwrap();
    for (a, b) in p32.iter().zip(p64.iter()) {
        assert!(
            a.data()
                .iter()
                .zip(b.data())
                .all(|(x, y)| f64::from(*x) == *y),
            "{}",
            a.name()
        );
    }
}

/// Configurations whose files must round-trip, including what only our metadata records.
fn round_trip_configs() -> Vec<Config> {
    vec![
        Config::lstm(3, 4)
            .with_layers(2)
            .with_bidirectional(true)
            .with_proj_size(2),
        Config::gru(2, 3)
            .with_cell(CellKind::Gru { reset_after: false })
            .with_bias(false),
        Config::rnn(4, 2)
            .with_nonlinearity(Nonlinearity::Relu)
            .with_layers(3)
            .with_dropout(0.25),
    ]
}

#[test]
fn our_files_round_trip_bit_for_bit_with_their_configuration() {
    for config in round_trip_configs() {
        let p = Params::<f32>::init(&config, 9).unwrap();
        let bytes = save_params(&p, &config).unwrap();
        let (back_config, back) = load_params::<f32>(&bytes, None).unwrap();
        assert_eq!(back_config, config);
        assert_eq!(back, p);
        let p64 = Params::<f64>::init(&config, 10).unwrap();
        let (_, back64) = load_params::<f64>(&save_params(&p64, &config).unwrap(), None).unwrap();
        assert_eq!(back64, p64);
    }
}

#[test]
fn gradients_save_under_the_parameter_names() {
    let config = Config::lstm(2, 3).with_bidirectional(true);
    let m = Recurrent::<f64>::with_seed(config.clone(), 1).unwrap();
    let mut grads = m.zero_grads();
    grads
        .iter_mut()
        .enumerate()
        .for_each(|(i, t)| t.data_mut().fill(i as f64));
    let (_, back) =
        load_params::<f64>(&save_params(&grads, &config).unwrap(), Some(&config)).unwrap();
    assert_eq!(back, grads);
    assert!(back.get("weight_hh_l0_reverse").is_some());
}

/// A valid file of `config`'s tensors, with `edit` applied to the (name, dtype, shape, bytes)
/// list before serializing.
fn file_with(
    config: &Config,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let p = Params::<f32>::init(config, 3).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = p
        .iter()
        .map(|t| {
            let bytes = t.data().iter().flat_map(|v| v.to_le_bytes()).collect();
            (t.name().to_string(), Dtype::F32, t.shape().to_vec(), bytes)
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// The error's message, which must name `what`.
fn assert_names(result: Result<(Config, Params<f32>), Error>, what: &str) {
    match result {
        Ok(_) => panic!("expected an error naming {what}"),
        Err(e) => assert!(e.to_string().contains(what), "{e} does not name {what}"),
    }
}

#[test]
fn bad_files_are_errors_naming_the_tensor() {
    let config = Config::gru(3, 2).with_layers(2);
    // Missing.
    let bytes = file_with(&config, |t| t.retain(|x| x.0 != "bias_hh_l1"));
    assert_names(load_params(&bytes, None), "bias_hh_l1");
    assert_names(load_params(&bytes, Some(&config)), "bias_hh_l1");
    // Extra.
    let bytes = file_with(&config, |t| {
        t.push(("weight_xx_l0".into(), Dtype::F32, vec![1], vec![0; 4]))
    });
    assert_names(load_params(&bytes, Some(&config)), "weight_xx_l0");
    // Wrong shape: a transposed weight.
    let bytes = file_with(&config, |t| {
        let w = t.iter_mut().find(|x| x.0 == "weight_ih_l1").unwrap();
        w.2.reverse();
    });
    assert_names(load_params(&bytes, Some(&config)), "weight_ih_l1");
    assert_names(load_params(&bytes, None), "weight_ih_l1");
    // Wrong dtype.
    let bytes = file_with(&config, |t| {
        let w = t.iter_mut().find(|x| x.0 == "weight_hh_l0").unwrap();
        w.1 = Dtype::I32;
    });
    assert_names(load_params(&bytes, None), "weight_hh_l0");
    // Another configuration than expected.
    let bytes = file_with(&config, |_| {});
    assert_names(
        load_params(&bytes, Some(&Config::gru(3, 3).with_layers(2))),
        "weight_ih_l0",
    );
}

#[test]
fn truncated_and_foreign_bytes_are_format_errors() {
    let config = Config::lstm(2, 2);
    let bytes = save_params(&Params::<f32>::init(&config, 1).unwrap(), &config).unwrap();
    for len in 0..bytes.len() {
        assert!(
            load_params::<f32>(&bytes[..len], None).is_err(),
            "a file cut at {len} bytes loaded"
        );
    }
    for junk in [
        &b""[..],
        b"not a safetensors file at all",
        &[0xff; 64],
        &[8, 0, 0, 0, 0, 0, 0, 0, b'{', b'}'],
    ] {
        assert!(matches!(
            load_params::<f32>(junk, None),
            Err(Error::Format(_))
        ));
    }
}

#[test]
fn a_failed_save_leaves_the_existing_file_and_no_temporary() {
    let dir = std::env::temp_dir().join(format!("fused-rnn-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("params.safetensors");
    let config = Config::gru(2, 2);
    let p = Params::<f32>::init(&config, 1).unwrap();
    save_params_file(&path, &p, &config).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Parameters of another configuration are refused before anything is written.
    let other = Params::<f32>::init(&Config::gru(2, 3), 1).unwrap();
    assert!(save_params_file(&path, &other, &config).is_err());
    // An unwritable destination: a folder where the file should be.
    assert!(matches!(
        save_params_file(&dir, &p, &config),
        Err(Error::Io { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
