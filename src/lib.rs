//! mlengine: the Cloud ML Engine census workflow (train, export, serve, predict) in one binary.
//!
//! The layers, bottom up; each imports only those below it:
//! - `status` (errors, once), `huge_pages` (the process's transparent huge pages), `tensor`
//!   (tensors, signatures, element rules), `storage`, `proto` (generated protobuf messages);
//! - `codec` (request and answer bodies ↔ tensors), `census`, `onnx`, `observability`;
//! - `runtime` (ONNX Runtime sessions behind a batcher), `trainer`, `tune` (trials of a trainer
//!   as child processes, chosen by a search);
//! - `repository` (models and versions: sources, policies, the manager), `batch`;
//! - `serving` (the one inference path, status, lifecycle), `control` (the management API:
//!   models, versions, operations and jobs in the state dir);
//! - `api` (REST and gRPC adapters), `server` (`serve` as a library);
//! - `cli` (flags → configs) and `cmd` (a runner per command).

pub mod api;
pub mod batch;
pub mod census;
pub mod cli;
pub mod cmd;
pub mod codec;
pub mod control;
pub mod huge_pages;
pub mod observability;
pub mod onnx;
pub mod proto;
pub mod repository;
pub mod runtime;
pub mod server;
pub mod serving;
pub mod status;
pub mod storage;
pub mod tensor;
pub mod trainer;
pub mod tune;
