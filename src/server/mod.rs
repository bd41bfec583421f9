//! `mlengine serve` as a library: a plain [`ServeConfig`] in, [`Server::build`] loads the models,
//! [`Server::run`] answers REST and gRPC on the caller's runtime until shutdown.
//!
//! A prediction's path: `api/rest` or `api/grpc` decodes it with `codec` → `serving::Call`
//! resolves the version through `repository::Manager` and queues the run → a `runtime::batcher`
//! thread merges it with the requests behind it and runs its session → the adapter encodes.

pub mod cpu_latency;
mod lifecycle;
mod poller;
pub mod threads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::api::grpc;
use crate::api::rest::{self, RestState};
use crate::control::ControlPlane;
use crate::observability::Metrics;
use crate::repository::manager::VersionEventKind;
use crate::repository::{Manager, ModelConfig, VersionEvent};
use crate::runtime::worker::WorkerConfig;
use crate::runtime::{library, Device};
use crate::serving::{InferenceService, Lifecycle};

/// Everything `serve` needs, free of flag parsing.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub models: Vec<ModelConfig>,
    pub host: String,
    pub rest_port: u16,
    pub grpc_port: u16,
    pub grpc_max_message_bytes: usize,
    /// Time between scans of the base paths; `None` loads once.
    pub poll_wait: Option<Duration>,
    pub device: Device,
    /// The thread counts, with the cores they were derived from (the HTTP threads are the
    /// caller's runtime's; reported in the metrics).
    pub threads: threads::ThreadPlan,
    /// The CPU wake-up latency to hold while serving (`--cpu-latency-us`).
    pub cpu_latency_us: Option<u32>,
    pub workers: WorkerConfig,
    /// Deadline of requests that bring none.
    pub request_timeout: Option<Duration>,
    pub max_body_bytes: usize,
    /// Bound on the wait for in-flight requests after shutdown begins.
    pub shutdown_grace: Duration,
    /// How long a REST connection may take to send a request head, or stay idle between
    /// keep-alive requests, and a gRPC connection to send its preface, before it is closed.
    pub header_read_timeout: Duration,
    pub ort_library: Option<PathBuf>,
    /// The management API and its state dir, when on.
    pub control: Option<crate::control::ControlConfig>,
    /// Who may call what: tokens, and the networks the management API answers without them.
    pub auth: crate::api::auth::Auth,
    /// The certificate and key of REST and gRPC over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A built server: models loaded, listeners bound, not yet answering.
pub struct Server {
    config: ServeConfig,
    tls: Option<crate::api::tls::Tls>,
    service: Arc<InferenceService>,
    control: Option<Arc<ControlPlane>>,
    rest_listener: tokio::net::TcpListener,
    grpc_listener: tokio::net::TcpListener,
    stop_poller: tokio::sync::watch::Sender<bool>,
    /// Mirrored bucket versions live here as long as the server.
    _mirror_root: tempfile::TempDir,
    _cpu_latency: Option<cpu_latency::CpuLatency>,
}

