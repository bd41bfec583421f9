//! `mlengine serve`: loads model versions, keeps them fresh, and answers REST on one port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::api::grpc;
use crate::api::rest::{self, RestState};
use crate::inference::service::InferenceService;
use crate::observability::Metrics;
use crate::repository::mirror::Mirror;
use crate::repository::policy::VersionPolicy;
use crate::repository::registry::{ModelConfig, Registry};
use crate::runtime::library;
use crate::runtime::worker::{BatchConfig, WorkerConfig};
use crate::runtime::{Device, SessionConfig};

fn default_base_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/census/export/Servo")
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Folder of numeric version directories (export/Servo/<timestamp>, or <base>/<n>).
    #[arg(long, env = "MLENGINE_MODEL_BASE_PATH", default_value_os_t = default_base_path())]
    pub model_base_path: PathBuf,

    #[arg(long, env = "MLENGINE_MODEL_NAME", default_value = "census")]
    pub model_name: String,

    /// Several models (name, base path, version policy, labels) in YAML or JSON; replaces
    /// --model-base-path, --model-name, --version-policy and --version-labels.
    #[arg(long, env = "MLENGINE_MODEL_CONFIG_FILE")]
    pub model_config_file: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, env = "MLENGINE_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// REST port (0 picks a free port; the bound address is printed).
    #[arg(long, env = "MLENGINE_REST_PORT", default_value_t = 8080)]
    pub rest_port: u16,

    /// gRPC port (0 picks a free port; the bound address is printed).
    #[arg(long, env = "MLENGINE_GRPC_PORT", default_value_t = 8500)]
    pub grpc_port: u16,

    /// Largest gRPC message received or sent.
    #[arg(long, env = "MLENGINE_GRPC_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub grpc_max_message_bytes: usize,

    /// Seconds between scans of the base path for new versions; 0 loads once.
    #[arg(
        long,
        env = "MLENGINE_FILE_SYSTEM_POLL_WAIT_SECONDS",
        default_value_t = 1.0
    )]
    pub file_system_poll_wait_seconds: f64,

    /// latest[:N], all, or specific:V1,V2.
    #[arg(long, env = "MLENGINE_VERSION_POLICY", default_value = "latest")]
    pub version_policy: VersionPolicy,

    /// Version labels, e.g. `v1=1795690396,stable=1795690396` (Cloud ML version names).
    #[arg(long, env = "MLENGINE_VERSION_LABELS", value_delimiter = ',')]
    pub version_labels: Vec<String>,

    /// cpu, or cuda (the onnxruntime-gpu build: scripts/install-onnxruntime.sh --gpu).
    #[arg(long, value_enum, env = "MLENGINE_DEVICE", default_value = "cpu")]
    pub device: Device,

    /// Session workers per model version.
    #[arg(long, env = "MLENGINE_WORKERS", default_value_t = 1)]
    pub workers: usize,

    /// ONNX Runtime intra-op threads per session.
    #[arg(long, env = "MLENGINE_INTRA_OP_THREADS", default_value_t = 1)]
    pub intra_op_threads: usize,

    /// Tokio threads for HTTP.
    #[arg(long, env = "MLENGINE_HTTP_THREADS", default_value_t = 1)]
    pub http_threads: usize,

    /// Dynamic batching: most instances merged into one ONNX Runtime run (1 turns merging off).
    #[arg(long, env = "MLENGINE_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,

    /// Dynamic batching: how long a free worker holding a partial batch waits for more requests
    /// (Triton's max queue delay); 0 takes only what is already queued.
    #[arg(long, env = "MLENGINE_BATCH_TIMEOUT_MICROS", default_value_t = 0)]
    pub batch_timeout_micros: u64,

    /// Queue bound per version, in batches of --max-batch-size requests: past
    /// max-enqueued-batches x max-batch-size queued requests, new ones are refused at once (429,
    /// RESOURCE_EXHAUSTED).
    #[arg(long, env = "MLENGINE_MAX_ENQUEUED_BATCHES", default_value_t = 4)]
    pub max_enqueued_batches: usize,

    /// Deadline of requests that bring none (header X-Request-Timeout-Ms, grpc-timeout, or
    /// KServe's parameters.timeout); 0 for none. A request still queued at its deadline is
    /// answered 504 / DEADLINE_EXCEEDED and never run.
    #[arg(long, env = "MLENGINE_REQUEST_TIMEOUT_MS", default_value_t = 0)]
    pub request_timeout_ms: u64,

    /// Largest request body accepted (Cloud ML's limit is 1.5 MB).
    #[arg(long, env = "MLENGINE_MAX_BODY_BYTES", default_value_t = 1_572_864)]
    pub max_body_bytes: usize,

    /// Longest wait for in-flight requests after SIGTERM or SIGINT.
    #[arg(long, env = "MLENGINE_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
}

