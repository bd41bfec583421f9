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

pub use lines::text_of_line;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::codec::instances::{decode_each, decode_lines};
use crate::codec::predictions::{write_keyed_predictions, write_prediction_lines};
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
    /// A field of every instance that is not a model input but is copied into its prediction,
    /// to join predictions to inputs (Vertex's `keyField`).
    pub key_field: Option<String>,
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

impl Summary {
    /// Whether the job succeeded: something was predicted, and the share of failed instances is
    /// at most `max_error_rate` (Cloud ML Engine's jobs reported `errorCount` and succeeded
    /// whatever it was; a job where every line failed is a failure here).
    pub fn verdict(&self, max_error_rate: f64) -> Result<()> {
        let total = self.predictions + self.errors;
        if self.predictions == 0 && self.errors > 0 {
            bail!(
                "every one of the {} instances failed; prediction.errors_stats says why",
                self.errors
            );
        }
        let rate = self.errors as f64 / total.max(1) as f64;
        if rate > max_error_rate {
            bail!(
                "{} of {total} instances failed ({:.1}%), more than --max-error-rate {max_error_rate}; \
                 prediction.errors_stats says why",
                self.errors,
                rate * 100.0
            );
        }
        Ok(())
    }
}

/// Most sessions one job runs: each holds a model and a thread, and far fewer already keep every
/// core of a large machine busy.
pub const MAX_WORKER_COUNT: usize = 256;

/// Refuses a session count that could not be run, before anything is started for it.
pub fn check_worker_count(max_worker_count: usize) -> Result<()> {
    if !(1..=MAX_WORKER_COUNT).contains(&max_worker_count) {
        bail!(
            "--max-worker-count must be between 1 and {MAX_WORKER_COUNT}, got {max_worker_count}"
        );
    }
    Ok(())
}

