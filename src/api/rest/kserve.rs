//! KServe v2 / Open Inference Protocol over REST: JSON tensors and Triton's binary tensor
//! extension (`Inference-Header-Content-Length`), on inputs and on the outputs asked for so.

use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use serde_json::{json, Value};

use super::{
    empty, error_response, json_bytes_response, json_response, json_result, read_body,
    requested_timeout, Shared,
};
use crate::codec::kserve::{write_infer_answer, RestAnswer};
use crate::codec::kserve_fast::decode_rest;
use crate::repository::VersionSelector;
use crate::serving::InferenceService;
use crate::status::{Code, Error, Result};
use crate::tensor::TensorSpec;

pub async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"name": "mlengine", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}),
    )
}

pub async fn live() -> Response {
    empty(StatusCode::OK)
}

/// 200 when ready; otherwise 400 with the error shape of every other answer.
fn readiness(ready: std::result::Result<(), Error>) -> Response {
    match ready {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({ "error": e.message })),
    }
}

/// Where the JSON of a body with Triton's binary tensor data ends (a request's or an answer's).
const HEADER_LEN: &str = "inference-header-content-length";

pub async fn ready(State(state): State<Shared>) -> Response {
    readiness(if state.service.ready() {
        Ok(())
    } else if !state.service.lifecycle.accepting() {
        Err(Error::unavailable("the server is not accepting requests"))
    } else {
        Err(Error::unavailable("a model has no available version yet"))
    })
}

fn model_ready(service: &InferenceService, model: &str, version: &VersionSelector) -> Response {
    readiness(match service.resolve(model, version) {
        Ok(_) if service.lifecycle.accepting() => Ok(()),
        Ok(_) => Err(Error::unavailable("the server is not accepting requests")),
        Err(e) => Err(e),
    })
}

/// `/v2/models/{m}[/versions/{v}][/ready|/infer]`.
pub async fn models(
    State(state): State<Shared>,
    Path(rest): Path<String>,
    req: Request,
) -> Response {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (model, version, tail) = match segs.as_slice() {
        [m, "versions", v, tail @ ..] => (*m, VersionSelector::parse(Some(v)), tail),
        [m, tail @ ..] => (*m, VersionSelector::Default, tail),
        [] => return error_response(&Error::not_found("no model named")),
    };
    match (tail, req.method().clone()) {
        ([], Method::GET) => json_result(model_metadata(&state.service, model, &version)),
        (["ready"], Method::GET) => model_ready(&state.service, model, &version),
        (["infer"], Method::POST) => {
            let mut call = state.service.call("kserve", "rest", Instant::now());
            let result = infer(&state, &mut call, model, &version, req).await;
            call.finish(&result);
            match result {
                Ok(RestAnswer {
                    body,
                    header_len: None,
                }) => json_bytes_response(StatusCode::OK, body),
                Ok(RestAnswer {
                    body,
                    header_len: Some(n),
                }) => (
                    [
                        (
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/octet-stream"),
                        ),
                        (HeaderName::from_static(HEADER_LEN), HeaderValue::from(n)),
                    ],
                    body,
                )
                    .into_response(),
                Err(e) => error_response(&e),
            }
        }
        (tail, method) => {
            let allowed = match tail {
                [] | ["ready"] => Some("GET"),
                ["infer"] => Some("POST"),
                _ => None,
            };
            let Some(allowed) = allowed else {
                return error_response(&Error::not_found(format!(
                    "no such endpoint: {method} /v2/models/{rest}"
                )));
            };
            let mut response = error_response(&Error::new(
                Code::MethodNotAllowed,
                format!("{method} is not allowed on /v2/models/{rest}: use {allowed}"),
            ));
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
            response
        }
    }
}

fn model_metadata(
    service: &InferenceService,
    model: &str,
    selector: &VersionSelector,
) -> Result<Value> {
    let meta = service.metadata(model, selector)?;
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| json!({"name": s.name, "datatype": s.dtype.kserve_name(), "shape": s.shape}))
            .collect()
    };
    let versions: Vec<String> = meta.versions.iter().map(u64::to_string).collect();
    Ok(json!({
        "name": meta.model,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": tensors(&meta.version.signature().inputs),
        "outputs": tensors(&meta.version.signature().outputs),
    }))
}

async fn infer(
    state: &Shared,
    call: &mut crate::serving::Call<'_>,
    model: &str,
    selector: &VersionSelector,
    req: Request,
) -> Result<RestAnswer> {
    let version = call.resolve(model, selector)?;
    let header_len = match req.headers().get(HEADER_LEN) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::invalid("Inference-Header-Content-Length is not a byte count")
                })?,
        ),
    };
    let header_timeout = requested_timeout(req.headers())?;
    let body = read_body(state, req).await?;
    let request = decode_rest(version.signature(), &body, header_len)?;
    // Triton's request parameter `timeout` (microseconds) counts when no header set one.
    let timeout = header_timeout.or(request.timeout);
    let (tensors, wanted) = (request.inputs, request.wanted);
    let outputs = call
        .run(&version, tensors, wanted, call.deadline(timeout))
        .await?;
    Ok(write_infer_answer(
        model,
        &version.version_id,
        &outputs,
        request.id.as_ref(),
        &request.binary,
    ))
}
