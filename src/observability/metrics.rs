//! Prometheus metrics, named after the Prometheus guide (`mlengine_` prefix, base units, `_total`
//! counters), with latency buckets fine enough for tens of microseconds.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds, from 10 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
    0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// One model version's inference series, resolved from their labels once.
pub struct VersionMetrics {
    pub inference_duration: prometheus::Histogram,
    pub queue_duration: prometheus::Histogram,
    pub batch_size: prometheus::Histogram,
    pub runs_here: prometheus::IntCounter,
}

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub inference_duration: HistogramVec,
    pub batch_size: HistogramVec,
    pub queue_duration: HistogramVec,
    pub runs_here: IntCounterVec,
    pub dropped: IntCounterVec,
    pub load_attempts: IntCounterVec,
    pub load_failures: IntCounterVec,
    pub available_versions: IntGaugeVec,
    pub version_load_failed: IntGaugeVec,
    pub queue_size: IntGaugeVec,
    pub inflight: IntGaugeVec,
    threads: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mlengine_requests_total",
                "Requests answered, by model, version, API, protocol and HTTP-equivalent status.",
            ),
            &["model", "version", "api", "protocol", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "mlengine_request_duration_seconds",
                "Time from request decoded to response encoded.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model", "api", "protocol"],
        )?;
        let inference_duration = HistogramVec::new(
            HistogramOpts::new(
                "mlengine_inference_duration_seconds",
                "Time spent queued and in ONNX Runtime per request.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model", "version"],
        )?;
        let batch_size = HistogramVec::new(
            HistogramOpts::new("mlengine_batch_size", "Instances per ONNX Runtime run.").buckets(
                vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ],
            ),
            &["model"],
        )?;
        let queue_duration = HistogramVec::new(
            HistogramOpts::new(
                "mlengine_queue_duration_seconds",
                "Time a request waited in its version's queue before its run started.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )?;
        let runs_here = IntCounterVec::new(
            Opts::new(
                "mlengine_request_thread_runs_total",
                "Requests run on the thread that received them rather than handed to a session \
                 worker (the server's only connection, HTTP/1.1, nothing else in flight, a small \
                 and quick run).",
            ),
            &["model", "version"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "mlengine_requests_dropped_total",
                "Queued requests dropped without running: the client went away (cancelled) or \
                 the deadline passed (deadline).",
            ),
            &["model", "reason"],
        )?;
        let load_attempts = IntCounterVec::new(
            Opts::new(
                "mlengine_model_load_attempts_total",
                "Model version loads attempted.",
            ),
            &["model"],
        )?;
        let load_failures = IntCounterVec::new(
            Opts::new(
                "mlengine_model_load_failures_total",
                "Model version loads that failed.",
            ),
            &["model"],
        )?;
        let available_versions = IntGaugeVec::new(
            Opts::new(
                "mlengine_available_versions",
                "Versions currently served per model.",
            ),
            &["model"],
        )?;
        let version_load_failed = IntGaugeVec::new(
            Opts::new(
                "mlengine_model_version_load_failed",
                "1 while a version's last load attempt failed (the status API has the message).",
            ),
            &["model", "version"],
        )?;
        let queue_size = IntGaugeVec::new(
            Opts::new(
                "mlengine_queue_size",
                "Requests waiting in a version's queue for a worker (Triton's pending request count).",
            ),
            &["model", "version"],
        )?;
        let inflight = IntGaugeVec::new(
            Opts::new(
                "mlengine_inflight_requests",
                "Requests a version has accepted and not yet answered: queued or running.",
            ),
            &["model", "version"],
        )?;
        let threads = IntGaugeVec::new(
            Opts::new(
                "mlengine_threads",
                "Threads the server runs, by kind (http, session_workers per version, intra_op \
                 per session), and the usable cores (cores) they were derived from.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(threads.clone()))?;
        registry.register(Box::new(queue_size.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(version_load_failed.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(inference_duration.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(queue_duration.clone()))?;
        registry.register(Box::new(runs_here.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(load_attempts.clone()))?;
        registry.register(Box::new(load_failures.clone()))?;
        registry.register(Box::new(available_versions.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            inference_duration,
            batch_size,
            queue_duration,
            runs_here,
            dropped,
            load_attempts,
            load_failures,
            available_versions,
            version_load_failed,
            queue_size,
            inflight,
            threads,
        })
    }

    /// Sets `mlengine_threads` for each (kind, count).
    pub fn record_threads(&self, counts: &[(&str, usize)]) {
        for &(kind, n) in counts {
            self.threads
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The series of a model version.
    pub fn version(&self, model: &str, version: &str) -> VersionMetrics {
        VersionMetrics {
            inference_duration: self.inference_duration.with_label_values(&[model, version]),
            queue_duration: self.queue_duration.with_label_values(&[model]),
            batch_size: self.batch_size.with_label_values(&[model]),
            runs_here: self.runs_here.with_label_values(&[model, version]),
        }
    }

    /// Records one answered request. `status` is the HTTP status, or for gRPC the HTTP status of
    /// the same error (so dashboards can sum across protocols).
    pub fn record_request(
        &self,
        model: &str,
        version: &str,
        api: &str,
        protocol: &str,
        status: u16,
        start: std::time::Instant,
    ) {
        tracing::debug!(
            model,
            version,
            api,
            protocol,
            status,
            micros = start.elapsed().as_micros() as u64,
            "request"
        );
        let status_text;
        let status_label = match status {
            200 => "200",
            400 => "400",
            404 => "404",
            413 => "413",
            429 => "429",
            500 => "500",
            503 => "503",
            504 => "504",
            other => {
                status_text = other.to_string();
                &status_text
            }
        };
        self.requests
            .with_label_values(&[model, version, api, protocol, status_label])
            .inc();
        self.request_duration
            .with_label_values(&[model, api, protocol])
            .observe(start.elapsed().as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
