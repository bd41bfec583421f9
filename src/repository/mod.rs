//! Model versions: where they come from (base paths on disk, bucket mirrors, the config file),
//! which are served (policies), and the manager that loads, warms, swaps and retires them.

pub mod config;
pub mod fetch;
pub mod manager;
pub mod mirror;
pub mod model;
pub mod policy;
pub mod selector;
pub mod source;
pub mod warmup;

pub use config::ModelConfig;
pub use manager::{Manager, VersionEvent};
pub use model::{LoadedVersion, ServedModel, VersionState, VersionStatus};
pub use selector::VersionSelector;
pub use source::{resolve_model_file, versions};

/// The model file of a version directory.
pub const MODEL_FILE: &str = "model.onnx";
