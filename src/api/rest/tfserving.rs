//! TensorFlow Serving's REST status (`GET /v1/models/{m}[/versions/{v}]`), metadata
//! (`.../metadata`), `:classify` and `:regress`: the serving core's answers in TF Serving's JSON.

use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use serde_json::{json, Value};

use super::{json_result, read_body, requested_timeout, Shared};
use crate::codec::example::{self, Features};
use crate::codec::instances::check_json_signature_name;
use crate::codec::json::parse_body;
use crate::repository::VersionSelector;
use crate::serving::InferenceService;
use crate::status::{Error, Result};
use crate::tensor::TensorSpec;

/// `{"signature_name", "context", "examples": [...]}` classified (`{"results": [[[label,
/// score], ...], ...]}`) or regressed (`{"results": [value, ...]}`).
pub async fn classify_or_regress(
    state: &Shared,
    model: &str,
    selector: &VersionSelector,
    classify: bool,
    req: Request,
) -> Response {
    let api = if classify {
        "tfserving_classify"
    } else {
        "tfserving_regress"
    };
    let mut call = state.service.call(api, "rest", Instant::now());
    let result = async {
        let version = call.resolve(model, selector)?;
        let deadline = call.deadline(requested_timeout(req.headers())?);
        let body = parse_body(&read_body(state, req).await?)?;
        if let Some(name) = body.get("signature_name") {
            check_json_signature_name(name)?;
        }
        let features = |v: &Value, what: &str| -> Result<Features> {
            let obj = v
                .as_object()
                .ok_or_else(|| Error::invalid(format!("{what} must be an object of features")))?;
            example::from_json(obj).map_err(|e| Error::invalid(format!("{what}: {e}")))
        };
        let examples: Vec<Features> = body
            .get("examples")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::invalid("missing 'examples' list in request body"))?
            .iter()
            .enumerate()
            .map(|(i, e)| features(e, &format!("example {i}")))
            .collect::<Result<_>>()?;
        let context = body
            .get("context")
            .map(|c| features(c, "context"))
            .transpose()?;
        if classify {
            let results = call
                .classify(&version, &examples, context.as_ref(), deadline)
                .await?;
            let results: Vec<Value> = results
                .into_iter()
                .map(|classes| {
                    Value::Array(
                        classes
                            .into_iter()
                            .map(|(label, score)| json!([label, score]))
                            .collect(),
                    )
                })
                .collect();
            Ok(json!({ "results": results }))
        } else {
            let values = call
                .regress(&version, &examples, context.as_ref(), deadline)
                .await?;
            Ok(json!({ "results": values }))
        }
    }
    .await;
    call.finish(&result);
    json_result(result)
}

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
