//! A folder held by one process at a time: an advisory lock (flock) on a file in it that is
//! never replaced, so every process locks the same file. The lock goes with its holder's
//! process, however that ends, so a killed run never leaves a folder locked.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The lock file in a held folder.
pub const LOCK_FILE: &str = ".mlengine-job-dir.lock";

/// Holds `dir` while the returned file lives; refuses when another live process holds it.
/// `what` names the folder in the refusal (`--job-dir /x`).
pub fn hold(dir: &Path, what: &str) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("{what} is in use by another run; wait for it to end, or use another job-dir")
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}
