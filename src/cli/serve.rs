//! `mlengine serve` flags, turned into a [`ServeConfig`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::repository::policy::VersionPolicy;
use crate::repository::ModelConfig;
use crate::runtime::batcher::BatchConfig;
use crate::runtime::scheduling::WorkerScheduling;
use crate::runtime::worker::WorkerConfig;
use crate::runtime::{Device, SessionConfig};
use crate::server::threads::ThreadPlan;
use crate::server::ServeConfig;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Folder of numeric version directories (export/Servo/<timestamp>, or <base>/<n>), a
    /// job-dir (its export/Servo), or a bucket URI (s3://, gs://) mirrored locally. Default:
    /// models/census/export/Servo, unless --state-dir is given (then only managed models).
    #[arg(long, env = "MLENGINE_MODEL_BASE_PATH")]
    pub model_base_path: Option<PathBuf>,

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
    #[arg(long, env = "MLENGINE_DEVICE", default_value = "cpu", value_parser = super::device_parser())]
    pub device: Device,

    /// Session workers per model version. Default: the usable cores (affinity mask and cgroup
    /// quota) less the HTTP threads, at least 1.
    #[arg(long, env = "MLENGINE_WORKERS")]
    pub workers: Option<usize>,

    /// ONNX Runtime intra-op threads per session. Default: 1.
    #[arg(long, env = "MLENGINE_INTRA_OP_THREADS")]
    pub intra_op_threads: Option<usize>,

    /// Tokio threads for REST and gRPC. Default: two thirds of the usable cores (rounded), at
    /// least 1, leaving at least one core to the workers (1 on 1 or 2 cores).
    #[arg(long, env = "MLENGINE_HTTP_THREADS")]
    pub http_threads: Option<usize>,

    /// Scheduling of session workers: batch (Linux's SCHED_BATCH: a worker woken by a request
    /// does not preempt the thread that received it, so runs gather the requests that arrive
    /// meanwhile on a shared core) or normal. Default: batch where the HTTP threads and workers
    /// outnumber the usable cores, normal elsewhere.
    #[arg(long, env = "MLENGINE_WORKER_SCHEDULING",
          value_parser = super::parse_with::<WorkerScheduling>(&["batch", "normal"]))]
    pub worker_scheduling: Option<WorkerScheduling>,

    /// Keep every CPU out of idle states slower than this to wake from (microseconds; 0: idle
    /// CPUs poll), for as long as the server runs: Linux's PM QoS request on
    /// /dev/cpu_dma_latency, as tuned's latency profiles make. Lowers the latency of requests
    /// that find the machine idle, at the cost of power (or the host's CPU time on a virtual
    /// machine); needs root. Default: the kernel's choice.
    #[arg(long, env = "MLENGINE_CPU_LATENCY_US")]
    pub cpu_latency_us: Option<u32>,

    /// Dynamic batching: most instances merged into one ONNX Runtime run (1 turns merging off).
    #[arg(long, env = "MLENGINE_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,

    /// Dynamic batching: how long a free worker holding a partial batch waits for more requests
    /// (Triton's max queue delay); 0 takes only what is already queued.
    #[arg(long, env = "MLENGINE_BATCH_TIMEOUT_MICROS", default_value_t = 0)]
    pub batch_timeout_micros: u64,

    /// Requests on the server's only connection (HTTP/1.1, nothing else in flight, at most 8
    /// instances) run on the thread that received them, saving two thread hand-offs, once the
    /// version's last 8 runs of up to 8 instances each took at most this long (and had at least
    /// as many input values); 0 turns it off.
    #[arg(long, env = "MLENGINE_IN_PLACE_MAX_RUN_MICROS",
          default_value_t = crate::runtime::batcher::HERE_MAX_RUN_MICROS)]
    pub in_place_max_run_micros: u64,

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

    /// Turns the management API (models, versions, jobs) on and keeps its state here: a SQLite
    /// database and the deployed models' files.
    #[arg(long, env = "MLENGINE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Jobs that run at once; more wait in a queue.
    #[arg(long, env = "MLENGINE_MAX_RUNNING_JOBS", default_value_t = 1)]
    pub max_running_jobs: usize,

    /// Lets training jobs run a user's own Python trainer (packageUris and pythonModule).
    #[arg(long, env = "MLENGINE_ALLOW_CUSTOM_CODE")]
    pub allow_custom_code: bool,

    /// Local folders management requests may read and write below (deploymentUri, jobDir,
    /// inputPaths, outputPath), comma separated; bucket URIs are always allowed. Default: the
    /// working directory (the state dir is always allowed).
    #[arg(long, env = "MLENGINE_ALLOWED_STORAGE_ROOTS", value_delimiter = ',')]
    pub allowed_storage_roots: Vec<PathBuf>,

    /// NAME=URI: with --state-dir, creates model NAME with version v1 from URI at start when the
    /// state has no model NAME (how the README's main command deploys the bundled model).
    #[arg(long, env = "MLENGINE_BOOTSTRAP_MODEL")]
    pub bootstrap_model: Vec<String>,

    /// Lines of `<token> <scope>` (scopes predict and admin): every route but health and
    /// metrics then needs `Authorization: Bearer <token>`, and admin tokens open the management
    /// API from anywhere.
    #[arg(long, env = "MLENGINE_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// Networks whose clients the management API answers without tokens (comma separated).
    #[arg(
        long,
        env = "MLENGINE_ADMIN_ALLOWED_NETWORKS",
        default_value = "127.0.0.0/8,::1"
    )]
    pub admin_allowed_networks: String,

    /// A PEM certificate (chain): REST and gRPC are then served over TLS.
    #[arg(long, env = "MLENGINE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "MLENGINE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Longest wait for in-flight requests after SIGTERM or SIGINT.
    #[arg(long, env = "MLENGINE_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,

    /// A REST connection that has not sent a whole request head within this time, or that
    /// stays idle this long between requests, is closed (hyper's default); so is a gRPC
    /// connection that has not sent HTTP/2's preface (idle gRPC connections stay open).
    #[arg(long, env = "MLENGINE_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub header_read_timeout_seconds: u64,
}