impl Server {
    /// Loads ONNX Runtime and every model's versions, starts the poller and binds both ports.
    pub async fn build(config: ServeConfig) -> Result<Server> {
        // Certificates first: a bad one is reported before any model loads or port is taken.
        let tls = match &config.tls {
            Some((cert, key)) => Some(crate::api::tls::Tls::load(cert, key)?),
            None => None,
        };
        let cpu_latency = config
            .cpu_latency_us
            .map(cpu_latency::CpuLatency::hold)
            .transpose()?;
        if let Some(held) = &cpu_latency {
            tracing::info!(
                micros = held.micros,
                "CPU wake-up latency bound held ({})",
                cpu_latency::DEVICE
            );
        }
        let mut models = config.models.clone();
        let mirror_root =
            tempfile::tempdir().context("cannot create a directory for mirrored versions")?;
        let mirrors = poller::Mirrors::set_up(&mut models, mirror_root.path()).await?;
        let env =
            library::environment(config.ort_library.as_deref(), config.device == Device::Cuda)?;
        let metrics = Arc::new(Metrics::new().context("cannot create metrics")?);
        let threads = config.threads;
        metrics.record_threads(&[
            ("cores", threads.cores),
            ("http", threads.http),
            ("session_workers", threads.workers),
            ("intra_op", threads.intra_op),
        ]);
        tracing::info!(
            cores = config.threads.cores,
            http_threads = config.threads.http,
            workers = config.threads.workers,
            intra_op_threads = config.threads.intra_op,
            worker_scheduling = ?config.workers.scheduling,
            "threads"
        );
        let manager = Arc::new(Manager::new(env, config.workers));
        subscribe_metrics(&manager, &metrics);
        for model in models {
            metrics
                .available_versions
                .with_label_values(&[model.name.as_str()])
                .set(0);
            manager.add_model(model)?;
        }
        let control = match config.control.clone() {
            Some(control_config) => {
                let manager = Arc::clone(&manager);
                let runtime = tokio::runtime::Handle::current();
                Some(
                    tokio::task::spawn_blocking(move || {
                        ControlPlane::open(control_config, manager, runtime)
                    })
                    .await??,
                )
            }
            None => None,
        };
        // The first load happens before the ports open, off the runtime's threads.
        {
            let manager = Arc::clone(&manager);
            tokio::task::spawn_blocking(move || manager.poll()).await?;
        }
        warn_about_labels(&manager);
        if config.device == Device::Cuda {
            let failed: Vec<String> = manager
                .models()
                .iter()
                .filter(|m| !m.is_ready())
                .flat_map(|m| m.status().into_iter().filter_map(|s| s.error))
                .collect();
            if let Some(first) = failed.first() {
                bail!("--device cuda: {first}");
            }
            tracing::info!("execution provider: CUDA");
        }
        let rest_addr: SocketAddr = format!("{}:{}", config.host, config.rest_port)
            .parse()
            .with_context(|| format!("invalid --host {}", config.host))?;
        let grpc_addr = SocketAddr::new(rest_addr.ip(), config.grpc_port);
        let rest_listener = tokio::net::TcpListener::bind(rest_addr)
            .await
            .with_context(|| format!("cannot listen on {rest_addr} (--rest-port)"))?;
        let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
            .await
            .with_context(|| format!("cannot listen on {grpc_addr} (--grpc-port)"))?;
        // The poller once the ports are taken: a failed start never leaves it running.
        let (stop_poller, stop) = tokio::sync::watch::channel(false);
        if let Some(wait) = config.poll_wait {
            poller::spawn(
                Arc::clone(&manager),
                mirrors,
                tokio::runtime::Handle::current(),
                wait,
                stop,
            )?;
        }
        let service = Arc::new(InferenceService {
            manager,
            metrics,
            lifecycle: Arc::new(Lifecycle::default()),
            connections: Arc::default(),
            default_timeout: config.request_timeout,
        });
        Ok(Server {
            config,
            tls,
            service,
            control,
            rest_listener,
            grpc_listener,
            stop_poller,
            _mirror_root: mirror_root,
            _cpu_latency: cpu_latency,
        })
    }

    pub fn rest_addr(&self) -> Result<SocketAddr> {
        Ok(self.rest_listener.local_addr()?)
    }

    pub fn grpc_addr(&self) -> Result<SocketAddr> {
        Ok(self.grpc_listener.local_addr()?)
    }

    pub fn service(&self) -> &Arc<InferenceService> {
        &self.service
    }

