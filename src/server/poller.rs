//! The poller: on its own thread (loading and warming versions is long work that must not run on
//! the serving threads), it mirrors bucket base paths into local directories and lets the manager
//! compare every model's source with what it serves, every poll interval.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::runtime::Handle;

use crate::repository::mirror::Mirror;
use crate::repository::{Manager, ModelConfig};

/// Bucket base paths and their local mirrors.
pub struct Mirrors {
    mirrors: Vec<Mirror>,
}

impl Mirrors {
    /// Points every bucket base path at a local mirror under `root` (synced once now) and
    /// checks that local base paths exist.
    pub async fn set_up(configs: &mut [ModelConfig], root: &Path) -> Result<Self> {
        let mut mirrors = Vec::new();
        for c in configs.iter_mut() {
            let uri = c.base_path.to_string_lossy().into_owned();
            if crate::storage::remote::is_remote(&uri) {
                let local = root.join(&c.name);
                let mut mirror = Mirror::new(&uri, &local)?;
                mirror
                    .sync()
                    .await
                    .with_context(|| format!("model '{}': cannot read base path {uri}", c.name))?;
                mirrors.push(mirror);
                c.base_path = local;
            } else {
                c.base_path = PathBuf::from(crate::storage::remote::local_path(&uri));
                // A job-dir serves its exports, as `predict --model-dir` takes it.
                let servo = c.base_path.join("export").join("Servo");
                if servo.is_dir() {
                    tracing::info!(model = %c.name, "serving the exports of job-dir {}", c.base_path.display());
                    c.base_path = servo;
                } else if !c.base_path.is_dir() {
                    bail!(
                        "model '{}': base path {} is not a directory",
                        c.name,
                        c.base_path.display()
                    );
                }
            }
        }
        Ok(Mirrors { mirrors })
    }

    async fn sync(&mut self) {
        for m in &mut self.mirrors {
            if let Err(e) = m.sync().await {
                tracing::warn!("cannot mirror versions: {e:#}");
            }
        }
    }
}

/// Polls every `wait` until `stop` is dropped or set; bucket I/O runs on `runtime`.
pub fn spawn(
    manager: Arc<Manager>,
    mut mirrors: Mirrors,
    runtime: Handle,
    wait: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("version-poller".into())
        .spawn(move || loop {
            let mut stop = stop.clone();
            let stopped = runtime.block_on(async {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => false,
                    _ = stop.wait_for(|s| *s) => true,
                }
            });
            if stopped {
                return;
            }
            runtime.block_on(mirrors.sync());
            manager.poll();
        })
}
