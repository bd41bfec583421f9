//! `mlengine predict --model-dir ... --json-instances FILE`: local prediction as
//! `gcloud ml-engine local predict`, one JSON instance per line in, one prediction per line out.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::inference::json_rows::{decode_instances, encode_predictions};
use crate::repository::resolve_model_file;
use crate::runtime::{load_model, SessionConfig};

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// A version directory, an `export/Servo` base (its latest version is used) or a job-dir.
    #[arg(long, env = "MLENGINE_MODEL_DIR")]
    pub model_dir: PathBuf,

    /// File with one JSON instance per line.
    #[arg(long, env = "MLENGINE_JSON_INSTANCES")]
    pub json_instances: PathBuf,

    /// Instances per ONNX Runtime run.
    #[arg(long, default_value_t = 64, env = "MLENGINE_BATCH_SIZE")]
    pub batch_size: usize,
}

pub fn run(args: &PredictArgs, ort_library: Option<&Path>) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let text = std::fs::read_to_string(&args.json_instances).with_context(|| {
        format!(
            "cannot read --json-instances {}",
            args.json_instances.display()
        )
    })?;
    let name = args.json_instances.display().to_string();
    let mut instances = Vec::new();
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{name}:{}: invalid JSON", i + 1))?;
        instances.push(value);
        lines.push(i + 1);
    }
    if instances.is_empty() {
        bail!("{name}: no instances");
    }
    let model = resolve_model_file(&args.model_dir)?;
    let mut session = load_model(&model, ort_library, SessionConfig::default())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (chunk, chunk_lines) in instances
        .chunks(args.batch_size)
        .zip(lines.chunks(args.batch_size))
    {
        // Decode line by line first, so an error names the file line rather than a chunk index.
        for (instance, line) in chunk.iter().zip(chunk_lines) {
            if let Err(e) = decode_instances(session.signature(), std::slice::from_ref(instance)) {
                let msg = e.message.strip_prefix("instance 0: ").unwrap_or(&e.message);
                bail!("{name}:{line}: {msg}");
            }
        }
        let inputs = decode_instances(session.signature(), chunk)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let outputs = session
            .run(&inputs, &[])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for prediction in encode_predictions(&outputs).map_err(|e| anyhow::anyhow!("{e}"))? {
            writeln!(out, "{prediction}")?;
        }
    }
    Ok(())
}
