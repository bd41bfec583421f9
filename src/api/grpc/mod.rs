//! gRPC on one port: TensorFlow Serving's PredictionService and ModelService, KServe v2's
//! GRPCInferenceService, `grpc.health.v1.Health` and server reflection. Adapters only: decoding
//! and encoding around the same serving core as REST.
//!
//! A call's path: `transport` (HTTP/2 connections, TLS, drain) → `unary::Dispatch`, which
//! answers the hot calls itself (`unary`, their requests read in place by `infer_wire` and
//! `predict_wire`, their answers written by `answer_wire`) and hands the rest to tonic's
//! generated services (`kserve`, `tfserving`, health, reflection). Both paths end in the same
//! handlers.

mod answer_wire;
pub mod infer_wire;
pub mod kserve;
pub use crate::proto;
pub mod predict_wire;
mod tensor_proto;
pub mod tfserving;
pub mod transport;
mod unary;
mod wire;

use std::sync::Arc;
use tonic::codec::CompressionEncoding;

use crate::serving::InferenceService;
use crate::status::Error;

/// The shared error table's gRPC code and the same message as REST.
pub fn status(e: &Error) -> tonic::Status {
    tonic::Status::new(tonic::Code::from_i32(e.code.grpc_code()), e.message.clone())
}

/// When a call arrived, stamped before its message is read and decoded.
#[derive(Clone, Copy)]
struct Arrival(std::time::Instant);

/// Every call of the prediction services passes here: it is let in (a bearer token when the
/// server requires one) and stamped with its arrival.
#[derive(Clone)]
struct Gate {
    auth: Arc<crate::api::auth::Auth>,
}

impl tonic::service::Interceptor for Gate {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let arrived = std::time::Instant::now();
        let peer = request.remote_addr().map(|a| a.ip());
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes().to_vec());
        self.auth
            .check(crate::api::auth::Need::Predict, header.as_deref(), peer)
            .map_err(|e| status(&e))?;
        request.extensions_mut().insert(Arrival(arrived));
        Ok(request)
    }
}

/// When a call arrived (stamped by the interceptor), else now.
fn arrival<T>(request: &tonic::Request<T>) -> std::time::Instant {
    request
        .extensions()
        .get::<Arrival>()
        .map_or_else(std::time::Instant::now, |a| a.0)
}

/// A call's `grpc-timeout` header as the inference core's timeout.
///
/// The client's own deadline expires at the same moment and it then gives up on the call; a
/// deadline a millisecond (tokio's timer tick) earlier lets the server answer DEADLINE_EXCEEDED,
/// as gRPC specifies, first.
fn requested_timeout(header: Option<&[u8]>) -> Result<Option<std::time::Duration>, Error> {
    Ok(header
        .map(crate::api::deadline::parse_grpc_timeout)
        .transpose()?
        .map(|t| t.saturating_sub(std::time::Duration::from_millis(1))))
}

/// The `grpc-timeout` of a call that came through tonic.
fn tonic_timeout<T>(request: &tonic::Request<T>) -> Result<Option<std::time::Duration>, Error> {
    requested_timeout(
        request
            .metadata()
            .get(crate::api::deadline::GRPC_TIMEOUT_HEADER)
            .map(|v| v.as_bytes()),
    )
}

/// Service names reported by the health service besides the overall status "".
pub const SERVICES: [&str; 3] = [
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "inference.GRPCInferenceService",
];

/// Every gRPC service: the hot calls' path, tonic's routes for the rest, and the health
/// reporter that follows readiness.
pub fn services(
    service: Arc<InferenceService>,
    max_message_bytes: usize,
    auth: Arc<crate::api::auth::Auth>,
) -> anyhow::Result<(transport::Services, tonic_health::server::HealthReporter)> {
    use proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
    use proto::tensorflow::serving::model_service_server::ModelServiceServer;
    use proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;

    let (reporter, health) = tonic_health::server::health_reporter();
    // Both reflection versions: grpcurl and older tools ask v1alpha, newer ones v1.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let tf = tfserving::TfServing {
        service: Arc::clone(&service),
    };
    let kserve = kserve::KServe {
        service: Arc::clone(&service),
    };
    let gate = Gate {
        auth: Arc::clone(&auth),
    };
    let routes = tonic::service::Routes::new(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            PredictionServiceServer::new(tf.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Deflate)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            gate.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            ModelServiceServer::new(tf.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Deflate)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            gate.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            GrpcInferenceServiceServer::new(kserve)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Deflate)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            gate,
        ))
        .prepare();
    let hot = unary::Hot {
        kserve: kserve::KServe { service },
        tf,
        auth,
        max_message_bytes,
    };
    Ok((
        transport::Services {
            hot: Arc::new(hot),
            routes,
        },
        reporter,
    ))
}

/// Sets the overall and per-service health status.
pub async fn set_health(reporter: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    for name in SERVICES {
        reporter.set_service_status(name, status).await;
    }
}
