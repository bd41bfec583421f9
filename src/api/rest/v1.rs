//! `/v1`: Cloud ML Engine (`projects/{p}/models/{m}[/versions/{v}]:predict`), Vertex
//! (`projects/{p}/locations/{l}/endpoints/{e}:predict`) and TensorFlow Serving
//! (`models/{m}[/versions/{v}|/labels/{l}][:predict|/metadata]`).

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{
    error_response, json_bytes_response, json_response, parse_json, read_body, record,
    requested_timeout, Shared,
};
use crate::inference::error::{InferenceError, InferenceResult};
use crate::inference::json_columns::{decode_columnar, encode_columnar};
use crate::inference::json_fast;
use crate::inference::json_rows::{decode_instances, encode_predictions, write_predictions};
use crate::inference::tensor::DType;
use crate::repository::registry::VersionSelector;

/// Which API a `/v1` path belongs to; it decides the answer's shape.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    CloudMl,
    Vertex,
    TfServing,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::CloudMl => "cloudml",
            Api::Vertex => "vertex",
            Api::TfServing => "tfserving",
        }
    }
}

enum Route {
    Predict {
        api: Api,
        model: String,
        version: VersionSelector,
    },
    Status {
        model: String,
        version: Option<VersionSelector>,
    },
    Metadata {
        model: String,
        version: VersionSelector,
    },
}

fn parse(method: &Method, path: &str) -> InferenceResult<Route> {
    let rest = path.trim_start_matches("/v1/");
    let (path, verb) = match rest.rsplit_once(':') {
        Some((p, v)) if !v.contains('/') => (p, Some(v)),
        _ => (rest, None),
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let unknown = || InferenceError::not_found(format!("no such endpoint: {method} /v1/{rest}"));
    if verb.is_some_and(|v| v != "predict") {
        return Err(InferenceError::new(
            crate::inference::ErrorKind::InvalidArgument,
            format!(
                "unsupported method ':{}'; this server implements :predict",
                verb.unwrap_or_default()
            ),
        ));
    }
    match (segs.as_slice(), verb, method) {
        (["projects", _, "models", m], Some(_), &Method::POST) => Ok(Route::Predict {
            api: Api::CloudMl,
            model: m.to_string(),
            version: VersionSelector::Latest,
        }),
        (["projects", _, "models", m, "versions", v], Some(_), &Method::POST) => {
            Ok(Route::Predict {
                api: Api::CloudMl,
                model: m.to_string(),
                version: VersionSelector::parse(Some(v)),
            })
        }
        (["projects", _, "locations", _, "endpoints", e], Some(_), &Method::POST) => {
            Ok(Route::Predict {
                api: Api::Vertex,
                model: e.to_string(),
                version: VersionSelector::Latest,
            })
        }
        (["models", m, tail @ ..], verb, method) => {
            let (version, tail) = match tail {
                ["versions", v, t @ ..] => match v.parse::<u64>() {
                    Ok(n) => (Some(VersionSelector::Number(n)), t),
                    Err(_) => {
                        return Err(InferenceError::invalid(format!(
                            "version '{v}' is not a number; use /labels/{v}"
                        )))
                    }
                },
                ["labels", l, t @ ..] => (Some(VersionSelector::Label(l.to_string())), t),
                t => (None, t),
            };
            match (tail, verb, method) {
                ([], Some(_), &Method::POST) => Ok(Route::Predict {
                    api: Api::TfServing,
                    model: m.to_string(),
                    version: version.unwrap_or(VersionSelector::Latest),
                }),
                ([], None, &Method::GET) => Ok(Route::Status {
                    model: m.to_string(),
                    version,
                }),
                (["metadata"], None, &Method::GET) => Ok(Route::Metadata {
                    model: m.to_string(),
                    version: version.unwrap_or(VersionSelector::Latest),
                }),
                _ => Err(unknown()),
            }
        }
        _ => Err(unknown()),
    }
}

pub async fn dispatch(State(state): State<Shared>, req: Request) -> Response {
    let start = Instant::now();
    let route = match parse(req.method(), req.uri().path()) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    match route {
        Route::Predict {
            api,
            model,
            version,
        } => {
            let (result, served) = predict(&state, api, &model, &version, req, start).await;
            let status = match &result {
                Ok(_) => 200,
                Err(e) => e.kind.http_status(),
            };
            record(
                &state,
                &model,
                served.as_deref().unwrap_or(""),
                api.name(),
                status,
                start,
            );
            match result {
                Ok(body) => json_bytes_response(StatusCode::OK, body),
                Err(e) => error_response(&e),
            }
        }
        Route::Status { model, version } => match status(&state, &model, version) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => error_response(&e),
        },
        Route::Metadata { model, version } => match metadata(&state, &model, &version) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => error_response(&e),
        },
    }
}

