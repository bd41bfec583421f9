//! The hot calls, KServe's `ModelInfer` and TF Serving's `Predict`, answered straight from the
//! HTTP/2 request: the gate's checks, the 5-byte frame, the message read in place (`infer_wire`,
//! `predict_wire`; prost's decode for what they leave), the same handlers as
//! tonic's services, one framed answer written straight from the outputs (`answer_wire`) and its
//! trailers. Every other call, and any request tonic
//! would treat differently (compressed, gRPC-Web), goes to tonic's routes.
//!
//! Why: with the model's run taken out, tonic's layers (its per-connection tower stack, router,
//! interceptor, codec and body streams) cost about 17 µs of CPU per call on the benchmark machine,
//! more than the rest of HTTP/2 (`loadtest/results/standard-clients.md`'s gRPC floors).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Either};
use hyper::body::{Frame, Incoming};
use prost::Message;
use tonic::codegen::Service;
use tonic::Status;

use super::kserve::{self, KServe};
use super::proto::inference::ModelInferRequest;
use super::proto::tensorflow::serving::PredictRequest;
use super::tfserving::{self, TfServing};
use super::{answer_wire, infer_wire, predict_wire, requested_timeout, status};
use crate::api::auth::{Auth, Need};
use crate::serving::connections::{InFlight, Streams};

const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
const PREDICT: &str = "/tensorflow.serving.PredictionService/Predict";

/// What the hot path needs: the handlers, the gate and the message size limit.
pub struct Hot {
    pub kserve: KServe,
    pub tf: TfServing,
    pub auth: Arc<Auth>,
    pub max_message_bytes: usize,
}

#[derive(Clone, Copy)]
enum Method {
    ModelInfer,
    Predict,
}

/// One connection's requests: the hot calls here, the rest to tonic's routes with the client's
/// address where tonic's interceptor looks for it. Every call is counted in `streams` until it
/// is answered, so that a hot call knows when it is the connection's only one.
#[derive(Clone)]
pub struct Dispatch {
    pub hot: Arc<Hot>,
    pub routes: tonic::service::Routes,
    pub connection: tonic::transport::server::TcpConnectInfo,
    pub streams: Arc<Streams>,
}

pub type Body = Either<Answer, tonic::body::Body>;

impl hyper::service::Service<Request<Incoming>> for Dispatch {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        // Counted here, as hyper takes the stream from the connection: every stream read with
        // this one is counted before any of them runs.
        let in_flight = self.streams.enter();
        match hot_method(&request) {
            Some(method) => {
                let hot = Arc::clone(&self.hot);
                let peer = self.connection.remote_addr;
                Box::pin(async move {
                    let response = hot.answer(method, request, peer, &in_flight).await;
                    Ok(response.map(Either::Left))
                })
            }
            None => {
                request.extensions_mut().insert(self.connection.clone());
                let mut routes = self.routes.clone();
                let future = routes.call(request);
                Box::pin(async move {
                    let response = future.await;
                    drop(in_flight);
                    Ok(response?.map(Either::Right))
                })
            }
        }
    }
}

/// The call when it is one of the hot ones, uncompressed, in gRPC's binary protobuf form.
fn hot_method(request: &Request<Incoming>) -> Option<Method> {
    if request.method() != http::Method::POST {
        return None;
    }
    let method = match request.uri().path() {
        MODEL_INFER => Method::ModelInfer,
        PREDICT => Method::Predict,
        _ => return None,
    };
    let headers = request.headers();
    let protobuf = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v == "application/grpc" || v == "application/grpc+proto");
    let identity = headers.get("grpc-encoding").is_none_or(|v| v == "identity");
    (protobuf && identity).then_some(method)
}

impl Hot {
    async fn answer(
        &self,
        method: Method,
        request: Request<Incoming>,
        peer: Option<SocketAddr>,
        in_flight: &InFlight,
    ) -> Response<Answer> {
        match self.run(method, request, peer, in_flight).await {
            Ok(framed) => {
                let mut response = Response::new(Answer::message(framed));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                response
            }
            // Trailers-only, as tonic answers a failed call.
            Err(status) => status.into_http(),
        }
    }

