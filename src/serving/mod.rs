//! The serving core above the model repository: one inference path with its accounting, status
//! and metadata for every adapter, and the lifecycle that says whether the server is ready.

pub mod classify;
pub mod connections;
pub mod lifecycle;
pub mod service;
pub mod status;

pub use lifecycle::{Lifecycle, Phase};
pub use service::{Call, InferenceService};