/// Runs a job on the caller's runtime (ideally one thread per session: each scoring task
/// decodes, runs and encodes a whole batch). A cancelled job publishes nothing.
pub async fn run(
    args: &BatchConfig,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<Summary> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args
        .key_field
        .as_deref()
        .is_some_and(|k| k.trim().is_empty())
    {
        bail!("--key-field must name a field");
    }
    check_worker_count(args.max_worker_count)?;
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
    // A file named twice (`a.json,./a.json`, or by two patterns) is read once, where it first
    // appears: local files by their absolute path, objects by their URI.
    let mut seen = std::collections::HashSet::new();
    inputs.retain(|o| {
        let key = if remote::is_remote(&o.location.uri) {
            o.location.uri.clone()
        } else {
            o.location.path.to_string()
        };
        seen.insert(key)
    });
    let output = remote::open(&args.output_path)?;
    let scheme = output.uri.to_ascii_lowercase();
    if scheme.starts_with("http://") || scheme.starts_with("https://") {
        bail!(
            "--output-path {}: http(s) storage is read-only; use a local folder, gs:// or s3://",
            args.output_path
        );
    }

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
    // The key is taken out of each instance before the model sees it: a key named as one of
    // the model's inputs would fail every instance.
    if let Some(key) = &args.key_field {
        if sessions.signature().inputs.iter().any(|i| &i.name == key) {
            bail!(
                "--key-field {key} names one of the model's inputs; name a field the model \
                 does not take"
            );
        }
    }
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
    let error_stats = writer.error_stats(|pos| position(&inputs, pos));
    let json = json!({
        "predictionCount": summary.predictions.to_string(),
        "errorCount": summary.errors.to_string(),
        "errorStats": error_stats,
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

/// Where a line is, for messages: `file:line`, or `file@byte` when the line number is unknown
/// (a part that starts inside a file, read by another worker than the first).
fn position(inputs: &[Object], pos: &lines::Pos) -> String {
    let file = inputs
        .get(pos.file)
        .map_or("?", |o| o.location.uri.as_str());
    match pos.line {
        Some(n) => format!("{file}:{n}"),
        None => format!("{file}@{}", pos.offset),
    }
}

/// One batch's outcome, in input order.
struct Scored {
    /// JSON lines of the predictions.
    text: Vec<u8>,
    predictions: u64,
    errors: Vec<(String, lines::Pos)>,
}

async fn pipeline(
    args: &BatchConfig,
    parts: &[split::Part],
    sessions: &Arc<SessionPool>,
    writer: &mut ShardWriter,
    progress: &dyn Progress,
) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<lines::Batch>(args.max_worker_count * 2);
    let batch_size = args.batch_size;
    let reader_parts = parts.to_vec();
    let reader = tokio::spawn(async move {
        let mut batch = lines::Batch::default();
        for part in &reader_parts {
            if !lines::send_batches(part, part.file, batch_size, &mut batch, &tx).await? {
                return Ok(());
            }
        }
        if !batch.lines.is_empty() {
            let _ = tx.send(batch).await;
        }
        anyhow::Ok(())
    });
    let stream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (b, rx))
    }));
    let signature = sessions.signature().clone();
    let signature = Arc::new(signature);
    let key: Option<Arc<str>> = args.key_field.as_deref().map(Arc::from);
    // Each batch is scored in its own task, so decoding and encoding spread over the runtime's
    // threads while `buffered` keeps the results in input order.
    let scored = stream
        .map(|batch| {
            let sessions = Arc::clone(sessions);
            let signature = Arc::clone(&signature);
            let key = key.clone();
            tokio::spawn(async move {
                match key {
                    None => score(&signature, &sessions, batch),
                    Some(key) => score_keyed(&signature, &sessions, batch, &key),
                }
            })
        })
        .buffered(args.max_worker_count * 2);
    let mut scored = std::pin::pin!(scored);
    while let Some(s) = scored.next().await {
        let s = s.context("a scoring task failed")?;
        let rows = s.predictions + s.errors.len() as u64;
        writer.write_predictions(&s.text, s.predictions).await?;
        for (message, pos) in s.errors {
            writer.count_error(message, pos);
        }
        progress.advance(rows, writer.error_count);
    }
    reader.await.context("input reader stopped")??;
    Ok(())
}

/// Decodes, runs and encodes one batch; a line that fails is an error entry, not a failure.
fn score(signature: &Signature, sessions: &SessionPool, batch: lines::Batch) -> Scored {
    let refs: Vec<&str> = batch.lines.iter().map(String::as_str).collect();
    let mut decoded = decode_lines(signature, &refs);
    // Rows the model itself refuses (a CSV model's malformed rows) are set aside too, and the
    // rest decoded again without them.
    if let Some(inputs) = &decoded.tensors {
        let refused = sessions.bad_rows(inputs);
        if !refused.is_empty() {
            let good: Vec<usize> = (0..refs.len())
                .filter(|i| !decoded.bad.iter().any(|(b, _)| b == i))
                .collect();
            let mut bad = std::mem::take(&mut decoded.bad);
            bad.extend(
                refused
                    .into_iter()
                    .map(|(row, input, e)| (good[row], format!("input '{input}': {e}"))),
            );
            let keep: Vec<usize> = (0..refs.len())
                .filter(|i| !bad.iter().any(|(b, _)| b == i))
                .collect();
            let kept: Vec<&str> = keep.iter().map(|&i| refs[i]).collect();
            decoded = decode_lines(signature, &kept);
            decoded.bad = bad;
            decoded.bad.sort_by_key(|(i, _)| *i);
        }
    }
    let mut errors: Vec<(String, lines::Pos)> = decoded
        .bad
        .into_iter()
        .map(|(i, message)| (message, batch.positions[i]))
        .collect();
    let good: Vec<lines::Pos> = good_positions(&batch.positions, &errors);
    let Some(inputs) = decoded.tensors else {
        return Scored {
            text: Vec::new(),
            predictions: 0,
            errors,
        };
    };
    let mut text = Vec::new();
    let mut predictions = 0;
    match sessions.run(&inputs, &[]).and_then(|outputs| {
        let rows = crate::tensor::batch_size(&inputs)?;
        write_prediction_lines(&outputs, rows, &mut text)
    }) {
        Ok(n) => predictions = n as u64,
        Err(e) => errors.extend(good.into_iter().map(|p| (e.message.clone(), p))),
    }
    Scored {
        text,
        predictions,
        errors,
    }
}

