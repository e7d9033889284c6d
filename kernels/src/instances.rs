//! Every kernel body compiled in this crate, for f32 and for f64.
//!
//! Rust compiles a generic function in the crate that names its concrete types: the
//! kernels' SIMD bodies, generic over the element type, were compiled in the user's crate,
//! at the user's opt-level. In a debug build that is opt-level 0, where a pulp operation is
//! a function call and no intrinsic is inlined, whatever opt-level the user gave this crate
//! (`[profile.dev.package.fused-rnn-kernels] opt-level = 3`, the usual remedy, changed
//! nothing). Each body is run here through a method of a non-generic impl for f32 and f64,
//! which is compiled once, in this crate, at this crate's opt-level.
//!
//! [`Instances`] is a supertrait of [`Float`](crate::Float) that only this crate can name
//! (as `Float`'s seal).

// The methods take the crate's private kernel bodies: no other crate can name the trait
// (this module is private), so none can call them.
#![allow(private_interfaces)]

use pulp::Arch;

use crate::gemm::packed::Product;
use crate::gemm::packed::group::Group;
use crate::math::MapOp;
use crate::pointwise::Units;
use crate::pointwise::gru::{
    GruBwdPointwise, GruBwdPointwiseGates, GruBwdPointwiseOut, GruFwdPointwise,
    GruFwdPointwiseGates, GruFwdPointwiseOut,
};
use crate::pointwise::lstm::{LstmBwdPointwise, LstmFwdPointwise};
use crate::pointwise::rnn::{RnnBwdPointwise, RnnFwdPointwise};

/// Declares [`Instances`] with one method per kernel body (`name: the body's type`, with
/// `Self` the element type), each running its body through `arch.dispatch`, and implements
/// it for f32 and f64. Not `#[inline]`: an inline method would be compiled by its caller.
macro_rules! instances {
    ($($(#[$doc:meta])* $name:ident: $op:ty;)*) => {
        /// The kernel bodies, compiled in this crate (see the module docs).
        pub trait Instances: Sized {
            $(
                $(#[$doc])*
                fn $name(arch: Arch, op: $op);
            )*
        }

        impl Instances for f32 {
            $(fn $name(arch: Arch, op: $op) { arch.dispatch(op) })*
        }

        impl Instances for f64 {
            $(fn $name(arch: Arch, op: $op) { arch.dispatch(op) })*
        }
    };
}

instances! {
    /// [`crate::gemm::packed::gemm_packed`].
    product: Product<'_, '_, Self>;
    /// [`crate::gemm::packed::group::gemm_packed_group`].
    group: Group<'_, '_, '_, Self>;
    /// [`crate::math::map_slice`].
    map: MapOp<'_, Self>;
    /// [`crate::pointwise::lstm::lstm_fwd_pointwise_units`].
    lstm_fwd: Units<LstmFwdPointwise<'_, Self>>;
    /// [`crate::pointwise::lstm::lstm_bwd_pointwise`].
    lstm_bwd: LstmBwdPointwise<'_, Self>;
    /// [`crate::pointwise::gru::gru_fwd_pointwise_units`].
    gru_fwd: Units<GruFwdPointwise<'_, Self>>;
    /// [`crate::pointwise::gru::gru_bwd_pointwise`].
    gru_bwd: GruBwdPointwise<'_, Self>;
    /// [`crate::pointwise::gru::gru_fwd_pointwise_gates`].
    gru_fwd_gates: GruFwdPointwiseGates<'_, Self>;
    /// [`crate::pointwise::gru::gru_fwd_pointwise_out`].
    gru_fwd_out: GruFwdPointwiseOut<'_, Self>;
    /// [`crate::pointwise::gru::gru_bwd_pointwise_out`].
    gru_bwd_out: GruBwdPointwiseOut<'_, Self>;
    /// [`crate::pointwise::gru::gru_bwd_pointwise_gates`].
    gru_bwd_gates: GruBwdPointwiseGates<'_, Self>;
    /// [`crate::pointwise::rnn::rnn_fwd_pointwise_units`].
    rnn_fwd: Units<RnnFwdPointwise<'_, Self>>;
    /// [`crate::pointwise::rnn::rnn_bwd_pointwise`].
    rnn_bwd: RnnBwdPointwise<'_, Self>;
}
