//! KServe v2 `GRPCInferenceService`: inputs in `raw_input_contents` (what tritonclient sends) or
//! typed `contents`; outputs always in `raw_output_contents`, the only form tritonclient reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::proto::inference::{
    grpc_inference_service_server::GrpcInferenceService, model_infer_response::InferOutputTensor,
    model_metadata_response::TensorMetadata, InferTensorContents, ModelInferRequest,
    ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest,
    ModelReadyResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use super::{record, request_deadline, status};
use crate::api::rest::datatype;
use crate::inference::binary;
use crate::inference::error::{InferenceError, InferenceResult};
use crate::inference::service::InferenceService;
use crate::inference::tensor::{DType, Tensor, TensorData, TensorSpec};
use crate::repository::registry::VersionSelector;

pub struct KServe {
    pub service: Arc<InferenceService>,
    pub ready: Arc<AtomicBool>,
}

fn selector(version: &str) -> VersionSelector {
    VersionSelector::parse(Some(version))
}

/// Typed `contents` of one input as `count` elements of `dtype`.
fn from_contents(
    spec: &TensorSpec,
    c: &InferTensorContents,
    count: usize,
) -> InferenceResult<TensorData> {
    let name = &spec.name;
    let err = |msg: String| InferenceError::invalid(format!("input '{name}': {msg}"));
    fn exact<T: Clone>(
        v: &[T],
        count: usize,
        field: &str,
        err: &dyn Fn(String) -> InferenceError,
    ) -> InferenceResult<Vec<T>> {
        if v.len() != count {
            return Err(err(format!(
                "{field} has {} values for a shape of {count} elements",
                v.len()
            )));
        }
        Ok(v.to_vec())
    }
    fn narrow<S: Copy, T: TryFrom<S>>(
        v: Vec<S>,
        dtype: DType,
        err: &dyn Fn(String) -> InferenceError,
    ) -> InferenceResult<Vec<T>> {
        v.into_iter()
            .map(|x| {
                T::try_from(x).map_err(|_| err(format!("a value is out of range for {dtype}")))
            })
            .collect()
    }
    Ok(match spec.dtype {
        DType::Bool => TensorData::Bool(exact(&c.bool_contents, count, "bool_contents", &err)?),
        DType::I8 => TensorData::I8(narrow(
            exact(&c.int_contents, count, "int_contents", &err)?,
            DType::I8,
            &err,
        )?),
        DType::I16 => TensorData::I16(narrow(
            exact(&c.int_contents, count, "int_contents", &err)?,
            DType::I16,
            &err,
        )?),
        DType::I32 => TensorData::I32(exact(&c.int_contents, count, "int_contents", &err)?),
        DType::I64 => TensorData::I64(exact(&c.int64_contents, count, "int64_contents", &err)?),
        DType::U8 => TensorData::U8(narrow(
            exact(&c.uint_contents, count, "uint_contents", &err)?,
            DType::U8,
            &err,
        )?),
        DType::U16 => TensorData::U16(narrow(
            exact(&c.uint_contents, count, "uint_contents", &err)?,
            DType::U16,
            &err,
        )?),
        DType::U32 => TensorData::U32(exact(&c.uint_contents, count, "uint_contents", &err)?),
        DType::U64 => TensorData::U64(exact(&c.uint64_contents, count, "uint64_contents", &err)?),
        DType::F32 => TensorData::F32(exact(&c.fp32_contents, count, "fp32_contents", &err)?),
        DType::F64 => TensorData::F64(exact(&c.fp64_contents, count, "fp64_contents", &err)?),
        DType::String => {
            let items = exact(&c.bytes_contents, count, "bytes_contents", &err)?;
            let texts = items
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    let s = String::from_utf8(b)
                        .map_err(|_| err(format!("bytes_contents[{i}] is not UTF-8 text")))?;
                    if s.contains('\0') {
                        return Err(err(format!("bytes_contents[{i}] contains a NUL byte")));
                    }
                    Ok(s)
                })
                .collect::<InferenceResult<Vec<String>>>()?;
            TensorData::String(texts)
        }
    })
}

