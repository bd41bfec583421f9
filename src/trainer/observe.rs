//! What watches a training run: every step's loss, every evaluation's metrics, every checkpoint.
//! The trainer writes its job-dir's metric files through one observer; the command adds its
//! console (progress bar and evaluation lines); event files and HyperTune reports are more.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use super::job_dir::JobDir;
use super::metrics::EvalMetrics;
use crate::observability::tfevents::EventWriter;
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

    /// After the final evaluation of a step that the job-dir's history already holds (a
    /// finished job run again): what only shows or reports it takes it as any evaluation,
    /// what records it does not record it twice.
    fn evaluated_again(&mut self, _metrics: &EvalMetrics) -> Result<()> {
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

/// The global step of the last evaluation in the job-dir's history, if any.
pub fn last_evaluated_step(job_dir: &JobDir) -> Option<u64> {
    let text = std::fs::read_to_string(job_dir.path(METRICS_HISTORY)).ok()?;
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    serde_json::from_str::<serde_json::Value>(last)
        .ok()?
        .get("global_step")?
        .as_u64()
}

/// TensorBoard's event files, where a TF Estimator wrote them: training scalars (`loss`,
/// `global_step/sec`, `learning_rate`) in the job-dir every `--log-step-count-steps`, and every
/// evaluation's metrics in `<job-dir>/eval/` at its global step. Each run opens new files, so a
/// resumed run's points continue the same curves. A bucket job-dir gets the files again at every
/// checkpoint and evaluation.
pub struct EventFiles {
    job_dir: Arc<JobDir>,
    every: u64,
    learning_rate: f64,
    train: Option<EventWriter>,
    eval: Option<EventWriter>,
    /// The step and time the next `global_step/sec` is counted from.
    rate_from: Option<(u64, Instant)>,
    /// A resumed run's first step, where its files start a session (see
    /// [`EventWriter::session_start`]).
    resumed_at: Option<u64>,
    /// A write that failed between evaluations, reported at the next one.
    failed: Option<anyhow::Error>,
}

/// The folder of the evaluation's event files (an Estimator's `eval` run).
pub const EVAL_EVENTS: &str = "eval";

impl EventFiles {
    pub fn new(job_dir: Arc<JobDir>, every: u64, learning_rate: f64) -> EventFiles {
        EventFiles {
            job_dir,
            every: every.max(1),
            learning_rate,
            train: None,
            eval: None,
            rate_from: None,
            resumed_at: None,
            failed: None,
        }
    }

    /// Flushes both files and publishes them to a bucket job-dir.
    fn sync(&mut self) -> Result<()> {
        for (writer, folder) in [(&mut self.train, ""), (&mut self.eval, EVAL_EVENTS)] {
            let Some(w) = writer else { continue };
            w.flush()?;
            let file = w
                .path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let name = if folder.is_empty() {
                file.to_string()
            } else {
                format!("{folder}/{file}")
            };
            self.job_dir.publish(&name)?;
        }
        Ok(())
    }

    /// A new file in `folder`; a resumed run's begins with its session's start.
    fn open(&self, folder: &str) -> Result<EventWriter> {
        let mut w = EventWriter::create(&self.job_dir.path(folder))?;
        if let Some(step) = self.resumed_at {
            w.session_start(step)?;
        }
        Ok(w)
    }

    fn keep(&mut self, result: Result<()>) {
        if let Err(e) = result {
            self.failed.get_or_insert(e);
        }
    }
}

impl Observer for EventFiles {
    fn started(&mut self, global_step: u64, _last_step: Option<u64>) {
        self.resumed_at = (global_step > 0).then_some(global_step + 1);
        match self.open("") {
            Ok(w) => self.train = Some(w),
            Err(e) => self.keep(Err(e)),
        }
        self.rate_from = Some((global_step, Instant::now()));
    }

    fn step(&mut self, global_step: u64, loss: f32) {
        if !global_step.is_multiple_of(self.every) {
            return;
        }
        let Some(w) = self.train.as_mut() else {
            return;
        };
        let mut values = vec![("loss", loss as f64), ("learning_rate", self.learning_rate)];
        if let Some((from, at)) = self.rate_from {
            let seconds = at.elapsed().as_secs_f64();
            if global_step > from && seconds > 0.0 {
                values.push(("global_step/sec", (global_step - from) as f64 / seconds));
            }
        }
        self.rate_from = Some((global_step, Instant::now()));
        let result = w.scalars(global_step, &values);
        self.keep(result);
    }

    fn checkpointed(&mut self, _global_step: u64) {
        let result = self.sync();
        self.keep(result);
    }

    fn evaluated(&mut self, metrics: &EvalMetrics) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e.context("cannot write TensorBoard's event files"));
        }
        if self.eval.is_none() {
            self.eval = Some(self.open(EVAL_EVENTS)?);
        }
        if let Some(w) = self.eval.as_mut() {
            w.scalars(metrics.global_step, &metrics.scalars())?;
        }
        self.sync()
    }

    fn finished(&mut self, _global_step: u64) {
        let result = self.sync();
        self.keep(result);
    }
}

