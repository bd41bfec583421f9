//! `mlengine bench-ort`: the raw cost of one ONNX Runtime run of a model version, without any
//! server around it, for the batch sizes a server forms. The serving benchmark subtracts it from
//! request latency to report the server's own overhead.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::census::{csv, fixture};
use crate::cli::BenchOrtArgs;
use crate::codec::instances::decode_instances;
use crate::runtime::{load_model, SessionConfig};

pub fn run(args: &BenchOrtArgs, ort_library: Option<PathBuf>) -> Result<()> {
    // A day at most: past what a duration holds, `from_secs_f64` panics.
    if args.batch_sizes.contains(&0) || !(args.seconds > 0.0 && args.seconds <= 86_400.0) {
        bail!("--batch-sizes must be positive and --seconds above zero and at most 86400 (a day)");
    }
    let runtime = super::runtime(1)?;
    let (model, _download) =
        runtime.block_on(crate::repository::fetch::model_file(&args.model_dir))?;
    let mut session = load_model(
        &model,
        ort_library.as_deref(),
        SessionConfig {
            intra_threads: args.intra_op_threads.max(1),
            device: args.device,
        },
    )?;
    let (rows, source) = match &args.data {
        Some(path) => (csv::read_local_files(&[path])?, path.display().to_string()),
        None => (
            fixture::rows(4096, 7),
            "generated census rows (--data for a file)".into(),
        ),
    };
    let instances: Vec<Value> = fixture::to_json_instances(&rows)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("census rows as JSON")?;
    let mut results = Vec::new();
    for &size in &args.batch_sizes {
        // Inputs are consumed by a run: prepare them outside the timed section.
        let batches: Vec<_> = instances
            .chunks(size)
            .filter(|c| c.len() == size)
            .take(64)
            .map(|chunk| decode_instances(session.signature(), chunk))
            .collect::<Result<_, _>>()?;
        if batches.is_empty() {
            bail!("fewer rows than the batch size {size}");
        }
        let mut timings = Vec::new();
        let warmup = Duration::from_secs_f64(args.seconds / 10.0);
        let measured = Duration::from_secs_f64(args.seconds);
        let begin = Instant::now();
        let pause = Duration::from_micros(args.pause_us);
        let mut k = 0;
        loop {
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
            let inputs = &batches[k % batches.len()];
            k += 1;
            let start = Instant::now();
            session.run(inputs, &[])?;
            let took = start.elapsed();
            let since = begin.elapsed();
            if since > warmup {
                timings.push(took);
            }
            if since > warmup + measured {
                break;
            }
        }
        timings.sort();
        let micros = |q: f64| {
            let i = ((timings.len() as f64 * q) as usize).min(timings.len() - 1);
            timings[i].as_secs_f64() * 1e6
        };
        let total: Duration = timings.iter().sum();
        let mean = total.as_secs_f64() * 1e6 / timings.len() as f64;
        results.push(json!({
            "batch_size": size,
            "runs": timings.len(),
            "mean_us": mean,
            "p50_us": micros(0.5),
            "p90_us": micros(0.9),
            "p99_us": micros(0.99),
            "rows_per_second": size as f64 * 1e6 / mean,
        }));
    }
    let report = json!({
        "model": model.display().to_string(),
        "rows": source,
        "intra_op_threads": args.intra_op_threads,
        "pause_us": args.pause_us,
        "results": results,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("rows: {source}");
        println!(
            "{:>5} {:>8} {:>9} {:>9} {:>9} {:>10}",
            "batch", "runs", "mean_us", "p50_us", "p99_us", "rows/s"
        );
        for r in &results {
            println!(
                "{:>5} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>10.0}",
                // Numbers, not JSON values: a value's Display ignores the column width.
                r["batch_size"].as_u64().unwrap_or(0),
                r["runs"].as_u64().unwrap_or(0),
                r["mean_us"].as_f64().unwrap_or(0.0),
                r["p50_us"].as_f64().unwrap_or(0.0),
                r["p99_us"].as_f64().unwrap_or(0.0),
                r["rows_per_second"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
