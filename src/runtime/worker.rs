//! A model version's runners: one ONNX Runtime session per worker thread, behind a batcher.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::batcher::{self, BatchConfig, Batcher, DropCounts};
use super::scheduling::WorkerScheduling;
use super::session::{ModelSession, SessionConfig};

/// Settings of a version's workers.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub workers: usize,
    /// Requests queued (not yet taken by a worker) before new ones are refused.
    pub queue_capacity: usize,
    pub batching: BatchConfig,
    /// Small requests with the server to themselves run on the receiving thread once the
    /// version's small runs each take at most this (zero: never); see `Batcher::run_here`.
    pub in_place_max_run: Duration,
    pub session: SessionConfig,
    pub scheduling: WorkerScheduling,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            workers: 1,
            queue_capacity: 256,
            batching: BatchConfig::OFF,
            in_place_max_run: Duration::from_micros(batcher::HERE_MAX_RUN_MICROS),
            session: SessionConfig::default(),
            scheduling: WorkerScheduling::default(),
        }
    }
}

/// Loads one session per worker and starts their batcher; fails if any session fails to load.
pub fn start(
    env: &ort::environment::Environment,
    model: &Path,
    label: &str,
    config: WorkerConfig,
    drops: Arc<DropCounts>,
) -> Result<Batcher> {
    let sessions = (0..config.workers.max(1))
        .map(|_| ModelSession::load(env, model, config.session))
        .collect::<Result<Vec<_>>>()?;
    Ok(Batcher::start(
        sessions,
        label,
        config.batching,
        config.queue_capacity,
        drops,
        config.in_place_max_run,
        config.scheduling,
    )?)
}
