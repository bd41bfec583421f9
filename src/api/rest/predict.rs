//! `:predict` under `/v1` for Cloud ML Engine, Vertex and TF Serving: one decode, run and encode
//! path; the API only decides the answer's shape.

use std::time::Instant;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::routes::Api;
use super::{error_response, json_bytes_response, read_body, requested_timeout, Shared};
use crate::codec::columnar;
use crate::codec::instances::{decode_predict_body, Layout};
use crate::codec::predictions::{write_bare_rows, write_predictions};
use crate::repository::VersionSelector;
use crate::status::Result;
use crate::tensor::Outputs;

pub async fn predict(
    state: &Shared,
    api: Api,
    model: &str,
    selector: &VersionSelector,
    req: Request,
) -> Response {
    let mut call = state.service.call(api.name(), "rest", Instant::now());
    let result = async {
        let version = match api {
            Api::Vertex => call.resolve_endpoint(model, selector)?,
            _ => call.resolve(model, selector)?,
        };
        let deadline = call.deadline(requested_timeout(req.headers())?);
        // Vertex names the model behind the endpoint: here the endpoint's own model.
        let vertex_model = (api == Api::Vertex).then(|| {
            let path = req.uri().path();
            let name = path.strip_prefix("/v1/").unwrap_or(path);
            let name = name.rsplit_once(':').map_or(name, |(n, _)| n);
            name.replacen("/endpoints/", "/models/", 1)
        });
        let body = read_body(state, req).await?;
        let (inputs, layout) = decode_predict_body(version.signature(), &body)?;
        let rows = crate::tensor::batch_size(&inputs)?;
        let outputs = call.run(&version, inputs, vec![], deadline).await?;
        let served = Served {
            rows,
            model,
            version: &version.version_id,
            vertex_model: vertex_model.as_deref(),
        };
        answer(api, layout, &served, &outputs)
    }
    .await;
    call.finish(&result);
    match result {
        Ok(body) => json_bytes_response(StatusCode::OK, body),
        Err(e) => error_response(&e),
    }
}

/// What answered, for the answers that say it (Vertex's).
struct Served<'a> {
    /// The instances asked about: each output has a row for each.
    rows: usize,
    model: &'a str,
    version: &'a str,
    vertex_model: Option<&'a str>,
}

fn answer(api: Api, layout: Layout, served: &Served, outputs: &Outputs) -> Result<Vec<u8>> {
    if layout == Layout::Columns {
        return Ok(columnar::write_answer(outputs));
    }
    let [(name, tensor)] = outputs.as_slice() else {
        return predictions_body(api, served, outputs);
    };
    if api != Api::TfServing {
        return predictions_body(api, served, outputs);
    }
    // TF Serving answers a single-output model's rows as bare values.
    let mut out = b"{\"predictions\":[".to_vec();
    write_bare_rows(name, tensor, served.rows, &mut out)?;
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// `{"predictions": [...]}` (and Vertex's `deployedModelId`, `model`, `modelDisplayName` and
/// `modelVersionId`), written without JSON values.
fn predictions_body(api: Api, served: &Served, outputs: &Outputs) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + 96 * outputs.first().map_or(0, |(_, t)| t.rows()));
    out.extend_from_slice(b"{\"predictions\":[");
    if write_predictions(outputs, served.rows, b",", &mut out)? > 0 {
        out.pop();
    }
    out.push(b']');
    if api == Api::Vertex {
        let fields = [
            ("deployedModelId", Some(served.version)),
            ("model", served.vertex_model),
            ("modelDisplayName", Some(served.model)),
            ("modelVersionId", Some(served.version)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                out.extend_from_slice(format!(",\"{key}\":").as_bytes());
                out.extend_from_slice(Value::from(value).to_string().as_bytes());
            }
        }
    }
    out.push(b'}');
    Ok(out)
}
