//! The one error type of the safe API.

use std::borrow::Cow;

use crate::buffers::ReserveShape;

/// What went wrong. Every public function checks all its arguments before it writes anything,
/// so a call that returns an error has changed nothing the caller holds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A buffer or tensor has the wrong number of elements.
    #[error("{arg}: expected {expected} elements, got {actual}")]
    ShapeMismatch {
        /// The argument or tensor name.
        arg: Cow<'static, str>,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        actual: usize,
    },
    /// A size that must be positive is zero.
    #[error("{arg} must be at least 1")]
    ZeroDim {
        /// The size's name.
        arg: &'static str,
    },
    /// An argument is out of its valid range.
    #[error("{arg}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        arg: Cow<'static, str>,
        /// What is wrong with it.
        reason: String,
    },
    /// `backward` got a reserve that `forward_train` filled for another shape or layer.
    #[error("reserve mismatch: backward needs a reserve filled for {expected}, got {actual}")]
    ReserveMismatch {
        /// The shape backward was asked for.
        expected: ReserveShape,
        /// The shape the reserve holds.
        actual: ReserveShape,
    },
    /// `backward` got a reserve that no `forward_train` of this layer has filled, or that
    /// a `backward` has used up since.
    #[error("reserve holds no forward pass: call forward_train before each backward")]
    ReserveEmpty,
    /// A size computation overflowed `usize`.
    #[error("buffer size overflows usize")]
    SizeOverflow,
    /// A parameter file could not be read or written (safetensors, checkpoints).
    #[error("{0}")]
    Format(String),
    /// An I/O error, with the path it concerned.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
}

impl Error {
    /// A [`Error::ShapeMismatch`] for a named argument.
    pub(crate) fn shape(arg: impl Into<Cow<'static, str>>, expected: usize, actual: usize) -> Self {
        Error::ShapeMismatch {
            arg: arg.into(),
            expected,
            actual,
        }
    }
    /// An [`Error::InvalidArgument`].
    pub(crate) fn invalid(arg: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            arg: arg.into(),
            reason: reason.into(),
        }
    }
}

/// `Ok(())` if `actual == expected`, else a [`Error::ShapeMismatch`] naming `arg`.
pub(crate) fn check_len(arg: &'static str, expected: usize, actual: usize) -> Result<(), Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::shape(arg, expected, actual))
    }
}

/// Checked product of sizes.
pub(crate) fn mul(sizes: &[usize]) -> Result<usize, Error> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or(Error::SizeOverflow)
}

/// Checked sum of sizes.
pub(crate) fn add(sizes: &[usize]) -> Result<usize, Error> {
    sizes
        .iter()
        .try_fold(0usize, |acc, &s| acc.checked_add(s))
        .ok_or(Error::SizeOverflow)
}