fn parse_labels(labels: &[String]) -> Result<std::collections::HashMap<String, u64>> {
    labels
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, version) = l
                .split_once('=')
                .with_context(|| format!("--version-labels entry {l:?} is not label=version"))?;
            let version = version.trim().parse::<u64>().with_context(|| {
                format!("--version-labels entry {l:?}: {version:?} is not a version number")
            })?;
            Ok((name.trim().to_string(), version))
        })
        .collect()
}

/// Points every bucket base path at a local mirror under `root` (synced once now, then before
/// each poll) and checks that local base paths exist.
fn mirror_bucket_bases(configs: &mut [ModelConfig], root: &std::path::Path) -> Result<Vec<Mirror>> {
    let mut mirrors = Vec::new();
    for c in configs.iter_mut() {
        let uri = c.base_path.to_string_lossy().into_owned();
        if crate::storage::remote::is_remote(&uri) {
            let local = root.join(&c.name);
            let mut mirror = Mirror::new(&uri, &local)?;
            mirror
                .sync()
                .with_context(|| format!("model '{}': cannot read base path {uri}", c.name))?;
            mirrors.push(mirror);
            c.base_path = local;
        } else if !c.base_path.is_dir() {
            bail!(
                "model '{}': base path {} is not a directory",
                c.name,
                c.base_path.display()
            );
        }
    }
    Ok(mirrors)
}

