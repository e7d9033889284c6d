//! Sampling: one character at a time through the single-step (batch 1) inference path, with
//! temperature and top-k.

use fused_rnn::nn::softmax;
use fused_rnn::{Input, SeqShape, Workspace};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::CharModel;

/// How to sample.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Text the model reads first (its characters must be in the vocabulary).
    pub prime: String,
    /// Characters to generate.
    pub length: usize,
    /// Below 1 sharpens the distribution, above 1 flattens it.
    pub temperature: f64,
    /// Sample among the k most likely characters only (0: all).
    pub top_k: usize,
    pub seed: u64,
}

/// Generates `opts.length` characters after `opts.prime`.
pub fn sample(model: &CharModel, vocab: &[char], opts: &SampleOptions) -> Result<String, String> {
    if !(opts.temperature > 0.0 && opts.temperature.is_finite()) {
        return Err(format!(
            "temperature {} must be a positive number",
            opts.temperature
        ));
    }
    let prime: Vec<usize> = opts
        .prime
        .chars()
        .map(|c| {
            vocab.binary_search(&c).map_err(|_| {
                format!("the prime's character {c:?} is not in the model's vocabulary")
            })
        })
        .collect::<Result<_, _>>()?;
    let err = |e: fused_rnn::Error| e.to_string();
    let (e, h, v) = (model.config.embed, model.config.hidden, model.config.vocab);
    let mut state = model.rnn.zero_state(1);
    let mut ws = Workspace::new();
    let (mut x, mut y, mut logits) = (vec![0.0f32; e], vec![0.0f32; h], vec![0.0f32; v]);
    let mut probs = vec![0.0f64; v];
    let mut rng = StdRng::seed_from_u64(opts.seed);
    // With no prime, start from the first character of the vocabulary ('\n' for most texts).
    let mut next = prime.first().copied().unwrap_or(0);
    let mut out = String::new();
    let feed = prime.len().max(1);
    for i in 0..feed + opts.length {
        model.embed.forward(&[next], &mut x).map_err(err)?;
        model
            .rnn
            .forward(
                Input::new(&x, SeqShape::new(1, 1)),
                &mut state,
                &mut y,
                &mut ws,
            )
            .map_err(err)?;
        if i + 1 < feed {
            next = prime[i + 1];
            continue;
        }
        if i + 1 == feed + opts.length {
            break;
        }
        model.head.forward(&y, &mut logits).map_err(err)?;
        softmax(&logits, opts.temperature, &mut probs).map_err(err)?;
        keep_top_k(&mut probs, opts.top_k);
        next = draw(&probs, rng.random::<f64>());
        out.push(vocab[next]);
    }
    Ok(out)
}

/// Zeroes all but the `k` largest probabilities and renormalizes (k = 0 keeps all).
fn keep_top_k(probs: &mut [f64], k: usize) {
    if k == 0 || k >= probs.len() {
        return;
    }
    let mut sorted = probs.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let cut = sorted[k - 1];
    let mut kept = 0;
    for p in probs.iter_mut() {
        // Ties at the cut keep the first ones, so exactly k survive.
        if *p >= cut && kept < k {
            kept += 1;
        } else {
            *p = 0.0;
        }
    }
    let sum: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= sum);
}

/// The index where the cumulative distribution passes `u` in [0, 1).
fn draw(probs: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (i, &p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    probs.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_k_largest() {
        let mut p = vec![0.1, 0.4, 0.2, 0.3];
        keep_top_k(&mut p, 2);
        assert_eq!(p.iter().filter(|&&x| x > 0.0).count(), 2);
        assert!((p[1] - 4.0 / 7.0).abs() < 1e-12 && (p[3] - 3.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn draw_follows_the_cumulative_distribution() {
        let p = [0.25, 0.0, 0.75];
        assert_eq!(draw(&p, 0.1), 0);
        assert_eq!(draw(&p, 0.25), 2);
        assert_eq!(draw(&p, 0.999_999), 2);
    }
}
