//! `mlengine batch-predict`: Cloud ML Engine's batch prediction of JSON-lines files from local
//! disk, `s3://`, `gs://` or `https://`, streamed with bounded read-ahead, and split
//! deterministically across `--worker-count` processes.

mod lines;
pub mod output;
pub mod split;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::inference::json_rows::{decode_instances, write_prediction_lines};
use crate::inference::tensor::Signature;
use crate::runtime::pool::SessionPool;
use crate::runtime::{library, Device, SessionConfig};
use crate::storage::remote::{self, Object};
use output::ShardWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum DataFormat {
    /// One JSON instance per line.
    Json,
    /// The same (gcloud's name for JSON lines).
    Text,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// A version directory or an export/Servo base (its latest version), local or a storage URI.
    #[arg(long, env = "MLENGINE_MODEL_DIR")]
    pub model_dir: String,

    /// Input files or URIs; `*` and `?` match within the last path components.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', env = "MLENGINE_INPUT_PATHS")]
    pub input_paths: Vec<String>,

    /// Where the prediction.results and prediction.errors_stats shards go (local or URI).
    #[arg(long, env = "MLENGINE_OUTPUT_PATH")]
    pub output_path: String,

    #[arg(
        long,
        value_enum,
        ignore_case = true,
        default_value = "JSON",
        env = "MLENGINE_DATA_FORMAT"
    )]
    pub data_format: DataFormat,

    /// Instances per ONNX Runtime run.
    #[arg(long, default_value_t = 64, env = "MLENGINE_BATCH_SIZE")]
    pub batch_size: usize,

    /// ONNX Runtime sessions running batches in parallel (default: the machine's cores).
    #[arg(long, default_value_t = default_workers(), env = "MLENGINE_MAX_WORKER_COUNT")]
    pub max_worker_count: usize,

    /// Accepted for compatibility with Cloud ML; the model's one signature is used.
    #[arg(long, env = "MLENGINE_SIGNATURE_NAME")]
    pub signature_name: Option<String>,

    #[arg(long, value_enum, default_value = "cpu", env = "MLENGINE_DEVICE")]
    pub device: Device,

    /// This process's share of the input (a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX).
    #[arg(long, default_value_t = 0, env = "JOB_COMPLETION_INDEX")]
    pub worker_index: usize,

    /// Number of processes sharing the input; each writes its own shards.
    #[arg(long, default_value_t = 1, env = "MLENGINE_WORKER_COUNT")]
    pub worker_count: usize,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub predictions: u64,
    pub errors: u64,
    pub seconds: f64,
}

pub fn run(args: &BatchArgs, ort_library: Option<&Path>) -> Result<Summary> {
    if args.batch_size == 0 || args.max_worker_count == 0 {
        bail!("--batch-size and --max-worker-count must be at least 1");
    }
    if args.worker_count == 0 || args.worker_index >= args.worker_count {
        bail!(
            "--worker-index {} must be below --worker-count {}",
            args.worker_index,
            args.worker_count
        );
    }
    // One runtime thread per session: each decodes, runs and encodes whole batches.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.max_worker_count.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args, ort_library))
}

async fn run_async(args: &BatchArgs, ort_library: Option<&Path>) -> Result<Summary> {
    let start = Instant::now();
    let mut inputs: Vec<Object> = Vec::new();
    for uri in &args.input_paths {
        inputs.extend(remote::expand(uri).await?);
    }
    inputs.dedup_by(|a, b| a.location.uri == b.location.uri);
    let output = remote::open(&args.output_path)?;

    let (model_file, _download) = crate::repository::fetch::model_file(&args.model_dir).await?;
    let env = library::environment(ort_library, args.device == Device::Cuda)?;
    let sessions = SessionPool::load(
        env,
        &model_file,
        args.max_worker_count,
        SessionConfig {
            intra_threads: 1,
            device: args.device,
        },
    )
    .with_context(|| format!("cannot load the model of --model-dir {}", args.model_dir))?;
    let sessions = Arc::new(sessions);
    let parts = split::parts(&inputs, args.worker_index, args.worker_count);
    let total_bytes: u64 = parts.iter().map(|p| p.end - p.start).sum();

    let mut writer = ShardWriter::new(output, args.worker_index, args.worker_count);
    let progress = Progress::new(total_bytes);
    let result = pipeline(args, &parts, &sessions, &mut writer, &progress).await;
    progress.finish();
    if let Err(e) = result {
        writer.abandon().await;
        return Err(e);
    }
    let seconds = start.elapsed().as_secs_f64();
    let summary = Summary {
        predictions: writer.predictions,
        errors: writer.error_count,
        seconds,
    };
    let json = json!({
        "predictionCount": summary.predictions.to_string(),
        "errorCount": summary.errors.to_string(),
        "elapsedSeconds": seconds,
        "rowsPerSecond": (summary.predictions + summary.errors) as f64 / seconds.max(1e-9),
        "workerIndex": args.worker_index,
        "workerCount": args.worker_count,
        "inputPaths": inputs.iter().map(|o| o.location.uri.clone()).collect::<Vec<_>>(),
        "outputPath": args.output_path,
        "modelDir": args.model_dir,
        "batchSize": args.batch_size,
    });
    writer.publish(json).await?;
    Ok(summary)
}

