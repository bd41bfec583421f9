//! An ONNX Runtime session with its signature, and the conversion between the inference core's
//! tensors and ONNX Runtime values. `ort::Session::run` takes `&mut self`, so a `ModelSession` is
//! owned by one thread at a time.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use ort::session::SessionInputValue;
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, TensorRef, ValueType};

use super::batcher::Runner;
use crate::census::schema;
use crate::status::{self, Error};
use crate::tensor::{DType, Outputs, Signature, Tensor, TensorData, TensorSpec};

/// Where sessions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// The CUDA execution provider of the `onnxruntime-gpu` build; registration failure is an
    /// error rather than ONNX Runtime's silent fallback to the CPU.
    Cuda,
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            _ => Err(format!("unknown device {s:?}: cpu or cuda")),
        }
    }
}

/// Settings of one session.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// ONNX Runtime intra-op threads of this session.
    pub intra_threads: usize,
    pub device: Device,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            intra_threads: 1,
            device: Device::Cpu,
        }
    }
}

pub struct ModelSession {
    session: Session,
    signature: Signature,
    /// Checks the model declares for its inputs (in its metadata) before they reach a kernel.
    check: InputCheck,
}

/// Checks of a model's inputs beyond their types, named by the model's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputCheck {
    None,
    /// Census file rows in a string input: ONNX's `Cast` would fail on a bad number with a
    /// runtime error; the row is refused first, naming its field.
    CensusCsv,
}

fn build(
    env: &ort::environment::Environment,
    path: &Path,
    config: SessionConfig,
) -> ort::Result<Session> {
    let mut builder = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_threads(config.intra_threads)?
        .with_inter_threads(1)?;
    if config.device == Device::Cuda {
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])?;
    }
    builder.commit_from_file(path)
}

impl ModelSession {
    pub fn load(
        env: &ort::environment::Environment,
        path: &Path,
        config: SessionConfig,
    ) -> Result<Self> {
        let session =
            build(env, path, config).map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<Result<_>>()?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<Result<_>>()?;
        let custom = |key: &str| session.metadata().ok().and_then(|m| m.custom(key));
        let check = match custom(schema::INPUT_FORMAT_KEY).as_deref() {
            Some(schema::CENSUS_CSV) => InputCheck::CensusCsv,
            _ => InputCheck::None,
        };
        let class_labels = custom(schema::CLASS_LABELS_KEY)
            .and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok())
            .unwrap_or_default();
        Ok(ModelSession {
            session,
            signature: Signature {
                inputs,
                outputs,
                class_labels,
            },
            check,
        })
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The rows that the model's declared input checks refuse: row, input, why.
    pub fn bad_rows(&self, inputs: &[Tensor]) -> Vec<(usize, String, String)> {
        self.check.bad_rows(&self.signature, inputs)
    }

    pub fn input_check(&self) -> InputCheck {
        self.check
    }
}

impl ModelSession {
    /// Runs the model on one tensor per input (signature order) and returns the requested outputs
    /// (all when `outputs` is empty), in signature order.
    /// The input tensors are moved into ONNX Runtime without a copy.
    pub fn run(&mut self, inputs: &[Tensor], outputs: &[usize]) -> status::Result<Outputs> {
        if inputs.len() != self.signature.inputs.len() {
            return Err(Error::internal(format!(
                "{} input tensors for {} model inputs",
                inputs.len(),
                self.signature.inputs.len()
            )));
        }
        self.check(inputs)?;
        let mut values: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (spec, tensor) in self.signature.inputs.iter().zip(inputs) {
            let value = to_ort(tensor)
                .map_err(|e| Error::invalid(format!("input '{}': {e}", spec.name)))?;
            values.push((spec.name.as_str(), value));
        }
        // ONNX Runtime's kernels say INVALID_ARGUMENT for values they cannot take (an index past
        // a Gather's table): the client's input, so a 400 as TF Serving answers, not a 500.
        let result = self.session.run(values).map_err(|e| {
            let message = format!("model execution failed: {e}");
            match e.code() {
                ort::ErrorCode::InvalidArgument => Error::invalid(message),
                _ => Error::internal(message),
            }
        })?;
        let wanted: Vec<usize> = if outputs.is_empty() {
            (0..self.signature.outputs.len()).collect()
        } else {
            outputs.to_vec()
        };
        let mut out = Vec::with_capacity(wanted.len());
        for i in wanted {
            let name = &self.signature.outputs[i].name;
            let value = result
                .get(name.as_str())
                .ok_or_else(|| Error::internal(format!("the model produced no output '{name}'")))?;
            out.push((
                name.clone(),
                from_ort(value).map_err(|e| Error::internal(format!("output '{name}': {e}")))?,
            ));
        }
        Ok(out)
    }
}

