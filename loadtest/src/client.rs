//! Connections and single requests: HTTP/1.1 keep-alive (REST) and HTTP/2 with hand-framed gRPC
//! (the bodies are encoded once, before the run), both on hyper's low-level client.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Cloudml,
    Tfserving,
    Kserve,
    /// KServe v2 JSON with every input shaped [N, 1] (models with a trailing feature dimension).
    #[value(name = "kserve-2d")]
    Kserve2d,
    GrpcKserve,
    #[value(name = "grpc-kserve-2d")]
    GrpcKserve2d,
    GrpcTfserving,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Cloudml => "cloudml",
            Protocol::Tfserving => "tfserving",
            Protocol::Kserve => "kserve",
            Protocol::Kserve2d => "kserve-2d",
            Protocol::GrpcKserve => "grpc-kserve",
            Protocol::GrpcKserve2d => "grpc-kserve-2d",
            Protocol::GrpcTfserving => "grpc-tfserving",
        }
    }
    pub fn is_grpc(self) -> bool {
        matches!(
            self,
            Protocol::GrpcKserve | Protocol::GrpcKserve2d | Protocol::GrpcTfserving
        )
    }
    pub fn default_path(self, model: &str) -> String {
        match self {
            Protocol::Cloudml => format!("/v1/projects/p/models/{model}:predict"),
            Protocol::Tfserving => format!("/v1/models/{model}:predict"),
            Protocol::Kserve | Protocol::Kserve2d => format!("/v2/models/{model}/infer"),
            Protocol::GrpcKserve | Protocol::GrpcKserve2d => {
                "/inference.GRPCInferenceService/ModelInfer".into()
            }
            Protocol::GrpcTfserving => "/tensorflow.serving.PredictionService/Predict".into(),
        }
    }
}

/// Where and how requests go.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub grpc: bool,
    /// Origin-form path for HTTP/1.1; absolute URI for HTTP/2.
    pub uri: Uri,
    pub host: HeaderValue,
}

/// Parses `http://HOST:PORT[/...]` (or `HOST:PORT`) into a socket address and a Host header.
pub fn parse_target(target: &str) -> Result<(SocketAddr, String)> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("grpc://"))
        .unwrap_or(target);
    if target.starts_with("https://") {
        bail!("--target {target}: TLS is not supported");
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.replace("localhost", "127.0.0.1");
    use std::net::ToSocketAddrs;
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("--target {target}: not a HOST:PORT address"))?
        .next()
        .ok_or_else(|| anyhow!("--target {target}: no address"))?;
    Ok((addr, authority.to_string()))
}

impl Target {
    pub fn new(target: &str, protocol: Protocol, path: &str) -> Result<Target> {
        let (addr, authority) = parse_target(target)?;
        let uri: Uri = if protocol.is_grpc() {
            format!("http://{authority}{path}").parse()
        } else {
            path.parse()
        }
        .with_context(|| format!("invalid request path '{path}'"))?;
        let host = HeaderValue::from_str(&authority)
            .with_context(|| format!("--target {target}: invalid host"))?;
        Ok(Target {
            addr,
            grpc: protocol.is_grpc(),
            uri,
            host,
        })
    }
}

pub enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

async fn tcp(addr: SocketAddr) -> Result<TokioIo<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(TokioIo::new(stream))
}

pub async fn connect(target: &Target) -> Result<Conn> {
    let io = tcp(target.addr).await?;
    if target.grpc {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn::H1(sender))
    }
}

/// What one request came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// HTTP 429 or gRPC RESOURCE_EXHAUSTED.
    Rejected,
    /// Any other answer, e.g. `http 500`, `grpc 14 UNAVAILABLE`, `empty body`.
    Failed(String),
    /// No answer: the connection must be replaced.
    Transport(String),
}

pub fn grpc_code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("?")
}

