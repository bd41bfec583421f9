//! Export of a trained model as a servable version: `<job-dir>/export/Servo/<unix-seconds>/` with
//! `model.onnx` and `model.json`, built in a hidden temporary directory and renamed into place so a
//! server polling `export/Servo` never sees half a version.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde_json::{json, Value};

use super::config::TrainConfig;
use super::job_dir::{JobDir, METADATA_FILE};
use super::metrics::EvalMetrics;
use crate::census::features::LOG_SCALED;
use crate::census::model::WideDeepWeights;
use crate::census::schema::{CATEGORICAL, INPUTS, NUMERIC};
use crate::census::FeatureSpec;
use crate::onnx::census_graph::{ExportFormat, CSV_INPUT};
use crate::onnx::{builder, census_graph};
use crate::repository::warmup::WARMUP_FILE;

pub use crate::repository::MODEL_FILE;

/// The ONNX bytes of a model; the same spec and weights always give the same bytes.
pub fn onnx_bytes(
    spec: &FeatureSpec,
    weights: &WideDeepWeights,
    format: ExportFormat,
) -> Result<Vec<u8>> {
    let doc = "Census income Wide & Deep classifier (mlengine). Inputs: raw census features; \
               outputs: probabilities [P(<=50K), P(>50K)], logits, classes, logistic.";
    builder::to_bytes(&census_graph::build(spec, weights, doc, format))
}

/// The row a CSV model is warmed up with before it is served.
const WARMUP_CSV_ROW: &str = "39, Private, 100000, HS-grad, 9, Married-civ-spouse, Craft-repair, \
                              Husband, White, Male, 0, 0, 40, United-States";

/// The metadata written beside `model.onnx`.
pub fn metadata(
    spec: &FeatureSpec,
    config: &TrainConfig,
    metrics: &EvalMetrics,
    created: u64,
) -> Value {
    let inputs: Vec<Value> = match config.export_format {
        ExportFormat::Csv => vec![json!({"name": CSV_INPUT, "dtype": "string", "shape": [-1]})],
        ExportFormat::Json | ExportFormat::Example => INPUTS
            .iter()
            .map(|name| {
                let dtype = if CATEGORICAL.contains(name) {
                    "string"
                } else {
                    "int64"
                };
                json!({"name": name, "dtype": dtype, "shape": [-1]})
            })
            .collect(),
    };
    let vocabularies: serde_json::Map<String, Value> = CATEGORICAL
        .iter()
        .zip(&spec.vocabularies)
        .map(|(name, vocab)| (name.to_string(), json!(vocab)))
        .collect();
    let numeric: serde_json::Map<String, Value> = NUMERIC
        .iter()
        .enumerate()
        .map(|(j, name)| {
            (
                name.to_string(),
                json!({"mean": spec.numeric_mean[j], "std": spec.numeric_std[j], "log1p": LOG_SCALED[j]}),
            )
        })
        .collect();
    json!({
        "format": "mlengine/census-wide-deep/v1",
        "export_format": config.export_format,
        "created_unix_seconds": created,
        "global_step": metrics.global_step,
        "producer": format!("mlengine {}", env!("CARGO_PKG_VERSION")),
        "signature": {
            "name": "serving_default",
            "inputs": inputs,
            "outputs": [
                {"name": "probabilities", "dtype": "float32", "shape": [-1, 2]},
                {"name": "logits", "dtype": "float32", "shape": [-1, 1]},
                {"name": "classes", "dtype": "int64", "shape": [-1]},
                {"name": "logistic", "dtype": "float32", "shape": [-1, 1]},
            ],
        },
        "out_of_vocabulary_id": 0,
        "vocabularies": vocabularies,
        "numeric": numeric,
        "training": config,
        "eval_metrics": metrics,
    })
}

/// Publishes a version under `<job-dir>/export/Servo/` and returns its URI.
pub fn export(
    job_dir: &JobDir,
    spec: &FeatureSpec,
    weights: &WideDeepWeights,
    config: &TrainConfig,
    metrics: &EvalMetrics,
) -> Result<String> {
    let onnx = onnx_bytes(spec, weights, config.export_format)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    job_dir.export(
        |attempt| (now + attempt as u64).to_string(),
        |dir| {
            let meta = metadata(spec, config, metrics, now);
            std::fs::write(dir.join(METADATA_FILE), serde_json::to_vec_pretty(&meta)?)?;
            if config.export_format == ExportFormat::Csv {
                // The synthetic warm-up row of a string input is empty, which is no census row.
                std::fs::write(
                    dir.join(WARMUP_FILE),
                    format!("{}\n", json!(WARMUP_CSV_ROW)),
                )?;
            }
            std::fs::write(dir.join(MODEL_FILE), &onnx)?;
            Ok(())
        },
    )
}
