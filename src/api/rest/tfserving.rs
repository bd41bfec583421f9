//! TensorFlow Serving's REST status (`GET /v1/models/{m}[/versions/{v}]`) and metadata
//! (`.../metadata`): the serving core's answers in TF Serving's JSON.

use axum::response::Response;
use serde_json::{json, Value};

use super::json_result;
use crate::repository::VersionSelector;
use crate::serving::InferenceService;
use crate::tensor::TensorSpec;

pub fn status(service: &InferenceService, model: &str, version: &VersionSelector) -> Response {
    json_result(service.version_status(model, version).map(|list| {
        let list: Vec<Value> = list
            .into_iter()
            .map(|s| {
                json!({
                    "version": s.version.to_string(),
                    "state": s.state.name(),
                    "status": {
                        "error_code": if s.error.is_some() { "UNKNOWN" } else { "OK" },
                        "error_message": s.error.unwrap_or_default(),
                    }
                })
            })
            .collect();
        json!({ "model_version_status": list })
    }))
}

pub fn metadata(service: &InferenceService, model: &str, version: &VersionSelector) -> Response {
    json_result(service.metadata(model, version).map(|meta| {
        let infos = |specs: &[TensorSpec]| -> Value {
            Value::Object(
                specs
                    .iter()
                    .map(|s| {
                        let dims: Vec<Value> = s
                            .shape
                            .iter()
                            .map(|d| json!({"size": d.to_string(), "name": ""}))
                            .collect();
                        let info = json!({
                            "dtype": s.dtype.tf_name(),
                            "tensor_shape": {"dim": dims, "unknown_rank": false},
                            "name": s.name,
                        });
                        (s.name.clone(), info)
                    })
                    .collect(),
            )
        };
        let sig = meta.version.signature();
        json!({
            "model_spec": {"name": meta.model, "signature_name": "", "version": meta.version.version_id},
            "metadata": {"signature_def": {"signature_def": {"serving_default": {
                "inputs": infos(&sig.inputs),
                "outputs": infos(&sig.outputs),
                "method_name": "tensorflow/serving/predict",
                "defaults": {}
            }}}}
        })
    }))
}
