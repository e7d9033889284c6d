//! [`Checkpoint`]: named tensors and string metadata in one safetensors file, written
//! atomically, for whatever a training run must save to resume exactly (parameters,
//! optimizer moments, carried states, counters, vocabulary).
//!
//! ```
//! use fused_rnn::checkpoint::Checkpoint;
//!
//! let mut ck = Checkpoint::<f32>::new();
//! ck.push("head.bias", &[3], vec![0.5, -0.5, 0.0]);
//! ck.metadata.insert("step".into(), "100".into());
//! let bytes = ck.to_bytes()?;
//! let mut back = Checkpoint::<f32>::from_bytes(&bytes)?;
//! assert_eq!(back.take("head.bias", &[3])?, vec![0.5, -0.5, 0.0]);
//! assert_eq!(back.meta("step")?, "100");
//! # Ok::<(), fused_rnn::Error>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use ::safetensors::tensor::SafeTensors;

use crate::error::Error;
use crate::io::{io_error, serialize, to_floats, write_atomic};
use fused_rnn_kernels::Float;

/// A named tensor: name, shape, elements.
pub type NamedTensor<T> = (String, Vec<usize>, Vec<T>);

/// Tensors and metadata, in `T`'s dtype.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint<T> {
    /// The tensors, in the order pushed (or as read).
    pub tensors: Vec<NamedTensor<T>>,
    /// String metadata (safetensors' `__metadata__`).
    pub metadata: HashMap<String, String>,
}

impl<T: Float> Checkpoint<T> {
    /// An empty checkpoint.
    pub fn new() -> Self {
        Checkpoint {
            tensors: Vec::new(),
            metadata: HashMap::new(),
        }
    }

    /// Adds a tensor.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize], data: Vec<T>) {
        self.tensors.push((name.into(), shape.to_vec(), data));
    }

    /// Removes and returns the tensor `name`, which must have `shape`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the tensor if it is missing or has another shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<T>, Error> {
        let i = self
            .tensors
            .iter()
            .position(|t| t.0 == name)
            .ok_or_else(|| Error::invalid(name.to_string(), "missing from the checkpoint"))?;
        let (_, got, data) = &self.tensors[i];
        if got != shape || data.len() != shape.iter().product::<usize>() {
            return Err(Error::invalid(
                name.to_string(),
                format!("shape {got:?} in the checkpoint, expected {shape:?}"),
            ));
        }
        Ok(self.tensors.swap_remove(i).2)
    }

    /// The metadata value `key`.
    ///
    /// # Errors
    /// [`Error::Format`] if it is missing.
    pub fn meta(&self, key: &str) -> Result<&str, Error> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::Format(format!("checkpoint metadata has no {key}")))
    }

    /// The safetensors bytes.
    ///
    /// # Errors
    /// [`Error::Format`] for duplicate names.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        serialize(
            self.tensors
                .iter()
                .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())),
            self.metadata.clone(),
        )
    }

    /// Reads safetensors bytes (F32 or F64 tensors, converted to `T`).
    ///
    /// # Errors
    /// [`Error::Format`] for anything that is not such a file, naming the tensor when one is
    /// at fault.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |e: ::safetensors::SafeTensorError| {
            Error::Format(format!("not a valid safetensors file: {e}"))
        };
        let file = SafeTensors::deserialize(bytes).map_err(bad)?;
        let metadata = SafeTensors::read_metadata(bytes)
            .map_err(bad)?
            .1
            .metadata()
            .clone()
            .unwrap_or_default();
        let mut tensors = Vec::new();
        for name in file.names() {
            let view = file
                .tensor(name)
                .map_err(|e| Error::Format(format!("{name}: {e}")))?;
            tensors.push((
                name.to_string(),
                view.shape().to_vec(),
                to_floats::<T>(name, &view)?,
            ));
        }
        // A stable order (the file's is by dtype and name).
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Checkpoint { tensors, metadata })
    }

    /// Writes the file atomically: a crash leaves the old file or the new one, never a mix.
    ///
    /// # Errors
    /// As [`Checkpoint::to_bytes`], or [`Error::Io`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        write_atomic(path.as_ref(), &self.to_bytes()?)
    }

    /// Reads a file.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read, else as [`Checkpoint::from_bytes`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_tensors_and_metadata() {
        let mut ck = Checkpoint::<f64>::new();
        ck.push("b", &[2, 1], vec![1.5, f64::MIN_POSITIVE]);
        ck.push("a", &[0], vec![]);
        ck.metadata.insert("vocab".into(), "abc\n\"{}".into());
        let mut back = Checkpoint::<f64>::from_bytes(&ck.to_bytes().unwrap()).unwrap();
        assert_eq!(back.metadata, ck.metadata);
        assert_eq!(
            back.take("b", &[2, 1]).unwrap(),
            vec![1.5, f64::MIN_POSITIVE]
        );
        assert!(back.take("b", &[2, 1]).is_err());
        assert!(back.take("a", &[1]).unwrap_err().to_string().contains('a'));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut ck = Checkpoint::<f32>::new();
        ck.push("x", &[1], vec![1.0]);
        ck.push("x", &[1], vec![2.0]);
        assert!(ck.to_bytes().is_err());
    }
}
