//! Metrics of the server, and TensorBoard's event files of the trainer and the tuner.

pub mod metrics;
pub mod tfevents;

pub use metrics::{Metrics, VersionMetrics};