/// One batch's outcome, in input order.
struct Scored {
    /// JSON lines of the predictions.
    text: Vec<u8>,
    predictions: u64,
    errors: Vec<String>,
}

async fn pipeline(
    args: &BatchArgs,
    parts: &[split::Part],
    sessions: &Arc<SessionPool>,
    writer: &mut ShardWriter,
    progress: &Progress,
) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<String>>(args.max_worker_count * 2);
    let batch_size = args.batch_size;
    let reader_parts = parts.to_vec();
    let reader = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(batch_size);
        for part in &reader_parts {
            if !lines::send_batches(part, batch_size, &mut batch, &tx).await? {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        anyhow::Ok(())
    });
    let stream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (b, rx))
    }));
    let signature = sessions.signature().clone();
    let signature = Arc::new(signature);
    // Each batch is scored in its own task, so decoding and encoding spread over the runtime's
    // threads while `buffered` keeps the results in input order.
    let scored = stream
        .map(|batch| {
            let sessions = Arc::clone(sessions);
            let signature = Arc::clone(&signature);
            tokio::spawn(async move { score(&signature, &sessions, batch) })
        })
        .buffered(args.max_worker_count * 2);
    let mut scored = std::pin::pin!(scored);
    while let Some(s) = scored.next().await {
        let s = s.context("a scoring task failed")?;
        let rows = s.predictions + s.errors.len() as u64;
        writer.write_predictions(&s.text, s.predictions).await?;
        for e in s.errors {
            writer.count_error(e);
        }
        progress.add(rows, writer.error_count);
    }
    reader.await.context("input reader stopped")??;
    Ok(())
}

/// Decodes, runs and encodes one batch; a line that fails is an error entry, not a failure.
fn score(signature: &Signature, sessions: &SessionPool, lines: Vec<String>) -> Scored {
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    if let Some(inputs) = crate::inference::json_fast::decode_object_lines(signature, &refs) {
        return run_and_encode(sessions, inputs, lines.len(), Vec::new());
    }
    let mut errors = Vec::new();
    let mut instances = Vec::with_capacity(lines.len());
    for line in &lines {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => instances.push(v),
            Err(e) => errors.push(format!("invalid JSON: {e}")),
        }
    }
    // Decode the batch at once; when that fails, find the lines at fault one by one.
    let decoded = match decode_instances(signature, &instances) {
        Ok(tensors) => Some((tensors, instances.len())),
        Err(_) => {
            let good: Vec<Value> = instances
                .into_iter()
                .filter(
                    |i| match decode_instances(signature, std::slice::from_ref(i)) {
                        Ok(_) => true,
                        Err(e) => {
                            errors.push(e.message.trim_start_matches("instance 0: ").to_string());
                            false
                        }
                    },
                )
                .collect();
            match decode_instances(signature, &good) {
                Ok(tensors) => Some((tensors, good.len())),
                // Each line decodes alone but not together (their shapes differ): count them all.
                Err(e) => {
                    errors.extend(std::iter::repeat_n(e.message, good.len()));
                    None
                }
            }
        }
    };
    match decoded {
        Some((inputs, rows)) => run_and_encode(sessions, inputs, rows, errors),
        None => Scored {
            text: Vec::new(),
            predictions: 0,
            errors,
        },
    }
}

/// Runs decoded rows and encodes their predictions as JSON lines.
fn run_and_encode(
    sessions: &SessionPool,
    inputs: Vec<crate::inference::Tensor>,
    rows: usize,
    mut errors: Vec<String>,
) -> Scored {
    let mut text = Vec::new();
    let mut predictions = 0;
    match sessions
        .run(inputs, &[])
        .and_then(|outputs| write_prediction_lines(&outputs, &mut text))
    {
        Ok(n) => predictions = n as u64,
        Err(e) => errors.extend(std::iter::repeat_n(e.message, rows)),
    }
    Scored {
        text,
        predictions,
        errors,
    }
}

/// Rows, rows/s and errors on a terminal; nothing otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(_bytes: u64) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos} rows  {per_sec}  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        Progress { bar }
    }

    fn add(&self, rows: u64, errors: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(rows);
            bar.set_message(format!("{errors} errors"));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
