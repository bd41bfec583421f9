//! A model's inputs and outputs as read from its file, and the checks of a request against them.

use super::{DType, Tensor};
use crate::status::{Error, Result};

/// Name, type and shape of a model input or output; `-1` marks a dimension of any size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
}

/// A model's inputs and outputs, read from the model file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The labels of a classifier's classes, in score order, when the model names them.
    pub class_labels: Vec<String>,
}

impl Signature {
    /// The input names, comma separated, for messages.
    pub fn input_names(&self) -> String {
        self.inputs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn input(&self, name: &str) -> Option<(usize, &TensorSpec)> {
        self.inputs.iter().enumerate().find(|(_, s)| s.name == name)
    }

    pub fn output(&self, name: &str) -> Option<(usize, &TensorSpec)> {
        self.outputs
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }
}

impl TensorSpec {
    /// Whether a request's shape fits this input: same rank, fixed dimensions equal.
    pub fn check_shape(&self, shape: &[usize]) -> Result<()> {
        let fits = shape.len() == self.shape.len()
            && shape
                .iter()
                .zip(&self.shape)
                .all(|(&got, &want)| want < 0 || got as i64 == want);
        if fits {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "input '{}': shape {shape:?} does not fit the model's {:?}",
                self.name, self.shape
            )))
        }
    }
}

impl Signature {
    /// Indices of the named outputs (all outputs for an empty list).
    pub fn output_indices<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<usize>> {
        names
            .into_iter()
            .map(|n| {
                self.output(n)
                    .map(|(i, _)| i)
                    .ok_or_else(|| Error::invalid(format!("unknown output '{n}'")))
            })
            .collect()
    }

    /// Makes decoded inputs (signature order) fit the model: each shape must fit, and numbers of
    /// another type are converted when every value converts exactly (a client of the original
    /// census model sends `DT_FLOAT` 25.0 for the int64 `age`); anything else is refused, naming
    /// the input and the first value at fault. Every protocol's inputs pass through here once.
    pub fn conform(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::internal(format!(
                "{} input tensors for {} model inputs",
                inputs.len(),
                self.inputs.len()
            )));
        }
        inputs
            .into_iter()
            .zip(&self.inputs)
            .map(|(t, spec)| {
                spec.check_shape(&t.shape)?;
                if t.dtype() == spec.dtype {
                    return Ok(t);
                }
                let Tensor { shape, data } = t;
                let data = super::element::convert(data, spec.dtype).map_err(|e| {
                    Error::invalid(format!(
                        "input '{}': {e} (the model takes {})",
                        spec.name, spec.dtype
                    ))
                })?;
                Ok(Tensor { shape, data })
            })
            .collect()
    }

    /// Inputs collected by name into signature order; a missing one is an error.
    pub fn ordered_inputs(&self, tensors: Vec<Option<Tensor>>) -> Result<Vec<Tensor>> {
        tensors
            .into_iter()
            .zip(&self.inputs)
            .map(|(t, s)| t.ok_or_else(|| Error::invalid(format!("missing input '{}'", s.name))))
            .collect()
    }
}
