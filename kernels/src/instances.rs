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
//! (as `Float`'s seal). Its methods are named `__kernel_*`: a supertrait's methods are in
//! scope wherever `T: Float` is, and a plain `map` or `product` would clash with a user's
//! own trait methods in generic code (the fuzz targets' `lstm_fwd` did). A new kernel body
//! joins the list below: `arch.dispatch` on a body generic over the element type, anywhere
//! else, would compile it in the user's crate again.

// The methods take the crate's private kernel bodies: no other crate can name the trait
// (this module is private), so none can call them.
#![allow(private_interfaces)]

use pulp::Arch;

use crate::gemm::packed::Product;
use crate::gemm::packed::group::Group;
use crate::math::MapOp;
use crate::optim::{AdagradUpdate, AdamUpdate};
use crate::pointwise::Units;
use crate::pointwise::gru::{
    GruBwdPointwise, GruBwdPointwiseGates, GruBwdPointwiseInPlace, GruBwdPointwiseOut,
    GruFwdPointwise, GruFwdPointwiseGates, GruFwdPointwiseOut,
};
use crate::pointwise::lstm::{LstmBwdPointwise, LstmBwdPointwiseInPlace, LstmFwdPointwise};
use crate::pointwise::rnn::{RnnBwdPointwise, RnnFwdPointwise};
use crate::sums::{AddRows, AddRowsOf};

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
    __kernel_product: Product<'_, '_, '_, '_, '_, Self>;
    /// [`crate::gemm::packed::group::gemm_packed_group`].
    __kernel_group: Group<'_, '_, '_, Self>;
    /// [`crate::math::map_slice`].
    __kernel_map: MapOp<'_, Self>;
    /// [`crate::pointwise::lstm::lstm_fwd_pointwise_units`].
    __kernel_lstm_fwd: Units<LstmFwdPointwise<'_, Self>>;
    /// [`crate::pointwise::lstm::lstm_bwd_pointwise`].
    __kernel_lstm_bwd: LstmBwdPointwise<'_, Self>;
    /// [`crate::pointwise::lstm::lstm_bwd_pointwise_in_place`].
    __kernel_lstm_bwd_in_place: LstmBwdPointwiseInPlace<'_, Self>;
    /// [`crate::pointwise::gru::gru_fwd_pointwise_units`].
    __kernel_gru_fwd: Units<GruFwdPointwise<'_, Self>>;
    /// [`crate::pointwise::gru::gru_bwd_pointwise`].
    __kernel_gru_bwd: GruBwdPointwise<'_, Self>;
    /// [`crate::pointwise::gru::gru_bwd_pointwise_in_place`].
    __kernel_gru_bwd_in_place: GruBwdPointwiseInPlace<'_, Self>;
    /// [`crate::pointwise::gru::gru_fwd_pointwise_gates`].
    __kernel_gru_fwd_gates: GruFwdPointwiseGates<'_, Self>;
    /// [`crate::pointwise::gru::gru_fwd_pointwise_out`].
    __kernel_gru_fwd_out: GruFwdPointwiseOut<'_, Self>;
    /// [`crate::pointwise::gru::gru_bwd_pointwise_out`].
    __kernel_gru_bwd_out: GruBwdPointwiseOut<'_, Self>;
    /// [`crate::pointwise::gru::gru_bwd_pointwise_gates`].
    __kernel_gru_bwd_gates: GruBwdPointwiseGates<'_, Self>;
    /// [`crate::pointwise::rnn::rnn_fwd_pointwise_units`].
    __kernel_rnn_fwd: Units<RnnFwdPointwise<'_, Self>>;
    /// [`crate::pointwise::rnn::rnn_bwd_pointwise`].
    __kernel_rnn_bwd: RnnBwdPointwise<'_, Self>;
    /// [`crate::optim::adam_update`].
    __kernel_adam: AdamUpdate<'_, Self>;
    /// [`crate::optim::adagrad_update`].
    __kernel_adagrad: AdagradUpdate<'_, Self>;
    /// [`crate::sums::add_rows`].
    __kernel_add_rows: AddRows<'_, Self>;
    /// [`crate::sums::add_rows_of`].
    __kernel_add_rows_of: AddRowsOf<'_, Self>;
}

#[cfg(test)]
mod tests {
    use crate::Float;

    /// A user's trait whose methods have the kernels' plain names.
    trait Users {
        fn product() -> u32;
        fn map() -> u32;
        fn lstm_fwd() -> u32;
    }

    impl Users for f32 {
        fn product() -> u32 {
            1
        }
        fn map() -> u32 {
            2
        }
        fn lstm_fwd() -> u32 {
            4
        }
    }

    /// Compiles only if `T: Float` brings no method of these names into scope.
    fn users_calls<T: Float + Users>() -> u32 {
        T::product() + T::map() + T::lstm_fwd()
    }

    #[test]
    fn plain_names_in_generic_code_stay_the_users() {
        assert_eq!(users_calls::<f32>(), 7);
    }
}