pub fn run(args: &ServeArgs, ort_library: Option<&std::path::Path>) -> Result<()> {
    if !(args.file_system_poll_wait_seconds.is_finite()
        && args.file_system_poll_wait_seconds >= 0.0)
    {
        bail!("--file-system-poll-wait-seconds must be zero or positive");
    }
    let mut configs = match &args.model_config_file {
        Some(path) => crate::repository::config::load(path)?,
        None => vec![ModelConfig {
            name: args.model_name.clone(),
            base_path: args.model_base_path.clone(),
            policy: args.version_policy.clone(),
            labels: parse_labels(&args.version_labels)?,
        }],
    };
    let mirror_root =
        tempfile::tempdir().context("cannot create a directory for mirrored versions")?;
    let mirrors = mirror_bucket_bases(&mut configs, mirror_root.path())?;
    let mirrors = Arc::new(std::sync::Mutex::new(mirrors));
    let env = library::environment(ort_library, args.device == Device::Cuda)?;
    let metrics = Arc::new(Metrics::new().context("cannot create metrics")?);
    let max_batch_size = args.max_batch_size.max(1);
    let workers = WorkerConfig {
        workers: args.workers.max(1),
        queue_capacity: args.max_enqueued_batches.max(1) * max_batch_size,
        batching: BatchConfig {
            max_batch_size,
            batch_timeout: Duration::from_micros(args.batch_timeout_micros),
        },
        session: SessionConfig {
            intra_threads: args.intra_op_threads.max(1),
            device: args.device,
        },
    };
    let registry = Arc::new(Registry::new(env, workers, configs));
    let poll = {
        let registry = Arc::clone(&registry);
        let metrics = Arc::clone(&metrics);
        move || {
            if let Ok(mut mirrors) = mirrors.lock() {
                for m in mirrors.iter_mut() {
                    if let Err(e) = m.sync() {
                        tracing::warn!("cannot mirror versions: {e:#}");
                    }
                }
            }
            registry.poll(&mut |model, version, error| {
                metrics.load_attempts.with_label_values(&[model]).inc();
                if error.is_some() {
                    metrics.load_failures.with_label_values(&[model]).inc();
                }
                metrics
                    .version_load_failed
                    .with_label_values(&[model, &version.to_string()])
                    .set(i64::from(error.is_some()));
            });
            for m in registry.models() {
                metrics
                    .available_versions
                    .with_label_values(&[m.config.name.as_str()])
                    .set(m.served().len() as i64);
            }
        }
    };
    poll();
    if args.device == Device::Cuda {
        let failed: Vec<String> = registry
            .models()
            .filter(|m| !m.is_ready())
            .flat_map(|m| m.status().into_iter().filter_map(|s| s.error))
            .collect();
        if let Some(first) = failed.first() {
            bail!("--device cuda: {first}");
        }
        tracing::info!("execution provider: CUDA");
    }
    let stopping = Arc::new(AtomicBool::new(false));
    if args.file_system_poll_wait_seconds > 0.0 {
        let wait = Duration::from_secs_f64(args.file_system_poll_wait_seconds);
        let stopping = Arc::clone(&stopping);
        let poll = poll.clone();
        std::thread::Builder::new()
            .name("version-poller".into())
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    std::thread::sleep(wait);
                    poll();
                }
            })?;
    }
    let service = Arc::new(InferenceService {
        registry,
        metrics,
        default_timeout: (args.request_timeout_ms > 0)
            .then(|| Duration::from_millis(args.request_timeout_ms)),
    });
    let state = Arc::new(RestState {
        service,
        max_body_bytes: args.max_body_bytes,
        accepting: AtomicBool::new(false),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.http_threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(serve_http(args, state))?;
    stopping.store(true, Ordering::Release);
    Ok(())
}

async fn serve_http(args: &ServeArgs, state: Arc<RestState>) -> Result<()> {
    let rest_addr: SocketAddr = format!("{}:{}", args.host, args.rest_port)
        .parse()
        .with_context(|| format!("invalid --host {}", args.host))?;
    let grpc_addr = SocketAddr::new(rest_addr.ip(), args.grpc_port);
    let rest_listener = tokio::net::TcpListener::bind(rest_addr)
        .await
        .with_context(|| format!("cannot listen on {rest_addr} (--rest-port)"))?;
    let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {grpc_addr} (--grpc-port)"))?;
    let rest_bound = rest_listener.local_addr()?;
    let grpc_bound = grpc_listener.local_addr()?;

    let accepting = Arc::new(AtomicBool::new(true));
    let (grpc_router, health) = grpc::router(
        Arc::clone(&state.service),
        Arc::clone(&accepting),
        args.grpc_max_message_bytes,
    )?;
    state.accepting.store(true, Ordering::Release);
    // Health is right before the first call can arrive, then follows readiness (every model has a version) until shutdown.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    grpc::set_health(&health, state.ready()).await;
    {
        let (state, health, mut stop) = (Arc::clone(&state), health.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let ready = state.ready();
                if last != Some(ready) {
                    grpc::set_health(&health, ready).await;
                    last = Some(ready);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.changed() => break,
                }
            }
        });
    }
    tracing::info!(rest = %rest_bound, grpc = %grpc_bound, ready = state.ready(), "serving");
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "REST listening on {rest_bound}");
        let _ = writeln!(out, "gRPC listening on {grpc_bound}");
        let _ = out.flush();
    }

    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    {
        let (state, accepting, health) =
            (Arc::clone(&state), Arc::clone(&accepting), health.clone());
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: readiness off, finishing in-flight requests");
            state.accepting.store(false, Ordering::Release);
            accepting.store(false, Ordering::Release);
            let _ = stop_tx.send(true);
            grpc::set_health(&health, false).await;
            // Bound the wait for in-flight requests.
            tokio::time::sleep(grace).await;
            tracing::warn!("in-flight requests did not finish within the grace period; exiting");
            std::process::exit(0);
        });
    }
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Small answers go out at once: with Nagle's algorithm a response waiting for the peer's
    // delayed ACK stalled gRPC calls for 40 ms (p99.9) under load.
    use axum::serve::ListenerExt;
    let rest_listener = rest_listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let rest = axum::serve(rest_listener, rest::router(state))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let grpc = grpc_router.serve_with_incoming_shutdown(
        tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
        stopped(stop_rx),
    );
    let (rest, grpc) = tokio::join!(rest, grpc);
    rest.context("REST server failed")?;
    grpc.context("gRPC server failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