/// Reports the evaluation metric named by a tuning job's tag to its metric file, in the format
/// of the `cloudml-hypertune` package (the tuner reads both the same way): at most the last 100
/// reports, the whole file rewritten each time, one JSON object per line with sorted keys and
/// every value but the timestamp a string.
pub struct HypertuneReport {
    path: std::path::PathBuf,
    tag: String,
    trial: String,
    lines: std::collections::VecDeque<String>,
}

/// The tag when a tuning job names none (Cloud ML Engine's default).
pub const DEFAULT_METRIC_TAG: &str = "training/hptuning/metric";

/// Reports `cloudml-hypertune` keeps.
const HYPERTUNE_MAX_REPORTS: usize = 100;

impl HypertuneReport {
    /// From the environment a tuning job gives its trials (`CLOUD_ML_HP_METRIC_FILE`,
    /// `CLOUD_ML_HP_METRIC_TAG`, `CLOUD_ML_TRIAL_ID`); `None` outside one. A tag that is not one
    /// of the evaluation's metrics is an error before training starts.
    pub fn from_env() -> Result<Option<HypertuneReport>> {
        let Some(path) = std::env::var_os("CLOUD_ML_HP_METRIC_FILE") else {
            return Ok(None);
        };
        let tag = std::env::var("CLOUD_ML_HP_METRIC_TAG")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| DEFAULT_METRIC_TAG.to_string());
        let names = metric_names();
        if !names.contains(&tag) {
            anyhow::bail!(
                "the tuning job's metric tag {tag:?} (CLOUD_ML_HP_METRIC_TAG) is not one of the \
                 evaluation's metrics: {}",
                names.join(", ")
            );
        }
        // Where reports go is checked before training, not after it.
        let path = std::path::PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the folder of CLOUD_ML_HP_METRIC_FILE {}",
                    path.display()
                )
            })?;
        }
        Ok(Some(HypertuneReport {
            path,
            tag,
            trial: std::env::var("CLOUD_ML_TRIAL_ID")
                .ok()
                .or_else(trial_of_tf_config)
                .unwrap_or_else(|| "0".into()),
            lines: std::collections::VecDeque::new(),
        }))
    }
}

/// `task.trial` of Cloud ML Engine's `TF_CONFIG`, which names the trial when
/// `CLOUD_ML_TRIAL_ID` does not.
fn trial_of_tf_config() -> Option<String> {
    let config: serde_json::Value = serde_json::from_str(&std::env::var("TF_CONFIG").ok()?).ok()?;
    let trial = config.get("task")?.get("trial")?;
    trial
        .as_str()
        .map(str::to_string)
        .or_else(|| trial.as_u64().map(|n| n.to_string()))
}

/// The names an evaluation reports (`accuracy`, `auc`, `loss`, ...).
pub fn metric_names() -> Vec<String> {
    super::metrics::evaluate(&[0.0], &[0.0], 0)
        .scalars()
        .iter()
        .map(|(name, _)| (*name).to_string())
        .collect()
}

impl Observer for HypertuneReport {
    // The tuner reads the trial's report file, which a run of its own may not have written.
    fn evaluated_again(&mut self, metrics: &EvalMetrics) -> Result<()> {
        self.evaluated(metrics)
    }

    fn evaluated(&mut self, metrics: &EvalMetrics) -> Result<()> {
        let Some((_, value)) = metrics.scalars().into_iter().find(|(n, _)| *n == self.tag) else {
            return Ok(());
        };
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // Keys in sorted order, as the Python package writes them (json.dumps(sort_keys=True)).
        let mut entry = std::collections::BTreeMap::new();
        entry.insert("checkpoint_path", serde_json::json!(""));
        entry.insert(
            "global_step",
            serde_json::json!(metrics.global_step.to_string()),
        );
        entry.insert(self.tag.as_str(), serde_json::json!(value.to_string()));
        entry.insert("timestamp", serde_json::json!(timestamp));
        entry.insert("trial", serde_json::json!(self.trial));
        self.lines.push_back(serde_json::to_string(&entry)?);
        if self.lines.len() > HYPERTUNE_MAX_REPORTS {
            self.lines.pop_front();
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text: String = self.lines.iter().map(|l| format!("{l}\n")).collect();
        write_atomic(&self.path, text.as_bytes())
    }
}
