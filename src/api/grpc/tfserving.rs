//! TensorFlow Serving's `PredictionService` (`Predict`, `Classify`, `Regress`,
//! `GetModelMetadata`) and `ModelService` (`GetModelStatus`).

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use super::proto::tensorflow::serving::{
    input::Kind, model_service_server::ModelService, model_spec::VersionChoice,
    model_version_status::State, prediction_service_server::PredictionService, Class,
    ClassificationRequest, ClassificationResponse, ClassificationResult, Classifications,
    ErrorCode, GetModelMetadataRequest, GetModelMetadataResponse, GetModelStatusRequest,
    GetModelStatusResponse, Input, ModelSpec, ModelVersionStatus, PredictRequest, PredictResponse,
    Regression, RegressionRequest, RegressionResponse, RegressionResult, SignatureDefMap,
    StatusProto,
};
use super::proto::tensorflow::{SignatureDef, TensorInfo};
use super::tensor_proto::{data_type, encode, shape_proto};
use super::{arrival, predict_wire, status, tonic_timeout};
use crate::codec::example::{self, Features};
use crate::codec::instances::SIGNATURE_NAME;
use crate::repository::{VersionSelector, VersionState};
use crate::serving::connections::Streams;
use crate::serving::{Call, InferenceService};
use crate::status::{Error, Result};
use crate::tensor::{Outputs, Tensor, TensorSpec};

#[derive(Clone)]
pub struct TfServing {
    pub service: Arc<InferenceService>,
}

fn selector(spec: &ModelSpec) -> Result<VersionSelector> {
    Ok(match &spec.version_choice {
        None => VersionSelector::Default,
        Some(VersionChoice::Version(v)) => {
            VersionSelector::Number(u64::try_from(*v).map_err(|_| {
                Error::invalid(format!(
                    "model_spec.version {v} is negative; versions are numbered from 0"
                ))
            })?)
        }
        Some(VersionChoice::VersionLabel(l)) => VersionSelector::Label(l.clone()),
    })
}

fn model_spec(req: Option<&ModelSpec>) -> Result<&ModelSpec> {
    req.ok_or_else(|| Error::invalid("missing model_spec"))
}

/// The examples of a Classify or Regress request, and the context they share.
pub fn examples(input: Option<&Input>) -> Result<(Vec<Features>, Option<Features>)> {
    match input.and_then(|i| i.kind.as_ref()) {
        Some(Kind::ExampleList(list)) => Ok((
            list.examples.iter().map(example::from_proto).collect(),
            None,
        )),
        Some(Kind::ExampleListWithContext(list)) => Ok((
            list.examples.iter().map(example::from_proto).collect(),
            list.context.as_ref().map(example::from_proto),
        )),
        None => Err(Error::invalid("input is empty: give an example_list")),
    }
}

fn served_spec(name: &str, version: u64) -> ModelSpec {
    ModelSpec {
        name: name.to_string(),
        signature_name: SIGNATURE_NAME.to_string(),
        version_choice: Some(VersionChoice::Version(version as i64)),
    }
}

/// What `Predict` answers, before it is written: straight to bytes on the hot path
/// (`answer_wire::Predict`), as prost's message for tonic's service (`response`).
pub(super) struct Predicted {
    pub model_name: String,
    pub version: u64,
    pub outputs: Outputs,
}

/// The answer as prost's message, for tonic's service: the outputs in typed `*_val` fields.
pub(super) fn response(model_name: &str, version: u64, outputs: &Outputs) -> PredictResponse {
    PredictResponse {
        model_spec: Some(served_spec(model_name, version)),
        outputs: outputs
            .iter()
            .map(|(n, t)| (n.clone(), encode(t)))
            .collect(),
    }
}

/// A `Predict` request as prost decoded it, or as `predict_wire` read it in place.
pub(super) enum Received<'a> {
    Decoded(PredictRequest),
    Wire(predict_wire::Request<'a>),
}

impl TfServing {
    /// `Predict`, for tonic's service and the hot path alike.
    pub(super) async fn predict_call(
        &self,
        req: Received<'_>,
        arrived: std::time::Instant,
        timeout: Result<Option<std::time::Duration>>,
        streams: Option<&Streams>,
    ) -> Result<Predicted> {
        let mut call = self.service.call("tfserving", "grpc", arrived);
        call.on_streams(streams);
        let result = match timeout {
            Ok(timeout) => self.predict_inner(&mut call, req, timeout).await,
            Err(e) => Err(e),
        };
        call.finish(&result);
        result
    }

