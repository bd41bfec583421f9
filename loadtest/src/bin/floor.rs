//! `floor`: the HTTP floor of the serving benchmark. A minimal axum server (the same axum and
//! tokio as mlengine) that reads each POST body whole and answers a fixed census prediction:
//! no model, no JSON parsing, so its throughput is the limit of HTTP on the machine.

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
}

async fn any(method: Method, body: Bytes) -> Response {
    if method != Method::POST {
        return StatusCode::NOT_FOUND.into_response();
    }
    drop(body); // read whole by the extractor
    ([(header::CONTENT_TYPE, "application/json")], PREDICTION).into_response()
}

async fn serve(addr: SocketAddr) -> Result<()> {
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
        runtime.block_on(serve(addr))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
