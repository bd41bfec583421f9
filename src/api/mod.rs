//! Protocol adapters over the inference core. They decode, call `InferenceService`, encode:
//! nothing else.

pub mod grpc;
pub mod rest;
