//! The one inference path every protocol adapter calls. A [`Call`] resolves the model version a
//! request asks for, conforms and runs its tensors through that version's batcher, and records
//! the request once, whatever the protocol.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connections::{Connections, Streams};
use super::lifecycle::Lifecycle;
use crate::observability::Metrics;
use crate::repository::{LoadedVersion, Manager, VersionSelector};
use crate::status::Result;
use crate::tensor::{Outputs, Tensor};

/// The metric label of requests for a model the server does not know: client input never
/// becomes a label value, so it cannot grow the series without bound.
pub const UNKNOWN_MODEL: &str = "(unknown)";

pub struct InferenceService {
    pub manager: Arc<Manager>,
    pub metrics: Arc<Metrics>,
    pub lifecycle: Arc<Lifecycle>,
    /// The listeners' open connections: a request with the server to itself may run in place.
    pub connections: Arc<Connections>,
    /// Deadline of requests that bring none (`--request-timeout-ms`).
    pub default_timeout: Option<Duration>,
}

impl InferenceService {
    /// Starts accounting for one request of `api` (`cloudml`, `tfserving`, `kserve`, ...) over
    /// `protocol` (`rest`, `grpc`), arrived at `start`.
    pub fn call(&self, api: &'static str, protocol: &'static str, start: Instant) -> Call<'_> {
        Call {
            service: self,
            api,
            protocol,
            start,
            model: UNKNOWN_MODEL.to_string(),
            version: None,
            streams: None,
        }
    }

    /// A request's deadline: its own timeout, else the server's default, counted from `start`;
    /// none when it lies beyond what the clock can count (a client's "never").
    pub fn deadline(&self, start: Instant, requested: Option<Duration>) -> Option<Instant> {
        requested
            .or(self.default_timeout)
            .and_then(|t| start.checked_add(t))
    }

    /// The version a selector names, for status and metadata.
    pub fn resolve(&self, model: &str, selector: &VersionSelector) -> Result<Arc<LoadedVersion>> {
        self.manager.model(model)?.resolve(selector)
    }

    /// Ready: accepting requests, and every model has an available version.
    pub fn ready(&self) -> bool {
        self.lifecycle.accepting() && self.manager.is_ready()
    }

    /// Ready for one model's version.
    pub fn model_ready(&self, model: &str, selector: &VersionSelector) -> bool {
        self.lifecycle.accepting() && self.resolve(model, selector).is_ok()
    }

    /// Brings the dropped-request counters and the queue gauges up to the batchers' counts
    /// (before a scrape). Retired versions leave the gauges.
    pub fn sync_scrape_metrics(&self) {
        self.metrics.queue_size.reset();
        self.metrics.inflight.reset();
        for model in self.manager.models() {
            let name = model.name.as_str();
            for version in model.versions().values() {
                let labels = [name, version.version_id.as_str()];
                let load = version.batcher.load();
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

/// One prediction request, from its arrival to its recorded outcome.
pub struct Call<'s> {
    service: &'s InferenceService,
    api: &'static str,
    protocol: &'static str,
    start: Instant,
    /// The served model's name once known (a known name, never the client's text).
    model: String,
    version: Option<Arc<LoadedVersion>>,
    /// The calls of the HTTP/2 connection this one came on, where its adapter counts them.
    streams: Option<&'s Streams>,
}

impl<'s> Call<'s> {
    /// The call came on an HTTP/2 connection whose calls are `streams`: as its only call on the
    /// server's only connection, it may run in place (`Connections::alone`).
    pub fn on_streams(&mut self, streams: Option<&'s Streams>) {
        self.streams = streams;
    }
}

impl Call<'_> {
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The request's deadline from its own timeout or the server's default.
    pub fn deadline(&self, requested: Option<Duration>) -> Option<Instant> {
        self.service.deadline(self.start, requested)
    }

    /// The version that serves the request; held until the answer is encoded.
    pub fn resolve(
        &mut self,
        model: &str,
        selector: &VersionSelector,
    ) -> Result<Arc<LoadedVersion>> {
        if self.service.manager.has_model(model) {
            self.model = model.to_string();
        }
        let version = self.service.resolve(model, selector)?;
        self.version = Some(Arc::clone(&version));
        Ok(version)
    }

    /// A Vertex endpoint id names the model; with one model served, any endpoint id reaches it.
    pub fn resolve_endpoint(
        &mut self,
        endpoint: &str,
        selector: &VersionSelector,
    ) -> Result<Arc<LoadedVersion>> {
        if !self.service.manager.has_model(endpoint) {
            if let [only] = self.service.manager.models().as_slice() {
                let name = only.name.clone();
                return self.resolve(&name, selector);
            }
        }
        self.resolve(endpoint, selector)
    }

    /// Runs inputs (one tensor per signature input, in order) on `version` and returns the
    /// outputs asked for by index (all when empty). Inputs of another numeric type are converted
    /// exactly here, once for every protocol. A request still queued at `deadline` is answered
    /// DEADLINE_EXCEEDED and never run.
    pub async fn run(
        &self,
        version: &LoadedVersion,
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
        deadline: Option<Instant>,
    ) -> Result<Outputs> {
        let inputs = version.signature().conform(inputs)?;
        crate::tensor::batch_size(&inputs)?;
        let started = Instant::now();
        let alone = self.service.connections.alone(self.streams);
        let result = version.batcher.run(inputs, outputs, deadline, alone).await;
        // Requests refused at once (a full queue) or dropped unrun (past their deadline) would
        // pull the histogram toward zero just when the server is overloaded: only runs count.
        let ran = result?;
        let m = version.metrics.get_or_init(|| {
            self.service
                .metrics
                .version(&version.model, &version.version_id)
        });
        m.inference_duration
            .observe(started.elapsed().as_secs_f64());
        m.queue_duration.observe(ran.queued.as_secs_f64());
        if ran.in_place {
            m.runs_here.inc();
        }
        if ran.first_in_batch {
            m.batch_size.observe(ran.batch_rows as f64);
        }
        Ok(ran.outputs)
    }

    /// Records the request's outcome under the HTTP status of its result.
    pub fn finish<T>(self, result: &Result<T>) {
        let status = match result {
            Ok(_) => 200,
            Err(e) => e.code.http_status(),
        };
        let version = self.version.as_ref().map_or("", |v| v.version_id.as_str());
        self.service.metrics.record_request(
            &self.model,
            version,
            self.api,
            self.protocol,
            status,
            self.start,
        );
    }
}
