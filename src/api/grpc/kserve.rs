//! KServe v2 `GRPCInferenceService`: inputs in `raw_input_contents` (what tritonclient sends) or
//! typed `contents`; outputs always in `raw_output_contents`, the only form tritonclient reads.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::proto::inference::{
    grpc_inference_service_server::GrpcInferenceService, model_infer_response::InferOutputTensor,
    model_metadata_response::TensorMetadata, InferTensorContents, ModelInferRequest,
    ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest,
    ModelReadyResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use super::{arrival, infer_wire, status, tonic_timeout};
use crate::codec::raw;
use crate::repository::VersionSelector;
use crate::serving::connections::Streams;
use crate::serving::{Call, InferenceService};
use crate::status::{Error, Result};
use crate::tensor::{element, DType, Outputs, Signature, Tensor, TensorData, TensorSpec};

pub struct KServe {
    pub service: Arc<InferenceService>,
}

fn selector(version: &str) -> VersionSelector {
    VersionSelector::parse(Some(version))
}

/// Typed `contents` of one input as elements of `dtype`; vectors of the right type are moved,
/// not copied.
pub(super) fn from_contents(
    name: &str,
    dtype: DType,
    c: InferTensorContents,
) -> Result<TensorData> {
    let err = |msg: String| Error::invalid(format!("input '{name}': {msg}"));
    fn narrow<S: Copy, T: TryFrom<S>>(
        v: &[S],
        dtype: DType,
        err: &dyn Fn(String) -> Error,
    ) -> Result<Vec<T>> {
        v.iter()
            .map(|&x| {
                T::try_from(x).map_err(|_| err(format!("a value is out of range for {dtype}")))
            })
            .collect()
    }
    Ok(match dtype {
        DType::Bool => TensorData::Bool(c.bool_contents),
        DType::I8 => TensorData::I8(narrow(&c.int_contents, dtype, &err)?),
        DType::I16 => TensorData::I16(narrow(&c.int_contents, dtype, &err)?),
        DType::I32 => TensorData::I32(c.int_contents),
        DType::I64 => TensorData::I64(c.int64_contents),
        DType::U8 => TensorData::U8(narrow(&c.uint_contents, dtype, &err)?),
        DType::U16 => TensorData::U16(narrow(&c.uint_contents, dtype, &err)?),
        DType::U32 => TensorData::U32(c.uint_contents),
        DType::U64 => TensorData::U64(c.uint64_contents),
        DType::F32 => TensorData::F32(c.fp32_contents),
        DType::F64 => TensorData::F64(c.fp64_contents),
        DType::String => TensorData::String(
            c.bytes_contents
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    element::text(b)
                        .map(str::to_string)
                        .map_err(|e| err(format!("bytes_contents[{i}] {e}")))
                })
                .collect::<Result<Vec<String>>>()?,
        ),
    })
}

/// The inputs of a `ModelInferRequest` as tensors in signature order, by `infer_wire`'s rules.
/// Typed contents and shapes are moved out of `req`, so that the large vectors become the tensors
/// without a copy.
pub fn decode_request(signature: &Signature, req: &mut ModelInferRequest) -> Result<Vec<Tensor>> {
    let raw: Vec<&[u8]> = req.raw_input_contents.iter().map(|b| &b[..]).collect();
    let inputs = req
        .inputs
        .iter_mut()
        .map(|input| infer_wire::WireInput {
            name: &input.name,
            datatype: &input.datatype,
            shape: std::mem::take(&mut input.shape),
            contents: input
                .contents
                .take()
                .map(|c| infer_wire::Contents::Decoded(Box::new(c))),
        })
        .collect();
    infer_wire::tensors(signature, inputs, &raw)
}

/// A `ModelInfer` request as prost decoded it, or as `infer_wire` read it in place.
pub(super) enum Received<'a> {
    Decoded(ModelInferRequest),
    Wire(infer_wire::Request<'a>),
}

/// What `ModelInfer` answers, before it is written: straight to bytes on the hot path
/// (`answer_wire::Infer`), as prost's message for tonic's service (`response`).
pub(super) struct Inferred {
    pub model_name: String,
    pub model_version: String,
    pub id: String,
    pub outputs: Outputs,
}

impl KServe {
    /// `ModelInfer`, for tonic's service and the hot path alike.
    pub(super) async fn infer_call(
        &self,
        req: Received<'_>,
        arrived: std::time::Instant,
        timeout: Result<Option<std::time::Duration>>,
        streams: Option<&Streams>,
    ) -> Result<Inferred> {
        let mut call = self.service.call("kserve", "grpc", arrived);
        call.on_streams(streams);
        let result = match timeout {
            Ok(timeout) => self.infer(&mut call, req, timeout).await,
            Err(e) => Err(e),
        };
        call.finish(&result);
        result
    }

