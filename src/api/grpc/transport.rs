//! gRPC's HTTP/2 server: accepts connections (plain, or TLS with ALPN `h2`), serves each with
//! hyper's HTTP/2 and [`unary::Dispatch`](super::unary::Dispatch), and drains on shutdown (no
//! new connections, a GOAWAY on each open one, then waits for their calls to finish).
//!
//! Our own rather than tonic's `transport::Server`, so that the hot calls reach the serving core
//! without tonic's per-call tower stack; the connection settings are the ones tonic used.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::unary::{Dispatch, Hot};
use crate::api::listener::{FirstSign, ReadWatch, Watched};
use crate::serving::connections::{Carries, Connections};

/// What every connection serves.
pub struct Services {
    pub(super) hot: Arc<Hot>,
    pub(super) routes: tonic::service::Routes,
}

/// Answers gRPC on `listener` until `drain` resolves, then returns once every connection has
/// closed. A connection that has not sent HTTP/2's preface within `preface_timeout` (after its
/// TLS handshake, if any) is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    services: Services,
    connections: Arc<Connections>,
    preface_timeout: Duration,
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
            connection(builder, stream, tls, dispatch, preface_timeout, stopped).await;
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
    preface_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    match tls {
        None => serve_connection(&builder, stream, dispatch, preface_timeout, stopped).await,
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
            serve_connection(&builder, stream, dispatch, preface_timeout, stopped).await
        }
    }
}

async fn serve_connection<S>(
    builder: &http2::Builder<TokioExecutor>,
    stream: S,
    dispatch: Dispatch,
    preface_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let greeted = Arc::new(FirstSign::default());
    let io = Watched::new(
        stream,
        Preface {
            read: 0,
            head: [0; GREETING_HEAD],
            greeted: Arc::clone(&greeted),
        },
    );
    let connection = builder.serve_connection(TokioIo::new(io), dispatch);
    tokio::pin!(connection);
    // hyper waits for the preface for good: a client that connects and sends nothing (or half
    // of it) would hold its socket and task until the server stops.
    let preface_deadline = tokio::time::sleep(preface_timeout);
    tokio::pin!(preface_deadline);
    let mut waiting_for_preface = true;
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "gRPC connection ended");
                }
                return;
            }
            _ = &mut preface_deadline, if waiting_for_preface => {
                if !greeted.seen() {
                    tracing::debug!("gRPC connection sent no preface in time; closing it");
                    return;
                }
                waiting_for_preface = false;
            }
            _ = crate::api::listener::stop_requested(&mut stopped) => {
                // A connection that has not finished its preface has no call yet: a graceful
                // close would wait for one until the grace period ends. Its client may be
                // greeting right now, though: it gets a moment.
                if !greeted.seen() {
                    tokio::select! {
                        _ = &mut connection => return,
                        seen = greeted.wait() => if !seen {
                            return;
                        },
                    }
                }
                connection.as_mut().graceful_shutdown();
                break;
            }
        }
    }
    let _ = connection.await;
}

/// HTTP/2's client connection preface: the magic string, then the client's first frame (its
/// SETTINGS), whose 9-byte header says how long it is.
const MAGIC_LEN: usize = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".len();
const GREETING_HEAD: usize = MAGIC_LEN + 9;

/// A gRPC client's first sign of life: its whole preface, the magic and its first frame (hyper
/// checks what they are). The magic alone is not enough: hyper then waits for the SETTINGS
/// frame for good.
struct Preface {
    /// Bytes read so far, up to the end of the preface.
    read: usize,
    /// The magic and the first frame's header, as read.
    head: [u8; GREETING_HEAD],
    greeted: Arc<FirstSign>,
}

impl ReadWatch for Preface {
    fn saw(&mut self, bytes: &[u8]) -> bool {
        let take = bytes.len().min(GREETING_HEAD.saturating_sub(self.read));
        self.head[self.read.min(GREETING_HEAD)..][..take].copy_from_slice(&bytes[..take]);
        self.read += bytes.len();
        if self.read < GREETING_HEAD {
            return false;
        }
        let [a, b, c] = [
            self.head[MAGIC_LEN],
            self.head[MAGIC_LEN + 1],
            self.head[MAGIC_LEN + 2],
        ];
        let frame = u32::from_be_bytes([0, a, b, c]) as usize;
        if self.read < GREETING_HEAD + frame {
            return false;
        }
        self.greeted.mark();
        true
    }
}