    async fn predict_inner(
        &self,
        call: &mut Call<'_>,
        mut req: Received<'_>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Predicted> {
        let spec = match &mut req {
            Received::Decoded(r) => r.model_spec.take(),
            Received::Wire(r) => r.model_spec.take(),
        };
        let spec = model_spec(spec.as_ref())?;
        let version = call.resolve(&spec.name, &selector(spec)?)?;
        crate::codec::instances::check_signature_name(&spec.signature_name)?;
        let signature = version.signature();
        let (wanted, inputs) = match req {
            Received::Decoded(mut r) => (
                signature.output_indices(r.output_filter.iter().map(String::as_str))?,
                decode_predict(signature, &mut r)?,
            ),
            Received::Wire(r) => (
                signature.output_indices(r.output_filter.iter().copied())?,
                predict_wire::tensors(signature, r.inputs)?,
            ),
        };
        let outputs = call
            .run(&version, inputs, wanted, call.deadline(timeout))
            .await?;
        Ok(Predicted {
            model_name: spec.name.clone(),
            version: version.version,
            outputs,
        })
    }
}

/// The inputs of a `PredictRequest` as tensors in signature order. A model of named inputs also
/// takes serialized tf.Examples under "inputs", as TF's example serving input did.
pub fn decode_predict(
    signature: &crate::tensor::Signature,
    req: &mut PredictRequest,
) -> Result<Vec<Tensor>> {
    if let Some(serialized) = examples_input(signature, req) {
        return example::to_tensors(signature, &serialized?, None);
    }
    predict_wire::tensors(
        signature,
        std::mem::take(&mut req.inputs).into_iter().collect(),
    )
}

/// Serialized tf.Examples given as the one input `inputs` (DT_STRING) to a model that has no
/// input of that name.
fn examples_input(
    signature: &crate::tensor::Signature,
    req: &PredictRequest,
) -> Option<Result<Vec<Features>>> {
    let proto = req.inputs.get(EXAMPLES_INPUT)?;
    if req.inputs.len() != 1 || signature.input(EXAMPLES_INPUT).is_some() {
        return None;
    }
    if proto.dtype != data_type(crate::tensor::DType::String) as i32 {
        return None;
    }
    Some(
        proto
            .string_val
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                example::parse_serialized(bytes)
                    .map_err(|e| Error::invalid(format!("input 'inputs': element {i}: {e}")))
            })
            .collect(),
    )
}

/// The input name of serialized examples in TF's example-parsing signatures.
const EXAMPLES_INPUT: &str = "inputs";

fn tensor_info(s: &TensorSpec) -> TensorInfo {
    TensorInfo {
        encoding: Some(super::proto::tensorflow::tensor_info::Encoding::Name(
            s.name.clone(),
        )),
        dtype: data_type(s.dtype) as i32,
        tensor_shape: Some(shape_proto(s.shape.iter().copied())),
    }
}

impl TfServing {
    async fn classify_inner(
        &self,
        call: &mut Call<'_>,
        req: ClassificationRequest,
        timeout: Option<std::time::Duration>,
    ) -> Result<ClassificationResponse> {
        let spec = model_spec(req.model_spec.as_ref())?;
        let version = call.resolve(&spec.name, &selector(spec)?)?;
        crate::codec::instances::check_signature_name(&spec.signature_name)?;
        let (examples, context) = examples(req.input.as_ref())?;
        let results = call
            .classify(
                &version,
                &examples,
                context.as_ref(),
                call.deadline(timeout),
            )
            .await?;
        Ok(ClassificationResponse {
            model_spec: Some(served_spec(&spec.name, version.version)),
            result: Some(ClassificationResult {
                classifications: results
                    .into_iter()
                    .map(|classes| Classifications {
                        classes: classes
                            .into_iter()
                            .map(|(label, score)| Class { label, score })
                            .collect(),
                    })
                    .collect(),
            }),
        })
    }

