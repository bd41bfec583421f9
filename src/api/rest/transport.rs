//! REST's HTTP/1.1 server: accepts connections from a listener (plain TCP, or TLS once
//! handshaken), serves each with hyper's HTTP/1.1 and the router, and drains on shutdown (no new
//! connections, each open one closed after its request in flight, then waits for them).
//!
//! Our own rather than `axum::serve`, which gives hyper no timer: hyper's header-read timeout
//! needs one, so a client that sent half a request head (or nothing) held its connection and
//! task for good. With it, a request head must arrive whole within the timeout, and a
//! keep-alive connection idle that long is closed (as nginx's `keepalive_timeout` does).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower_service::Service;

use crate::api::listener::{FirstSign, Peer, ReadWatch, Watched};

/// Answers on `listener` with `router` until `drain` resolves, then returns once every
/// connection has closed. `header_read_timeout` bounds the wait for each request head,
/// idle time between keep-alive requests included.
pub async fn serve<L>(
    mut listener: L,
    router: axum::Router,
    header_read_timeout: Duration,
    drain: impl Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    // Every connection holds a receiver; the sender's `closed` says when the last one is gone.
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(drain);
    loop {
        let (io, peer) = tokio::select! {
            _ = &mut drain => break,
            accepted = listener.accept() => accepted,
        };
        let router = router.clone();
        // What `into_make_service_with_connect_info` did: the auth gate reads the peer's address.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(Peer(peer)));
            router.clone().call(request)
        });
        let first = Arc::new(FirstSign::default());
        let io = Watched::new(io, FirstBytes(Arc::clone(&first)));
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                result = &mut connection => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "REST connection ended");
                    }
                    return;
                }
                _ = crate::api::listener::stop_requested(&mut stopped) => {
                    // hyper closes a connection that has sent nothing yet at once; one accepted
                    // just before shutdown may have its request on the way: it gets a moment.
                    if !first.seen() {
                        tokio::select! {
                            _ = &mut connection => return,
                            _ = first.wait() => {}
                        }
                    }
                    connection.as_mut().graceful_shutdown()
                }
            }
            let _ = connection.await;
        });
    }
    // Closing the listener first: new clients are refused rather than left waiting.
    drop(listener);
    let _ = stop.send(true);
    drop(stopped);
    stop.closed().await;
}

/// A REST client's first sign of life: its first bytes.
struct FirstBytes(Arc<FirstSign>);

impl ReadWatch for FirstBytes {
    fn saw(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        self.0.mark();
        true
    }
}
