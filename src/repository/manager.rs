//! The manager of served models, as TF Serving's: models are added and removed at runtime; each
//! poll compares a model's source (its base path) with what it serves, loads and warms a complete
//! new version before swapping it in, and retires versions the policy no longer wants. A version
//! that fails to load never replaces a served one, and is retried only when its files change.
//! Every load, failure and retirement is published as a [`VersionEvent`] to the subscribers
//! (metrics, the management API's operations).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use super::config::ModelConfig;
use super::model::{Fingerprint, LoadedVersion, ServedModel, VersionState};
use super::{source, warmup, MODEL_FILE};
use crate::runtime::worker::{self, WorkerConfig};
use crate::status::{self, Error};

/// What happened to a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionEventKind {
    /// Loaded, warmed and now served.
    Loaded,
    /// The load failed; the version is not served.
    Failed(String),
    /// No longer served (the policy dropped it, its files are gone, or its model was removed).
    Retired,
    /// A version that had failed to load is gone from disk: its failure no longer stands.
    Forgotten,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEvent {
    pub model: String,
    pub version: u64,
    pub kind: VersionEventKind,
    /// How many versions the model serves after the event.
    pub serving: usize,
}

type Subscriber = Box<dyn Fn(&VersionEvent) + Send + Sync>;

pub struct Manager {
    env: &'static ort::environment::Environment,
    workers: WorkerConfig,
    models: ArcSwap<BTreeMap<String, Arc<ServedModel>>>,
    /// Serialises changes of the model set (requests read it without a lock).
    changing: Mutex<()>,
    /// Serialises polls, so a model's versions are compared and swapped by one poller at a time.
    polling: Mutex<()>,
    subscribers: RwLock<Vec<Subscriber>>,
}

impl Manager {
    pub fn new(env: &'static ort::environment::Environment, workers: WorkerConfig) -> Self {
        Manager {
            env,
            workers,
            models: ArcSwap::from_pointee(BTreeMap::new()),
            changing: Mutex::new(()),
            polling: Mutex::new(()),
            subscribers: RwLock::new(Vec::new()),
        }
    }

    /// Calls `f` with every later event, on the thread that polls.
    pub fn subscribe(&self, f: impl Fn(&VersionEvent) + Send + Sync + 'static) {
        if let Ok(mut s) = self.subscribers.write() {
            s.push(Box::new(f));
        }
    }

    fn publish(&self, event: VersionEvent) {
        if let Ok(subscribers) = self.subscribers.read() {
            for s in subscribers.iter() {
                s(&event);
            }
        }
    }

    /// Adds a model; its versions load at the next poll.
    pub fn add_model(&self, config: ModelConfig) -> status::Result<Arc<ServedModel>> {
        let _guard = self.changing.lock();
        let current = self.models.load_full();
        if current.contains_key(&config.name) {
            return Err(Error::already_exists(format!(
                "model '{}' is already served",
                config.name
            )));
        }
        let model = Arc::new(ServedModel::new(config));
        let mut next = (*current).clone();
        next.insert(model.name.clone(), Arc::clone(&model));
        self.models.store(Arc::new(next));
        Ok(model)
    }

    /// Removes a model: new requests no longer find it, and its versions are freed after their
    /// in-flight requests.
    pub fn remove_model(&self, name: &str) -> Option<Arc<ServedModel>> {
        let removed = {
            let _guard = self.changing.lock();
            let current = self.models.load_full();
            let mut next = (*current).clone();
            let removed = next.remove(name)?;
            self.models.store(Arc::new(next));
            removed
        };
        let versions: Vec<u64> = removed.versions().keys().copied().collect();
        removed.set_versions(BTreeMap::new());
        for version in versions {
            removed.set_status(version, VersionState::End, None);
            self.publish(VersionEvent {
                model: name.to_string(),
                version,
                kind: VersionEventKind::Retired,
                serving: 0,
            });
        }
        Some(removed)
    }

