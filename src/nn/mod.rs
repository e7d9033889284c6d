//! The small layers around a recurrent core that a sequence model needs: [`Embedding`]
//! (token ids to vectors), [`Linear`] (a dense head) and [`softmax_cross_entropy`] (the
//! loss, fused with its gradient). Each has an explicit forward and backward in the style of
//! [`Recurrent`](crate::Recurrent): PyTorch's parameter layouts, gradients *added to* a
//! grads value of the same type, typed errors before any write.
//!
//! ```
//! use fused_rnn::nn::{Embedding, Linear, softmax_cross_entropy};
//!
//! let (vocab, dim) = (5, 3);
//! let embed = Embedding::<f32>::new(vocab, dim, 0)?;
//! let head = Linear::<f32>::new(dim, vocab, 1)?;
//! let ids = [0, 3, 4];
//! let mut x = vec![0.0; ids.len() * dim];
//! embed.forward(&ids, &mut x)?;
//! let mut logits = vec![0.0; ids.len() * vocab];
//! head.forward(&x, &mut logits)?;
//! let mut d_logits = vec![0.0; logits.len()];
//! let loss = softmax_cross_entropy(&logits, vocab, &[3, 4, 0], &mut d_logits)?;
//! assert!(loss > 0.0);
//! # Ok::<(), fused_rnn::Error>(())
//! ```

mod embedding;
mod linear;
mod loss;

pub use embedding::Embedding;
pub use linear::Linear;
pub use loss::{softmax, softmax_cross_entropy};