    async fn run(
        &self,
        method: Method,
        request: Request<Incoming>,
        peer: Option<SocketAddr>,
        in_flight: &InFlight,
    ) -> Result<Bytes, Status> {
        let arrived = Instant::now();
        let (parts, body) = request.into_parts();
        let headers = &parts.headers;
        self.auth
            .check(
                Need::Predict,
                headers.get("authorization").map(HeaderValue::as_bytes),
                peer.map(|a| a.ip()),
            )
            .map_err(|e| status(&e))?;
        let timeout = requested_timeout(
            headers
                .get(crate::api::deadline::GRPC_TIMEOUT_HEADER)
                .map(HeaderValue::as_bytes),
        );
        let message = read_message(body, self.max_message_bytes).await?;
        let decode_error = |e: prost::DecodeError| Status::internal(e.to_string());
        match method {
            Method::ModelInfer => {
                let request = match infer_wire::parse(&message) {
                    Some(request) => kserve::Received::Wire(request),
                    None => kserve::Received::Decoded(
                        ModelInferRequest::decode(message.clone()).map_err(decode_error)?,
                    ),
                };
                let i = self
                    .kserve
                    .infer_call(request, arrived, timeout, Some(in_flight.streams()))
                    .await
                    .map_err(|e| status(&e))?;
                let answer = answer_wire::Infer {
                    model_name: &i.model_name,
                    model_version: &i.model_version,
                    id: &i.id,
                    outputs: &i.outputs,
                };
                frame(&answer, self.max_message_bytes)
            }
            Method::Predict => {
                let request = match predict_wire::parse(&message) {
                    Some(request) => tfserving::Received::Wire(request),
                    None => tfserving::Received::Decoded(
                        PredictRequest::decode(message.clone()).map_err(decode_error)?,
                    ),
                };
                let p = self
                    .tf
                    .predict_call(request, arrived, timeout, Some(in_flight.streams()))
                    .await
                    .map_err(|e| status(&e))?;
                let answer = answer_wire::Predict {
                    model_name: &p.model_name,
                    version: p.version,
                    outputs: &p.outputs,
                };
                frame(&answer, self.max_message_bytes)
            }
        }
    }
}

/// The request's one message, without its 5-byte prefix. The body is read whole (a unary call's
/// client ends its stream after the message) but never beyond the size limit; the errors are
/// tonic's, word for word.
async fn read_message(mut body: Incoming, limit: usize) -> Result<Bytes, Status> {
    // Nearly every request arrives in one DATA frame, kept as it came, without a copy.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut declared: Option<usize> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::from_error(Box::new(e)))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if first.is_none() && joined.is_empty() {
            first = Some(data);
        } else {
            if let Some(first) = first.take() {
                joined.extend_from_slice(&first);
            }
            joined.extend_from_slice(&data);
        }
        let have: &[u8] = first.as_deref().unwrap_or(&joined[..]);
        if declared.is_none() && have.len() >= 5 {
            declared = Some(prefix(have, limit)?);
        }
        if let Some(len) = declared {
            if have.len() > 5 + len {
                return Err(Status::internal(
                    "protocol error: a unary request carries more than one message",
                ));
            }
        }
    }
    let whole = match first {
        Some(first) => first,
        None => joined.freeze(),
    };
    match declared {
        Some(len) if whole.len() == 5 + len => Ok(whole.slice(5..)),
        None if whole.is_empty() => Err(Status::internal("Missing request message.")),
        _ => Err(Status::internal(
            "protocol error: the request ended inside its message",
        )),
    }
}

/// The message length from a 5-byte prefix, checked as tonic checks it.
fn prefix(head: &[u8], limit: usize) -> Result<usize, Status> {
    match head[0] {
        0 => {}
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was \
                 specified",
            ))
        }
        f => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {f} (valid \
                 flags are 0 and 1), while sending request"
            )))
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    // gRPC's status code table: a message over the limit is RESOURCE_EXHAUSTED (tonic says
    // OUT_OF_RANGE; grpc-go and grpc-core, which most clients meet, say this).
    if len > limit {
        return Err(Status::resource_exhausted(format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: {limit} \
             bytes"
        )));
    }
    Ok(len)
}

/// The answer with its 5-byte prefix.
fn frame(message: &impl answer_wire::Answer, limit: usize) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    let too_large = || {
        Status::resource_exhausted(format!(
            "Error, encoded message length too large: found {len} bytes, the limit is: {limit} \
             bytes"
        ))
    };
    if len > limit {
        return Err(too_large());
    }
    let prefix = u32::try_from(len).map_err(|_| too_large())?;
    let mut framed = BytesMut::with_capacity(5 + len);
    framed.put_u8(0);
    framed.put_u32(prefix);
    message.encode(&mut framed);
    Ok(framed.freeze())
}

/// A hot call's body: the framed answer, then `grpc-status: 0`; empty when the call failed and
/// its status went in the headers.
#[derive(Default)]
pub struct Answer {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Answer {
    fn message(framed: Bytes) -> Answer {
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        Answer {
            message: Some(framed),
            trailers: Some(trailers),
        }
    }
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.message.take() {
            Some(data) => Some(Frame::data(data)),
            None => self.trailers.take().map(Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers.is_none()
    }
}
