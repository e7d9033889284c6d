//! # fused-rnn
//!
//! Recurrent-network layers for the CPU, fused and fast, with gradients you can check:
//! vanilla RNN (tanh, relu), LSTM (with optional projection) and GRU (reset after or before
//! the recurrent product), stacked and bidirectional, forward and backpropagation through
//! time, in f32 and f64.
//!
//! The math and the parameters are PyTorch's (names, shapes, gate order), so a `state_dict`
//! drops in; see [`params`] for the tensor table and [`Config`] for the options.
//!
//! ```text
//! RNN   h' = act(W_ih x + b_ih + W_hh h + b_hh)                         act = tanh | relu
//! LSTM  [i f g o] = W_ih x + b_ih + W_hh h + b_hh;  i,f,o = sigmoid, g = tanh
//!       c' = f*c + i*g;   h' = o*tanh(c')   (projected: h' = W_hr (o*tanh(c')))
//! GRU   [r z] = sigmoid(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z})
//!       n = tanh(W_in x + b_in + r*(W_hn h + b_hn))      reset after (PyTorch, cuDNN)
//!       n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)      reset before (Cho et al. 2014)
//!       h' = (1-z)*n + z*h
//! ```
//!
//! ## Buffers
//!
//! Memory is explicit, as in cuDNN: a [`Workspace`] is scratch for one call; a [`Reserve`]
//! keeps what [`Recurrent::forward_train`] saves for [`Recurrent::backward`]. Their sizes are
//! formulas ([`Recurrent::workspace_len`], [`Recurrent::reserve_len`], [`layout`]); both grow
//! on first use and are reused afterwards.
//!
//! ## Quick start
//!
//! ```
//! use fused_rnn::{Backward, Config, Input, Recurrent, Reserve, SeqShape, Workspace};
//!
//! let gru = Recurrent::<f32>::with_seed(Config::gru(4, 16).with_layers(2), 7)?;
//! let shape = SeqShape::new(10, 3);
//! let x = vec![0.1f32; 10 * 3 * 4];
//! let mut y = vec![0.0f32; 10 * 3 * 16];
//! let (mut state, mut reserve, mut ws) = (gru.zero_state(3), Reserve::new(), Workspace::new());
//! gru.forward_train(Input::new(&x, shape), &mut state, &mut y, &mut reserve, &mut ws)?;
//!
//! // Loss = sum(y): dL/dy = 1.
//! let dy = vec![1.0f32; y.len()];
//! let (mut grads, mut d_state) = (gru.zero_grads(), gru.zero_state(3));
//! let out = Backward { d_state: &mut d_state, dx: None, grads: &mut grads };
//! gru.backward(Input::new(&x, shape), &dy, &mut reserve, out, &mut ws)?;
//! assert!(grads.iter().all(|t| t.data().iter().all(|g| g.is_finite())));
//! # Ok::<(), fused_rnn::Error>(())
//! ```
//!
//! ## Safety
//!
//! This crate is `#![forbid(unsafe_code)]`; every `unsafe` line lives in
//! [`fused_rnn_kernels`], behind checked views.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod buffers;
pub mod check;
pub mod checkpoint;
pub mod clip;
pub mod config;
mod engine;
pub mod error;
mod fold;
pub mod gradcheck;
pub mod input;
pub mod io;
pub mod layout;
pub mod nn;
pub mod optim;
pub mod params;
pub mod phases;
mod prepared;
mod recurrent;
pub mod state;
pub mod tbptt;

pub use buffers::{Reserve, ReserveShape, Workspace};
pub use config::{CellKind, Config, Nonlinearity, Parallelism, SeqLayout};
pub use error::Error;
pub use fused_rnn_kernels::Float;
pub use input::{Input, SeqShape, Tokens};
pub use params::{Grads, Params, Tensor};
pub use recurrent::{Backward, Recurrent};
pub use state::State;
pub use tbptt::{Tbptt, Truncation};

/// The README's code, compiled and run as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
