//! KServe v2 / Open Inference Protocol over REST: JSON tensors and Triton's binary tensor
//! extension (`Inference-Header-Content-Length`); answers are JSON.

use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{
    empty, error_response, json_response, json_result, read_body, requested_timeout, Shared,
};
use crate::codec::json::parse_body;
use crate::codec::kserve::{decode_inputs, output_json, Data, Input};
use crate::repository::VersionSelector;
use crate::serving::InferenceService;
use crate::status::{Error, Result};
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
            json_result(result)
        }
        _ => error_response(&Error::not_found(format!(
            "no such endpoint: {} /v2/models/{rest}",
            req.method()
        ))),
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
) -> Result<Value> {
    let version = call.resolve(model, selector)?;
    let header_len = match req.headers().get("inference-header-content-length") {
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
    let (json_part, binary) = match header_len {
        None => (&body[..], &body[..0]),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(Error::invalid(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )))
        }
    };
    let request = parse_body(json_part)?;
    let listed = request
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid("missing 'inputs' list in request body"))?;
    // Binary inputs take consecutive slices of the bytes after the JSON header, in input order.
    let mut inputs = Vec::with_capacity(listed.len());
    let mut offset = 0usize;
    for (i, input) in listed.iter().enumerate() {
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid(format!("inputs[{i}]: missing 'name'")))?;
        let datatype = input
            .get("datatype")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid(format!("input '{name}': missing 'datatype'")))?;
        let shape: Vec<i64> = input
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                Error::invalid(format!("input '{name}': 'shape' must be a list of sizes"))
            })?;
        let binary_size = input
            .get("parameters")
            .and_then(|p| p.get("binary_data_size"));
        let data = match binary_size {
            Some(size) => {
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "input '{name}': binary_data_size must be a byte count"
                        ))
                    })?;
                let Some(bytes) = offset
                    .checked_add(size)
                    .and_then(|end| binary.get(offset..end))
                else {
                    return Err(Error::invalid(format!(
                        "input '{name}': binary_data_size {size} runs past the end of the binary data"
                    )));
                };
                offset += size;
                Data::Raw(bytes)
            }
            None => Data::Json(
                input
                    .get("data")
                    .ok_or_else(|| Error::invalid(format!("input '{name}': missing 'data'")))?,
            ),
        };
        inputs.push(Input {
            name,
            datatype,
            shape,
            data,
        });
    }
    if offset != binary.len() {
        return Err(Error::invalid(format!(
            "{} bytes of binary data are not claimed by any input",
            binary.len() - offset
        )));
    }
    let signature = version.signature();
    let tensors = decode_inputs(signature, inputs)?;
    // Triton's request parameter `timeout` (microseconds) when no header set one.
    let timeout = match (header_timeout, request.pointer("/parameters/timeout")) {
        (Some(t), _) => Some(t),
        (None, Some(t)) => Some(std::time::Duration::from_micros(t.as_u64().ok_or_else(
            || Error::invalid("parameters.timeout must be a whole number of microseconds"),
        )?)),
        (None, None) => None,
    };
    let wanted = match request.get("outputs").and_then(Value::as_array) {
        None => vec![],
        Some(list) => signature.output_indices(
            list.iter()
                .map(|o| o.get("name").and_then(Value::as_str).unwrap_or_default()),
        )?,
    };
    let outputs = call
        .run(&version, tensors, wanted, call.deadline(timeout))
        .await?;
    // Plain JSON answers: tritonclient reads them even when it asked for binary outputs.
    let outputs: Vec<Value> = outputs.iter().map(|(n, t)| output_json(n, t)).collect();
    let mut answer =
        json!({"model_name": model, "model_version": version.version_id, "outputs": outputs});
    if let Some(id) = request.get("id") {
        answer["id"] = id.clone();
    }
    Ok(answer)
}