impl KServe {
    async fn infer(
        &self,
        req: ModelInferRequest,
        deadline: Option<Instant>,
        served: &mut String,
    ) -> InferenceResult<ModelInferResponse> {
        let version = self
            .service
            .resolve(&req.model_name, &selector(&req.model_version))?;
        *served = version.version_string.clone();
        let signature = version.signature();
        if !req.raw_input_contents.is_empty() && req.raw_input_contents.len() != req.inputs.len() {
            return Err(InferenceError::invalid(format!(
                "raw_input_contents has {} entries for {} inputs",
                req.raw_input_contents.len(),
                req.inputs.len()
            )));
        }
        let mut tensors: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
        for (i, input) in req.inputs.iter().enumerate() {
            let name = &input.name;
            let (index, spec) = signature.input(name).ok_or_else(|| {
                InferenceError::invalid(format!("inputs[{i}]: unknown input '{name}'"))
            })?;
            if input.datatype != datatype(spec.dtype) {
                return Err(InferenceError::invalid(format!(
                    "input '{name}': datatype {:?} does not match the model's {}",
                    input.datatype,
                    datatype(spec.dtype)
                )));
            }
            let shape: Vec<usize> = input
                .shape
                .iter()
                .map(|&d| {
                    usize::try_from(d).map_err(|_| {
                        InferenceError::invalid(format!(
                            "input '{name}': dimension size {d} is negative"
                        ))
                    })
                })
                .collect::<InferenceResult<_>>()?;
            spec.check_shape(&shape)?;
            let count: usize = shape.iter().product();
            let data = match (req.raw_input_contents.get(i), &input.contents) {
                (Some(raw), None) => {
                    binary::decode(spec.dtype, raw, count, &format!("input '{name}'"))?
                }
                (Some(_), Some(_)) => {
                    return Err(InferenceError::invalid(format!(
                        "input '{name}': set either raw_input_contents or contents, not both"
                    )))
                }
                (None, Some(contents)) => from_contents(spec, contents, count)?,
                (None, None) => {
                    return Err(InferenceError::invalid(format!("input '{name}': no data")))
                }
            };
            tensors[index] = Some(Tensor::new(shape, data));
        }
        let inputs = signature.ordered_inputs(tensors)?;
        let wanted = signature.output_indices(req.outputs.iter().map(|o| o.name.as_str()))?;
        let outputs = self.service.run(&version, inputs, wanted, deadline).await?;
        let mut response = ModelInferResponse {
            model_name: req.model_name.clone(),
            model_version: version.version_string.clone(),
            id: req.id.clone(),
            ..Default::default()
        };
        for (name, t) in &outputs {
            response.outputs.push(InferOutputTensor {
                name: name.clone(),
                datatype: datatype(t.dtype()).to_string(),
                shape: t.shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            });
            let mut raw = Vec::new();
            binary::encode(&t.data, &mut raw);
            response.raw_output_contents.push(raw);
        }
        Ok(response)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for KServe {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.ready.load(Ordering::Acquire) && self.service.registry.is_ready();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let req = request.into_inner();
        let ready = self.ready.load(Ordering::Acquire)
            && self
                .service
                .resolve(&req.name, &selector(&req.version))
                .is_ok();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "mlengine".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: vec!["binary_tensor_data".to_string()],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let req = request.into_inner();
        let inner = || -> InferenceResult<ModelMetadataResponse> {
            let model = self.service.registry.model(&req.name)?;
            let version = model.resolve(&selector(&req.version))?;
            let meta = |specs: &[TensorSpec]| -> Vec<TensorMetadata> {
                specs
                    .iter()
                    .map(|s| TensorMetadata {
                        name: s.name.clone(),
                        datatype: datatype(s.dtype).to_string(),
                        shape: s.shape.clone(),
                    })
                    .collect()
            };
            Ok(ModelMetadataResponse {
                name: req.name.clone(),
                versions: model.served().keys().map(u64::to_string).collect(),
                platform: "onnxruntime_onnx".to_string(),
                inputs: meta(&version.signature().inputs),
                outputs: meta(&version.signature().outputs),
            })
        };
        inner().map(Response::new).map_err(|e| status(&e))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let start = Instant::now();
        let deadline = request_deadline(&self.service, &request);
        let req = request.into_inner();
        let model = req.model_name.clone();
        let mut version = String::new();
        let result = match deadline {
            Ok(deadline) => self.infer(req, deadline, &mut version).await,
            Err(e) => Err(e),
        };
        record(
            &self.service,
            &model,
            &version,
            "kserve",
            result.as_ref().map(|_| ()),
            start,
        );
        result.map(Response::new).map_err(|e| status(&e))
    }
}
