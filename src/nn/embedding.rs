//! [`Embedding`]: a lookup table from token ids to vectors (PyTorch's `nn.Embedding`).
//!
//! Feeding a [`Recurrent`](crate::Recurrent) module, pass the ids and the weight as token
//! input ([`Input::tokens`](crate::Input::tokens), [`Tbptt::step_tokens`](crate::Tbptt::step_tokens))
//! instead of looking the vectors up here: the lookup then runs fused into the module's first
//! layer, and its backward returns this table's gradient.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, check_len, mul};
use fused_rnn_kernels::Float;

/// `vocab` vectors of `dim` elements, `weight[id * dim..(id + 1) * dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding<T> {
    vocab: usize,
    dim: usize,
    /// `[vocab, dim]`, row-major (PyTorch's `weight`).
    pub weight: Vec<T>,
}

impl<T: Float> Embedding<T> {
    /// PyTorch's initialization: every element from N(0, 1), seeded.
    ///
    /// # Errors
    /// [`Error::ZeroDim`] for a zero size, [`Error::SizeOverflow`].
    pub fn new(vocab: usize, dim: usize, seed: u64) -> Result<Self, Error> {
        let mut e = Self::zeros(vocab, dim)?;
        let mut rng = StdRng::seed_from_u64(seed);
        for w in &mut e.weight {
            let v: f64 = StandardNormal.sample(&mut rng);
            *w = T::from_f64(v);
        }
        Ok(e)
    }

    /// All zeros (a gradient's starting point).
    ///
    /// # Errors
    /// As [`Embedding::new`].
    pub fn zeros(vocab: usize, dim: usize) -> Result<Self, Error> {
        if vocab == 0 {
            return Err(Error::ZeroDim { arg: "vocab" });
        }
        if dim == 0 {
            return Err(Error::ZeroDim { arg: "dim" });
        }
        Ok(Embedding {
            vocab,
            dim,
            weight: vec![T::ZERO; mul(&[vocab, dim])?],
        })
    }

    /// The number of ids.
    pub fn vocab(&self) -> usize {
        self.vocab
    }
    /// The vector length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn check_ids(&self, ids: &[usize]) -> Result<(), Error> {
        match ids.iter().position(|&id| id >= self.vocab) {
            Some(i) => Err(Error::invalid(
                "ids",
                format!("ids[{i}] = {} is not below vocab {}", ids[i], self.vocab),
            )),
            None => Ok(()),
        }
    }

    /// `out[i] = weight[ids[i]]`, `out` is `[ids.len(), dim]`.
    ///
    /// # Errors
    /// An id out of range or a wrong `out` length; nothing is written then.
    pub fn forward(&self, ids: &[usize], out: &mut [T]) -> Result<(), Error> {
        self.check_ids(ids)?;
        check_len("out", mul(&[ids.len(), self.dim])?, out.len())?;
        for (&id, row) in ids.iter().zip(out.chunks_exact_mut(self.dim)) {
            row.copy_from_slice(&self.weight[id * self.dim..(id + 1) * self.dim]);
        }
        Ok(())
    }

    /// Adds `d_out[i]` into `grads.weight[ids[i]]` (in order, so repeated ids sum
    /// deterministically).
    ///
    /// # Errors
    /// An id out of range, a wrong `d_out` length or `grads` of another shape; nothing is
    /// written then.
    pub fn backward(
        &self,
        ids: &[usize],
        d_out: &[T],
        grads: &mut Embedding<T>,
    ) -> Result<(), Error> {
        self.check_ids(ids)?;
        check_len("d_out", mul(&[ids.len(), self.dim])?, d_out.len())?;
        check_len("grads.weight", self.weight.len(), grads.weight.len())?;
        if (grads.vocab, grads.dim) != (self.vocab, self.dim) {
            return Err(Error::invalid("grads", "another embedding's shape"));
        }
        for (&id, row) in ids.iter().zip(d_out.chunks_exact(self.dim)) {
            let dst = &mut grads.weight[id * self.dim..(id + 1) * self.dim];
            for (d, &g) in dst.iter_mut().zip(row) {
                *d += g;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_scatter_add() {
        let mut e = Embedding::<f64>::zeros(3, 2).unwrap();
        e.weight.copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut out = vec![0.0; 6];
        e.forward(&[2, 0, 2], &mut out).unwrap();
        assert_eq!(out, [5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
        let mut g = Embedding::zeros(3, 2).unwrap();
        e.backward(&[2, 0, 2], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0], &mut g)
            .unwrap();
        assert_eq!(g.weight, [2.0, 2.0, 0.0, 0.0, 4.0, 4.0]);
    }

    #[test]
    fn bad_ids_and_lengths_are_errors() {
        let e = Embedding::<f32>::new(3, 2, 0).unwrap();
        let mut out = vec![7.0; 4];
        assert!(e.forward(&[0, 3], &mut out).is_err());
        assert!(e.forward(&[0], &mut out).is_err());
        assert_eq!(out, [7.0; 4]);
        assert!(Embedding::<f32>::new(0, 2, 0).is_err());
        let mut g = Embedding::zeros(3, 3).unwrap();
        assert!(e.backward(&[0], &[1.0, 1.0], &mut g).is_err());
    }

    #[test]
    fn init_is_standard_normal() {
        let e = Embedding::<f64>::new(100, 100, 7).unwrap();
        let n = e.weight.len() as f64;
        let mean = e.weight.iter().sum::<f64>() / n;
        let var = e.weight.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / n;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