    async fn infer(
        &self,
        call: &mut Call<'_>,
        req: Received<'_>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Inferred> {
        let (model, wanted_version) = match &req {
            Received::Decoded(r) => (r.model_name.as_str(), r.model_version.as_str()),
            Received::Wire(r) => (r.model_name, r.model_version),
        };
        let version = call.resolve(model, &selector(wanted_version))?;
        let signature = version.signature();
        // The decoded inputs are not kept while the model runs (the request's bytes are, at
        // most the message size limit).
        let mut timeout = timeout;
        let (tensors, wanted, model_name, id) = match req {
            Received::Decoded(mut r) => {
                // Triton's request parameter counts when no `grpc-timeout` set one (requests
                // with parameters never take the wire path).
                if timeout.is_none() {
                    timeout = parameter_timeout(&r.parameters)?;
                }
                if let Some(i) = r
                    .outputs
                    .iter()
                    .position(|o| o.parameters.contains_key("classification"))
                {
                    return Err(crate::codec::kserve::classification_refused(i));
                }
                let tensors = decode_request(signature, &mut r)?;
                let wanted = signature.output_indices(r.outputs.iter().map(|o| o.name.as_str()))?;
                (tensors, wanted, r.model_name, r.id)
            }
            Received::Wire(r) => {
                let tensors = infer_wire::tensors(signature, r.inputs, &r.raw)?;
                let wanted = signature.output_indices(r.outputs.iter().copied())?;
                (tensors, wanted, r.model_name.to_string(), r.id.to_string())
            }
        };
        let outputs = call
            .run(&version, tensors, wanted, call.deadline(timeout))
            .await?;
        Ok(Inferred {
            model_name,
            model_version: version.version_id.clone(),
            id,
            outputs,
        })
    }
}

/// The answer as prost's message, for tonic's service: every output in `raw_output_contents`.
pub(super) fn response(
    model_name: String,
    model_version: String,
    id: String,
    outputs: Outputs,
) -> ModelInferResponse {
    let mut response = ModelInferResponse {
        model_name,
        model_version,
        id,
        ..Default::default()
    };
    for (name, t) in outputs {
        response.outputs.push(InferOutputTensor {
            name,
            datatype: t.dtype().kserve_name().to_string(),
            shape: t.shape.iter().map(|&d| d as i64).collect(),
            ..Default::default()
        });
        let mut bytes = Vec::new();
        raw::encode(&t.data, &mut bytes);
        response.raw_output_contents.push(bytes);
    }
    response
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
        let ready = self.service.ready();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let req = request.into_inner();
        let ready = self.service.model_ready(&req.name, &selector(&req.version));
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
        let inner = || -> Result<ModelMetadataResponse> {
            let meta = self.service.metadata(&req.name, &selector(&req.version))?;
            let tensors = |specs: &[TensorSpec]| -> Vec<TensorMetadata> {
                specs
                    .iter()
                    .map(|s| TensorMetadata {
                        name: s.name.clone(),
                        datatype: s.dtype.kserve_name().to_string(),
                        shape: s.shape.clone(),
                    })
                    .collect()
            };
            Ok(ModelMetadataResponse {
                name: meta.model.clone(),
                versions: meta.versions.iter().map(u64::to_string).collect(),
                platform: "onnxruntime_onnx".to_string(),
                inputs: tensors(&meta.version.signature().inputs),
                outputs: tensors(&meta.version.signature().outputs),
            })
        };
        inner().map(Response::new).map_err(|e| status(&e))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let arrived = arrival(&request);
        let timeout = tonic_timeout(&request);
        self.infer_call(
            Received::Decoded(request.into_inner()),
            arrived,
            timeout,
            None,
        )
        .await
        .map(|i| Response::new(response(i.model_name, i.model_version, i.id, i.outputs)))
        .map_err(|e| status(&e))
    }
}

/// Triton's `timeout` request parameter, when given.
fn parameter_timeout(
    parameters: &std::collections::HashMap<String, super::proto::inference::InferParameter>,
) -> Result<Option<std::time::Duration>> {
    use super::proto::inference::infer_parameter::ParameterChoice;
    let micros = match parameters
        .get("timeout")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => return Ok(None),
        Some(ParameterChoice::Int64Param(n)) => u64::try_from(*n).ok(),
        Some(ParameterChoice::Uint64Param(n)) => Some(*n),
        Some(_) => None,
    };
    crate::codec::kserve::timeout_parameter(micros)
}
