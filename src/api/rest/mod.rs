//! REST on one port (axum): Cloud ML Engine / Vertex and TensorFlow Serving under `/v1`, KServe v2
//! under `/v2`, Prometheus metrics. Adapters only: they decode, call the serving core, encode.

mod encoding;
mod kserve;
pub mod ml_v1;
mod predict;
pub mod routes;
mod tfserving;
pub mod transport;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use super::auth::Need;
use super::deadline;
use crate::serving::InferenceService;
use crate::status::{Code, Error};
use encoding::{Compression, Inflate};

pub struct RestState {
    pub service: Arc<InferenceService>,
    pub auth: Arc<crate::api::auth::Auth>,
    /// The management API, when the server has a state dir.
    pub control: Option<Arc<crate::control::ControlPlane>>,
    pub max_body_bytes: usize,
    /// Longest wait for a request's whole body (a client that trickles it would hold its
    /// connection, and shutdown, for good).
    pub body_timeout: std::time::Duration,
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
        .route("/v1/{*rest}", any(v1))
        .fallback(unknown_path)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            gate,
        ))
        .with_state(state)
}

/// A path no API has: a JSON 404 like every other error (tritonclient reported an empty body as
/// "empty response").
async fn unknown_path(req: Request) -> Response {
    error_response(&Error::not_found(format!(
        "no endpoint {} {}",
        req.method(),
        req.uri().path()
    )))
}

/// What a route needs from its caller: nothing (health, metrics), a predict token, or the
/// management API's admin rights.
fn need_of(method: &axum::http::Method, path: &str) -> Need {
    if path == "/metrics" || path.starts_with("/monitoring/") || path.starts_with("/v2/health/") {
        return Need::Nothing;
    }
    if let Some(rest) = path.strip_prefix("/v1/") {
        let (segs, verb) = routes::split(rest);
        if ml_v1::parse(method, &segs, verb).is_some() {
            return Need::Admin;
        }
    }
    Need::Predict
}

async fn gate(State(state): State<Shared>, req: Request, next: axum::middleware::Next) -> Response {
    let need = need_of(req.method(), req.uri().path());
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::api::listener::Peer>>()
        .map(|c| c.0 .0.ip());
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let accepted = encoding::accepted(req.headers());
    let response = match state.auth.check(need, header, peer) {
        Ok(()) => next.run(req).await,
        Err(e) if need == Need::Admin => ml_v1::error_response(&e),
        Err(e) => error_response(&e),
    };
    match accepted {
        Some(compression) => encoding::compress(response, compression).await,
        None => response,
    }
}

async fn v1(State(state): State<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let (segs, verb) = routes::split(path.strip_prefix("/v1/").unwrap_or(&path));
    if let Some((project, call)) = ml_v1::parse(req.method(), &segs, verb) {
        return ml_v1::handle(&state, project, call, req).await;
    }
    match routes::parse(req.method(), req.uri().path()) {
        Ok(routes::Route::Predict {
            api,
            model,
            version,
        }) => predict::predict(&state, api, &model, &version, req).await,
        Ok(routes::Route::Status { model, version }) => {
            tfserving::status(&state.service, &model, &version)
        }
        Ok(routes::Route::Metadata { model, version }) => {
            tfserving::metadata(&state.service, &model, &version)
        }
        Ok(routes::Route::Classify { model, version }) => {
            tfserving::classify_or_regress(&state, &model, &version, true, req).await
        }
        Ok(routes::Route::Regress { model, version }) => {
            tfserving::classify_or_regress(&state, &model, &version, false, req).await
        }
        // A `projects/...` path that is no prediction is a management call this server does
        // not have: answered in the management API's envelope, which its clients parse.
        Err(e) if segs.first() == Some(&"projects") && verb != Some("predict") => {
            ml_v1::error_response(&e)
        }
        Err(e) => error_response(&e),
    }
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

fn status_code(code: Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The prediction APIs' error shape, `{"error": "..."}`, with the error's HTTP status.
pub fn error_response(e: &Error) -> Response {
    json_response(
        status_code(e.code),
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

/// A JSON answer, or the error's.
pub fn json_result(result: crate::status::Result<serde_json::Value>) -> Response {
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(&e),
    }
}

/// The request body, refused with 413 past the limit.
pub async fn read_body(state: &RestState, req: Request) -> Result<Bytes, Error> {
    let limit = state.max_body_bytes;
    let too_large = || {
        Error::new(
            Code::PayloadTooLarge,
            format!("request body is larger than the limit of {limit} bytes (--max-body-bytes)"),
        )
    };
    let compression = match req.headers().get(header::CONTENT_ENCODING) {
        None => None,
        Some(e) => Compression::of(e.as_bytes())?,
    };
    let read = axum::body::to_bytes(req.into_body(), limit);
    let bytes = tokio::time::timeout(state.body_timeout, read)
        .await
        .map_err(|_| {
            Error::new(
                Code::RequestTimeout,
                format!(
                    "the request body did not arrive whole within {} s \
                     (--header-read-timeout-seconds)",
                    state.body_timeout.as_secs()
                ),
            )
        })?
        .map_err(|e| {
            // Only the limit is the client's size; a body cut short or badly chunked is not.
            let inner = e.into_inner();
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
            while let Some(c) = cause {
                if c.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                cause = c.source();
            }
            Error::invalid(format!("the request body could not be read: {inner}"))
        })?;
    match compression {
        None => Ok(bytes),
        // The limit holds for the decoded bytes too, so a small bomb cannot grow past it.
        Some(compression) => compression.decode(&bytes, limit).map_err(|e| match e {
            Inflate::TooLarge => too_large(),
            Inflate::Corrupt(why) => Error::invalid(format!(
                "the request body is not valid {} data: {why}",
                compression.name()
            )),
        }),
    }
}

/// The timeout the request's header asks for, if any.
pub fn requested_timeout(
    headers: &axum::http::HeaderMap,
) -> Result<Option<std::time::Duration>, Error> {
    headers
        .get(deadline::REST_TIMEOUT_HEADER)
        .map(|v| deadline::parse_rest_timeout(v.as_bytes()))
        .transpose()
}

pub fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}
