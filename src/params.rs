//! Parameters and gradients: named tensors in PyTorch's names, shapes, order and gate order.
//!
//! For layer `k` and direction suffix `s` (empty, or `_reverse` for the reverse direction of
//! a bidirectional layer), with G gates, H hidden units, P the projection size and
//! `Hout = P if P > 0 else H`:
//!
//! | name               | shape                                  | present         |
//! |--------------------|----------------------------------------|-----------------|
//! | `weight_ih_l{k}{s}`| `[G*H, input_size]` (k = 0), `[G*H, D*Hout]` (k > 0) | always |
//! | `weight_hh_l{k}{s}`| `[G*H, Hout]`                          | always          |
//! | `bias_ih_l{k}{s}`  | `[G*H]`                                | `bias`          |
//! | `bias_hh_l{k}{s}`  | `[G*H]`                                | `bias`          |
//! | `weight_hr_l{k}{s}`| `[P, H]`                               | LSTM with P > 0 |
//!
//! Rows of the G*H dimension are gate blocks in PyTorch's order (see [`gate`]): a PyTorch
//! `state_dict` maps onto these tensors one to one. Gradients are a [`Params`] of the same
//! shape ([`Grads`]); `backward` *adds* into them, [`Params::fill`] with 0 resets them.

use arrayvec::{ArrayString, ArrayVec};
use std::fmt::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::error::Error;
use fused_rnn_kernels::Float;
pub use fused_rnn_kernels::cell::gate;

/// One named tensor: a flat row-major buffer and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    name: String,
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T> Tensor<T> {
    /// The PyTorch name, e.g. `weight_ih_l0`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The shape, e.g. `[4 * H, I]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The elements, row-major.
    pub fn data(&self) -> &[T] {
        &self.data
    }
    /// The elements, row-major, writable (the shape stays fixed).
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }
}

/// Which tensor of a layer and direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    WeightIh,
    WeightHh,
    BiasIh,
    BiasHh,
    WeightHr,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::WeightIh => "weight_ih",
            Role::WeightHh => "weight_hh",
            Role::BiasIh => "bias_ih",
            Role::BiasHh => "bias_hh",
            Role::WeightHr => "weight_hr",
        }
    }
}

/// The tensors of one layer and direction, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct LayerParams<'a, T> {
    /// `[G*H, in]`.
    pub w_ih: &'a [T],
    /// `[G*H, Hout]`.
    pub w_hh: &'a [T],
    /// `[G*H]`, if the module has biases.
    pub b_ih: Option<&'a [T]>,
    /// `[G*H]`, if the module has biases.
    pub b_hh: Option<&'a [T]>,
    /// `[P, H]`, if the LSTM is projected.
    pub w_hr: Option<&'a [T]>,
}

/// The tensors of one layer and direction, writable (shapes stay fixed).
#[derive(Debug)]
pub(crate) struct LayerParamsMut<'a, T> {
    pub w_ih: &'a mut [T],
    pub w_hh: &'a mut [T],
    pub b_ih: Option<&'a mut [T]>,
    pub b_hh: Option<&'a mut [T]>,
    pub w_hr: Option<&'a mut [T]>,
}

/// All parameters (or gradients) of a recurrent module, in PyTorch's `state_dict` order.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<T> {
    tensors: Vec<Tensor<T>>,
    directions: usize,
    per_direction: usize,
    has_bias: bool,
    has_proj: bool,
}

/// Gradients have the same tensors as parameters.
pub type Grads<T> = Params<T>;

/// One tensor a configuration needs. Held on the stack, so that checking a module's tensors
/// on every call allocates nothing.
#[derive(Clone, Debug)]
pub(crate) struct TensorSpec {
    /// The PyTorch name; at most 11 + 20 digits + 8 bytes.
    pub name: ArrayString<48>,
    pub shape: ArrayVec<usize, 2>,
}

