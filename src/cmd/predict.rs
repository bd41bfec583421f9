//! `mlengine predict`: as `gcloud ml-engine local predict` with `--model-dir` (ONNX Runtime in
//! this process), or as `gcloud ml-engine predict` with `--url` (a running server's Cloud ML
//! predict API). One JSON instance per line in (`--json-instances`), or one string instance per
//! line (`--text-instances`); one prediction per line out. Every instance is checked before
//! anything is printed: a bad one fails the command, naming the first such line.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cli::PredictArgs;
use crate::codec::instances::decode_each;
use crate::codec::predictions::write_prediction_lines;
use crate::runtime::{load_model, SessionConfig};

/// The instances of the input with their line numbers, and the input's name for messages.
fn read_instances(args: &PredictArgs) -> Result<(String, Vec<(usize, Value)>)> {
    let (path, text_mode) = match (&args.json_instances, &args.text_instances) {
        (Some(p), _) => (p, false),
        (None, Some(p)) => (p, true),
        (None, None) => bail!("one of --json-instances or --text-instances is required"),
    };
    let (name, mut text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        ("<stdin>".to_string(), text)
    } else {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
        (name, text)
    };
    // Editors on some systems start UTF-8 files with a byte order mark.
    if let Some(rest) = text.strip_prefix('\u{feff}') {
        text = rest.to_string();
    }
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

pub fn run(args: &PredictArgs, ort_library: Option<PathBuf>) -> Result<()> {
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
    ort_library: Option<PathBuf>,
) -> Result<()> {
    let runtime = super::runtime(1)?;
    let (model, _download) = runtime.block_on(crate::repository::fetch::model_file(dir))?;
    let mut session = load_model(&model, ort_library.as_deref(), SessionConfig::default())?;
    // Decode everything first: the first bad line (in file order) fails the command before a
    // single prediction is printed.
    let mut batches = Vec::new();
    for chunk in instances.chunks(batch_size) {
        let values: Vec<Value> = chunk.iter().map(|(_, v)| v.clone()).collect();
        let decoded = decode_each(session.signature(), &values);
        if let Some((index, message)) = decoded.bad.first() {
            bail!("{name}:{}: {message}", chunk[*index].0);
        }
        if let Some(tensors) = decoded.tensors {
            // Rows the model itself refuses (a CSV model's malformed rows), named by their line
            // as a decoding error is, not by their place in the chunk.
            if let Some((row, input, e)) = session.bad_rows(&tensors).into_iter().next() {
                let line = chunk.get(row).map_or(0, |(line, _)| *line);
                bail!("{name}:{line}: input '{input}': {e}");
            }
            batches.push(tensors);
        }
    }
    let mut text = Vec::new();
    for inputs in batches {
        let outputs = session
            .run(&inputs, &[])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let rows = crate::tensor::batch_size(&inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
        write_prediction_lines(&outputs, rows, &mut text).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    std::io::stdout().write_all(&text)?;
    Ok(())
}

/// The base URL of a server, `http://` assumed when no scheme is given (as curl does).
fn base_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

fn online(args: &PredictArgs, url: &str, instances: &[(usize, Value)]) -> Result<()> {
    let mut endpoint = format!(
        "{}/v1/projects/{}/models/{}",
        base_url(url),
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
    let mut text = Vec::new();
    for chunk in instances.chunks(args.batch_size) {
        let body =
            serde_json::json!({"instances": chunk.iter().map(|(_, v)| v).collect::<Vec<_>>()});
        let mut response = agent
            .post(&endpoint)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .with_context(|| format!("cannot reach {endpoint}"))?;
        let status = response.status().as_u16();
        let answer_text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {endpoint}"))?;
        // Answers may hold TF Serving's bare NaN and Infinity tokens.
        let answer: Value = crate::codec::json::parse_body(answer_text.as_bytes())
            .unwrap_or(Value::String(answer_text.clone()));
        if status != 200 {
            let message = match &answer["error"] {
                Value::String(s) => s.clone(),
                Value::Null => answer_text.trim().to_string(),
                other => other.to_string(),
            };
            bail!("the server answered {status}: {message}");
        }
        let predictions = answer["predictions"]
            .as_array()
            .with_context(|| format!("the server's answer has no predictions: {answer_text}"))?;
        if predictions.len() != chunk.len() {
            bail!(
                "the server answered {} predictions for {} instances",
                predictions.len(),
                chunk.len()
            );
        }
        for p in predictions {
            writeln!(text, "{}", crate::codec::json::to_text_with_tokens(p))?;
        }
    }
    std::io::stdout().write_all(&text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_without_a_scheme_are_http() {
        assert_eq!(super::base_url("localhost:8080"), "http://localhost:8080");
        assert_eq!(super::base_url("https://x/"), "https://x");
    }
}
