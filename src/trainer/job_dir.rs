//! The job-dir, local or in a bucket (`--job-dir gs://bucket/job`, `s3://...`), through the
//! storage layer. Files are written to a local folder first (the job-dir itself when it is
//! local, a staging folder otherwise) and then published: uploaded, data before the index that
//! names it. A bucket job-dir's checkpoint index, latest checkpoint and evaluation history are
//! brought down when it is opened, so a run resumes from a bucket as from a local folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use crate::repository::MODEL_FILE;
use crate::storage::lock::LOCK_FILE;
use crate::storage::remote::{self, Location};
use crate::storage::{publish_dir, write_atomic, Storage};

/// A file that marks a folder as an mlengine job-dir (and proves it writable).
const MARKER: &str = ".mlengine-job-dir";
/// The metadata file beside `model.onnx` in an export.
pub const METADATA_FILE: &str = "model.json";
/// Where exports go, below the job-dir.
pub const EXPORT_BASE: &str = "export/Servo";

pub struct JobDir {
    uri: String,
    local: PathBuf,
    remote: Option<Location>,
    storage: Storage,
    _staging: Option<Staging>,
    /// Held while this run owns a local job-dir (`lock`).
    _lock: Option<std::fs::File>,
}

impl JobDir {
    /// Opens (creating) the job-dir; `pull` names the files a resumed run needs, and `pull_also`
    /// picks more from the contents of those (the checkpoint the index names).
    pub fn open(
        uri: &str,
        storage: &Storage,
        pull: &[&str],
        pull_also: impl Fn(&Path) -> Vec<String>,
    ) -> Result<JobDir> {
        if !remote::is_remote(uri) {
            let local = PathBuf::from(remote::local_path(uri));
            std::fs::create_dir_all(&local)
                .with_context(|| format!("cannot create --job-dir {uri}"))?;
            write_atomic(&local.join(MARKER), b"mlengine train job-dir\n")
                .with_context(|| format!("--job-dir {uri} is not writable"))?;
            return Ok(JobDir {
                uri: uri.to_string(),
                local,
                remote: None,
                storage: storage.clone(),
                _staging: None,
                _lock: None,
            });
        }
        if uri.starts_with("http://") || uri.starts_with("https://") {
            bail!(
                "--job-dir {uri}: http(s) storage is read-only; use a local folder, s3:// or gs://"
            );
        }
        let location = remote::open(uri)?;
        let staging = staging_dir()?;
        let job = JobDir {
            uri: uri.trim_end_matches('/').to_string(),
            local: staging.dir.path().to_path_buf(),
            remote: Some(location),
            storage: storage.clone(),
            _staging: Some(staging),
            _lock: None,
        };
        job.put(MARKER, Bytes::from_static(b"mlengine train job-dir\n"))
            .with_context(|| format!("--job-dir {uri} is not writable"))?;
        for name in pull {
            job.pull(name)?;
        }
        for name in pull_also(&job.local) {
            job.pull(&name)?;
        }
        Ok(job)
    }

    /// Takes a local job-dir for this run, refusing when another live run holds it (two runs
    /// would write the same checkpoints, and each would sweep the other's files as leftovers).
    /// The lock goes with the process, however it ends. A bucket job-dir cannot be locked.
    pub fn lock(&mut self) -> Result<()> {
        if self.remote.is_some() {
            return Ok(());
        }
        let file = crate::storage::lock::hold(&self.local, &format!("--job-dir {}", self.uri))?;
        self._lock = Some(file);
        Ok(())
    }

    /// The job-dir as the user gave it.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The local path of a file of the job-dir (where it is written before it is published).
    pub fn path(&self, name: &str) -> PathBuf {
        self.local.join(name)
    }

    /// The URI of a file of the job-dir, for messages.
    pub fn uri_of(&self, name: &str) -> String {
        match &self.remote {
            Some(_) => format!("{}/{name}", self.uri),
            None => self.path(name).display().to_string(),
        }
    }

    fn put(&self, name: &str, bytes: Bytes) -> Result<()> {
        if let Some(remote) = &self.remote {
            self.storage.block_on(remote.join(name).put(bytes))?;
        }
        Ok(())
    }

