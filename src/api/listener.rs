//! The listeners (plain TCP or TLS), their accept loop, the count of open connections, and the
//! client address the gate checks.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::serving::connections::{Carries, Connections, Open};

/// Plain TCP with Nagle's algorithm off: a small answer waiting for the peer's delayed ACK
/// stalled gRPC calls for 40 ms (p99.9) under load. Its connections (HTTP/1.1) are counted in
/// `connections` while open.
pub struct NoDelay {
    pub tcp: TcpListener,
    pub connections: Arc<Connections>,
}

impl Listener for NoDelay {
    type Io = Counted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, peer) = Listener::accept(&mut self.tcp).await;
        let _ = stream.set_nodelay(true);
        (
            Counted::new(stream, &self.connections, Carries::OneAtATime),
            peer,
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A connection, counted in [`Connections`] until it is dropped.
pub struct Counted<S> {
    // Declared first, so dropped before the socket (hyper may have sent its FIN earlier, after
    // answering `Connection: close`: a client can see the close a moment before the count does).
    _open: Open,
    io: S,
}

impl<S> Counted<S> {
    pub fn new(io: S, connections: &Arc<Connections>, carries: Carries) -> Self {
        Counted {
            _open: connections.open(carries),
            io,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The next connection on `tcp`, with Nagle's algorithm off (see [`NoDelay`]). A failed accept
/// (out of file descriptors and the like) backs off instead of spinning. Cancel-safe.
pub async fn accept(tcp: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The client's address, whichever listener accepted it.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// A connection's first sign of life (its first bytes, or gRPC's whole preface), for the drain:
/// a connection accepted just before shutdown whose client's request is on its way is served,
/// while one that stays silent is not waited for.
#[derive(Default)]
pub struct FirstSign {
    seen: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

/// How long the drain waits for the first request of a connection that has sent nothing yet:
/// a client that connected just before shutdown has its request in flight; one silent this long
/// is not about to send one.
pub const FIRST_SIGN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl FirstSign {
    pub fn seen(&self) -> bool {
        self.seen.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn mark(&self) {
        if !self.seen.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }

    /// Resolves once seen, or after `FIRST_SIGN_WAIT`; whether it was seen.
    pub async fn wait(&self) -> bool {
        if self.seen() {
            return true;
        }
        let _ = tokio::time::timeout(FIRST_SIGN_WAIT, self.notify.notified()).await;
        self.seen()
    }
}

/// Resolves once the drain has begun (the value turned true), holding no lock after: the
/// connection's handling goes on awaiting.
pub async fn stop_requested(stopped: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// What a [`Watched`] stream shows its first reads to.
pub trait ReadWatch: Unpin {
    /// Takes the bytes just read; true once it has seen what it waits for, after which the
    /// stream stops showing it anything.
    fn saw(&mut self, bytes: &[u8]) -> bool;
}

/// A connection's stream whose reads a watcher sees until it has seen enough (a REST client's
/// first bytes, a gRPC client's whole preface); then, and for writes, it is the stream alone.
pub struct Watched<S, W> {
    io: S,
    watch: Option<W>,
}

impl<S, W> Watched<S, W> {
    pub fn new(io: S, watch: W) -> Self {
        Watched {
            io,
            watch: Some(watch),
        }
    }
}

impl<S: AsyncRead + Unpin, W: ReadWatch> AsyncRead for Watched<S, W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Some(watch) = self.watch.as_mut() {
            if watch.saw(&buf.filled()[before..]) {
                self.watch = None;
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin, W: Unpin> AsyncWrite for Watched<S, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
