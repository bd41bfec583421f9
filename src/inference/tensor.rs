//! Protocol-neutral tensors: what every adapter decodes requests into and encodes answers from.

use std::fmt;

/// Element types the server accepts and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    String,
}

impl DType {
    /// The lower-case name used in messages and in metadata JSON (`float32`, `int64`, `string`).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::String => "string",
        }
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DType::U8
                | DType::U16
                | DType::U32
                | DType::U64
                | DType::I8
                | DType::I16
                | DType::I32
                | DType::I64
        )
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor's elements, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    String(Vec<String>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::Bool(_) => DType::Bool,
            TensorData::U8(_) => DType::U8,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::I8(_) => DType::I8,
            TensorData::I16(_) => DType::I16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::String(_) => DType::String,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of a type, with room for `capacity` elements.
    pub fn with_capacity(dtype: DType, capacity: usize) -> Self {
        match dtype {
            DType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DType::U8 => TensorData::U8(Vec::with_capacity(capacity)),
            DType::U16 => TensorData::U16(Vec::with_capacity(capacity)),
            DType::U32 => TensorData::U32(Vec::with_capacity(capacity)),
            DType::U64 => TensorData::U64(Vec::with_capacity(capacity)),
            DType::I8 => TensorData::I8(Vec::with_capacity(capacity)),
            DType::I16 => TensorData::I16(Vec::with_capacity(capacity)),
            DType::I32 => TensorData::I32(Vec::with_capacity(capacity)),
            DType::I64 => TensorData::I64(Vec::with_capacity(capacity)),
            DType::F32 => TensorData::F32(Vec::with_capacity(capacity)),
            DType::F64 => TensorData::F64(Vec::with_capacity(capacity)),
            DType::String => TensorData::String(Vec::with_capacity(capacity)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
}

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
}

impl Signature {
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
    pub fn check_shape(&self, shape: &[usize]) -> crate::inference::InferenceResult<()> {
        let fits = shape.len() == self.shape.len()
            && shape
                .iter()
                .zip(&self.shape)
                .all(|(&got, &want)| want < 0 || got as i64 == want);
        if fits {
            Ok(())
        } else {
            Err(crate::inference::InferenceError::invalid(format!(
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
    ) -> crate::inference::InferenceResult<Vec<usize>> {
        names
            .into_iter()
            .map(|n| {
                self.output(n).map(|(i, _)| i).ok_or_else(|| {
                    crate::inference::InferenceError::invalid(format!("unknown output '{n}'"))
                })
            })
            .collect()
    }

    /// Inputs collected by name into signature order; a missing one is an error.
    pub fn ordered_inputs(
        &self,
        tensors: Vec<Option<Tensor>>,
    ) -> crate::inference::InferenceResult<Vec<Tensor>> {
        tensors
            .into_iter()
            .zip(&self.inputs)
            .map(|(t, s)| {
                t.ok_or_else(|| {
                    crate::inference::InferenceError::invalid(format!("missing input '{}'", s.name))
                })
            })
            .collect()
    }
}

/// The batch size shared by every input (their first dimension); different sizes are an error.
pub fn batch_size(inputs: &[Tensor]) -> crate::inference::InferenceResult<usize> {
    let sizes: Vec<usize> = inputs
        .iter()
        .map(|t| t.shape.first().copied().unwrap_or(1))
        .collect();
    match sizes.split_first() {
        None => Ok(0),
        Some((first, rest)) if rest.iter().all(|s| s == first) => Ok(*first),
        Some(_) => Err(crate::inference::InferenceError::invalid(format!(
            "ragged input: the inputs have different batch sizes {sizes:?}"
        ))),
    }
}
