//! The tuning job in TensorBoard's HParams dashboard (`tensorboard --logdir <job-dir>`): the
//! experiment (the parameters with their ranges, the metrics) in the job-dir's own run, and in
//! each trial's folder the session's start (its values) and end (its status). The trial's
//! trainer writes its scalars there; `mlengine train` puts its evaluations in `eval/`, which is
//! where the experiment's metrics are read from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::config::{Kind, Spec};
use super::space::Value;
use crate::observability::tfevents::hparams::{self, Domain, HParam, Metric};
use crate::observability::tfevents::EventWriter;

/// Metrics of `mlengine train`'s evaluations shown beside the tuning metric.
const TRAINER_METRICS: [&str; 4] = ["accuracy", "auc", "average_loss", "loss"];

/// Writes the experiment into the job-dir's run.
pub fn write_experiment(job_dir: &Path, name: &str, spec: &Spec) -> Result<()> {
    let params: Vec<HParam> = spec
        .params
        .iter()
        .map(|p| HParam {
            name: p.name.clone(),
            domain: match &p.kind {
                Kind::Double { min, max, .. } => Domain::Interval {
                    min: *min,
                    max: *max,
                },
                Kind::Integer { min, max, .. } => Domain::Interval {
                    min: *min as f64,
                    max: *max as f64,
                },
                Kind::Categorical(values) => Domain::Discrete(
                    values
                        .iter()
                        .map(|v| hparams::Value::Text(v.clone()))
                        .collect(),
                ),
                Kind::Discrete { values, .. } => {
                    Domain::Discrete(values.iter().map(|v| hparams::Value::Number(*v)).collect())
                }
            },
        })
        .collect();
    let mut tags = vec![spec.metric_tag.as_str()];
    tags.extend(TRAINER_METRICS.iter().filter(|t| **t != spec.metric_tag));
    let metrics: Vec<Metric> = tags
        .into_iter()
        .map(|tag| Metric {
            group: crate::trainer::EVAL_EVENTS.to_string(),
            tag: tag.to_string(),
        })
        .collect();
    let mut w = EventWriter::create(job_dir)?;
    w.summary(0, hparams::experiment(name, &params, &metrics))?;
    w.flush()
}

/// A trial's session: its start is written when it is launched, its end when it ends.
pub struct Session {
    dir: PathBuf,
}

impl Session {
    pub fn start(trial_dir: &Path, id: u32, values: &[(String, Value)]) -> Result<Session> {
        let hparams: BTreeMap<String, hparams::Value> = values
            .iter()
            .map(|(name, v)| {
                let v = match v {
                    Value::Double(x) | Value::Discrete(x) => hparams::Value::Number(*x),
                    Value::Integer(i) => hparams::Value::Number(*i as f64),
                    Value::Categorical(s) => hparams::Value::Text(s.clone()),
                };
                (name.clone(), v)
            })
            .collect();
        let mut writer = EventWriter::create(trial_dir)?;
        writer.summary(0, hparams::session_start(&hparams, &id.to_string()))?;
        writer.flush()?;
        Ok(Session {
            dir: trial_dir.to_path_buf(),
        })
    }

    /// In a file of its own that sorts after the trainer's: TensorBoard follows a folder's files
    /// in name order and, once it has moved on to a later file, seldom reads an earlier one
    /// again, so an end appended to the start's file (older than the trainer's) goes unseen.
    pub fn end(self, succeeded: bool) -> Result<()> {
        let mut writer = EventWriter::create_last(&self.dir)?;
        writer.summary(0, hparams::session_end(succeeded))?;
        writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::observability::tfevents::records;
    use crate::proto::tensorflow::{event, Event};

    /// The tags of the summaries in an event file.
    fn tags(path: &Path) -> Vec<String> {
        let bytes = std::fs::read(path).unwrap();
        records(&bytes)
            .iter()
            .filter_map(|r| match Event::decode(*r).unwrap().what {
                Some(event::What::Summary(s)) => Some(s.value[0].tag.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_session_ends_in_the_file_that_sorts_last() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("1");
        let session = Session::start(&dir, 1, &[("x".into(), Value::Double(0.5))]).unwrap();
        // The trainer's file, opened after the start's in the same second by another process
        // whose name sorts after this one's.
        let now = crate::observability::tfevents::wall_time() as u64;
        let trainer = dir.join(format!("events.out.tfevents.{now:010}.zzzz.99999999.0"));
        std::fs::write(&trainer, b"").unwrap();
        session.end(true).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(tags(&files[0]), [hparams::SESSION_START_TAG]);
        assert_eq!(files[1], trainer);
        assert_eq!(tags(&files[2]), [hparams::SESSION_END_TAG]);
    }
}