/// The positions of the lines that decoded (those without an error), in order.
fn good_positions(all: &[lines::Pos], errors: &[(String, lines::Pos)]) -> Vec<lines::Pos> {
    all.iter()
        .filter(|p| !errors.iter().any(|(_, e)| e == *p))
        .copied()
        .collect()
}

/// As [`score`], for instances that carry a key: the key is taken out before decoding and put
/// into the instance's prediction.
fn score_keyed(
    signature: &Signature,
    sessions: &SessionPool,
    batch: lines::Batch,
    key: &str,
) -> Scored {
    let mut errors = Vec::new();
    let mut keys = Vec::new();
    let mut instances = Vec::new();
    let mut kept = Vec::new();
    for (line, pos) in batch.lines.iter().zip(&batch.positions) {
        let mut value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                errors.push((format!("invalid JSON: {e}"), *pos));
                continue;
            }
        };
        match value.as_object_mut().and_then(|o| o.remove(key)) {
            Some(k) => {
                keys.push(k);
                instances.push(value);
                kept.push(*pos);
            }
            None => errors.push((format!("instance has no key field '{key}'"), *pos)),
        }
    }
    let mut decoded = decode_each(signature, &instances);
    // Instances the model itself refuses (a CSV model's malformed rows) are errors of their
    // own, as in `score`; left in, they failed every instance of the batch.
    if let Some(inputs) = &decoded.tensors {
        let refused = sessions.bad_rows(inputs);
        if !refused.is_empty() {
            let good: Vec<usize> = (0..instances.len())
                .filter(|i| !decoded.bad.iter().any(|(b, _)| b == i))
                .collect();
            let mut dropped = std::collections::BTreeSet::new();
            for (row, input, e) in refused {
                if let Some(&i) = good.get(row) {
                    errors.push((format!("input '{input}': {e}"), kept[i]));
                    dropped.insert(i);
                }
            }
            let keep = |i: &usize| !dropped.contains(i);
            let filter = |v: Vec<Value>| -> Vec<Value> {
                v.into_iter()
                    .enumerate()
                    .filter(|(i, _)| keep(i))
                    .map(|(_, x)| x)
                    .collect()
            };
            instances = filter(instances);
            keys = filter(keys);
            kept = kept
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep(i))
                .map(|(_, p)| p)
                .collect();
            decoded = decode_each(signature, &instances);
        }
    }
    let bad: Vec<usize> = decoded.bad.iter().map(|(i, _)| *i).collect();
    errors.extend(decoded.bad.into_iter().map(|(i, m)| (m, kept[i])));
    let keys: Vec<Value> = keys
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !bad.contains(i))
        .map(|(_, k)| k)
        .collect();
    let good: Vec<lines::Pos> = kept
        .iter()
        .enumerate()
        .filter(|(i, _)| !bad.contains(i))
        .map(|(_, p)| *p)
        .collect();
    let mut text = Vec::new();
    let mut predictions = 0;
    if let Some(inputs) = decoded.tensors {
        match sessions.run(&inputs, &[]).and_then(|outputs| {
            write_keyed_predictions(&outputs, keys.len(), Some((key, &keys)), b"\n", &mut text)
        }) {
            Ok(n) => predictions += n as u64,
            Err(e) => {
                text.clear();
                errors.extend(good.into_iter().map(|p| (e.message.clone(), p)))
            }
        }
    }
    Scored {
        text,
        predictions,
        errors,
    }
}
