//! Outputs, final states and every gradient against PyTorch (float64), to 1e-10 relative.
//!
//! The fixture `tests/fixtures/pytorch_golden.json` and the script that wrote it
//! (`tests/fixtures/make_pytorch_golden.py`, which needs PyTorch; this test does not) are
//! committed together. The cases cover LSTM, GRU and RNN (tanh, relu), with and without bias,
//! stacked, bidirectional, projected, per-sequence lengths (PyTorch's packed sequences),
//! batch-first and truncated-BPTT windows. Weights and inputs are `0.5 * sin(0.37 k + c)`
//! patterns, so the script needs no random state.

use fused_rnn::{
    Backward, CellKind, Config, Input, Nonlinearity, Params, Recurrent, Reserve, SeqLayout,
    SeqShape, State, Workspace,
};
use fused_rnn_kernels::testing::assert_close;
use serde_json::Value;

const TOL: (f64, f64) = (1e-12, 1e-10);

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().expect("size") as usize
}

fn config_of(case: &Value) -> Config {
    let cell = match case["cell"].as_str().expect("cell") {
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru { reset_after: true },
        "rnn_tanh" => CellKind::Rnn(Nonlinearity::Tanh),
        "rnn_relu" => CellKind::Rnn(Nonlinearity::Relu),
        other => panic!("unknown cell {other}"),
    };
    let layout = if case["batch_first"].as_bool().expect("bool") {
        SeqLayout::BatchMajor
    } else {
        SeqLayout::TimeMajor
    };
    Config::lstm(
        usize_of(&case["input_size"]),
        usize_of(&case["hidden_size"]),
    )
    .with_cell(cell)
    .with_layers(usize_of(&case["num_layers"]))
    .with_bidirectional(case["bidirectional"].as_bool().expect("bool"))
    .with_bias(case["bias"].as_bool().expect("bool"))
    .with_proj_size(usize_of(&case["proj_size"]))
    .with_layout(layout)
}

fn params_of(case: &Value, config: &Config) -> Params<f64> {
    let tensors = case["params"]
        .as_object()
        .expect("params")
        .iter()
        .map(|(name, t)| {
            let shape = t["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(usize_of)
                .collect();
            (name.clone(), shape, nums(&t["data"]))
        });
    Params::from_named(config, tensors).expect("PyTorch's state_dict loads as it is")
}

/// Runs one case (whole sequence, or its windows one after another) and compares.
fn check_case(case: &Value) {
    let name = case["name"].as_str().expect("name");
    let config = config_of(case);
    let module = Recurrent::new(config.clone(), params_of(case, &config)).expect("module");
    let (steps, batch) = (usize_of(&case["steps"]), usize_of(&case["batch"]));
    let (i, out) = (config.input_size, config.output_size());
    let lengths: Option<Vec<usize>> = case["lengths"]
        .as_array()
        .map(|l| l.iter().map(usize_of).collect());
    let windows: Vec<usize> = case["windows"]
        .as_array()
        .map_or(vec![steps], |w| w.iter().map(usize_of).collect());
    let (x, r) = (nums(&case["x"]), nums(&case["R"]));
    let mut state = State {
        h: nums(&case["h0"]),
        c: nums(&case["c0"]),
    };
    let (mut y, mut dx) = (vec![f64::NAN; x.len() / i * out], vec![f64::NAN; x.len()]);
    let mut grads = module.zero_grads();
    let (mut reserve, mut ws) = (Reserve::new(), Workspace::new());
    let mut d_initial = None;
    let mut start = 0;
    for (k, &w) in windows.iter().enumerate() {
        // Windows are time-major slices (the fixture has no batch-first windows).
        let shape = SeqShape::new(w, batch);
        let xs = &x[start * batch * i..(start + w) * batch * i];
        let mut input = Input::new(xs, shape);
        if let Some(l) = &lengths {
            input = input.with_lengths(l);
        }
        let ys = &mut y[start * batch * out..(start + w) * batch * out];
        module
            .forward_train(input, &mut state, ys, &mut reserve, &mut ws)
            .expect("forward_train");
        let last = k + 1 == windows.len();
        let mut d_state = if last {
            State {
                h: nums(&case["Rh"]),
                c: nums(&case["Rc"]),
            }
        } else {
            module.zero_state(batch)
        };
        let dy = &r[start * batch * out..(start + w) * batch * out];
        let dxs = &mut dx[start * batch * i..(start + w) * batch * i];
        let bwd = Backward {
            d_state: &mut d_state,
            dx: Some(dxs),
            grads: &mut grads,
        };
        module
            .backward(input, dy, &mut reserve, bwd, &mut ws)
            .expect("backward");
        d_initial.get_or_insert(d_state);
        start += w;
    }
    let d_initial = d_initial.expect("one window at least");
    let ctx = |what: &str| format!("{name}: {what}");
    assert_close(&ctx("y"), &y, &nums(&case["y"]), TOL);
    assert_close(&ctx("h_n"), &state.h, &nums(&case["h_n"]), TOL);
    assert_close(&ctx("c_n"), &state.c, &nums(&case["c_n"]), TOL);
    assert_close(&ctx("dx"), &dx, &nums(&case["dx"]), TOL);
    assert_close(&ctx("dh0"), &d_initial.h, &nums(&case["dh0"]), TOL);
    assert_close(&ctx("dc0"), &d_initial.c, &nums(&case["dc0"]), TOL);
    let want = case["grads"].as_object().expect("grads");
    assert_eq!(grads.len(), want.len(), "{name}: gradient count");
    for t in grads.iter() {
        assert_close(&ctx(t.name()), t.data(), &nums(&want[t.name()]), TOL);
    }
}

#[test]
fn matches_pytorch() {
    let text = include_str!("../fixtures/pytorch_golden.json");
    let doc: Value = serde_json::from_str(text).expect("fixture parses");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 18, "the fixture lost cases");
    for case in cases {
        check_case(case);
    }
}