/// The expected tensors of `config`, in `state_dict` order.
pub(crate) fn expected_tensors(config: &Config) -> impl Iterator<Item = TensorSpec> + '_ {
    let (gh, h, hout) = (
        config.cell.gates() * config.hidden_size,
        config.hidden_size,
        config.state_size(),
    );
    let roles = [
        Role::WeightIh,
        Role::WeightHh,
        Role::BiasIh,
        Role::BiasHh,
        Role::WeightHr,
    ];
    (0..config.num_layers).flat_map(move |layer| {
        (0..config.directions()).flat_map(move |dir| {
            roles.into_iter().filter_map(move |role| {
                let shape: ArrayVec<usize, 2> = match role {
                    Role::WeightIh => [gh, config.layer_input_size(layer)].into(),
                    Role::WeightHh => [gh, hout].into(),
                    Role::BiasIh | Role::BiasHh if config.bias => [gh].into_iter().collect(),
                    Role::WeightHr if config.proj_size > 0 => [config.proj_size, h].into(),
                    _ => return None,
                };
                let mut name = ArrayString::new();
                let suffix = if dir == 1 { "_reverse" } else { "" };
                write!(name, "{}_l{layer}{suffix}", role.prefix()).expect("fits in 48 bytes");
                Some(TensorSpec { name, shape })
            })
        })
    })
}