fn grpc_status(headers: &hyper::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn transport(e: impl std::fmt::Display) -> Outcome {
    Outcome::Transport(short_error(&e.to_string()))
}

/// A stable, short key for an error message (no addresses or numbers that vary).
fn short_error(message: &str) -> String {
    let m = message.to_ascii_lowercase();
    for key in [
        "connection refused",
        "connection reset",
        "broken pipe",
        "connection closed",
        "incomplete message",
        "timed out",
    ] {
        if m.contains(key) {
            return key.to_string();
        }
    }
    message.chars().take(60).collect()
}

impl Conn {
    /// Waits until the connection can take a request; false if it is gone.
    async fn ready(&mut self) -> bool {
        match self {
            Conn::H1(s) => s.ready().await.is_ok(),
            Conn::H2(s) => s.ready().await.is_ok(),
        }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, target: &Target, body: Bytes) -> Outcome {
        if !self.ready().await {
            return Outcome::Transport("connection closed".into());
        }
        match self {
            Conn::H1(sender) => {
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(target.uri.clone())
                    .header(HOST, target.host.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(Full::new(body));
                let request = match request {
                    Ok(r) => r,
                    Err(e) => return Outcome::Failed(format!("request: {e}")),
                };
                let response = match sender.send_request(request).await {
                    Ok(r) => r,
                    Err(e) => return transport(e),
                };
                let status = response.status();
                let mut body = response.into_body();
                let mut bytes = 0usize;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => bytes += f.data_ref().map_or(0, |d| d.len()),
                        Err(e) => return transport(e),
                    }
                }
                if status == StatusCode::OK {
                    if bytes > 0 {
                        Outcome::Ok
                    } else {
                        Outcome::Failed("empty body".into())
                    }
                } else if status == StatusCode::TOO_MANY_REQUESTS {
                    Outcome::Rejected
                } else {
                    Outcome::Failed(format!("http {}", status.as_u16()))
                }
            }
            Conn::H2(sender) => {
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(target.uri.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/grpc"))
                    .header("te", HeaderValue::from_static("trailers"))
                    .body(Full::new(body));
                let request = match request {
                    Ok(r) => r,
                    Err(e) => return Outcome::Failed(format!("request: {e}")),
                };
                let response = match sender.send_request(request).await {
                    Ok(r) => r,
                    Err(e) => return transport(e),
                };
                let status = response.status();
                let mut code = grpc_status(response.headers());
                let mut body = response.into_body();
                let mut bytes = 0usize;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => match f.into_data() {
                            Ok(d) => bytes += d.len(),
                            Err(f) => {
                                if let Some(t) = f.trailers_ref() {
                                    code = grpc_status(t).or(code);
                                }
                            }
                        },
                        Err(e) => return transport(e),
                    }
                }
                if status != StatusCode::OK {
                    return Outcome::Failed(format!("http {}", status.as_u16()));
                }
                match code {
                    Some(0) if bytes > 5 => Outcome::Ok,
                    Some(0) => Outcome::Failed("empty body".into()),
                    Some(8) => Outcome::Rejected,
                    Some(c) => Outcome::Failed(format!("grpc {c} {}", grpc_code_name(c))),
                    None => Outcome::Failed("grpc no status".into()),
                }
            }
        }
    }
}

/// One GET on a fresh connection; the HTTP status, or an error if there was no answer.
pub async fn get_status(addr: SocketAddr, host: &HeaderValue, path: &Uri) -> Result<u16> {
    let io = tcp(addr).await?;
    let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(io).await?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::builder()
        .method(Method::GET)
        .uri(path.clone())
        .header(HOST, host.clone())
        .header("connection", "close")
        .body(Full::new(Bytes::new()))?;
    let response = tokio::time::timeout(Duration::from_secs(2), sender.send_request(request))
        .await
        .map_err(|_| anyhow!("timed out"))??;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    task.abort();
    Ok(status)
}

/// One GET of `target`'s path on a fresh connection; the body of a 200 answer.
pub async fn get_text(target: &Target) -> Result<String> {
    let io = tcp(target.addr).await?;
    let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(io).await?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::builder()
        .method(Method::GET)
        .uri(target.uri.clone())
        .header(HOST, target.host.clone())
        .header("connection", "close")
        .body(Full::new(Bytes::new()))?;
    let response = tokio::time::timeout(Duration::from_secs(2), sender.send_request(request))
        .await
        .map_err(|_| anyhow!("timed out"))??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    task.abort();
    if status != StatusCode::OK {
        bail!("http {}", status.as_u16());
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t =
            Target::new("http://127.0.0.1:8080", Protocol::Cloudml, "/v1/x:predict").expect("t");
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.uri.to_string(), "/v1/x:predict");
        assert!(!t.grpc);
        let t = Target::new(
            "localhost:8500",
            Protocol::GrpcKserve,
            &Protocol::GrpcKserve.default_path("census"),
        )
        .expect("t");
        assert_eq!(
            t.uri.to_string(),
            "http://localhost:8500/inference.GRPCInferenceService/ModelInfer"
        );
        assert!(Target::new("https://x:1", Protocol::Cloudml, "/").is_err());
        assert!(Target::new("nonsense", Protocol::Cloudml, "/").is_err());
    }

    #[test]
    fn error_keys_are_short() {
        assert_eq!(
            short_error("Connection refused (os error 111)"),
            "connection refused"
        );
        assert_eq!(grpc_code_name(8), "RESOURCE_EXHAUSTED");
        assert_eq!(grpc_code_name(99), "?");
    }
}
