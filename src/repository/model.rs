//! A served model: its configuration, the versions it serves right now (an `ArcSwap`, so a
//! request holds the version it started on and a retired version is freed after its last
//! request), and the status of every version seen.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::config::ModelConfig;
use super::selector::VersionSelector;
use crate::runtime::batcher::{Batcher, DropCounts};
use crate::status::{Error, Result};
use crate::tensor::Signature;

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
    /// The version number as answers and metric labels print it.
    pub version_id: String,
    pub batcher: Batcher,
    /// This version's metric series, resolved once (label lookups are string hashing).
    pub metrics: OnceLock<crate::observability::VersionMetrics>,
}

impl LoadedVersion {
    pub fn signature(&self) -> &Signature {
        self.batcher.signature()
    }
}

/// Every file of a version's folder (below it, by relative path) with when it changed and its
/// size, to notice a changed, added or removed file: the model file and its warm-up requests,
/// and the external data files a large ONNX model keeps its weights in.
pub(super) type Fingerprint = BTreeMap<std::path::PathBuf, (Option<SystemTime>, u64)>;

pub struct ServedModel {
    pub name: String,
    config: ArcSwap<ModelConfig>,
    /// Requests of any of its versions dropped unrun.
    pub drops: Arc<DropCounts>,
    versions: ArcSwap<BTreeMap<u64, Arc<LoadedVersion>>>,
    status: Mutex<BTreeMap<u64, VersionStatus>>,
    pub(super) failed: Mutex<HashMap<u64, Fingerprint>>,
}

impl ServedModel {
    pub(super) fn new(config: ModelConfig) -> Self {
        ServedModel {
            name: config.name.clone(),
            config: ArcSwap::from_pointee(config),
            drops: Arc::default(),
            versions: ArcSwap::from_pointee(BTreeMap::new()),
            status: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> Arc<ModelConfig> {
        self.config.load_full()
    }

    /// Replaces the policy, labels and default version; the next poll applies them.
    pub fn set_config(&self, config: ModelConfig) {
        self.config.store(Arc::new(config));
    }

    /// The versions served now, by number.
    pub fn versions(&self) -> Arc<BTreeMap<u64, Arc<LoadedVersion>>> {
        self.versions.load_full()
    }

    pub(super) fn set_versions(&self, versions: BTreeMap<u64, Arc<LoadedVersion>>) {
        self.versions.store(Arc::new(versions));
    }

    pub fn is_ready(&self) -> bool {
        !self.versions.load().is_empty()
    }

    /// Status of every version seen, ascending.
    pub fn status(&self) -> Vec<VersionStatus> {
        self.status
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn set_status(&self, version: u64, state: VersionState, error: Option<String>) {
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

    /// Drops versions that are gone from the source and no longer served from the status list.
    pub(super) fn forget_status(&self, keep: impl Fn(u64) -> bool) {
        if let Ok(mut status) = self.status.lock() {
            status.retain(|v, s| keep(*v) || s.state == VersionState::Available);
        }
    }

    /// The number a selector names, when it names one (labels through the config).
    pub fn number(&self, selector: &VersionSelector) -> Result<Option<u64>> {
        match selector {
            VersionSelector::Default => Ok(self.config.load().default_version),
            VersionSelector::Number(n) => Ok(Some(*n)),
            VersionSelector::Label(label) => match self.config.load().labels.get(label) {
                Some(n) => Ok(Some(*n)),
                None => Err(Error::not_found(format!(
                    "model '{}' has no version label '{label}'",
                    self.name
                ))),
            },
        }
    }

    /// The version a request selects.
    pub fn resolve(&self, selector: &VersionSelector) -> Result<Arc<LoadedVersion>> {
        let versions = self.versions.load();
        let name = &self.name;
        let found = match self.number(selector)? {
            Some(n) => versions.get(&n).cloned(),
            None => versions.values().next_back().cloned(),
        };
        found.ok_or_else(|| match selector {
            VersionSelector::Default => {
                Error::unavailable(format!("model '{name}' has no available version"))
            }
            VersionSelector::Number(n) => {
                Error::not_found(format!("model '{name}' has no available version {n}"))
            }
            VersionSelector::Label(l) => Error::not_found(format!(
                "version label '{l}' of model '{name}' points to a version that is not available"
            )),
        })
    }
}
