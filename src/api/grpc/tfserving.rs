//! TensorFlow Serving's `PredictionService` (`Predict`, `GetModelMetadata`) and `ModelService`
//! (`GetModelStatus`).

use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use tonic::{Request, Response, Status};

use super::proto::tensorflow::serving::{
    model_service_server::ModelService, model_spec::VersionChoice, model_version_status::State,
    prediction_service_server::PredictionService, ErrorCode, GetModelMetadataRequest,
    GetModelMetadataResponse, GetModelStatusRequest, GetModelStatusResponse, ModelSpec,
    ModelVersionStatus, PredictRequest, PredictResponse, SignatureDefMap, StatusProto,
};
use super::proto::tensorflow::{SignatureDef, TensorInfo};
use super::tensor_proto::{data_type, decode, encode, shape_proto};
use super::{record, request_deadline, status};
use crate::inference::error::{InferenceError, InferenceResult};
use crate::inference::service::InferenceService;
use crate::inference::tensor::{Tensor, TensorSpec};
use crate::repository::registry::{VersionSelector, VersionState};

#[derive(Clone)]
pub struct TfServing {
    pub service: Arc<InferenceService>,
}

fn selector(spec: &ModelSpec) -> VersionSelector {
    match &spec.version_choice {
        None => VersionSelector::Latest,
        Some(VersionChoice::Version(v)) => {
            u64::try_from(*v).map_or(VersionSelector::Number(u64::MAX), VersionSelector::Number)
        }
        Some(VersionChoice::VersionLabel(l)) => VersionSelector::Label(l.clone()),
    }
}

fn model_spec(req: Option<&ModelSpec>) -> InferenceResult<&ModelSpec> {
    req.ok_or_else(|| InferenceError::invalid("missing model_spec"))
}

fn served_spec(name: &str, version: u64) -> ModelSpec {
    ModelSpec {
        name: name.to_string(),
        signature_name: "serving_default".to_string(),
        version_choice: Some(VersionChoice::Version(version as i64)),
    }
}

impl TfServing {
    async fn predict_inner(
        &self,
        req: PredictRequest,
        deadline: Option<Instant>,
        version_label: &mut String,
    ) -> InferenceResult<PredictResponse> {
        let spec = model_spec(req.model_spec.as_ref())?;
        let version = self.service.resolve(&spec.name, &selector(spec))?;
        *version_label = version.version_string.clone();
        let signature = version.signature();
        for key in req.inputs.keys() {
            if signature.input(key).is_none() {
                return Err(InferenceError::invalid(format!(
                    "unknown input '{key}'; the model's inputs are {}",
                    signature
                        .inputs
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let inputs: Vec<Tensor> = signature
            .inputs
            .iter()
            .map(|s| {
                let proto = req.inputs.get(&s.name).ok_or_else(|| {
                    InferenceError::invalid(format!("missing input '{}'", s.name))
                })?;
                decode(s, proto)
            })
            .collect::<InferenceResult<_>>()?;
        let wanted = signature.output_indices(req.output_filter.iter().map(String::as_str))?;
        let outputs = self.service.run(&version, inputs, wanted, deadline).await?;
        Ok(PredictResponse {
            model_spec: Some(served_spec(&spec.name, version.version)),
            outputs: outputs
                .iter()
                .map(|(n, t)| (n.clone(), encode(t)))
                .collect(),
        })
    }
}

fn tensor_info(s: &TensorSpec) -> TensorInfo {
    TensorInfo {
        encoding: Some(super::proto::tensorflow::tensor_info::Encoding::Name(
            s.name.clone(),
        )),
        dtype: data_type(s.dtype) as i32,
        tensor_shape: Some(shape_proto(s.shape.iter().copied())),
    }
}

#[tonic::async_trait]
impl PredictionService for TfServing {
    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        let start = Instant::now();
        let deadline = request_deadline(&self.service, &request);
        let req = request.into_inner();
        let model = req
            .model_spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let mut version = String::new();
        let result = match deadline {
            Ok(deadline) => self.predict_inner(req, deadline, &mut version).await,
            Err(e) => Err(e),
        };
        record(
            &self.service,
            &model,
            &version,
            "tfserving",
            result.as_ref().map(|_| ()),
            start,
        );
        result.map(Response::new).map_err(|e| status(&e))
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        let req = request.into_inner();
        let inner = || -> InferenceResult<GetModelMetadataResponse> {
            let spec = model_spec(req.model_spec.as_ref())?;
            if req.metadata_field.iter().any(|f| f != "signature_def")
                || req.metadata_field.is_empty()
            {
                return Err(InferenceError::invalid(
                    "metadata_field must be [\"signature_def\"]",
                ));
            }
            let version = self.service.resolve(&spec.name, &selector(spec))?;
            let sig = version.signature();
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
                model_spec: Some(served_spec(&spec.name, version.version)),
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
        let inner = || -> InferenceResult<GetModelStatusResponse> {
            let spec = model_spec(req.model_spec.as_ref())?;
            let model = self.service.registry.model(&spec.name)?;
            let wanted = match selector(spec) {
                VersionSelector::Latest => None,
                VersionSelector::Number(n) => Some(n),
                label => Some(model.resolve(&label)?.version),
            };
            let list: Vec<ModelVersionStatus> = model
                .status()
                .into_iter()
                .filter(|s| wanted.is_none_or(|w| w == s.version))
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
            if let (Some(w), true) = (wanted, list.is_empty()) {
                return Err(InferenceError::not_found(format!(
                    "model '{}' has no version {w}",
                    spec.name
                )));
            }
            Ok(GetModelStatusResponse {
                model_version_status: list,
            })
        };
        inner().map(Response::new).map_err(|e| status(&e))
    }
}