    /// Answers until `shutdown` resolves, then drains: readiness off, no new connections,
    /// in-flight requests finish within the grace period.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let Server {
            config,
            tls,
            service,
            control,
            rest_listener,
            grpc_listener,
            stop_poller,
            _mirror_root,
            _cpu_latency,
        } = self;
        let lifecycle = Arc::clone(&service.lifecycle);
        let auth = Arc::new(config.auth.clone());
        let (grpc_services, health) = grpc::services(
            Arc::clone(&service),
            config.grpc_max_message_bytes,
            Arc::clone(&auth),
        )?;
        // Health is right before the first call can arrive, then follows readiness.
        lifecycle.serve();
        grpc::set_health(&health, service.ready()).await;
        let health_task = tokio::spawn(lifecycle::follow_health(Arc::clone(&service), health));
        tracing::info!(
            rest = %rest_listener.local_addr()?,
            grpc = %grpc_listener.local_addr()?,
            ready = service.ready(),
            "serving"
        );
        let state = Arc::new(RestState {
            service: Arc::clone(&service),
            auth,
            control,
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.header_read_timeout,
        });
        let draining = {
            let lifecycle = Arc::clone(&lifecycle);
            move || {
                let lifecycle = Arc::clone(&lifecycle);
                async move { lifecycle.draining().await }
            }
        };
        let router = rest::router(state);
        let header_timeout = config.header_read_timeout;
        let rest = async {
            match &tls {
                Some(tls) => {
                    let listener = tls.listener(rest_listener, Arc::clone(&service.connections));
                    rest::transport::serve(listener, router, header_timeout, draining()).await
                }
                None => {
                    let listener = crate::api::listener::NoDelay {
                        tcp: rest_listener,
                        connections: Arc::clone(&service.connections),
                    };
                    rest::transport::serve(listener, router, header_timeout, draining()).await
                }
            }
        };
        let grpc = grpc::transport::serve(
            grpc_listener,
            tls.as_ref().map(crate::api::tls::Tls::grpc_acceptor),
            grpc_services,
            Arc::clone(&service.connections),
            config.header_read_timeout,
            draining(),
        );
        let servers = async {
            tokio::join!(rest, grpc);
            anyhow::Ok(())
        };
        tokio::pin!(servers);
        tokio::select! {
            result = &mut servers => result?,
            _ = shutdown => {
                tracing::info!("shutting down: readiness off, finishing in-flight requests");
                lifecycle.drain();
                match tokio::time::timeout(config.shutdown_grace, &mut servers).await {
                    Ok(result) => result?,
                    Err(_) => tracing::warn!(
                        "in-flight requests did not finish within the grace period; stopping"
                    ),
                }
            }
        }
        let _ = stop_poller.send(true);
        health_task.abort();
        tracing::info!("stopped");
        Ok(())
    }
}

/// A label pointing at a version that is not loaded is accepted (the version may come later),
/// but said at start rather than only in the answers of the requests that use it.
fn warn_about_labels(manager: &Manager) {
    for model in manager.models() {
        let served = model.versions();
        for (label, version) in &model.config().labels {
            if !served.contains_key(version) {
                tracing::warn!(
                    "version label '{label}' of model '{}' points to version {version}, which is \
                     not loaded (loaded: {:?}); requests for it fail until it is",
                    model.name,
                    served.keys().collect::<Vec<_>>()
                );
            }
        }
    }
}

/// Load attempts, failures and served versions as metrics, from the manager's events.
fn subscribe_metrics(manager: &Manager, metrics: &Arc<Metrics>) {
    let metrics = Arc::clone(metrics);
    manager.subscribe(move |event: &VersionEvent| {
        let model = event.model.as_str();
        let version = event.version.to_string();
        match &event.kind {
            VersionEventKind::Loaded | VersionEventKind::Failed(_) => {
                let failed = matches!(event.kind, VersionEventKind::Failed(_));
                metrics.load_attempts.with_label_values(&[model]).inc();
                if failed {
                    metrics.load_failures.with_label_values(&[model]).inc();
                }
                metrics
                    .version_load_failed
                    .with_label_values(&[model, &version])
                    .set(i64::from(failed));
            }
            VersionEventKind::Forgotten => {
                let _ = metrics
                    .version_load_failed
                    .remove_label_values(&[model, &version]);
            }
            VersionEventKind::Retired => {}
        }
        metrics
            .available_versions
            .with_label_values(&[model])
            .set(event.serving as i64);
    });
}
