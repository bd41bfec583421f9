//! gRPC's HTTP/2 server: accepts connections (plain, or TLS with ALPN `h2`), serves each with
//! hyper's HTTP/2 and [`unary::Dispatch`](super::unary::Dispatch), and drains on shutdown (no
//! new connections, a GOAWAY on each open one, then waits for their calls to finish).
//!
//! Our own rather than tonic's `transport::Server`, so that the hot calls reach the serving core
//! without tonic's per-call tower stack; the connection settings are the ones tonic used.

use std::future::Future;
use std::sync::Arc;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::unary::{Dispatch, Hot};
use crate::serving::connections::{Carries, Connections};

/// What every connection serves.
pub struct Services {
    pub(super) hot: Arc<Hot>,
    pub(super) routes: tonic::service::Routes,
}

/// Answers gRPC on `listener` until `drain` resolves, then returns once every connection has
/// closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    services: Services,
    connections: Arc<Connections>,
    drain: impl Future<Output = ()>,
) {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    // As tonic's server: no limit of its own on concurrent streams (admission control is the
    // serving core's).
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(None);
    // Every connection holds a receiver; the sender's `closed` says when the last one is gone.
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(drain);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut drain => break,
            accepted = crate::api::listener::accept(&listener) => accepted,
        };
        let dispatch = Dispatch {
            hot: Arc::clone(&services.hot),
            routes: services.routes.clone(),
            connection: tonic::transport::server::TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(peer),
            },
            streams: Arc::default(),
        };
        let (builder, tls, stopped) = (builder.clone(), tls.clone(), stopped.clone());
        let open = connections.open(Carries::Many);
        tokio::spawn(async move {
            connection(builder, stream, tls, dispatch, stopped).await;
            drop(open);
        });
    }
    // Closing the listener first: new clients are refused rather than left waiting.
    drop(listener);
    let _ = stop.send(true);
    drop(stopped);
    stop.closed().await;
}

async fn connection(
    builder: http2::Builder<TokioExecutor>,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    dispatch: Dispatch,
    mut stopped: watch::Receiver<bool>,
) {
    match tls {
        None => serve_connection(&builder, TokioIo::new(stream), dispatch, stopped).await,
        Some(acceptor) => {
            // A failed or stalled handshake is the client's problem: drop the connection.
            let handshake =
                tokio::time::timeout(crate::api::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let stream = tokio::select! {
                handshake = handshake => match handshake {
                    Ok(Ok(stream)) => stream,
                    _ => return,
                },
                _ = stopped.wait_for(|stop| *stop) => return,
            };
            serve_connection(&builder, TokioIo::new(stream), dispatch, stopped).await
        }
    }
}

async fn serve_connection<I>(
    builder: &http2::Builder<TokioExecutor>,
    io: I,
    dispatch: Dispatch,
    mut stopped: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let connection = builder.serve_connection(io, dispatch);
    tokio::pin!(connection);
    tokio::select! {
        result = &mut connection => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "gRPC connection ended");
            }
            return;
        }
        _ = stopped.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}
