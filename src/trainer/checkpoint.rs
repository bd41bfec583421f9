//! Checkpoints in the job-dir, as an Estimator keeps them: numbered `model.ckpt-<step>` files and a
//! small index (`checkpoint.json`) naming the latest. A second `train` on the same job-dir resumes
//! from the latest one: parameters, optimizer moments, global step and position in the data.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::network::Network;
use super::optimizer::{Optimizer, OptimizerKind};
use crate::census::FeatureSpec;
use crate::storage::write_atomic;

const INDEX: &str = "checkpoint.json";

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
pub fn save(
    job_dir: &Path,
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
    let name = format!("model.ckpt-{}.safetensors", state.global_step);
    let path = job_dir.join(&name);
    let tmp = job_dir.join(format!(".{name}.tmp-{}", std::process::id()));
    candle_core::safetensors::save(&tensors, &tmp)
        .with_context(|| format!("cannot write checkpoint {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;

    let mut all = read_index(job_dir)?.map(|i| i.all).unwrap_or_default();
    all.retain(|n| n != &name);
    all.push(name.clone());
    while all.len() > keep {
        let old = all.remove(0);
        let _ = fs::remove_file(job_dir.join(old));
    }
    let index = Index {
        latest: name,
        all,
        state: state.clone(),
    };
    write_atomic(&job_dir.join(INDEX), &serde_json::to_vec_pretty(&index)?)
}

fn read_index(job_dir: &Path) -> Result<Option<Index>> {
    let path = job_dir.join(INDEX);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not a valid checkpoint index", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The latest checkpoint's state and tensors, if the job-dir has one.
pub fn load_latest(job_dir: &Path) -> Result<Option<(CheckpointState, HashMap<String, Tensor>)>> {
    let Some(index) = read_index(job_dir)? else {
        return Ok(None);
    };
    let path = job_dir.join(&index.latest);
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
