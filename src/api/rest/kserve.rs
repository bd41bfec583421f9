//! KServe v2 / Open Inference Protocol over REST (JSON tensors).

use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{
    empty, error_response, json_response, parse_json, read_body, record, requested_timeout, Shared,
};
use crate::inference::binary;
use crate::inference::error::{InferenceError, InferenceResult};
use crate::inference::json_rows::{append, element};
use crate::inference::tensor::{DType, Tensor, TensorData};
use crate::repository::registry::VersionSelector;

pub fn datatype(d: DType) -> &'static str {
    match d {
        DType::Bool => "BOOL",
        DType::U8 => "UINT8",
        DType::U16 => "UINT16",
        DType::U32 => "UINT32",
        DType::U64 => "UINT64",
        DType::I8 => "INT8",
        DType::I16 => "INT16",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::F32 => "FP32",
        DType::F64 => "FP64",
        DType::String => "BYTES",
    }
}

pub async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"name": "mlengine", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}),
    )
}

pub async fn live() -> Response {
    empty(StatusCode::OK)
}

pub async fn ready(State(state): State<Shared>) -> Response {
    empty(if state.ready() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
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
        [m, "versions", v, tail @ ..] => (
            m.to_string(),
            VersionSelector::parse(Some(v)),
            tail.to_vec(),
        ),
        [m, tail @ ..] => (m.to_string(), VersionSelector::Latest, tail.to_vec()),
        [] => return error_response(&InferenceError::not_found("no model named")),
    };
    let method = req.method().clone();
    match (tail.as_slice(), method) {
        ([], Method::GET) => match model_metadata(&state, &model, &version) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => error_response(&e),
        },
        (["ready"], Method::GET) => {
            let ok = state.accepting.load(std::sync::atomic::Ordering::Acquire)
                && state.service.resolve(&model, &version).is_ok();
            empty(if ok {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            })
        }
        (["infer"], Method::POST) => {
            let start = Instant::now();
            let (result, served) = infer(&state, &model, &version, req, start).await;
            let status = result
                .as_ref()
                .map_or_else(|e| e.kind.http_status(), |_| 200);
            record(
                &state,
                &model,
                served.as_deref().unwrap_or(""),
                "kserve",
                status,
                start,
            );
            match result {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(e) => error_response(&e),
            }
        }
        _ => error_response(&InferenceError::not_found(format!(
            "no such endpoint: /v2/models/{rest}"
        ))),
    }
}

fn model_metadata(
    state: &Shared,
    model: &str,
    selector: &VersionSelector,
) -> InferenceResult<Value> {
    let served = state.service.registry.model(model)?;
    let version = served.resolve(selector)?;
    let tensors = |specs: &[crate::inference::TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| json!({"name": s.name, "datatype": datatype(s.dtype), "shape": s.shape}))
            .collect()
    };
    let versions: Vec<String> = served.served().keys().map(u64::to_string).collect();
    Ok(json!({
        "name": model,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": tensors(&version.signature().inputs),
        "outputs": tensors(&version.signature().outputs),
    }))
}

