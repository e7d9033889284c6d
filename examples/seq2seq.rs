//! Sequence to sequence (Sutskever et al., 2014): an encoder LSTM reads a digit string
//! (many-to-one: its final state), a decoder LSTM starts from that state and writes the
//! string reversed, one digit at a time, feeding each digit back in (one-to-many).
//!
//! ```text
//! cargo run --release --example seq2seq [-- --steps 3000]
//! ```
//!
//! Strings of 3 to 7 digits, batched with per-sequence lengths; trained with teacher
//! forcing; tested by greedy decoding, step by step, on strings it never saw.

use fused_rnn::clip::clip_grad_norm;
use fused_rnn::nn::{Linear, softmax_cross_entropy};
use fused_rnn::optim::{Adam, Optimizer};
use fused_rnn::{Backward, Config, Input, Recurrent, Reserve, SeqShape, State, Workspace};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIGITS: usize = 10;
/// Decoder input at the first step.
const GO: usize = DIGITS;
/// Decoder output after the last digit.
const EOS: usize = DIGITS;
const HIDDEN: usize = 128;
const MIN_LEN: usize = 3;
const MAX_LEN: usize = 7;

struct Seq2Seq {
    encoder: Recurrent<f32>,
    decoder: Recurrent<f32>,
    head: Linear<f32>,
    adam: Adam<f32>,
}

/// A batch of strings, each a `Vec` of digits.
fn strings(rng: &mut StdRng, b: usize) -> Vec<Vec<usize>> {
    (0..b)
        .map(|_| {
            (0..rng.random_range(MIN_LEN..=MAX_LEN))
                .map(|_| rng.random_range(0..DIGITS))
                .collect()
        })
        .collect()
}

/// One-hot `[T][B][width]` of `seqs` (padded to `t` steps) and their lengths.
fn one_hot(seqs: &[Vec<usize>], t: usize, width: usize) -> Vec<f32> {
    let b = seqs.len();
    let mut x = vec![0.0; t * b * width];
    for (s, seq) in seqs.iter().enumerate() {
        for (step, &id) in seq.iter().enumerate() {
            x[(step * b + s) * width + id] = 1.0;
        }
    }
    x
}

impl Seq2Seq {
    fn new() -> Self {
        Seq2Seq {
            encoder: Recurrent::with_seed(Config::lstm(DIGITS, HIDDEN), 1).unwrap(),
            decoder: Recurrent::with_seed(Config::lstm(DIGITS + 1, HIDDEN), 2).unwrap(),
            head: Linear::new(HIDDEN, DIGITS + 1, 3).unwrap(),
            adam: Adam::new(3e-3),
        }
    }

    /// The encoder's final state for each string (at its own last digit).
    fn encode(
        &self,
        src: &[Vec<usize>],
        ws: &mut Workspace<f32>,
        reserve: Option<&mut Reserve<f32>>,
    ) -> (State<f32>, Vec<f32>, Vec<usize>) {
        let b = src.len();
        let lengths: Vec<usize> = src.iter().map(Vec::len).collect();
        let x = one_hot(src, MAX_LEN, DIGITS);
        let mut state = self.encoder.zero_state(b);
        let mut y = vec![0.0; MAX_LEN * b * HIDDEN];
        let input = Input::new(&x, SeqShape::new(MAX_LEN, b)).with_lengths(&lengths);
        match reserve {
            Some(r) => self
                .encoder
                .forward_train(input, &mut state, &mut y, r, ws)
                .unwrap(),
            None => self.encoder.forward(input, &mut state, &mut y, ws).unwrap(),
        }
        (state, x, lengths)
    }

