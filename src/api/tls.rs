//! `--tls-cert` / `--tls-key`: REST and gRPC over TLS (rustls). The REST listener hands axum
//! connections whose handshake is complete; handshakes run concurrently, so a slow or broken
//! client never holds up the others.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::listener::Counted;
use crate::serving::connections::{Carries, Connections};

/// A server certificate and key.
pub struct Tls {
    acceptor: TlsAcceptor,
    grpc: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    pub fn load(cert: &Path, key: &Path) -> Result<Tls> {
        let cert_pem = std::fs::read(cert)
            .with_context(|| format!("cannot read --tls-cert {}", cert.display()))?;
        let key_pem = std::fs::read(key)
            .with_context(|| format!("cannot read --tls-key {}", key.display()))?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?;
        if certs.is_empty() {
            anyhow::bail!("--tls-cert {} holds no certificate", cert.display());
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, private)
            .context("the TLS certificate and key do not go together")?;
        let mut grpc = config.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            grpc: TlsAcceptor::from(Arc::new(grpc)),
        })
    }

    /// Handshakes for the gRPC port, which speaks HTTP/2 only.
    pub fn grpc_acceptor(&self) -> TlsAcceptor {
        self.grpc.clone()
    }

    /// A listener of TLS connections over `tcp`, for axum.
    pub fn listener(&self, tcp: TcpListener, open: Arc<Connections>) -> TlsListener {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let local = tcp.local_addr();
        let acceptor = self.acceptor.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = super::listener::accept(&tcp).await;
                let (acceptor, tx, open) = (acceptor.clone(), tx.clone(), Arc::clone(&open));
                tokio::spawn(async move {
                    // A failed or stalled handshake is the client's problem: drop the connection.
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    if let Ok(Ok(tls)) = handshake.await {
                        // Counted from here, while it waits for axum too.
                        let tls = Counted::new(tls, &open, Carries::OneAtATime);
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        TlsListener {
            connections: rx,
            local,
            _accepting: AbortOnDrop(task),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a client has to finish its TLS handshake: one that connects and stalls would
/// otherwise hold a socket (and a task) for good.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct TlsListener {
    /// Handshaken connections (HTTP/1.1), counted in `Connections` while open.
    connections: tokio::sync::mpsc::Receiver<(Counted<TlsStream<TcpStream>>, SocketAddr)>,
    local: std::io::Result<SocketAddr>,
    _accepting: AbortOnDrop,
}

impl axum::serve::Listener for TlsListener {
    type Io = Counted<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accepting task only ends with the listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local {
            Ok(a) => Ok(*a),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}
