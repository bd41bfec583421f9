//! Checkpoints in the job-dir, as an Estimator keeps them: numbered `model.ckpt-<step>` files and a
//! small index (`checkpoint.json`) naming the latest. A second `train` on the same job-dir resumes
//! from the latest one: parameters, optimizer moments, global step and position in the data.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::job_dir::JobDir;
use super::network::Network;
use super::optimizer::{Optimizer, OptimizerKind};
use crate::census::FeatureSpec;
use crate::storage::write_atomic;

/// The index naming the latest checkpoint.
pub const INDEX: &str = "checkpoint.json";

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub global_step: u64,
    /// Completed passes over the training data.
    pub epoch: u64,
    /// Index of the next batch within the current epoch.
    pub batch_in_epoch: u64,
    pub seed: u64,
    pub train_batch_size: usize,
    pub embedding_size: usize,
    pub hidden_units: Vec<usize>,
    pub optimizer: OptimizerKind,
    pub spec: FeatureSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index {
    latest: String,
    all: Vec<String>,
    state: CheckpointState,
}

/// Writes checkpoint `state.global_step`, then the index, dropping the oldest beyond `keep`.
/// The checkpoint is published before the index that names it, so a reader (or a resumed run)
/// never finds an index pointing at a missing file.
pub fn save(
    job_dir: &JobDir,
    state: &CheckpointState,
    network: &Network,
    optimizer: &Optimizer,
    keep: usize,
) -> Result<()> {
    let vars = network.named_vars();
    let mut tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    tensors.extend(optimizer.state(&vars));
    let name = checkpoint_name(state.global_step);
    let path = job_dir.path(&name);
    let tmp = job_dir.path(&format!(".{name}.tmp-{}", std::process::id()));
    candle_core::safetensors::save(&tensors, &tmp)
        .with_context(|| format!("cannot write checkpoint {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    job_dir.publish(&name)?;

    let mut all = read_index(job_dir.path(INDEX).as_path())?
        .map(|i| i.all)
        .unwrap_or_default();
    all.retain(|n| n != &name);
    all.push(name.clone());
    let mut dropped = Vec::new();
    while all.len() > keep {
        dropped.push(all.remove(0));
    }
    let index = Index {
        latest: name,
        all,
        state: state.clone(),
    };
    write_atomic(&job_dir.path(INDEX), &serde_json::to_vec_pretty(&index)?)?;
    job_dir.publish(INDEX)?;
    for old in dropped {
        job_dir.remove(&old)?;
    }
    sweep(job_dir, &index.all);
    Ok(())
}

/// The file name of the checkpoint of a step.
pub fn checkpoint_name(step: u64) -> String {
    format!("model.ckpt-{step}.safetensors")
}

/// The checkpoint file the index in `dir` names, for bringing it down from a bucket.
pub fn latest_name(dir: &Path) -> Vec<String> {
    read_index(&dir.join(INDEX))
        .ok()
        .flatten()
        .map(|i| vec![i.latest])
        .unwrap_or_default()
}

/// The step of a checkpoint file's name, when it is one.
fn checkpoint_step(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix("model.ckpt-")?
        .strip_suffix(".safetensors")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn read_index(path: &Path) -> Result<Option<Index>> {
    let index: Index = match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid checkpoint index", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // The names become paths (read, and removed past --keep-checkpoint-max): an index, perhaps
    // from a bucket, that names anything but a checkpoint of this folder is refused.
    if let Some(bad) = std::iter::once(&index.latest)
        .chain(&index.all)
        .find(|n| checkpoint_step(n).is_none())
    {
        anyhow::bail!(
            "{} names {bad:?}, which is not a checkpoint file (model.ckpt-<step>.safetensors)",
            path.display()
        );
    }
    Ok(Some(index))
}

/// Removes what a run killed while checkpointing left behind: a checkpoint written but not yet
/// in the index (or written again after the index dropped it), and unfinished temporary files.
/// Only local files: a bucket job-dir's staging folder is new in each run.
fn sweep(job_dir: &JobDir, kept: &[String]) {
    let Ok(entries) = fs::read_dir(job_dir.path("")) else {
        return;
    };
    let own = format!(".tmp-{}", std::process::id());
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let orphan = checkpoint_step(&name).is_some() && !kept.contains(&name);
        let ours = (name.starts_with(".model.ckpt-") || name.starts_with(&format!(".{INDEX}")))
            && name.contains(".tmp-")
            && !name.ends_with(&own);
        // The safetensors writer's own temporary sibling (tempfile's `.tmpXXXXXX`).
        let writers = name.len() == 10
            && name.starts_with(".tmp")
            && name[4..].bytes().all(|b| b.is_ascii_alphanumeric());
        let unfinished = (ours || writers) && entry.file_type().is_ok_and(|t| t.is_file());
        if orphan || unfinished {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The latest checkpoint's state and tensors, if the job-dir (a local folder, or a bucket
/// job-dir's staging folder) has one.
pub fn load_latest(dir: &Path) -> Result<Option<(CheckpointState, HashMap<String, Tensor>)>> {
    let Some(index) = read_index(&dir.join(INDEX))? else {
        return Ok(None);
    };
    let path = dir.join(&index.latest);
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    Ok(Some((index.state, tensors)))
}

/// Rebuilds the trained network of a job-dir's latest checkpoint, with its feature spec.
pub fn restore_network(job_dir: &Path) -> Result<(Network, CheckpointState)> {
    let (state, tensors) = load_latest(job_dir)?
        .with_context(|| format!("{} holds no checkpoint", job_dir.display()))?;
    let network = Network::init(
        &state.spec,
        state.embedding_size,
        &state.hidden_units,
        state.seed,
    )?;
    network.load(&tensors)?;
    Ok((network, state))
}
