//! Thread safety: layers are `Send + Sync`, and many threads running one shared layer, each
//! with its own buffers, get bitwise what one thread gets. Also: parameters saved and loaded
//! give bitwise the same outputs and gradients.

use std::sync::Arc;

use fused_rnn::io::{load_params, save_params};
use fused_rnn::{
    Backward, CellKind, Config, Grads, Input, Params, Recurrent, Reserve, SeqShape, State,
    Workspace,
};

const fn assert_send_sync<T: Send + Sync>() {}

// Compile-time: the types a user shares or moves across threads.
const _: () = {
    assert_send_sync::<Recurrent<f32>>();
    assert_send_sync::<Recurrent<f64>>();
    assert_send_sync::<Params<f32>>();
    assert_send_sync::<State<f32>>();
    assert_send_sync::<Reserve<f32>>();
    assert_send_sync::<Workspace<f32>>();
    assert_send_sync::<fused_rnn::Tbptt<f32>>();
    assert_send_sync::<fused_rnn::Error>();
};

/// Outputs, final state and gradients of one training step, as bits.
fn train_step(module: &Recurrent<f32>, x: &[f32], shape: SeqShape) -> Vec<u32> {
    let config = module.config();
    let input = Input::new(x, shape);
    let mut y = vec![0.0; shape.steps * shape.batch * config.output_size()];
    let mut state = module.zero_state(shape.batch);
    let (mut reserve, mut ws) = (Reserve::new(), Workspace::new());
    module
        .forward_train(input, &mut state, &mut y, &mut reserve, &mut ws)
        .unwrap();
    let dy: Vec<f32> = y.iter().map(|v| v * 0.5 - 0.1).collect();
    let (mut grads, mut d_state): (Grads<f32>, _) =
        (module.zero_grads(), module.zero_state(shape.batch));
    let mut dx = vec![0.0; x.len()];
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    module
        .backward(input, &dy, &mut reserve, out, &mut ws)
        .unwrap();
    let mut all: Vec<f32> = y;
    all.extend(state.h.iter().chain(&state.c).chain(&dx).chain(&d_state.h));
    all.extend(grads.iter().flat_map(|t| t.data().iter().copied()));
    all.into_iter().map(f32::to_bits).collect()
}

fn input(config: &Config, shape: SeqShape, seed: u32) -> Vec<f32> {
    let n = shape.steps * shape.batch * config.input_size;
    (0..n)
        .map(|k| ((k as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000)
        .map(|v| v as f32 / 500.0 - 1.0)
        .collect()
}

#[test]
fn many_threads_on_one_shared_layer_match_one_thread() {
    for cell in CellKind::ALL {
        let config = Config::lstm(24, 40)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(true);
        let module = Arc::new(Recurrent::<f32>::with_seed(config.clone(), 5).unwrap());
        // Shapes that take the batch-chunked and the column-split paths.
        let shapes = [SeqShape::new(9, 33), SeqShape::new(7, 3)];
        let want: Vec<Vec<u32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, &s)| train_step(&module, &input(&config, s, i as u32), s))
            .collect();
        let threads: Vec<_> = (0..8)
            .map(|k| {
                let (module, config) = (Arc::clone(&module), config.clone());
                std::thread::spawn(move || {
                    (0..3)
                        .map(|round| {
                            let i = (k + round) % shapes.len();
                            let s = shapes[i];
                            (i, train_step(&module, &input(&config, s, i as u32), s))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            for (i, got) in t.join().unwrap() {
                assert!(got == want[i], "{cell:?}: a thread got other bits");
            }
        }
    }
}

#[test]
fn parameters_saved_and_loaded_give_the_same_bits() {
    for cell in CellKind::ALL {
        let config = Config::lstm(6, 10).with_cell(cell).with_layers(2);
        let config = if cell == CellKind::Lstm {
            config.with_proj_size(4).with_bidirectional(true)
        } else {
            config
        };
        let module = Recurrent::<f32>::with_seed(config.clone(), 8).unwrap();
        let bytes = save_params(module.params(), &config).unwrap();
        let (loaded_config, params) = load_params::<f32>(&bytes, None).unwrap();
        assert_eq!(loaded_config, config);
        let loaded = Recurrent::new(loaded_config, params).unwrap();
        let shape = SeqShape::new(5, 4);
        let x = input(&config, shape, 1);
        assert!(train_step(&module, &x, shape) == train_step(&loaded, &x, shape));
    }
}