    /// Downloads a file of a bucket job-dir into the staging folder, when it exists.
    fn pull(&self, name: &str) -> Result<()> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        if let Some(bytes) = self.storage.block_on(remote.join(name).read_if_exists())? {
            std::fs::write(self.path(name), &bytes)
                .with_context(|| format!("cannot stage {}", self.uri_of(name)))?;
        }
        Ok(())
    }

    /// Publishes a file written at `path(name)` (uploads it to a bucket job-dir).
    pub fn publish(&self, name: &str) -> Result<()> {
        if self.remote.is_some() {
            let bytes = std::fs::read(self.path(name))
                .with_context(|| format!("cannot read {}", self.path(name).display()))?;
            self.put(name, Bytes::from(bytes))?;
        }
        Ok(())
    }

    /// Removes a file, locally and from a bucket job-dir.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _ = std::fs::remove_file(self.path(name));
        if let Some(remote) = &self.remote {
            self.storage.block_on(remote.join(name).delete())?;
        }
        Ok(())
    }

    /// Publishes a model version under `export/Servo/<name>`: `fill` writes its files into a
    /// folder; `pick_name` chooses among names not yet taken. A reader listing `export/Servo`
    /// never sees half a version: locally the folder is renamed into place; in a bucket the
    /// files go under a temporary prefix first, then to the final one with the model file last
    /// (a version is one once its model file is there). Returns the version's URI.
    pub fn export(
        &self,
        pick_name: impl FnMut(u32) -> String,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<String> {
        let Some(remote) = &self.remote else {
            let dir = publish_dir(&self.local.join(EXPORT_BASE), pick_name, fill)?;
            return Ok(dir.display().to_string());
        };
        let mut pick_name = pick_name;
        let build = staging_dir()?;
        fill(build.dir.path())?;
        let mut files: Vec<String> = std::fs::read_dir(build.dir.path())?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        // The staging folder's own lock is no part of the version.
        files.retain(|f| f != LOCK_FILE);
        // The model file last: its arrival completes the version.
        files.sort_by_key(|f| (f == MODEL_FILE, f.clone()));
        let base = remote.join(EXPORT_BASE);
        self.storage.block_on(async {
            let taken: Vec<String> = base
                .list()
                .await?
                .into_iter()
                .filter_map(|o| {
                    let rel = o.location.uri[base.uri.trim_end_matches('/').len()..]
                        .trim_start_matches('/')
                        .to_string();
                    rel.split_once('/').map(|(v, _)| v.to_string())
                })
                .collect();
            let name = (0..1000)
                .map(&mut pick_name)
                .find(|n| !taken.contains(n))
                .context("no free version name under export/Servo")?;
            let temp = base.join(&format!(".tmp-{}-{name}", std::process::id()));
            let version = base.join(&name);
            for f in &files {
                let bytes = std::fs::read(build.dir.path().join(f))?;
                temp.join(f).put(Bytes::from(bytes)).await?;
            }
            for f in &files {
                temp.join(f).copy_to(&version.join(f)).await?;
            }
            for f in &files {
                temp.join(f).delete().await?;
            }
            Ok(version.uri.clone())
        })
    }

    /// The newest export's URI and the global step its model was trained to, if any.
    pub fn latest_export(&self) -> Result<Option<(String, u64)>> {
        let step = |json: &[u8]| -> Option<u64> {
            let meta: serde_json::Value = serde_json::from_slice(json).ok()?;
            meta.get("global_step")
                .or_else(|| meta.pointer("/eval_metrics/global_step"))
                .and_then(serde_json::Value::as_u64)
        };
        let Some(remote) = &self.remote else {
            let base = self.local.join(EXPORT_BASE);
            if !base.is_dir() {
                return Ok(None);
            }
            let versions = crate::repository::versions(&base)?;
            for (_, dir) in versions.iter().rev() {
                if let Ok(json) = std::fs::read(dir.join(METADATA_FILE)) {
                    if let Some(s) = step(&json) {
                        return Ok(Some((dir.display().to_string(), s)));
                    }
                }
            }
            return Ok(None);
        };
        let base = remote.join(EXPORT_BASE);
        self.storage.block_on(async {
            let mut versions: Vec<u64> = base
                .list()
                .await?
                .into_iter()
                .filter_map(|o| {
                    let rel = o.location.uri[base.uri.trim_end_matches('/').len()..]
                        .trim_start_matches('/')
                        .to_string();
                    let (v, file) = rel.split_once('/')?;
                    (file == MODEL_FILE && v.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| v.parse().ok())
                        .flatten()
                })
                .collect();
            versions.sort_unstable();
            for v in versions.iter().rev() {
                let dir = base.join(&v.to_string());
                let meta = dir.join(METADATA_FILE);
                if let Some(json) = meta.read_if_exists().await? {
                    if let Some(s) = step(&json) {
                        return Ok(Some((dir.uri.clone(), s)));
                    }
                }
            }
            Ok(None)
        })
    }
}

/// The prefix of staging folders in the temporary directory.
const STAGING_PREFIX: &str = "mlengine-job-";

/// A staging folder, and the lock on the file in it that says its run is alive.
struct Staging {
    dir: tempfile::TempDir,
    _lock: std::fs::File,
}

/// A staging folder for a bucket job-dir's files. The folders that killed runs left behind are
/// removed first: a folder whose lock can be taken has no live owner (a lock goes with its
/// process, in whatever process namespace it runs), so a run killed at any moment leaves
/// nothing for long.
fn staging_dir() -> Result<Staging> {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                continue;
            }
            // A folder without its lock file yet is being created: left alone.
            let Ok(lock) = std::fs::File::open(entry.path().join(LOCK_FILE)) else {
                continue;
            };
            if lock.try_lock().is_ok() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir()
        .context("cannot create a staging folder")?;
    // Locked before it takes its name, so a cleanup never finds it unlocked.
    let (unnamed, path) = (dir.path().join(".lock-new"), dir.path().join(LOCK_FILE));
    let lock = std::fs::File::create(&unnamed)
        .with_context(|| format!("cannot create {}", unnamed.display()))?;
    lock.try_lock()
        .map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", unnamed.display()))?;
    std::fs::rename(&unnamed, &path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Staging { dir, _lock: lock })
}
