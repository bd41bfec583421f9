//! The protocol-neutral inference core: tensors, signatures, errors and the JSON row codec that
//! every adapter shares.

pub mod binary;
pub mod deadline;
pub mod error;
pub mod json_columns;
pub mod json_fast;
pub mod json_rows;
pub mod service;
pub mod tensor;

pub use error::{ErrorKind, InferenceError, InferenceResult};
pub use tensor::{DType, Signature, Tensor, TensorData, TensorSpec};
