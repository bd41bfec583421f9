//! The one inference path every protocol adapter calls: resolve a model version, run named
//! tensors through its workers, record metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::InferenceResult;
use super::tensor::Tensor;
use crate::observability::Metrics;
use crate::repository::registry::{LoadedVersion, Registry, VersionSelector};
use crate::runtime::worker::Outputs;

pub struct InferenceService {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Deadline of requests that bring none (`--request-timeout-ms`).
    pub default_timeout: Option<Duration>,
}

impl InferenceService {
    /// A request's deadline: its own timeout, else the server's default, counted from `start`.
    pub fn deadline(&self, start: Instant, requested: Option<Duration>) -> Option<Instant> {
        requested.or(self.default_timeout).map(|t| start + t)
    }

    /// The version a request is served by; held until the response is built.
    pub fn resolve(
        &self,
        model: &str,
        selector: &VersionSelector,
    ) -> InferenceResult<Arc<LoadedVersion>> {
        self.registry.model(model)?.resolve(selector)
    }

    /// Runs inputs (one tensor per signature input, in order) and returns the outputs asked for by
    /// index (all when empty). A request still queued at `deadline` is answered
    /// DEADLINE_EXCEEDED and never run.
    pub async fn run(
        &self,
        version: &LoadedVersion,
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
        deadline: Option<Instant>,
    ) -> InferenceResult<Outputs> {
        super::tensor::batch_size(&inputs)?;
        let start = Instant::now();
        let result = version.workers.run(inputs, outputs, deadline).await;
        let m = version.metrics.get_or_init(|| {
            self.metrics
                .version(&version.model, &version.version_string)
        });
        m.inference_duration.observe(start.elapsed().as_secs_f64());
        let ran = result?;
        m.queue_duration.observe(ran.queued.as_secs_f64());
        if ran.first_in_batch {
            m.batch_size.observe(ran.batch_rows as f64);
        }
        Ok(ran.outputs)
    }

    /// Brings the dropped-request counters and the queue gauges up to the workers' counts
    /// (before a scrape). Retired versions leave the gauges.
    pub fn sync_scrape_metrics(&self) {
        self.metrics.queue_size.reset();
        self.metrics.inflight.reset();
        for model in self.registry.models() {
            let name = model.config.name.as_str();
            for version in model.served().values() {
                let labels = [name, version.version_string.as_str()];
                let load = version.workers.load();
                self.metrics
                    .queue_size
                    .with_label_values(&labels)
                    .set(load.queued() as i64);
                self.metrics
                    .inflight
                    .with_label_values(&labels)
                    .set(load.inflight() as i64);
            }
            for (reason, count) in [
                ("cancelled", &model.drops.cancelled),
                ("deadline", &model.drops.expired),
            ] {
                let counter = self.metrics.dropped.with_label_values(&[name, reason]);
                let now = count.load(std::sync::atomic::Ordering::Relaxed);
                counter.inc_by(now.saturating_sub(counter.get()));
            }
        }
    }
}
