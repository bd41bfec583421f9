//! `floor`: the HTTP floor of the serving benchmark. A minimal axum server (the same axum and
//! tokio as mlengine) that reads each POST body whole and answers a fixed census prediction:
//! no model, no JSON parsing, so its throughput is the limit of HTTP on the machine.
//!
//! With `--grpc-port`, also a gRPC floor for KServe's `ModelInfer`, on one of three stacks: tonic
//! (the generated service, the message decoded by prost, a fixed answer encoded), hyper's HTTP/2
//! alone (mlengine's hot path: the body read whole, a prebuilt framed answer and its trailers), or
//! h2 without hyper (the same, with one task per connection answering its streams instead of
//! hyper's task per stream). They tell how much of mlengine's gRPC cost is HTTP/2 itself, how
//! much tonic's layers add, and what driving h2 directly would save.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;

const PREDICTION: &str = r#"{"predictions":[{"probabilities":[0.9994850158691406,0.0005150139331817627],"logits":[-7.570843696594238],"classes":0,"logistic":[0.0005150139331817627]}]}"#;

#[derive(Parser)]
#[command(
    name = "floor",
    about = "Minimal HTTP server answering a fixed census prediction"
)]
struct Cli {
    /// 0 picks a free port (printed)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Tokio worker threads (mlengine's --http-threads defaults to 1)
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Also serve the gRPC floor on this port (0 picks a free port, printed)
    #[arg(long)]
    grpc_port: Option<u16>,
    /// The gRPC floor's stack
    #[arg(long, value_enum, default_value_t = GrpcStack::Tonic)]
    grpc_stack: GrpcStack,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GrpcStack {
    Tonic,
    Hyper,
    H2,
}

async fn any(method: Method, body: Bytes) -> Response {
    if method != Method::POST {
        return StatusCode::NOT_FOUND.into_response();
    }
    drop(body); // read whole by the extractor
    ([(header::CONTENT_TYPE, "application/json")], PREDICTION).into_response()
}

async fn serve(addr: SocketAddr, grpc: Option<(SocketAddr, GrpcStack)>) -> Result<()> {
    if let Some((addr, stack)) = grpc {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        {
            use std::io::Write;
            let mut out = std::io::stdout();
            let _ = writeln!(out, "gRPC listening on {}", listener.local_addr()?);
            let _ = out.flush();
        }
        tokio::spawn(async move {
            let served = match stack {
                GrpcStack::Tonic => grpc_floor::tonic(listener).await,
                GrpcStack::Hyper => grpc_floor::hyper(listener).await,
                GrpcStack::H2 => grpc_floor::h2(listener).await,
            };
            if let Err(e) = served {
                eprintln!("error: gRPC floor: {e:#}");
                std::process::exit(1);
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "REST listening on {bound}");
        let _ = out.flush();
    }
    let app = Router::new()
        .route("/v2/health/ready", get(|| async { StatusCode::OK }))
        .fallback(any);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("server failed")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let run = || -> Result<()> {
        let addr: SocketAddr = format!("{}:{}", cli.host, cli.port)
            .parse()
            .with_context(|| format!("invalid --host {}", cli.host))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads.max(1))
            .enable_all()
            .build()?;
        let grpc = cli
            .grpc_port
            .map(|port| (SocketAddr::new(addr.ip(), port), cli.grpc_stack));
        runtime.block_on(serve(addr, grpc))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

mod grpc_floor {
    use anyhow::Result;
    use bytes::Bytes;
    use mlengine_loadtest::proto::inference::grpc_inference_service_server::{
        GrpcInferenceService, GrpcInferenceServiceServer,
    };
    use mlengine_loadtest::proto::inference::model_infer_response::InferOutputTensor;
    use mlengine_loadtest::proto::inference::*;
    use tonic::{Request, Response, Status};

    /// The census model's answer to one instance, as mlengine sends it (raw little-endian
    /// contents, one entry per output).
    fn answer() -> ModelInferResponse {
        let output = |name: &str, datatype: &str, shape: &[i64]| InferOutputTensor {
            name: name.to_string(),
            datatype: datatype.to_string(),
            shape: shape.to_vec(),
            ..Default::default()
        };
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        ModelInferResponse {
            model_name: "census".to_string(),
            model_version: "1".to_string(),
            outputs: vec![
                output("probabilities", "FP32", &[1, 2]),
                output("logits", "FP32", &[1, 1]),
                output("classes", "INT64", &[1]),
                output("logistic", "FP32", &[1, 1]),
            ],
            raw_output_contents: vec![
                f32s(&[0.999_485, 0.000_515]),
                f32s(&[-7.570_843]),
                0i64.to_le_bytes().to_vec(),
                f32s(&[0.000_515]),
            ],
            ..Default::default()
        }
    }

    struct Floor(ModelInferResponse);

    #[tonic::async_trait]
    impl GrpcInferenceService for Floor {
        async fn server_live(
            &self,
            _: Request<ServerLiveRequest>,
        ) -> Result<Response<ServerLiveResponse>, Status> {
            Ok(Response::new(ServerLiveResponse { live: true }))
        }
        async fn server_ready(
            &self,
            _: Request<ServerReadyRequest>,
        ) -> Result<Response<ServerReadyResponse>, Status> {
            Ok(Response::new(ServerReadyResponse { ready: true }))
        }
        async fn model_ready(
            &self,
            _: Request<ModelReadyRequest>,
        ) -> Result<Response<ModelReadyResponse>, Status> {
            Ok(Response::new(ModelReadyResponse { ready: true }))
        }
        async fn server_metadata(
            &self,
            _: Request<ServerMetadataRequest>,
        ) -> Result<Response<ServerMetadataResponse>, Status> {
            Err(Status::unimplemented("the floor has no metadata"))
        }
        async fn model_metadata(
            &self,
            _: Request<ModelMetadataRequest>,
        ) -> Result<Response<ModelMetadataResponse>, Status> {
            Err(Status::unimplemented("the floor has no metadata"))
        }
        async fn model_infer(
            &self,
            _: Request<ModelInferRequest>,
        ) -> Result<Response<ModelInferResponse>, Status> {
            Ok(Response::new(self.0.clone()))
        }
    }

    /// tonic as mlengine runs it: one router, nodelay.
    pub async fn tonic(listener: tokio::net::TcpListener) -> Result<()> {
        tonic::transport::Server::builder()
            .add_service(GrpcInferenceServiceServer::new(Floor(answer())))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await?;
        Ok(())
    }

    /// The answer as a gRPC message on the wire: its 5-byte prefix, then the encoded message.
    fn framed_answer() -> Result<Bytes> {
        use prost::Message;
        let message = answer().encode_to_vec();
        let mut framed = Vec::with_capacity(5 + message.len());
        framed.push(0);
        framed.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
        framed.extend_from_slice(&message);
        Ok(Bytes::from(framed))
    }

    /// hyper's HTTP/2 server with nothing above it: every POST body is read whole and answered
    /// with the same framed message and `grpc-status: 0`.
    pub async fn hyper(listener: tokio::net::TcpListener) -> Result<()> {
        use http_body_util::BodyExt;
        let framed = framed_answer()?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let framed = framed.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let framed = framed.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            let mut trailers = hyper::HeaderMap::new();
                            trailers.insert(
                                "grpc-status",
                                hyper::header::HeaderValue::from_static("0"),
                            );
                            let body = Frames(Some(framed), Some(trailers));
                            hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                        }
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    }

    /// h2 without hyper: one task per connection accepts its streams and answers them itself
    /// (no task per stream), every POST body read whole and answered as `hyper` does.
    pub async fn h2(listener: tokio::net::TcpListener) -> Result<()> {
        use futures::StreamExt;
        let framed = framed_answer()?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let framed = framed.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = ::h2::server::handshake(stream).await else {
                    return;
                };
                let mut calls = futures::stream::FuturesUnordered::new();
                loop {
                    tokio::select! {
                        accepted = connection.accept() => match accepted {
                            Some(Ok((request, respond))) => {
                                calls.push(call(request, respond, framed.clone()))
                            }
                            _ => break,
                        },
                        Some(()) = calls.next(), if !calls.is_empty() => {
                            // Every call done by now before the connection is polled again,
                            // so that their answers go out in one write.
                            while let Some(Some(())) =
                                futures::FutureExt::now_or_never(calls.next())
                            {}
                        }
                    }
                }
            });
        }
    }

    async fn call(
        request: http::Request<::h2::RecvStream>,
        mut respond: ::h2::server::SendResponse<Bytes>,
        framed: Bytes,
    ) {
        let mut body = request.into_body();
        while let Some(chunk) = body.data().await {
            let Ok(chunk) = chunk else { return };
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let mut response = http::Response::new(());
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        let Ok(mut send) = respond.send_response(response, false) else {
            return;
        };
        let _ = send.send_data(framed, false);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let _ = send.send_trailers(trailers);
    }

    /// One data frame, then the trailers.
    struct Frames(Option<Bytes>, Option<hyper::HeaderMap>);

    impl hyper::body::Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            let frame = match self.0.take() {
                Some(data) => Some(hyper::body::Frame::data(data)),
                None => self.1.take().map(hyper::body::Frame::trailers),
            };
            std::task::Poll::Ready(frame.map(Ok))
        }
    }
}