    /// One teacher-forced training step; returns the loss per output digit.
    fn train(&mut self, src: &[Vec<usize>]) -> f64 {
        let b = src.len();
        let mut ws = Workspace::new();
        let mut enc_reserve = Reserve::new();
        let (enc_state, enc_x, enc_lengths) = self.encode(src, &mut ws, Some(&mut enc_reserve));
        // Decoder: inputs GO, r1 .. rk; targets r1 .. rk, EOS (r = the string reversed).
        let t = MAX_LEN + 1;
        let reversed: Vec<Vec<usize>> = src
            .iter()
            .map(|s| s.iter().rev().copied().collect())
            .collect();
        let dec_in: Vec<Vec<usize>> = reversed
            .iter()
            .map(|r| std::iter::once(GO).chain(r.iter().copied()).collect())
            .collect();
        let dec_lengths: Vec<usize> = dec_in.iter().map(Vec::len).collect();
        let x = one_hot(&dec_in, t, DIGITS + 1);
        let mut state = enc_state;
        let mut y = vec![0.0; t * b * HIDDEN];
        let mut dec_reserve = Reserve::new();
        let input = Input::new(&x, SeqShape::new(t, b)).with_lengths(&dec_lengths);
        self.decoder
            .forward_train(input, &mut state, &mut y, &mut dec_reserve, &mut ws)
            .unwrap();
        // The loss over real steps only (padding rows are left out).
        let rows: Vec<(usize, usize)> = (0..t)
            .flat_map(|step| (0..b).map(move |s| (step, s)))
            .filter(|&(step, s)| step < dec_lengths[s])
            .collect();
        let picked: Vec<f32> = rows
            .iter()
            .flat_map(|&(step, s)| y[(step * b + s) * HIDDEN..(step * b + s + 1) * HIDDEN].to_vec())
            .collect();
        let targets: Vec<usize> = rows
            .iter()
            .map(|&(step, s)| reversed[s].get(step).copied().unwrap_or(EOS))
            .collect();
        let mut logits = vec![0.0; rows.len() * (DIGITS + 1)];
        self.head.forward(&picked, &mut logits).unwrap();
        let mut d_logits = vec![0.0; logits.len()];
        let loss = softmax_cross_entropy(&logits, DIGITS + 1, &targets, &mut d_logits).unwrap();
        // Backward: head, decoder (its initial state's gradient) and into the encoder.
        let mut head_g = Linear::zeros(HIDDEN, DIGITS + 1).unwrap();
        let mut d_picked = vec![0.0; picked.len()];
        self.head
            .backward(&picked, &d_logits, Some(&mut d_picked), &mut head_g)
            .unwrap();
        let mut dy = vec![0.0; y.len()];
        for (i, &(step, s)) in rows.iter().enumerate() {
            dy[(step * b + s) * HIDDEN..(step * b + s + 1) * HIDDEN]
                .copy_from_slice(&d_picked[i * HIDDEN..(i + 1) * HIDDEN]);
        }
        let (mut dec_g, mut enc_g) = (self.decoder.zero_grads(), self.encoder.zero_grads());
        let mut d_state = self.decoder.zero_state(b);
        let out = Backward {
            d_state: &mut d_state,
            dx: None,
            grads: &mut dec_g,
        };
        self.decoder
            .backward(input, &dy, &mut dec_reserve, out, &mut ws)
            .unwrap();
        // d_state now holds dL/d(decoder's initial state) = dL/d(encoder's final state).
        let enc_input = Input::new(&enc_x, SeqShape::new(MAX_LEN, b)).with_lengths(&enc_lengths);
        let zero_dy = vec![0.0; MAX_LEN * b * HIDDEN];
        let out = Backward {
            d_state: &mut d_state,
            dx: None,
            grads: &mut enc_g,
        };
        self.encoder
            .backward(enc_input, &zero_dy, &mut enc_reserve, out, &mut ws)
            .unwrap();
        let mut grads: Vec<&mut [f32]> = enc_g
            .iter_mut()
            .chain(dec_g.iter_mut())
            .map(|t| t.data_mut())
            .collect();
        grads.push(&mut head_g.weight);
        grads.push(&mut head_g.bias);
        clip_grad_norm(&mut grads, 1.0);
        let grads: Vec<&[f32]> = grads.into_iter().map(|g| &*g).collect();
        let mut params: Vec<&mut [f32]> = self
            .encoder
            .tensors_mut()
            .chain(self.decoder.tensors_mut())
            .map(|t| t.data_mut())
            .collect();
        params.push(&mut self.head.weight);
        params.push(&mut self.head.bias);
        self.adam.step(&mut params, &grads).unwrap();
        loss
    }

    /// Greedy decoding, one digit at a time for the whole batch.
    fn reverse(&self, src: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let b = src.len();
        let mut ws = Workspace::new();
        let (mut state, _, _) = self.encode(src, &mut ws, None);
        let mut out = vec![Vec::new(); b];
        let mut done = vec![false; b];
        let mut prev = vec![GO; b];
        let (mut y, mut logits) = (vec![0.0; b * HIDDEN], vec![0.0; b * (DIGITS + 1)]);
        for _ in 0..=MAX_LEN {
            let x = one_hot(
                &prev.iter().map(|&p| vec![p]).collect::<Vec<_>>(),
                1,
                DIGITS + 1,
            );
            self.decoder
                .forward(
                    Input::new(&x, SeqShape::new(1, b)),
                    &mut state,
                    &mut y,
                    &mut ws,
                )
                .unwrap();
            self.head.forward(&y, &mut logits).unwrap();
            for (s, row) in logits.chunks_exact(DIGITS + 1).enumerate() {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(0, |m, (i, &v)| if v > row[m] { i } else { m });
                if best == EOS {
                    done[s] = true;
                }
                if !done[s] {
                    out[s].push(best);
                }
                prev[s] = best;
            }
        }
        out
    }
}

fn show(d: &[usize]) -> String {
    d.iter().map(|v| char::from(b'0' + *v as u8)).collect()
}

fn main() {
    let steps: usize = std::env::args()
        .skip_while(|a| a != "--steps")
        .nth(1)
        .map_or(3000, |s| s.parse().expect("a number"));
    let mut model = Seq2Seq::new();
    let mut rng = StdRng::seed_from_u64(8);
    let started = std::time::Instant::now();
    for step in 1..=steps {
        let loss = model.train(&strings(&mut rng, 64));
        if step % 500 == 0 {
            println!("step {step:>5}: loss {loss:.4} nats per digit");
        }
    }
    let mut test = StdRng::seed_from_u64(4321);
    let src = strings(&mut test, 2000);
    let got = model.reverse(&src);
    let right = src
        .iter()
        .zip(&got)
        .filter(|(s, g)| s.iter().rev().eq(g.iter()))
        .count();
    println!(
        "\n{steps} steps in {:.1}s; exact reversals of 2000 new strings: {:.1}%",
        started.elapsed().as_secs_f64(),
        100.0 * right as f64 / 2000.0
    );
    for (s, g) in src.iter().zip(&got).take(6) {
        println!(
            "  {:>8} -> {:<8} {}",
            show(s),
            show(g),
            if s.iter().rev().eq(g.iter()) {
                "ok"
            } else {
                "wrong"
            }
        );
    }
}
