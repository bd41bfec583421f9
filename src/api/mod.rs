//! Protocol adapters over the serving core. They decode, call `InferenceService`, encode:
//! nothing else.

pub mod deadline;
pub mod grpc;
pub mod rest;
