//! Timing one case at one thread count: warm-up, then samples of back-to-back calls until
//! both a minimum time and a minimum number of samples are reached (as the reference
//! scripts do), and the peak memory of one training step.

use std::time::Instant;

use fused_rnn::{Backward, Input, Recurrent, Reserve, SeqShape, Workspace};
use fused_rnn_kernels::testing::alloc;

use super::cases::Case;

/// Per-call seconds and the training path's peak memory.
#[derive(Clone, Debug)]
pub struct Run {
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub samples: usize,
    /// Peak heap bytes of one training step (or inference call), everything included:
    /// prepared weights, reserve, workspace, gradients, outputs.
    pub peak_bytes: usize,
    /// Other processes' CPU use during the timed window, in cores (a noise indicator).
    pub other_cores: f64,
}

/// Times `case` on the current rayon pool.
pub fn run_case(case: &Case, min_time: f64, min_samples: usize) -> Run {
    let module = Recurrent::<f32>::with_seed(case.config(), 0).expect("a valid case");
    let shape = SeqShape::new(case.steps, case.batch);
    let x: Vec<f32> = (0..case.steps * case.batch * case.input)
        .map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let dy: Vec<f32> = (0..case.steps * case.batch * case.hidden)
        .map(|i| ((i * 104_729) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    // Everything a step needs is allocated inside the measured window.
    let mark = alloc::mark();
    let mut step = Step::new(&module, shape, case.train);
    step.run(&module, &x, &dy);
    let peak_bytes = mark.peak_bytes();
    let mut call = || step.run(&module, &x, &dy);
    let (samples, other_cores) = sample(&mut call, min_time, min_samples);
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    Run {
        median_s: sorted[sorted.len() / 2],
        min_s: sorted[0],
        max_s: sorted[sorted.len() - 1],
        samples: sorted.len(),
        peak_bytes,
        other_cores,
    }
}

/// The buffers of one call.
struct Step {
    shape: SeqShape,
    train: bool,
    y: Vec<f32>,
    dx: Vec<f32>,
    ws: Workspace<f32>,
    reserve: Reserve<f32>,
    grads: fused_rnn::Grads<f32>,
}

impl Step {
    fn new(m: &Recurrent<f32>, shape: SeqShape, train: bool) -> Self {
        let out = shape.steps * shape.batch * m.config().output_size();
        let x_len = shape.steps * shape.batch * m.config().input_size;
        Step {
            shape,
            train,
            y: vec![0.0; out],
            dx: vec![0.0; if train { x_len } else { 0 }],
            ws: Workspace::new(),
            reserve: Reserve::new(),
            grads: if train {
                m.zero_grads()
            } else {
                m.params().clone()
            },
        }
    }
    fn run(&mut self, m: &Recurrent<f32>, x: &[f32], dy: &[f32]) {
        let input = Input::new(x, self.shape);
        let mut state = m.zero_state(self.shape.batch);
        if self.train {
            m.forward_train(
                input,
                &mut state,
                &mut self.y,
                &mut self.reserve,
                &mut self.ws,
            )
            .expect("forward_train");
            let mut d_state = m.zero_state(self.shape.batch);
            let out = Backward {
                d_state: &mut d_state,
                dx: Some(&mut self.dx),
                grads: &mut self.grads,
            };
            m.backward(input, dy, &mut self.reserve, out, &mut self.ws)
                .expect("backward");
        } else {
            m.forward(input, &mut state, &mut self.y, &mut self.ws)
                .expect("forward");
        }
    }
}

/// Warm-up (>= 2 calls and 0.3 s), then samples of k back-to-back calls (k so that a sample
/// lasts >= 5 ms) until `min_time` and `min_samples` are both reached.
pub fn sample(call: &mut impl FnMut(), min_time: f64, min_samples: usize) -> (Vec<f64>, f64) {
    let start = Instant::now();
    let mut n = 0;
    while n < 2 || start.elapsed().as_secs_f64() < 0.3 {
        call();
        n += 1;
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    let k = ((0.005 / per.max(1e-9)).ceil() as usize).max(1);
    let mut samples = Vec::new();
    let (busy0, own0) = (cpu_busy(), own_cpu());
    let t0 = Instant::now();
    while samples.len() < min_samples || t0.elapsed().as_secs_f64() < min_time {
        let s = Instant::now();
        for _ in 0..k {
            call();
        }
        samples.push(s.elapsed().as_secs_f64() / k as f64);
        if samples.len() >= 3 && t0.elapsed().as_secs_f64() > 25.0 {
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let others = match (busy0, cpu_busy(), own0, own_cpu()) {
        (Some(b0), Some(b1), Some(o0), Some(o1)) => ((b1 - b0 - (o1 - o0)) / wall).max(0.0),
        _ => f64::NAN,
    };
    (samples, others)
}

/// Seconds all CPUs spent busy since boot (/proc/stat).
fn cpu_busy() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
    Some(busy / 100.0)
}

/// This process's CPU seconds (/proc/self/stat utime + stime).
fn own_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(") ").next()?.split_whitespace().collect();
    Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / 100.0)
}
