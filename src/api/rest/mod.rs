//! REST on one port (axum): Cloud ML Engine / Vertex and TensorFlow Serving under `/v1`, KServe v2
//! under `/v2`, Prometheus metrics.

mod kserve;

pub use kserve::datatype;
mod v1;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use crate::inference::deadline;
use crate::inference::error::{ErrorKind, InferenceError};
use crate::inference::service::InferenceService;

pub struct RestState {
    pub service: Arc<InferenceService>,
    pub max_body_bytes: usize,
    /// False while starting and once shutdown begins.
    pub accepting: AtomicBool,
}

impl RestState {
    pub fn ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire) && self.service.registry.is_ready()
    }
}

pub type Shared = Arc<RestState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/monitoring/prometheus/metrics", get(metrics))
        .route("/v2", get(kserve::server_metadata))
        .route("/v2/health/live", get(kserve::live))
        .route("/v2/health/ready", get(kserve::ready))
        .route("/v2/models/{*rest}", any(kserve::models))
        .route("/v1/{*rest}", any(v1::dispatch))
        .with_state(state)
}

async fn metrics(State(state): State<Shared>) -> Response {
    state.service.sync_scrape_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.service.metrics.render(),
    )
        .into_response()
}

/// `{"error": "..."}` with the error's HTTP status.
pub fn error_response(e: &InferenceError) -> Response {
    json_response(
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &serde_json::json!({ "error": e.message }),
    )
}

/// A response of JSON text already encoded.
pub fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The request body, refused with 413 past the limit.
pub async fn read_body(state: &RestState, req: Request) -> Result<Bytes, InferenceError> {
    let limit = state.max_body_bytes;
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            InferenceError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "request body is larger than the limit of {limit} bytes (--max-body-bytes)"
                ),
            )
        })
}

/// The timeout the request's header asks for, if any.
pub fn requested_timeout(
    headers: &axum::http::HeaderMap,
) -> Result<Option<std::time::Duration>, InferenceError> {
    headers
        .get(deadline::REST_TIMEOUT_HEADER)
        .map(|v| deadline::parse_rest_timeout(v.as_bytes()))
        .transpose()
}

/// Parses a JSON body (NaN and Infinity tokens allowed); the error names the position.
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, InferenceError> {
    crate::inference::json_rows::parse_body(body)
}

/// Records one answered request.
pub fn record(
    state: &RestState,
    model: &str,
    version: &str,
    api: &str,
    status: u16,
    start: Instant,
) {
    state
        .service
        .metrics
        .record_request(model, version, api, "rest", status, start);
}

pub fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}
