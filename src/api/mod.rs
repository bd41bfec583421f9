//! Protocol adapters over the serving core. They decode, call `InferenceService`, encode:
//! nothing else.

pub mod auth;
pub mod deadline;
pub mod grpc;
pub mod listener;
pub mod rest;
pub mod tls;