/// `label=version` entries, under the config file's rule for labels (letters, digits, `_` or
/// `-`, and not a number, which would read as a version), each label once.
pub fn parse_labels(labels: &[String]) -> Result<std::collections::HashMap<String, u64>> {
    let mut out = std::collections::HashMap::new();
    for l in labels.iter().filter(|l| !l.trim().is_empty()) {
        let (name, version) = l
            .split_once('=')
            .with_context(|| format!("--version-labels entry {l:?} is not label=version"))?;
        let version = version.trim().parse::<u64>().with_context(|| {
            format!("--version-labels entry {l:?}: {version:?} is not a version number")
        })?;
        let name = name.trim();
        if !crate::repository::config::valid_label(name) {
            bail!(
                "--version-labels entry {l:?}: a label is letters, digits, '_' or '-', and not a \
                 number"
            );
        }
        if out.insert(name.to_string(), version).is_some() {
            bail!("--version-labels names label {name:?} twice");
        }
    }
    Ok(out)
}

impl ServeArgs {
    /// The thread counts: the flags given, the usable cores' defaults for the others.
    pub fn threads(&self) -> ThreadPlan {
        let defaults = ThreadPlan::for_this_process();
        ThreadPlan {
            http: self.http_threads.unwrap_or(defaults.http),
            workers: self.workers.unwrap_or(defaults.workers),
            intra_op: self.intra_op_threads.unwrap_or(defaults.intra_op),
            ..defaults
        }
    }

