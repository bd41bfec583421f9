//! Batch prediction as a library: Cloud ML Engine's batch prediction of JSON-lines files from
//! local disk, `s3://`, `gs://` or `https://`, streamed with bounded read-ahead, and split
//! deterministically across `worker_count` processes. [`run`] works on the caller's runtime,
//! can be cancelled, and reports progress to whoever asks.
//!
//! A job's path: inputs listed and cut into this worker's parts (`split`) → lines read in
//! batches (`lines`) → each batch decoded, run on a pooled session and encoded by its own task
//! → results and error counts written under `_temporary/` and published (`output`).

mod lines;
pub mod output;
pub mod split;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::codec::instances::decode_lines;
use crate::codec::predictions::write_prediction_lines;
use crate::runtime::pool::SessionPool;
use crate::runtime::{library, Device, SessionConfig};
use crate::storage::remote::{self, Object};
use crate::tensor::Signature;
use output::ShardWriter;

/// What a batch prediction job does.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// A version directory or an export/Servo base (its latest version), local or a URI.
    pub model_dir: String,
    /// Input files or URIs; `*` and `?` match within the last path components.
    pub input_paths: Vec<String>,
    /// Where the prediction.results and prediction.errors_stats shards go (local or URI).
    pub output_path: String,
    /// Instances per ONNX Runtime run.
    pub batch_size: usize,
    /// ONNX Runtime sessions running batches in parallel.
    pub max_worker_count: usize,
    pub device: Device,
    /// This process's share of the input, and the number of processes sharing it.
    pub worker_index: usize,
    pub worker_count: usize,
    pub ort_library: Option<PathBuf>,
}

/// Where a running job tells how far it got.
pub trait Progress: Send + Sync {
    /// `rows` more lines done, `errors` lines failed so far.
    fn advance(&self, _rows: u64, _errors: u64) {}
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub predictions: u64,
    pub errors: u64,
    pub seconds: f64,
}

/// Runs a job on the caller's runtime (ideally one thread per session: each scoring task
/// decodes, runs and encodes a whole batch). A cancelled job publishes nothing.
pub async fn run(
    args: &BatchConfig,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<Summary> {
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
    let start = Instant::now();
    let mut inputs: Vec<Object> = Vec::new();
    for uri in &args.input_paths {
        inputs.extend(remote::expand(uri).await?);
    }
    inputs.dedup_by(|a, b| a.location.uri == b.location.uri);
    let output = remote::open(&args.output_path)?;

    let (model_file, _download) = crate::repository::fetch::model_file(&args.model_dir).await?;
    let env = library::environment(args.ort_library.as_deref(), args.device == Device::Cuda)?;
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

    let mut writer = ShardWriter::new(output, args.worker_index, args.worker_count);
    let result = tokio::select! {
        r = pipeline(args, &parts, &sessions, &mut writer, progress) => r,
        _ = cancel.cancelled() => Err(anyhow::anyhow!("the batch prediction job was cancelled")),
    };
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
    args: &BatchConfig,
    parts: &[split::Part],
    sessions: &Arc<SessionPool>,
    writer: &mut ShardWriter,
    progress: &dyn Progress,
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
        progress.advance(rows, writer.error_count);
    }
    reader.await.context("input reader stopped")??;
    Ok(())
}

/// Decodes, runs and encodes one batch; a line that fails is an error entry, not a failure.
fn score(signature: &Signature, sessions: &SessionPool, lines: Vec<String>) -> Scored {
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let decoded = decode_lines(signature, &refs);
    let errors: Vec<String> = decoded
        .bad
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    match decoded.tensors {
        Some(inputs) => run_and_encode(sessions, inputs, decoded.rows, errors),
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
    inputs: Vec<crate::tensor::Tensor>,
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
