//! Model status and metadata, written once for the four adapters that answer them (TF Serving
//! REST and gRPC, KServe v2 REST and gRPC); each only formats the answer.

use std::sync::Arc;

use super::service::InferenceService;
use crate::repository::{LoadedVersion, VersionSelector, VersionStatus};
use crate::status::{Error, Result};

/// What a metadata request answers: the version that the selector names, with the model's
/// served version numbers.
pub struct ModelMetadata {
    pub model: String,
    pub version: Arc<LoadedVersion>,
    /// Served version numbers, ascending.
    pub versions: Vec<u64>,
}

impl InferenceService {
    /// The status of every version of a model seen (`Default`), or of the version a number or
    /// label names, even one that failed to load.
    pub fn version_status(
        &self,
        model: &str,
        selector: &VersionSelector,
    ) -> Result<Vec<VersionStatus>> {
        let served = self.manager.model(model)?;
        let wanted = match selector {
            VersionSelector::Default => None,
            VersionSelector::Number(n) => Some(*n),
            // The label's version whether or not it is served: a label on a version that
            // failed to load answers with that failure, as a number would.
            label => served.number(label)?,
        };
        let list: Vec<VersionStatus> = served
            .status()
            .into_iter()
            .filter(|s| wanted.is_none_or(|w| w == s.version))
            .collect();
        match wanted {
            Some(w) if list.is_empty() => Err(Error::not_found(format!(
                "model '{model}' has no version {w}"
            ))),
            _ => Ok(list),
        }
    }

    /// The signature and versions of the version a selector names.
    pub fn metadata(&self, model: &str, selector: &VersionSelector) -> Result<ModelMetadata> {
        let served = self.manager.model(model)?;
        let version = served.resolve(selector)?;
        Ok(ModelMetadata {
            model: served.name.clone(),
            version,
            versions: served.versions().keys().copied().collect(),
        })
    }
}
