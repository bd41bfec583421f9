//! Files, local and remote, and how they are published. Everything a reader may be watching
//! (exports, checkpoints, metrics) is written beside its final name and moved into place, so a
//! reader sees either the old file or the complete new one.

pub mod atomic;
pub mod lock;
pub mod remote;

pub use atomic::{publish_dir, write_atomic};

use std::future::Future;

use anyhow::{Context, Result};

/// The storage layer for synchronous callers (the trainer, the poller's thread): remote I/O runs
/// on the caller's tokio runtime through its handle, so library code never builds a runtime of
/// its own. Must not be used from a thread of that runtime.
#[derive(Clone, Debug)]
pub struct Storage {
    runtime: tokio::runtime::Handle,
}

impl Storage {
    pub fn new(runtime: tokio::runtime::Handle) -> Self {
        Storage { runtime }
    }

    /// Runs a storage future to completion on the caller's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A whole file given as a local path, `file://` or a remote URI.
    pub fn read(&self, uri: &str) -> Result<Vec<u8>> {
        if !remote::is_remote(uri) {
            let path = remote::local_path(uri);
            return std::fs::read(path).with_context(|| format!("cannot read {uri}"));
        }
        self.block_on(async { Ok(remote::open(uri)?.read_all().await?.to_vec()) })
    }
}
