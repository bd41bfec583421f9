//! What watches a training run: every step's loss, every evaluation's metrics, every checkpoint.
//! The trainer writes its job-dir's metric files through one observer; the command adds its
//! console (progress bar and evaluation lines); event files and HyperTune reports are more.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::job_dir::JobDir;
use super::metrics::EvalMetrics;
use crate::storage::write_atomic;

pub trait Observer {
    /// Before the first step: the global step training starts from, and the one it will stop
    /// at when that is known.
    fn started(&mut self, _global_step: u64, _last_step: Option<u64>) {}

    /// After every training step, with the global step it reached.
    fn step(&mut self, _global_step: u64, _loss: f32) {}

    /// After each evaluation, the final one included.
    fn evaluated(&mut self, _metrics: &EvalMetrics) -> Result<()> {
        Ok(())
    }

    /// After a checkpoint of `global_step` is saved.
    fn checkpointed(&mut self, _global_step: u64) {}

    /// When training stops (before the final evaluation and the export).
    fn finished(&mut self, _global_step: u64) {}
}

/// `eval_metrics.json` (the latest evaluation) and `eval_history.jsonl` (every evaluation) in
/// the job-dir.
pub struct MetricFiles {
    pub job_dir: Arc<JobDir>,
}

pub const LATEST_METRICS: &str = "eval_metrics.json";
pub const METRICS_HISTORY: &str = "eval_history.jsonl";

impl Observer for MetricFiles {
    fn evaluated(&mut self, metrics: &EvalMetrics) -> Result<()> {
        let latest = self.job_dir.path(LATEST_METRICS);
        write_atomic(&latest, &serde_json::to_vec_pretty(metrics)?)?;
        self.job_dir.publish(LATEST_METRICS)?;
        // Appended locally; a bucket gets the whole file again (objects cannot be appended to).
        use std::io::Write;
        let path = self.job_dir.path(METRICS_HISTORY);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(metrics)?)?;
        drop(f);
        self.job_dir.publish(METRICS_HISTORY)
    }
}
