//! `mlengine predict`: as `gcloud ml-engine local predict` with `--model-dir` (ONNX Runtime in
//! this process), or as `gcloud ml-engine predict` with `--url` (a running server's Cloud ML
//! predict API). One JSON instance per line in (`--json-instances`), or one string instance per
//! line (`--text-instances`); one prediction per line out.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;

use crate::inference::json_rows::{decode_instances, encode_predictions};
use crate::repository::fetch::model_file_blocking;
use crate::runtime::{load_model, SessionConfig};

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["model_dir", "url"])))]
#[command(group(clap::ArgGroup::new("instances").required(true).args(["json_instances", "text_instances"])))]
pub struct PredictArgs {
    /// Local prediction: a version directory, an `export/Servo` base or a job-dir (local path or
    /// storage URI).
    #[arg(long, env = "MLENGINE_MODEL_DIR")]
    pub model_dir: Option<String>,

    /// Online prediction: the base URL of a server, e.g. http://localhost:8080.
    #[arg(long, env = "MLENGINE_URL")]
    pub url: Option<String>,

    /// Model name for --url.
    #[arg(long, default_value = "census", env = "MLENGINE_MODEL")]
    pub model: String,

    /// Version (number or name) for --url; default: the model's default version.
    #[arg(long, env = "MLENGINE_VERSION")]
    pub version: Option<String>,

    /// Project segment of the Cloud ML path for --url.
    #[arg(long, default_value = "mlengine", env = "MLENGINE_PROJECT")]
    pub project: String,

    /// File with one JSON instance per line.
    #[arg(long, env = "MLENGINE_JSON_INSTANCES")]
    pub json_instances: Option<PathBuf>,

    /// File with one instance per line, each sent as a JSON string.
    #[arg(long, env = "MLENGINE_TEXT_INSTANCES")]
    pub text_instances: Option<PathBuf>,

    /// Instances per run (local) or per request (online).
    #[arg(long, default_value_t = 64, env = "MLENGINE_BATCH_SIZE")]
    pub batch_size: usize,
}

/// The instances of the input file with their line numbers.
fn read_instances(args: &PredictArgs) -> Result<(String, Vec<(usize, Value)>)> {
    let (path, text_mode) = match (&args.json_instances, &args.text_instances) {
        (Some(p), _) => (p, false),
        (None, Some(p)) => (p, true),
        (None, None) => bail!("one of --json-instances or --text-instances is required"),
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    let mut instances = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if text_mode {
            instances.push((i + 1, Value::String(line.to_string())));
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{name}:{}: invalid JSON", i + 1))?;
        instances.push((i + 1, value));
    }
    if instances.is_empty() {
        bail!("{name}: no instances");
    }
    Ok((name, instances))
}

pub fn run(args: &PredictArgs, ort_library: Option<&Path>) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let (name, instances) = read_instances(args)?;
    match (&args.model_dir, &args.url) {
        (Some(dir), _) => local(dir, &name, &instances, args.batch_size, ort_library),
        (None, Some(url)) => online(args, url, &instances),
        (None, None) => bail!("one of --model-dir or --url is required"),
    }
}

fn local(
    dir: &str,
    name: &str,
    instances: &[(usize, Value)],
    batch_size: usize,
    ort_library: Option<&Path>,
) -> Result<()> {
    let (model, _download) = model_file_blocking(dir)?;
    let mut session = load_model(&model, ort_library, SessionConfig::default())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for chunk in instances.chunks(batch_size) {
        let values: Vec<Value> = chunk.iter().map(|(_, v)| v.clone()).collect();
        let inputs = decode_instances(session.signature(), &values).map_err(|e| {
            // Name the file line of the first instance at fault rather than a chunk index.
            let bad = chunk.iter().find_map(|(line, instance)| {
                decode_instances(session.signature(), std::slice::from_ref(instance))
                    .err()
                    .map(|e| (line, e))
            });
            match bad {
                Some((line, e)) => {
                    let msg = e.message.strip_prefix("instance 0: ").unwrap_or(&e.message);
                    anyhow::anyhow!("{name}:{line}: {msg}")
                }
                None => anyhow::anyhow!("{name}: {e}"),
            }
        })?;
        let outputs = session
            .run(inputs, &[])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for prediction in encode_predictions(&outputs).map_err(|e| anyhow::anyhow!("{e}"))? {
            writeln!(out, "{prediction}")?;
        }
    }
    Ok(())
}

fn online(args: &PredictArgs, url: &str, instances: &[(usize, Value)]) -> Result<()> {
    let mut endpoint = format!(
        "{}/v1/projects/{}/models/{}",
        url.trim_end_matches('/'),
        args.project,
        args.model
    );
    if let Some(v) = &args.version {
        endpoint.push_str(&format!("/versions/{v}"));
    }
    endpoint.push_str(":predict");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for chunk in instances.chunks(args.batch_size) {
        let body =
            serde_json::json!({"instances": chunk.iter().map(|(_, v)| v).collect::<Vec<_>>()});
        let mut response = agent
            .post(&endpoint)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .with_context(|| format!("cannot reach {endpoint}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {endpoint}"))?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if status != 200 {
            let message = match &answer["error"] {
                Value::String(s) => s.clone(),
                Value::Null => text.trim().to_string(),
                other => other.to_string(),
            };
            bail!("the server answered {status}: {message}");
        }
        let predictions = answer["predictions"]
            .as_array()
            .with_context(|| format!("the server's answer has no predictions: {text}"))?;
        for p in predictions {
            writeln!(out, "{p}")?;
        }
    }
    Ok(())
}
