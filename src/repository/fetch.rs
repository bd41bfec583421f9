//! Model directories named by storage URI: the model file is downloaded to a temporary
//! directory, which lives as long as the returned guard.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::storage::remote::{self, Object};

/// The model file of `--model-dir`: local as `predict` resolves it, or downloaded from storage
/// (a version directory with model.onnx, or a base whose latest numeric version is used).
pub async fn model_file(dir: &str) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    if !remote::is_remote(dir) {
        let local = crate::storage::remote::local_path(dir);
        return Ok((super::resolve_model_file(Path::new(local))?, None));
    }
    let base = remote::open(dir)?;
    let objects = base.list().await?;
    let rel = |o: &Object| {
        o.location.uri[dir.trim_end_matches('/').len()..]
            .trim_start_matches('/')
            .to_string()
    };
    let chosen = if objects.iter().any(|o| rel(o) == super::MODEL_FILE) {
        super::MODEL_FILE.to_string()
    } else {
        let mut versions: Vec<(u64, String)> = objects
            .iter()
            .filter_map(|o| {
                let r = rel(o);
                let (version, file) = r.split_once('/')?;
                (file == super::MODEL_FILE)
                    .then(|| version.parse::<u64>().ok().map(|v| (v, r.clone())))
                    .flatten()
            })
            .collect();
        versions.sort();
        match versions.pop() {
            Some((_, r)) => r,
            None => {
                bail!("--model-dir {dir} holds neither model.onnx nor a numeric version with one")
            }
        }
    };
    let bytes = base.join(&chosen).read_all().await?;
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join(super::MODEL_FILE);
    std::fs::write(&path, &bytes)?;
    Ok((path, Some(tmp)))
}
