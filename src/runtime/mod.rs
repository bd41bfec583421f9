//! ONNX Runtime: the shared library, sessions, and the batcher whose threads run them.

pub mod batcher;
pub mod library;
pub mod pool;
pub mod scheduling;
pub mod session;
pub mod worker;

pub use session::{load_model, Device, ModelSession, SessionConfig};
