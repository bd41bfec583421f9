//! Files, local and remote, and how they are published. Everything a reader may be watching (exports, checkpoints,
//! metrics) is written beside its final name and renamed into place, so a reader sees either the
//! old file or the complete new one.

pub mod atomic;
pub mod remote;

pub use atomic::{publish_dir, write_atomic};
