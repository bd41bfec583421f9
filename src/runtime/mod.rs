//! ONNX Runtime: the shared library, sessions and the conversion of tensors.

pub mod library;
pub mod pool;
pub mod session;
pub mod worker;

pub use session::{load_model, Device, ModelSession, SessionConfig};
