//! Serving from a bucket prefix (`--model-base-path s3://bucket/models/census`): before each poll
//! the numeric version directories under the prefix are mirrored into a local directory, each
//! version downloaded completely beside its final name and renamed into place, so the poller sees
//! only whole versions, exactly as on a local base path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::storage::remote::{self, Location};

/// The size of every file of a version, to notice changed files.
type Fingerprint = BTreeMap<String, u64>;

pub struct Mirror {
    remote: Location,
    local: PathBuf,
    known: BTreeMap<u64, Fingerprint>,
}

impl Mirror {
    pub fn new(uri: &str, local: &Path) -> Result<Self> {
        std::fs::create_dir_all(local)
            .with_context(|| format!("cannot create {}", local.display()))?;
        Ok(Mirror {
            remote: remote::open(uri)?,
            local: local.to_path_buf(),
            known: BTreeMap::new(),
        })
    }

    /// Brings the local copy in line with the bucket: new or changed versions downloaded,
    /// versions gone from the bucket removed.
    pub async fn sync(&mut self) -> Result<()> {
        // Each numeric folder is listed on its own: an object elsewhere under the prefix, or
        // one version's listing failing, never hides (or removes) the other versions.
        let mut remote_versions: BTreeMap<u64, Vec<(String, remote::Object)>> = BTreeMap::new();
        let mut unlisted = Vec::new();
        for folder in self.remote.folders().await? {
            let Ok(v) = folder.parse::<u64>() else {
                continue;
            };
            if !folder.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let location = self.remote.join(&folder);
            let objects = match location.list().await {
                Ok(objects) => objects,
                Err(e) => {
                    tracing::warn!(version = v, "cannot list {}: {e:#}", location.uri);
                    unlisted.push(v);
                    continue;
                }
            };
            let prefix = location.uri.trim_end_matches('/').len() + 1;
            for o in objects {
                let Some(file) = o.location.uri.get(prefix..).map(str::to_string) else {
                    continue;
                };
                if !file.is_empty() {
                    remote_versions.entry(v).or_default().push((file, o));
                }
            }
        }
        // A version is complete once its model file is there (exports upload it last); one
        // without it is not (or no longer) a version.
        remote_versions.retain(|_, files| files.iter().any(|(f, _)| f == super::MODEL_FILE));
        for (version, files) in &remote_versions {
            let fingerprint: Fingerprint = files.iter().map(|(f, o)| (f.clone(), o.size)).collect();
            if self.known.get(version) == Some(&fingerprint) {
                continue;
            }
            // One version that cannot be brought down does not hold back the others (or the
            // removals below); it is tried again at the next poll.
            if let Err(e) = self.download(*version, files).await {
                tracing::warn!(
                    version,
                    "cannot mirror version from {}: {e:#}",
                    self.remote.uri
                );
                continue;
            }
            self.known.insert(*version, fingerprint);
        }
        let gone: Vec<u64> = self
            .known
            .keys()
            .filter(|v| !remote_versions.contains_key(v) && !unlisted.contains(v))
            .copied()
            .collect();
        for version in gone {
            let _ = std::fs::remove_dir_all(self.local.join(version.to_string()));
            self.known.remove(&version);
            tracing::info!(version, "version removed from {}", self.remote.uri);
        }
        Ok(())
    }

    async fn download(&self, version: u64, files: &[(String, remote::Object)]) -> Result<()> {
        let tmp = self.local.join(format!(".download-{version}"));
        let _ = std::fs::remove_dir_all(&tmp);
        for (file, object) in files {
            let bytes = object.location.read_all().await?;
            let path = tmp.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let target = self.local.join(version.to_string());
        if target.exists() {
            // A changed version: move the old copy aside first.
            let old = self.local.join(format!(".old-{version}"));
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&target, &old)?;
            std::fs::rename(&tmp, &target)?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, &target)?;
        }
        tracing::info!(version, "mirrored version from {}", self.remote.uri);
        Ok(())
    }
}