async fn predict(
    state: &Shared,
    api: Api,
    model: &str,
    selector: &VersionSelector,
    req: Request,
    start: Instant,
) -> (InferenceResult<Vec<u8>>, Option<String>) {
    let version = match resolve_model(state, api, model, selector) {
        Ok(v) => v,
        Err(e) => return (Err(e), None),
    };
    let served = Some(version.version_string.clone());
    let result = async {
        let deadline = state
            .service
            .deadline(start, requested_timeout(req.headers())?);
        let body = read_body(state, req).await?;
        let signature = version.signature();
        // The common request ({"instances": [objects]}) decodes without building JSON values;
        // anything else takes the general path, whose errors name the instance and the input.
        let (inputs, columnar) = match json_fast::decode_instances_body(signature, &body) {
            Some(inputs) => (inputs, false),
            None => decode_general(signature, &body)?,
        };
        let outputs = state
            .service
            .run(&version, inputs, vec![], deadline)
            .await?;
        if columnar {
            return Ok(json!({ "outputs": encode_columnar(&outputs) })
                .to_string()
                .into_bytes());
        }
        if api != Api::TfServing || outputs.len() > 1 {
            return predictions_body(api, &version.version_string, &outputs);
        }
        // TF Serving answers a single-output model's rows as bare values.
        let predictions: Vec<Value> = encode_predictions(&outputs)?
            .into_iter()
            .map(|mut r| {
                r.as_object_mut()
                    .and_then(|o| o.values_mut().next().map(Value::take))
                    .unwrap_or(Value::Null)
            })
            .collect();
        Ok(json!({ "predictions": predictions })
            .to_string()
            .into_bytes())
    }
    .await;
    (result, served)
}

/// Row (`instances`) or columnar (`inputs`) tensors of any predict body; true when columnar.
fn decode_general(
    signature: &crate::inference::Signature,
    body: &[u8],
) -> InferenceResult<(Vec<crate::inference::Tensor>, bool)> {
    let request = parse_json(body)?;
    let Value::Object(obj) = &request else {
        return Err(InferenceError::invalid(
            "request body must be a JSON object with 'instances'",
        ));
    };
    match (obj.get("instances"), obj.get("inputs")) {
        (Some(_), Some(_)) => Err(InferenceError::invalid(
            "expecting only one of 'inputs' or 'instances', not both",
        )),
        (Some(Value::Array(instances)), None) => {
            Ok((decode_instances(signature, instances)?, false))
        }
        (Some(_), None) => Err(InferenceError::invalid("'instances' must be a list")),
        (None, Some(inputs)) => Ok((decode_columnar(signature, inputs)?, true)),
        (None, None) => Err(InferenceError::invalid(
            "missing 'instances' in request body",
        )),
    }
}

/// `{"predictions": [...]}` (and Vertex's `deployedModelId`), written without JSON values.
fn predictions_body(
    api: Api,
    version: &str,
    outputs: &[(String, crate::inference::Tensor)],
) -> InferenceResult<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + 96 * outputs.first().map_or(0, |(_, t)| t.rows()));
    out.extend_from_slice(b"{\"predictions\":[");
    if write_predictions(outputs, b",", &mut out)? > 0 {
        out.pop();
    }
    out.push(b']');
    if api == Api::Vertex {
        out.extend_from_slice(b",\"deployedModelId\":");
        out.extend_from_slice(Value::from(version).to_string().as_bytes());
    }
    out.push(b'}');
    Ok(out)
}

/// A Vertex endpoint id names the model; with one model served, any endpoint id reaches it.
fn resolve_model(
    state: &Shared,
    api: Api,
    model: &str,
    selector: &VersionSelector,
) -> InferenceResult<std::sync::Arc<crate::repository::registry::LoadedVersion>> {
    match state.service.resolve(model, selector) {
        Err(e) if api == Api::Vertex && e.kind == crate::inference::ErrorKind::NotFound => {
            let mut models = state.service.registry.models();
            match (models.next(), models.next()) {
                (Some(only), None) => only.resolve(selector),
                _ => Err(e),
            }
        }
        other => other,
    }
}

fn status(state: &Shared, model: &str, version: Option<VersionSelector>) -> InferenceResult<Value> {
    let served = state.service.registry.model(model)?;
    let wanted = match &version {
        None => None,
        Some(VersionSelector::Number(n)) => Some(*n),
        Some(sel) => Some(served.resolve(sel)?.version),
    };
    let list: Vec<Value> = served
        .status()
        .into_iter()
        .filter(|s| wanted.is_none_or(|w| w == s.version))
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
    if let (Some(w), true) = (wanted, list.is_empty()) {
        return Err(InferenceError::not_found(format!(
            "model '{model}' has no version {w}"
        )));
    }
    Ok(json!({ "model_version_status": list }))
}

fn tf_dtype(d: DType) -> &'static str {
    match d {
        DType::Bool => "DT_BOOL",
        DType::U8 => "DT_UINT8",
        DType::U16 => "DT_UINT16",
        DType::U32 => "DT_UINT32",
        DType::U64 => "DT_UINT64",
        DType::I8 => "DT_INT8",
        DType::I16 => "DT_INT16",
        DType::I32 => "DT_INT32",
        DType::I64 => "DT_INT64",
        DType::F32 => "DT_FLOAT",
        DType::F64 => "DT_DOUBLE",
        DType::String => "DT_STRING",
    }
}

fn metadata(state: &Shared, model: &str, selector: &VersionSelector) -> InferenceResult<Value> {
    let version = state.service.resolve(model, selector)?;
    let infos = |specs: &[crate::inference::TensorSpec]| -> Value {
        Value::Object(
            specs
                .iter()
                .map(|s| {
                    let dims: Vec<Value> = s.shape.iter().map(|d| json!({"size": d.to_string(), "name": ""})).collect();
                    (
                        s.name.clone(),
                        json!({"dtype": tf_dtype(s.dtype), "tensor_shape": {"dim": dims, "unknown_rank": false}, "name": s.name}),
                    )
                })
                .collect(),
        )
    };
    let sig = version.signature();
    Ok(json!({
        "model_spec": {"name": model, "signature_name": "", "version": version.version_string},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": infos(&sig.inputs),
            "outputs": infos(&sig.outputs),
            "method_name": "tensorflow/serving/predict",
            "defaults": {}
        }}}}
    }))
}
