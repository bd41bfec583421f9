//! A tuning job's `trainingOutput` exactly as `projects.jobs.get` showed it: `completedTrialCount`
//! as a string, `trials` best first, each with `trialId`, `hyperparameters` (every value a
//! string), `finalMetric {trainingStep (a string), objectiveValue}`, `state`, `startTime`,
//! `endTime` and `isTrialStoppedEarly`. The same file, rewritten atomically as trials start and
//! end, is what a resumed job reads back.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

use super::config::{Goal, Spec};
use super::space::Value;
use super::trial::Report;
use crate::storage::write_atomic;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    Running,
    Succeeded,
    Failed,
}

impl TrialState {
    fn name(self) -> &'static str {
        match self {
            TrialState::Running => "RUNNING",
            TrialState::Succeeded => "SUCCEEDED",
            TrialState::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrialRecord {
    pub id: u32,
    pub values: Vec<(String, Value)>,
    pub state: TrialState,
    pub start_time: String,
    pub end_time: Option<String>,
    /// (trainingStep, objectiveValue) of the last report.
    pub final_metric: Option<(u64, f64)>,
    pub stopped_early: bool,
    /// Every report, for the median stopping rule (not part of the output).
    pub reports: Vec<Report>,
    pub error: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl TrialRecord {
    pub fn started(id: u32, values: Vec<(String, Value)>) -> TrialRecord {
        TrialRecord {
            id,
            values,
            state: TrialState::Running,
            start_time: now(),
            end_time: None,
            final_metric: None,
            stopped_early: false,
            reports: Vec::new(),
            error: None,
        }
    }

    pub fn end(&mut self) {
        self.end_time = Some(now());
    }

    /// `name=value, ...` for console lines.
    pub fn values_text(&self) -> String {
        self.values
            .iter()
            .map(|(n, v)| format!("{n}={}", v.text()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn to_json(&self) -> Json {
        let hyperparameters: Map<String, Json> = self
            .values
            .iter()
            .map(|(n, v)| (n.clone(), Json::String(v.text())))
            .collect();
        let mut t = json!({
            "trialId": self.id.to_string(),
            "hyperparameters": hyperparameters,
            "state": self.state.name(),
            "startTime": self.start_time,
        });
        if let Some(end) = &self.end_time {
            t["endTime"] = json!(end);
        }
        if let Some((step, value)) = self.final_metric {
            t["finalMetric"] = json!({"trainingStep": step.to_string(), "objectiveValue": value});
        }
        if self.stopped_early {
            t["isTrialStoppedEarly"] = json!(true);
        }
        if let Some(e) = &self.error {
            t["errorMessage"] = json!(e);
        }
        if !self.reports.is_empty() {
            // Kept for the median stopping rule of a resumed job; `jobs.get` shows it as
            // `allMetrics`, which Cloud ML left empty.
            t["allMetrics"] = self
                .reports
                .iter()
                .map(|r| json!({"trainingStep": r.step.to_string(), "objectiveValue": r.value}))
                .collect();
        }
        t
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingOutput(pub Json);

/// `trainingOutput` of `trials`: the best first (by the goal), then the rest by ID.
pub fn training_output(spec: &Spec, trials: &[TrialRecord]) -> TrainingOutput {
    let mut sorted: Vec<&TrialRecord> = trials.iter().collect();
    sorted.sort_by(|a, b| match (a.final_metric, b.final_metric) {
        (Some((_, x)), Some((_, y))) => match spec.goal {
            Goal::Maximize => y.total_cmp(&x),
            Goal::Minimize => x.total_cmp(&y),
        }
        .then(a.id.cmp(&b.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(&b.id),
    });
    let completed = trials
        .iter()
        .filter(|t| t.state == TrialState::Succeeded)
        .count();
    TrainingOutput(json!({
        "completedTrialCount": completed.to_string(),
        "trials": sorted.iter().map(|t| t.to_json()).collect::<Vec<_>>(),
        "consumedMLUnits": 0,
        "isHyperparameterTuningJob": true,
        "hyperparameterMetricTag": spec.metric_tag,
    }))
}

/// Writes `{"trainingOutput": ..., "studyId": ...}` atomically (`studyId` when the job has a
/// name).
pub fn write(path: &Path, spec: &Spec, trials: &[TrialRecord], study: Option<&str>) -> Result<()> {
    let mut doc = json!({"trainingOutput": training_output(spec, trials).0});
    if let Some(study) = study {
        doc["studyId"] = json!(study);
    }
    write_atomic(path, &serde_json::to_vec_pretty(&doc)?)
}

/// The name of the job whose trials an output file holds: `None` when there is no file,
/// `Some(None)` for a job without a name.
pub fn read_study_id(path: &Path) -> Result<Option<Option<String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let doc: Json = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a tuning job's output", path.display()))?;
    Ok(Some(doc["studyId"].as_str().map(String::from)))
}

/// The trials of an earlier job's output file (none when there is no file). Trials whose
/// parameters do not fit this job's spec are an error: a resumed study keeps its space.
pub fn read_trials(path: &Path, spec: &Spec) -> Result<Vec<TrialRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let doc: Json = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a tuning job's output", path.display()))?;
    let mut trials = Vec::new();
    for t in doc
        .pointer("/trainingOutput/trials")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let id: u32 = t["trialId"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{}: a trial without a trialId", path.display()))?;
        let mut values = Vec::new();
        for p in &spec.params {
            let text = t["hyperparameters"][&p.name].as_str().unwrap_or_default();
            let v = p.parse(text).with_context(|| {
                format!(
                    "{}: trial {id} has {}={text:?}, which this job's spec does not allow",
                    path.display(),
                    p.name
                )
            })?;
            values.push((p.name.clone(), v));
        }
        let state = match t["state"].as_str() {
            Some("SUCCEEDED") => TrialState::Succeeded,
            Some("FAILED") => TrialState::Failed,
            _ => TrialState::Running,
        };
        let step_value = |m: &Json| -> Option<(u64, f64)> {
            Some((
                m["trainingStep"].as_str()?.parse().ok()?,
                m["objectiveValue"].as_f64()?,
            ))
        };
        trials.push(TrialRecord {
            id,
            values,
            state,
            start_time: t["startTime"].as_str().unwrap_or_default().to_string(),
            end_time: t["endTime"].as_str().map(String::from),
            final_metric: step_value(&t["finalMetric"]),
            stopped_early: t["isTrialStoppedEarly"].as_bool().unwrap_or(false),
            reports: t["allMetrics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(step_value)
                .map(|(step, value)| Report { step, value })
                .collect(),
            error: t["errorMessage"].as_str().map(String::from),
        });
    }
    Ok(trials)
}
