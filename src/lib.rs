//! mlengine: the Cloud ML Engine census workflow (train, export, serve, predict) in one binary.
//!
//! The request path, top to bottom: `api` adapters (REST, gRPC) decode a protocol into the
//! protocol-neutral `inference` core, which runs ONNX Runtime sessions from `runtime` on the model
//! versions that `repository` loads. `census`, `trainer` and `onnx` produce those models.

pub mod api;
pub mod batch;
pub mod bench;
pub mod census;
pub mod cli;
pub mod inference;
pub mod observability;
pub mod onnx;
pub mod predict;
pub mod repository;
pub mod runtime;
pub mod serve;
pub mod storage;
pub mod trainer;