impl<T: Float> Params<T> {
    fn from_fn(config: &Config, mut value: impl FnMut() -> T) -> Result<Self, Error> {
        config.validate()?;
        let tensors = expected_tensors(config)
            .map(|spec| {
                let n = crate::error::mul(&spec.shape)?;
                Ok(Tensor {
                    name: spec.name.to_string(),
                    shape: spec.shape.to_vec(),
                    data: (0..n).map(|_| value()).collect(),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self::with_tensors(config, tensors))
    }

    fn with_tensors(config: &Config, tensors: Vec<Tensor<T>>) -> Self {
        let per_direction = 2 + 2 * usize::from(config.bias) + usize::from(config.proj_size > 0);
        Params {
            tensors,
            directions: config.directions(),
            per_direction,
            has_bias: config.bias,
            has_proj: config.proj_size > 0,
        }
    }

    /// All zeros (the starting point of a gradient).
    ///
    /// # Errors
    /// If the configuration is invalid ([`Config::validate`]) or its sizes overflow.
    pub fn zeros(config: &Config) -> Result<Self, Error> {
        Self::from_fn(config, || T::ZERO)
    }

    /// PyTorch's default initialization: every element uniform in `[-1/sqrt(H), 1/sqrt(H)]`,
    /// drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    /// If the configuration is invalid ([`Config::validate`]) or its sizes overflow.
    pub fn init(config: &Config, seed: u64) -> Result<Self, Error> {
        let k = 1.0 / (config.hidden_size as f64).sqrt();
        let mut rng = StdRng::seed_from_u64(seed);
        Self::from_fn(config, || T::from_f64(rng.random_range(-k..=k)))
    }

    /// Parameters from named tensors, checked against `config`: every expected tensor must be
    /// present once with its shape, and nothing else.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the tensor whose shape is wrong, or
    /// [`Error::InvalidArgument`] naming a missing or unexpected tensor.
    pub fn from_named(
        config: &Config,
        tensors: impl IntoIterator<Item = (String, Vec<usize>, Vec<T>)>,
    ) -> Result<Self, Error> {
        config.validate()?;
        let mut given: Vec<(String, Vec<usize>, Vec<T>)> = tensors.into_iter().collect();
        let mut out = Vec::new();
        for spec in expected_tensors(config) {
            let (name, shape) = (spec.name.to_string(), spec.shape.to_vec());
            let pos = given
                .iter()
                .position(|t| t.0 == name)
                .ok_or_else(|| Error::invalid(name.clone(), "missing tensor"))?;
            let (_, got_shape, data) = given.swap_remove(pos);
            let n = crate::error::mul(&shape)?;
            if got_shape != shape || data.len() != n {
                return Err(Error::invalid(
                    name,
                    format!(
                        "shape {got_shape:?} ({} elements), expected {shape:?}",
                        data.len()
                    ),
                ));
            }
            out.push(Tensor { name, shape, data });
        }
        if let Some((extra, ..)) = given.first() {
            return Err(Error::invalid(
                extra.clone(),
                "unexpected tensor for this configuration",
            ));
        }
        Ok(Self::with_tensors(config, out))
    }

    /// Whether these tensors are exactly the ones `config` needs (names and shapes).
    pub fn matches(&self, config: &Config) -> bool {
        self.check(config, "params").is_ok()
    }

    /// Checks that these tensors are the ones `config` needs.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for another tensor count, or [`Error::InvalidArgument`]
    /// naming the first tensor that differs.
    pub fn check(&self, config: &Config, what: &'static str) -> Result<(), Error> {
        let count = expected_tensors(config).count();
        if count != self.tensors.len() {
            return Err(Error::shape(
                format!("{what}: tensor count"),
                count,
                self.tensors.len(),
            ));
        }
        for (want, t) in expected_tensors(config).zip(&self.tensors) {
            if *want.name != t.name {
                return Err(Error::invalid(
                    what,
                    format!("expected tensor {}, found {}", want.name, t.name),
                ));
            }
            if *want.shape != t.shape {
                return Err(Error::invalid(
                    t.name.clone(),
                    format!("{what}: shape {:?}, expected {:?}", t.shape, want.shape),
                ));
            }
        }
        Ok(())
    }

    /// The tensors in `state_dict` order.
    pub fn iter(&self) -> impl Iterator<Item = &Tensor<T>> {
        self.tensors.iter()
    }
    /// The tensors in `state_dict` order, writable (shapes stay fixed).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Tensor<T>> {
        self.tensors.iter_mut()
    }
    /// The tensor with this PyTorch name.
    pub fn get(&self, name: &str) -> Option<&Tensor<T>> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// The tensor with this PyTorch name, writable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor<T>> {
        self.tensors.iter_mut().find(|t| t.name == name)
    }
    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    /// Whether there are no tensors (never, for a valid configuration).
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
    /// The number of scalars over all tensors.
    pub fn num_elements(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }
    /// Sets every element to `value` (`fill(0)` resets gradients).
    pub fn fill(&mut self, value: T) {
        for t in &mut self.tensors {
            t.data.fill(value);
        }
    }

    fn index(&self, layer: usize, dir: usize, role: Role) -> Option<usize> {
        let offset = match role {
            Role::WeightIh => 0,
            Role::WeightHh => 1,
            Role::BiasIh if self.has_bias => 2,
            Role::BiasHh if self.has_bias => 3,
            Role::WeightHr if self.has_proj => 2 + 2 * usize::from(self.has_bias),
            _ => return None,
        };
        Some((layer * self.directions + dir) * self.per_direction + offset)
    }

    /// The tensors of one layer and direction (0 forward, 1 reverse).
    ///
    /// # Panics
    /// If the layer or direction does not exist.
    pub fn layer(&self, layer: usize, dir: usize) -> LayerParams<'_, T> {
        let get = |role| {
            self.index(layer, dir, role)
                .map(|i| self.tensors[i].data.as_slice())
        };
        LayerParams {
            w_ih: get(Role::WeightIh).expect("weight_ih"),
            w_hh: get(Role::WeightHh).expect("weight_hh"),
            b_ih: get(Role::BiasIh),
            b_hh: get(Role::BiasHh),
            w_hr: get(Role::WeightHr),
        }
    }

    /// The tensors of one layer and direction, writable.
    pub(crate) fn layer_mut(&mut self, layer: usize, dir: usize) -> LayerParamsMut<'_, T> {
        let first = (layer * self.directions + dir) * self.per_direction;
        let group = &mut self.tensors[first..first + self.per_direction];
        let mut it = group.iter_mut().map(|t| t.data.as_mut_slice());
        let w_ih = it.next().expect("weight_ih");
        let w_hh = it.next().expect("weight_hh");
        let (b_ih, b_hh) = if self.has_bias {
            (it.next(), it.next())
        } else {
            (None, None)
        };
        let w_hr = if self.has_proj { it.next() } else { None };
        LayerParamsMut {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            w_hr,
        }
    }
}
