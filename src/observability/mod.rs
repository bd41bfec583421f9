//! Metrics and logging of the server.

pub mod metrics;

pub use metrics::{Metrics, VersionMetrics};
