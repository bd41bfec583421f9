//! The one inference path every protocol adapter calls: resolve a model version, run named
//! tensors through its workers, record metrics.

use std::sync::Arc;
use std::time::Instant;

use super::error::InferenceResult;
use super::tensor::Tensor;
use crate::observability::Metrics;
use crate::repository::registry::{LoadedVersion, Registry, VersionSelector};
use crate::runtime::worker::Outputs;

pub struct InferenceService {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
}

impl InferenceService {
    /// The version a request is served by; held until the response is built.
    pub fn resolve(
        &self,
        model: &str,
        selector: &VersionSelector,
    ) -> InferenceResult<Arc<LoadedVersion>> {
        self.registry.model(model)?.resolve(selector)
    }

    /// Runs inputs (one tensor per signature input, in order) and returns the outputs asked for by
    /// index (all when empty).
    pub async fn run(
        &self,
        version: &LoadedVersion,
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
    ) -> InferenceResult<Outputs> {
        let batch = super::tensor::batch_size(&inputs)?;
        let start = Instant::now();
        let result = version.workers.run(inputs, outputs).await;
        self.metrics
            .inference_duration
            .with_label_values(&[version.model.as_str(), version.version_string.as_str()])
            .observe(start.elapsed().as_secs_f64());
        self.metrics
            .batch_size
            .with_label_values(&[version.model.as_str()])
            .observe(batch as f64);
        result
    }
}