async fn infer(
    state: &Shared,
    model: &str,
    selector: &VersionSelector,
    req: Request,
    start: Instant,
) -> (InferenceResult<Value>, Option<String>) {
    let version = match state.service.resolve(model, selector) {
        Ok(v) => v,
        Err(e) => return (Err(e), None),
    };
    let served = Some(version.version_string.clone());
    let result = async {
        let header_len = match req.headers().get("inference-header-content-length") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .ok_or_else(|| InferenceError::invalid("Inference-Header-Content-Length is not a byte count"))?,
            ),
        };
        let header_timeout = requested_timeout(req.headers())?;
        let body = read_body(state, req).await?;
        let (json_part, binary) = match header_len {
            None => (&body[..], &body[..0]),
            Some(n) if n <= body.len() => body.split_at(n),
            Some(n) => {
                return Err(InferenceError::invalid(format!(
                    "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                    body.len()
                )))
            }
        };
        let request = parse_json(json_part)?;
        let signature = version.signature();
        let inputs = request
            .get("inputs")
            .and_then(Value::as_array)
            .ok_or_else(|| InferenceError::invalid("missing 'inputs' list in request body"))?;
        let mut tensors: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
        let mut offset = 0usize;
        for (i, input) in inputs.iter().enumerate() {
            let name = input
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| InferenceError::invalid(format!("inputs[{i}]: missing 'name'")))?;
            let (index, spec) = signature
                .input(name)
                .ok_or_else(|| InferenceError::invalid(format!("inputs[{i}]: unknown input '{name}'")))?;
            let dt = input.get("datatype").and_then(Value::as_str).unwrap_or_default();
            if dt != datatype(spec.dtype) {
                return Err(InferenceError::invalid(format!(
                    "input '{name}': datatype {dt:?} does not match the model's {}",
                    datatype(spec.dtype)
                )));
            }
            let shape: Vec<usize> = input
                .get("shape")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| InferenceError::invalid(format!("input '{name}': 'shape' must be a list of sizes")))?;
            spec.check_shape(&shape)?;
            let count: usize = shape.iter().product();
            let binary_size = input
                .get("parameters")
                .and_then(|p| p.get("binary_data_size"))
                .map(|v| v.as_u64().map(|n| n as usize));
            let data = match binary_size {
                Some(Some(size)) => {
                    let Some(bytes) = binary.get(offset..offset + size) else {
                        return Err(InferenceError::invalid(format!(
                            "input '{name}': binary_data_size {size} runs past the end of the binary data"
                        )));
                    };
                    offset += size;
                    binary::decode(spec.dtype, bytes, count, &format!("input '{name}'"))?
                }
                Some(None) => {
                    return Err(InferenceError::invalid(format!(
                        "input '{name}': binary_data_size must be a byte count"
                    )))
                }
                None => {
                    let data = input
                        .get("data")
                        .ok_or_else(|| InferenceError::invalid(format!("input '{name}': missing 'data'")))?;
                    json_data(name, spec.dtype, data, count)?
                }
            };
            tensors[index] = Some(Tensor::new(shape, data));
        }
        if offset != binary.len() {
            return Err(InferenceError::invalid(format!(
                "{} bytes of binary data are not claimed by any input",
                binary.len() - offset
            )));
        }
        // Triton's request parameter `timeout` (microseconds) when no header set one.
        let timeout = match (header_timeout, request.pointer("/parameters/timeout")) {
            (Some(t), _) => Some(t),
            (None, Some(t)) => Some(std::time::Duration::from_micros(t.as_u64().ok_or_else(
                || InferenceError::invalid("parameters.timeout must be a whole number of microseconds"),
            )?)),
            (None, None) => None,
        };
        let deadline = state.service.deadline(start, timeout);
        let inputs = signature.ordered_inputs(tensors)?;
        let wanted = match request.get("outputs").and_then(Value::as_array) {
            None => vec![],
            Some(list) => signature.output_indices(
                list.iter().map(|o| o.get("name").and_then(Value::as_str).unwrap_or_default()),
            )?,
        };
        let outputs = state.service.run(&version, inputs, wanted, deadline).await?;
        // Plain JSON answers: tritonclient reads them even when it asked for binary outputs.
        let outputs: Vec<Value> = outputs
            .iter()
            .map(|(n, t)| {
                let data: Vec<Value> = (0..t.data.len()).map(|i| element(&t.data, i)).collect();
                json!({"name": n, "datatype": datatype(t.dtype()), "shape": t.shape, "data": data})
            })
            .collect();
        let mut answer = json!({"model_name": model, "model_version": version.version_string, "outputs": outputs});
        if let Some(id) = request.get("id") {
            answer["id"] = id.clone();
        }
        Ok(answer)
    }
    .await;
    (result, served)
}

/// A JSON `data` array (flat or nested, row-major) as `count` elements.
fn json_data(name: &str, dtype: DType, data: &Value, count: usize) -> InferenceResult<TensorData> {
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != count {
        return Err(InferenceError::invalid(format!(
            "input '{name}': its shape needs {count} values, 'data' has {}",
            flat.len()
        )));
    }
    let mut out = TensorData::with_capacity(dtype, count);
    for (i, v) in flat.into_iter().enumerate() {
        append(v, &mut out)
            .map_err(|e| InferenceError::invalid(format!("input '{name}': element {i}: {e}")))?;
    }
    Ok(out)
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}