    async fn regress_inner(
        &self,
        call: &mut Call<'_>,
        req: RegressionRequest,
        timeout: Option<std::time::Duration>,
    ) -> Result<RegressionResponse> {
        let spec = model_spec(req.model_spec.as_ref())?;
        let version = call.resolve(&spec.name, &selector(spec)?)?;
        crate::codec::instances::check_signature_name(&spec.signature_name)?;
        let (examples, context) = examples(req.input.as_ref())?;
        let values = call
            .regress(
                &version,
                &examples,
                context.as_ref(),
                call.deadline(timeout),
            )
            .await?;
        Ok(RegressionResponse {
            model_spec: Some(served_spec(&spec.name, version.version)),
            result: Some(RegressionResult {
                regressions: values
                    .into_iter()
                    .map(|value| Regression { value })
                    .collect(),
            }),
        })
    }
}

#[tonic::async_trait]
impl PredictionService for TfServing {
    async fn classify(
        &self,
        request: Request<ClassificationRequest>,
    ) -> Result<Response<ClassificationResponse>, Status> {
        let mut call = self
            .service
            .call("tfserving_classify", "grpc", arrival(&request));
        let timeout = tonic_timeout(&request);
        let req = request.into_inner();
        let result = match timeout {
            Ok(timeout) => self.classify_inner(&mut call, req, timeout).await,
            Err(e) => Err(e),
        };
        call.finish(&result);
        result.map(Response::new).map_err(|e| status(&e))
    }

    async fn regress(
        &self,
        request: Request<RegressionRequest>,
    ) -> Result<Response<RegressionResponse>, Status> {
        let mut call = self
            .service
            .call("tfserving_regress", "grpc", arrival(&request));
        let timeout = tonic_timeout(&request);
        let req = request.into_inner();
        let result = match timeout {
            Ok(timeout) => self.regress_inner(&mut call, req, timeout).await,
            Err(e) => Err(e),
        };
        call.finish(&result);
        result.map(Response::new).map_err(|e| status(&e))
    }

    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        let arrived = arrival(&request);
        let timeout = tonic_timeout(&request);
        self.predict_call(
            Received::Decoded(request.into_inner()),
            arrived,
            timeout,
            None,
        )
        .await
        .map(|p| Response::new(response(&p.model_name, p.version, &p.outputs)))
        .map_err(|e| status(&e))
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        let req = request.into_inner();
        let inner = || -> Result<GetModelMetadataResponse> {
            let spec = model_spec(req.model_spec.as_ref())?;
            if req.metadata_field.iter().any(|f| f != "signature_def")
                || req.metadata_field.is_empty()
            {
                return Err(Error::invalid("metadata_field must be [\"signature_def\"]"));
            }
            let meta = self.service.metadata(&spec.name, &selector(spec)?)?;
            let sig = meta.version.signature();
            let def = SignatureDef {
                inputs: sig
                    .inputs
                    .iter()
                    .map(|s| (s.name.clone(), tensor_info(s)))
                    .collect(),
                outputs: sig
                    .outputs
                    .iter()
                    .map(|s| (s.name.clone(), tensor_info(s)))
                    .collect(),
                method_name: "tensorflow/serving/predict".to_string(),
            };
            let map = SignatureDefMap {
                signature_def: [("serving_default".to_string(), def)].into_iter().collect(),
            };
            let any = prost_types::Any {
                type_url: "type.googleapis.com/tensorflow.serving.SignatureDefMap".to_string(),
                value: map.encode_to_vec(),
            };
            Ok(GetModelMetadataResponse {
                model_spec: Some(served_spec(&spec.name, meta.version.version)),
                metadata: [("signature_def".to_string(), any)].into_iter().collect(),
            })
        };
        inner().map(Response::new).map_err(|e| status(&e))
    }
}

#[tonic::async_trait]
impl ModelService for TfServing {
    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        let req = request.into_inner();
        let inner = || -> Result<GetModelStatusResponse> {
            let spec = model_spec(req.model_spec.as_ref())?;
            let list: Vec<ModelVersionStatus> = self
                .service
                .version_status(&spec.name, &selector(spec)?)?
                .into_iter()
                .map(|s| ModelVersionStatus {
                    version: s.version as i64,
                    state: match s.state {
                        VersionState::Loading => State::Loading,
                        VersionState::Available => State::Available,
                        VersionState::End => State::End,
                    } as i32,
                    status: Some(StatusProto {
                        error_code: if s.error.is_some() {
                            ErrorCode::Unknown
                        } else {
                            ErrorCode::Ok
                        } as i32,
                        error_message: s.error.unwrap_or_default(),
                    }),
                })
                .collect();
            Ok(GetModelStatusResponse {
                model_version_status: list,
            })
        };
        inner().map(Response::new).map_err(|e| status(&e))
    }
}