    pub fn model(&self, name: &str) -> status::Result<Arc<ServedModel>> {
        self.models
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))
    }

    /// Whether a model of this name is served (for labelling metrics with known names only).
    pub fn has_model(&self, name: &str) -> bool {
        self.models.load().contains_key(name)
    }

    pub fn models(&self) -> Vec<Arc<ServedModel>> {
        self.models.load().values().cloned().collect()
    }

    /// Ready when every model that asks for versions has an available one (a managed model
    /// without versions asks for none).
    pub fn is_ready(&self) -> bool {
        self.models.load().values().all(|m| {
            m.is_ready()
                || matches!(&m.config().policy, super::policy::VersionPolicy::Specific(v) if v.is_empty())
        })
    }

    /// One pass over every model's source.
    pub fn poll(&self) {
        for model in self.models() {
            self.poll_model(&model);
        }
    }

    /// Brings one model's served versions in line with its source and policy.
    pub fn poll_model(&self, model: &ServedModel) {
        let _guard = self.polling.lock();
        if let Err(e) = self.sync_model(model) {
            tracing::warn!(model = %model.name, "cannot scan base path: {e:#}");
        }
    }

    fn sync_model(&self, model: &ServedModel) -> Result<()> {
        let cfg = model.config();
        let on_disk = source::served_versions(&cfg.base_path)?;
        // A managed model with no versions yet asks for none: nothing to warn about.
        let wants_none =
            matches!(&cfg.policy, super::policy::VersionPolicy::Specific(v) if v.is_empty());
        if on_disk.is_empty() && !wants_none {
            tracing::warn!(
                "no versions of model '{}' found under base path {}",
                model.name,
                cfg.base_path.display()
            );
        }
        let current = model.versions();
        let mut next: BTreeMap<u64, Arc<LoadedVersion>> = BTreeMap::new();
        let mut events = Vec::new();
        // Loaded versions are AVAILABLE once they are served, not before.
        let mut loaded_now = Vec::new();
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
                    tracing::info!(model = %model.name, version, "loaded and warmed version");
                    if let Ok(mut f) = model.failed.lock() {
                        f.remove(version);
                    }
                    loaded_now.push(*version);
                    next.insert(*version, Arc::new(loaded));
                    events.push((*version, VersionEventKind::Loaded));
                }
                Err(e) => {
                    let message = format!("{e:#}");
                    tracing::error!(model = %model.name, version, "version failed to load: {message}");
                    if let Ok(mut f) = model.failed.lock() {
                        f.insert(*version, fingerprint);
                    }
                    model.set_status(*version, VersionState::End, Some(message.clone()));
                    events.push((*version, VersionEventKind::Failed(message)));
                }
            }
        }
        let changed =
            next.len() != current.len() || next.keys().zip(current.keys()).any(|(a, b)| a != b);
        if changed {
            for version in current.keys().filter(|v| !next.contains_key(v)) {
                tracing::info!(model = %model.name, version, "unloading version");
                model.set_status(*version, VersionState::End, None);
                events.push((*version, VersionEventKind::Retired));
            }
            tracing::info!(model = %model.name, versions = ?next.keys().collect::<Vec<_>>(), "serving versions");
            model.set_versions(next);
        }
        for version in loaded_now {
            model.set_status(version, VersionState::Available, None);
        }
        // Versions removed from disk leave the status list once they are no longer served, and
        // a failure of one no longer stands.
        let on_disk_now = |v: u64| on_disk.iter().any(|(d, _)| *d == v);
        model.forget_status(on_disk_now);
        if let Ok(mut failed) = model.failed.lock() {
            failed.retain(|v, _| {
                let keep = on_disk_now(*v);
                if !keep {
                    events.push((*v, VersionEventKind::Forgotten));
                }
                keep
            });
        }
        let serving = model.versions().len();
        for (version, kind) in events {
            self.publish(VersionEvent {
                model: model.name.clone(),
                version,
                kind,
                serving,
            });
        }
        Ok(())
    }

    fn load(&self, model: &ServedModel, version: u64, dir: &Path) -> Result<LoadedVersion> {
        let name = &model.name;
        let model_file = dir.join(MODEL_FILE);
        if !model_file.is_file() {
            anyhow::bail!("{} has no {MODEL_FILE}", dir.display());
        }
        let batcher = worker::start(
            self.env,
            &model_file,
            &format!("{name}-{version}"),
            self.workers,
            Arc::clone(&model.drops),
        )?;
        warmup::warm_up(&batcher, dir)
            .with_context(|| format!("warm-up of version {version} failed"))?;
        Ok(LoadedVersion {
            model: name.to_string(),
            version,
            version_id: version.to_string(),
            batcher,
            metrics: std::sync::OnceLock::new(),
        })
    }
}

/// A failed version is tried again once a file of its folder changes, comes or goes: its model,
/// its warm-up file, or the external data an ONNX model names (a missing weights file fails the
/// load while `model.onnx` stays as it was). Bounded, so a vast folder costs a poll little.
fn fingerprint(dir: &Path) -> Fingerprint {
    // Entries, folders included: a link from a folder to its parent must not walk forever.
    const MOST_ENTRIES: usize = 10_000;
    let mut files = Fingerprint::new();
    let mut folders = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            seen += 1;
            if seen > MOST_ENTRIES {
                return files;
            }
            let path = entry.path();
            // Links followed, as the load follows them.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                folders.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.insert(relative.to_path_buf(), (meta.modified().ok(), meta.len()));
            }
        }
    }
    files
}
