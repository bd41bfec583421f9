//! The model registry: per model, an `ArcSwap` of the versions being served. The poller loads and
//! warms a complete version before it is swapped in; requests hold an `Arc` of the version they
//! started on, so a retired version is freed when its last request finishes. A version that fails
//! to load never replaces a served one, and is retried only when its files change.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use super::policy::VersionPolicy;
use super::{versions, MODEL_FILE};
use crate::inference::error::{ErrorKind, InferenceError, InferenceResult};
use crate::inference::tensor::{DType, Signature, Tensor, TensorData};
use crate::runtime::worker::{DropCounts, WorkerConfig, Workers};

/// File of JSON instances (one per line) run against a new version before it is served.
pub const WARMUP_FILE: &str = "warmup.jsonl";

/// What one model serves from where.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub base_path: PathBuf,
    pub policy: VersionPolicy,
    /// Version labels (Cloud ML version names, TF Serving labels) to version numbers.
    pub labels: HashMap<String, u64>,
}

/// Which version a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Number(u64),
    Label(String),
}

impl VersionSelector {
    /// A URL or request segment: digits are a version number, anything else a label.
    pub fn parse(segment: Option<&str>) -> Self {
        match segment {
            None | Some("") => VersionSelector::Latest,
            Some(s) => match s.parse::<u64>() {
                Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => VersionSelector::Number(n),
                _ => VersionSelector::Label(s.to_string()),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    Loading,
    Available,
    End,
}

impl VersionState {
    /// TF Serving's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            VersionState::Loading => "LOADING",
            VersionState::Available => "AVAILABLE",
            VersionState::End => "END",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    pub version: u64,
    pub state: VersionState,
    /// The load error, when the last attempt failed.
    pub error: Option<String>,
}

/// A loaded, warmed version.
pub struct LoadedVersion {
    pub model: String,
    pub version: u64,
    pub version_string: String,
    pub workers: Workers,
    /// This version's metric series, resolved once (label lookups are string hashing).
    pub metrics: std::sync::OnceLock<crate::observability::VersionMetrics>,
}

impl LoadedVersion {
    pub fn signature(&self) -> &Signature {
        self.workers.signature()
    }
}

type Fingerprint = Option<(SystemTime, u64)>;

pub struct ServedModel {
    pub config: ModelConfig,
    /// Requests of any of its versions dropped unrun.
    pub drops: Arc<DropCounts>,
    served: ArcSwap<BTreeMap<u64, Arc<LoadedVersion>>>,
    status: Mutex<BTreeMap<u64, VersionStatus>>,
    failed: Mutex<HashMap<u64, Fingerprint>>,
}

impl ServedModel {
    fn new(config: ModelConfig) -> Self {
        ServedModel {
            config,
            drops: Arc::default(),
            served: ArcSwap::from_pointee(BTreeMap::new()),
            status: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(HashMap::new()),
        }
    }

    pub fn served(&self) -> Arc<BTreeMap<u64, Arc<LoadedVersion>>> {
        self.served.load_full()
    }

    pub fn is_ready(&self) -> bool {
        !self.served.load().is_empty()
    }

    /// Status of every version seen, ascending.
    pub fn status(&self) -> Vec<VersionStatus> {
        self.status
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    fn set_status(&self, version: u64, state: VersionState, error: Option<String>) {
        if let Ok(mut s) = self.status.lock() {
            s.insert(
                version,
                VersionStatus {
                    version,
                    state,
                    error,
                },
            );
        }
    }

    /// The version a request selects.
    pub fn resolve(&self, selector: &VersionSelector) -> InferenceResult<Arc<LoadedVersion>> {
        let served = self.served.load();
        let name = &self.config.name;
        let found = match selector {
            VersionSelector::Latest => served.values().next_back().cloned(),
            VersionSelector::Number(n) => served.get(n).cloned(),
            VersionSelector::Label(label) => {
                let Some(n) = self.config.labels.get(label) else {
                    return Err(InferenceError::not_found(format!(
                        "model '{name}' has no version label '{label}'"
                    )));
                };
                served.get(n).cloned()
            }
        };
        found.ok_or_else(|| match selector {
            VersionSelector::Latest => InferenceError::new(
                ErrorKind::Unavailable,
                format!("model '{name}' has no available version"),
            ),
            VersionSelector::Number(n) => {
                InferenceError::not_found(format!("model '{name}' has no available version {n}"))
            }
            VersionSelector::Label(l) => InferenceError::not_found(format!(
                "version label '{l}' of model '{name}' points to a version that is not available"
            )),
        })
    }
}

pub struct Registry {
    env: &'static ort::environment::Environment,
    workers: WorkerConfig,
    models: BTreeMap<String, Arc<ServedModel>>,
}

impl Registry {
    pub fn new(
        env: &'static ort::environment::Environment,
        workers: WorkerConfig,
        configs: Vec<ModelConfig>,
    ) -> Self {
        let models = configs
            .into_iter()
            .map(|c| (c.name.clone(), Arc::new(ServedModel::new(c))))
            .collect();
        Registry {
            env,
            workers,
            models,
        }
    }

    pub fn model(&self, name: &str) -> InferenceResult<&Arc<ServedModel>> {
        self.models
            .get(name)
            .ok_or_else(|| InferenceError::not_found(format!("model '{name}' not found")))
    }

    pub fn models(&self) -> impl Iterator<Item = &Arc<ServedModel>> {
        self.models.values()
    }

    /// Ready when every model has an available version.
    pub fn is_ready(&self) -> bool {
        self.models.values().all(|m| m.is_ready())
    }

    /// One pass of the poller over every model; returns load failures as (model, version, error)
    /// so the caller can count them.
    pub fn poll(&self, on_load: &mut dyn FnMut(&str, u64, Option<&str>)) {
        for model in self.models.values() {
            if let Err(e) = self.poll_model(model, on_load) {
                tracing::warn!(model = %model.config.name, "cannot scan base path: {e:#}");
            }
        }
    }

    fn poll_model(
        &self,
        model: &ServedModel,
        on_load: &mut dyn FnMut(&str, u64, Option<&str>),
    ) -> Result<()> {
        let cfg = &model.config;
        let on_disk = versions(&cfg.base_path)?;
        let current = model.served();
        let mut next: BTreeMap<u64, Arc<LoadedVersion>> = BTreeMap::new();
        let limit = cfg.policy.limit();
        for (version, dir) in on_disk.iter().rev() {
            if next.len() >= limit {
                break;
            }
            if !cfg.policy.admits(*version) {
                continue;
            }
            if let Some(loaded) = current.get(version) {
                next.insert(*version, Arc::clone(loaded));
                continue;
            }
            let fingerprint = fingerprint(dir);
            let already_failed = model
                .failed
                .lock()
                .map(|f| f.get(version) == Some(&fingerprint))
                .unwrap_or(false);
            if already_failed {
                continue;
            }
            model.set_status(*version, VersionState::Loading, None);
            match self.load(model, *version, dir) {
                Ok(loaded) => {
                    tracing::info!(model = %cfg.name, version, "loaded and warmed version");
                    on_load(&cfg.name, *version, None);
                    if let Ok(mut f) = model.failed.lock() {
                        f.remove(version);
                    }
                    model.set_status(*version, VersionState::Available, None);
                    next.insert(*version, Arc::new(loaded));
                }
                Err(e) => {
                    let message = format!("{e:#}");
                    tracing::error!(model = %cfg.name, version, "version failed to load: {message}");
                    on_load(&cfg.name, *version, Some(&message));
                    if let Ok(mut f) = model.failed.lock() {
                        f.insert(*version, fingerprint);
                    }
                    model.set_status(*version, VersionState::End, Some(message));
                }
            }
        }
        let changed =
            next.len() != current.len() || next.keys().zip(current.keys()).any(|(a, b)| a != b);
        if changed {
            for version in current.keys().filter(|v| !next.contains_key(v)) {
                tracing::info!(model = %cfg.name, version, "unloading version");
                model.set_status(*version, VersionState::End, None);
            }
            tracing::info!(model = %cfg.name, versions = ?next.keys().collect::<Vec<_>>(), "serving versions");
            model.served.store(Arc::new(next));
        }
        // Versions removed from disk leave the status list once they are no longer served.
        if let Ok(mut status) = model.status.lock() {
            let present: Vec<u64> = on_disk.iter().map(|(v, _)| *v).collect();
            status.retain(|v, s| present.contains(v) || s.state == VersionState::Available);
        }
        Ok(())
    }

    fn load(&self, model: &ServedModel, version: u64, dir: &Path) -> Result<LoadedVersion> {
        let name = &model.config.name;
        let model_file = dir.join(MODEL_FILE);
        if !model_file.is_file() {
            anyhow::bail!("{} has no {MODEL_FILE}", dir.display());
        }
        let workers = Workers::start(
            self.env,
            &model_file,
            &format!("{name}-{version}"),
            self.workers,
            Arc::clone(&model.drops),
        )?;
        warm_up(&workers, dir).with_context(|| format!("warm-up of version {version} failed"))?;
        Ok(LoadedVersion {
            model: name.to_string(),
            version,
            version_string: version.to_string(),
            workers,
            metrics: std::sync::OnceLock::new(),
        })
    }
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let meta = std::fs::metadata(dir.join(MODEL_FILE)).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Runs the version's warm-up instances, or one synthetic row built from the signature.
fn warm_up(workers: &Workers, dir: &Path) -> Result<()> {
    let signature = workers.signature().clone();
    let inputs = match std::fs::read_to_string(dir.join(WARMUP_FILE)) {
        Ok(text) => {
            let instances: Vec<serde_json::Value> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .with_context(|| format!("{WARMUP_FILE} is not JSON lines"))?;
            crate::inference::json_rows::decode_instances(&signature, &instances)?
        }
        Err(_) => synthetic_inputs(&signature),
    };
    workers.run_blocking(inputs, vec![])?;
    Ok(())
}

/// One row of zeros (or empty strings) for every input, free dimensions set to 1.
pub fn synthetic_inputs(signature: &Signature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            let n: usize = shape.iter().product();
            let data = match spec.dtype {
                DType::Bool => TensorData::Bool(vec![false; n]),
                DType::U8 => TensorData::U8(vec![0; n]),
                DType::U16 => TensorData::U16(vec![0; n]),
                DType::U32 => TensorData::U32(vec![0; n]),
                DType::U64 => TensorData::U64(vec![0; n]),
                DType::I8 => TensorData::I8(vec![0; n]),
                DType::I16 => TensorData::I16(vec![0; n]),
                DType::I32 => TensorData::I32(vec![0; n]),
                DType::I64 => TensorData::I64(vec![0; n]),
                DType::F32 => TensorData::F32(vec![0.0; n]),
                DType::F64 => TensorData::F64(vec![0.0; n]),
                DType::String => TensorData::String(vec![String::new(); n]),
            };
            Tensor::new(shape, data)
        })
        .collect()
}
