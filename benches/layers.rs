//! A layer's forward (`/infer`) and forward + full BPTT backward (`/train`) on every case of
//! `benches/sizes.json`, throughput in FLOPs (criterion's "elements" read as FLOP/s).
//! Train cases are also timed forward-only, so both halves show.
//!
//! `cargo bench --bench layers -- lstm_h512_b16_t25` runs one case.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fused_rnn::{Backward, Input, Recurrent, Reserve, SeqShape, Workspace};

fn layers(c: &mut Criterion) {
    for case in common::cases() {
        let m = Recurrent::<f32>::with_seed(case.config(), 0).expect("valid case");
        let shape = SeqShape::new(case.steps, case.batch);
        let x: Vec<f32> = (0..case.steps * case.batch * case.input)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut y = vec![0.0f32; case.steps * case.batch * case.hidden];
        let mut ws = Workspace::with_len(m.workspace_len(shape).unwrap());
        let mut group = c.benchmark_group(&case.name);
        group.sample_size(10);
        let mut fwd = case.clone();
        fwd.train = false;
        group.throughput(Throughput::Elements(fwd.flops() as u64));
        group.bench_function("infer", |b| {
            b.iter(|| {
                let mut state = m.zero_state(case.batch);
                m.forward(Input::new(&x, shape), &mut state, &mut y, &mut ws)
                    .unwrap();
            })
        });
        if case.train {
            let mut reserve = Reserve::for_shape(&m, shape).unwrap();
            let dy = vec![1e-2f32; y.len()];
            let mut grads = m.zero_grads();
            let mut dx = vec![0.0f32; x.len()];
            group.throughput(Throughput::Elements(case.flops() as u64));
            group.bench_function("train", |b| {
                b.iter(|| {
                    let mut state = m.zero_state(case.batch);
                    m.forward_train(
                        Input::new(&x, shape),
                        &mut state,
                        &mut y,
                        &mut reserve,
                        &mut ws,
                    )
                    .unwrap();
                    let mut d_state = m.zero_state(case.batch);
                    let out = Backward {
                        d_state: &mut d_state,
                        dx: Some(&mut dx),
                        grads: &mut grads,
                    };
                    m.backward(Input::new(&x, shape), &dy, &mut reserve, out, &mut ws)
                        .unwrap();
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, layers);
criterion_main!(benches);