    /// The server's configuration; `ort_library` is the global `--ort-library`.
    pub fn config(&self, ort_library: Option<PathBuf>) -> Result<ServeConfig> {
        let poll = self.file_system_poll_wait_seconds;
        // Zero is no polling; a poll faster than a few milliseconds would spin on a core, and
        // one beyond a year is no poll (nor a duration the clock can hold).
        const POLL_RANGE: std::ops::RangeInclusive<f64> = 0.01..=31_536_000.0;
        if !(poll == 0.0 || POLL_RANGE.contains(&poll)) {
            bail!(
                "--file-system-poll-wait-seconds must be 0 (no polling) or between {} and {} \
                 (a year), got {poll}",
                POLL_RANGE.start(),
                POLL_RANGE.end()
            );
        }
        let threads = self.threads();
        for (name, value) in [
            ("--workers", threads.workers),
            ("--intra-op-threads", threads.intra_op),
            ("--http-threads", threads.http),
            ("--max-batch-size", self.max_batch_size),
            ("--max-enqueued-batches", self.max_enqueued_batches),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1");
            }
        }
        if self.model_config_file.is_none() {
            crate::repository::config::check_model_name(&self.model_name)
                .context("--model-name")?;
        }
        let models = match &self.model_config_file {
            Some(path) => crate::repository::config::load(path)?,
            // With a state dir and no base path given, the managed models are all there is.
            None if self.state_dir.is_some() && self.model_base_path.is_none() => Vec::new(),
            None => vec![ModelConfig {
                policy: self.version_policy.clone(),
                labels: parse_labels(&self.version_labels)?,
                ..ModelConfig::new(
                    self.model_name.clone(),
                    self.model_base_path
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("models/census/export/Servo")),
                )
            }],
        };
        let control = match &self.state_dir {
            None => None,
            Some(dir) => {
                let cwd = std::env::current_dir().context("cannot read the working directory")?;
                let roots = if self.allowed_storage_roots.is_empty() {
                    vec![cwd]
                } else {
                    self.allowed_storage_roots
                        .iter()
                        .map(|r| {
                            if r.is_absolute() {
                                r.clone()
                            } else {
                                cwd.join(r)
                            }
                        })
                        .collect()
                };
                let bootstrap = self
                    .bootstrap_model
                    .iter()
                    .map(|b| {
                        let (name, uri) = b
                            .split_once('=')
                            .with_context(|| format!("--bootstrap-model {b:?} is not NAME=URI"))?;
                        let uri = if crate::storage::remote::is_remote(uri) {
                            uri.to_string()
                        } else {
                            std::path::absolute(uri)?.display().to_string()
                        };
                        Ok((name.to_string(), uri))
                    })
                    .collect::<Result<_>>()?;
                Some(crate::control::ControlConfig {
                    state_dir: std::path::absolute(dir)?,
                    allowed_roots: roots,
                    max_running_jobs: self.max_running_jobs.max(1),
                    allow_custom_code: self.allow_custom_code,
                    bootstrap,
                })
            }
        };
        Ok(ServeConfig {
            models,
            host: self.host.clone(),
            rest_port: self.rest_port,
            grpc_port: self.grpc_port,
            grpc_max_message_bytes: self.grpc_max_message_bytes,
            poll_wait: (poll > 0.0).then(|| Duration::from_secs_f64(poll)),
            device: self.device,
            threads,
            cpu_latency_us: self.cpu_latency_us,
            workers: WorkerConfig {
                workers: threads.workers,
                queue_capacity: self
                    .max_enqueued_batches
                    .saturating_mul(self.max_batch_size),
                batching: BatchConfig {
                    max_batch_size: self.max_batch_size,
                    batch_timeout: Duration::from_micros(self.batch_timeout_micros),
                },
                in_place_max_run: Duration::from_micros(self.in_place_max_run_micros),
                session: SessionConfig {
                    intra_threads: threads.intra_op,
                    device: self.device,
                },
                scheduling: self
                    .worker_scheduling
                    .unwrap_or_else(|| threads.worker_scheduling()),
            },
            request_timeout: (self.request_timeout_ms > 0)
                .then(|| Duration::from_millis(self.request_timeout_ms)),
            max_body_bytes: self.max_body_bytes,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            ort_library,
            control,
            auth: crate::api::auth::Auth::new(
                self.auth_tokens_file.as_deref(),
                &self.admin_allowed_networks,
            )?,
            tls: self.tls_cert.clone().zip(self.tls_key.clone()),
        })
    }
}