impl InputCheck {
    /// The rows this check refuses: row, input, why.
    pub fn bad_rows(
        self,
        signature: &Signature,
        inputs: &[Tensor],
    ) -> Vec<(usize, String, String)> {
        let mut bad = Vec::new();
        if self == InputCheck::CensusCsv {
            for (spec, tensor) in signature.inputs.iter().zip(inputs) {
                if let TensorData::String(rows) = &tensor.data {
                    for (i, row) in rows.iter().enumerate() {
                        if let Err(e) = crate::census::csv::check_features(row) {
                            bad.push((i, spec.name.clone(), e));
                        }
                    }
                }
            }
        }
        bad
    }
}

impl Runner for ModelSession {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn check(&self, inputs: &[Tensor]) -> status::Result<()> {
        match self.bad_rows(inputs).into_iter().next() {
            Some((row, input, e)) => {
                Err(Error::invalid(format!("input '{input}': row {row}: {e}")))
            }
            None => Ok(()),
        }
    }

    fn run(&mut self, inputs: &[Tensor], outputs: &[usize]) -> status::Result<Outputs> {
        ModelSession::run(self, inputs, outputs)
    }
}

fn spec(name: &str, ty: &ValueType) -> Result<TensorSpec> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
            name: name.to_string(),
            dtype: dtype(*ty).ok_or_else(|| {
                anyhow!("input or output '{name}' has unsupported element type {ty:?}")
            })?,
            shape: shape.iter().copied().collect(),
        }),
        other => bail!("input or output '{name}' is not a tensor ({other:?})"),
    }
}

fn dtype(t: TensorElementType) -> Option<DType> {
    Some(match t {
        TensorElementType::Bool => DType::Bool,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Uint16 => DType::U16,
        TensorElementType::Uint32 => DType::U32,
        TensorElementType::Uint64 => DType::U64,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Int16 => DType::I16,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float64 => DType::F64,
        TensorElementType::String => DType::String,
        _ => return None,
    })
}

/// A view of `t` for ONNX Runtime: numbers are borrowed, not copied (the caller keeps its
/// inputs, so a failed merged run can be run again request by request); strings are copied, as
/// ONNX Runtime keeps its own.
fn to_ort(t: &Tensor) -> ort::Result<SessionInputValue<'_>> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Ok(match &t.data {
        TensorData::Bool(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::U8(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::U16(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::U32(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::U64(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::I8(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::I16(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::I32(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::I64(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::F32(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::F64(v) => TensorRef::from_array_view((shape, &v[..]))?.into(),
        TensorData::String(v) => OrtTensor::from_string_array((shape, &v[..]))?
            .into_dyn()
            .into(),
    })
}

fn from_ort(value: &DynValue) -> ort::Result<Tensor> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(ort::Error::new("not a tensor"));
    };
    macro_rules! prim {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = value.try_extract_tensor::<$t>()?;
            (
                shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                TensorData::$variant(data.to_vec()),
            )
        }};
    }
    let (shape, data) = match ty {
        TensorElementType::Bool => prim!(bool, Bool),
        TensorElementType::Uint8 => prim!(u8, U8),
        TensorElementType::Uint16 => prim!(u16, U16),
        TensorElementType::Uint32 => prim!(u32, U32),
        TensorElementType::Uint64 => prim!(u64, U64),
        TensorElementType::Int8 => prim!(i8, I8),
        TensorElementType::Int16 => prim!(i16, I16),
        TensorElementType::Int32 => prim!(i32, I32),
        TensorElementType::Int64 => prim!(i64, I64),
        TensorElementType::Float32 => prim!(f32, F32),
        TensorElementType::Float64 => prim!(f64, F64),
        TensorElementType::String => {
            let (shape, data) = value.try_extract_strings()?;
            (
                shape.iter().map(|&d| d as usize).collect(),
                TensorData::String(data),
            )
        }
        other => {
            return Err(ort::Error::new(format!(
                "unsupported output type {other:?}"
            )))
        }
    };
    Ok(Tensor::new(shape, data))
}

/// Loads a model file on the default environment: for one-off use (local predict, tests).
pub fn load_model(
    path: &Path,
    ort_library: Option<&Path>,
    config: SessionConfig,
) -> Result<ModelSession> {
    let env = super::library::environment(ort_library, false)?;
    ModelSession::load(env, path, config)
}
