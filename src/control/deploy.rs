//! Copying a version's files from its `deploymentUri` (a version folder holding `model.onnx`, an
//! `export/Servo` base meaning its latest version, or a job-dir; local or in storage) into the
//! state dir, so the version stays servable whatever happens to the origin.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::repository::MODEL_FILE;
use crate::storage::remote;

/// At most this many files make a version (Cloud ML's limit).
const MAX_FILES: usize = 1000;

pub async fn copy_version(uri: &str, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    if !remote::is_remote(uri) {
        let local = Path::new(crate::storage::remote::local_path(uri));
        let model = crate::repository::resolve_model_file(local)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace("--model-dir ", "")))?;
        let dir = model.parent().context("a model file without a folder")?;
        let mut copied = 0;
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                copied += 1;
                if copied > MAX_FILES {
                    bail!("{uri} holds more than {MAX_FILES} files");
                }
                std::fs::copy(entry.path(), dest.join(entry.file_name()))
                    .with_context(|| format!("cannot copy {}", entry.path().display()))?;
            }
        }
        return Ok(());
    }
    let base = remote::open(uri)?;
    let objects = match base.list().await {
        Ok(objects) => objects,
        // A plain web server cannot list (object_store lists http(s) with WebDAV): take the URI
        // as a version folder and fetch its files by name.
        Err(e) if uri.starts_with("http://") || uri.starts_with("https://") => {
            return fetch_version_folder(&base, uri, dest)
                .await
                .with_context(|| {
                    format!("cannot list {uri} ({e:#}) nor fetch {MODEL_FILE} from it")
                });
        }
        Err(e) => return Err(e),
    };
    let prefix = uri.trim_end_matches('/').len() + 1;
    let rel = |o: &remote::Object| o.location.uri.get(prefix..).unwrap_or_default().to_string();
    // The version folder within the prefix: the prefix itself, or its latest numeric version,
    // directly or under export/Servo.
    let folder = if objects.iter().any(|o| rel(o) == MODEL_FILE) {
        String::new()
    } else {
        let mut versions: Vec<(u64, String)> = objects
            .iter()
            .filter_map(|o| {
                let r = rel(o);
                let (dir, file) = r.rsplit_once('/')?;
                if file != MODEL_FILE {
                    return None;
                }
                let (under, number) = match dir.rsplit_once('/') {
                    Some((under, n)) => (under, n),
                    None => ("", dir),
                };
                let n = number.parse::<u64>().ok()?;
                (under.is_empty() || under == "export/Servo").then(|| (n, format!("{dir}/")))
            })
            .collect();
        versions.sort();
        match versions.pop() {
            Some((_, folder)) => folder,
            None => bail!("{uri} holds neither {MODEL_FILE} nor a numeric version with one"),
        }
    };
    let files: Vec<&remote::Object> = objects
        .iter()
        .filter(|o| {
            let r = rel(o);
            r.starts_with(&folder) && !r[folder.len()..].contains('/')
        })
        .collect();
    if files.len() > MAX_FILES {
        bail!("{uri} holds more than {MAX_FILES} files");
    }
    for o in files {
        let name = rel(o)[folder.len()..].to_string();
        let bytes = o.location.read_all().await?;
        std::fs::write(dest.join(&name), &bytes)
            .with_context(|| format!("cannot write {}", dest.join(&name).display()))?;
    }
    Ok(())
}

/// The files a version folder may hold, fetched by name: `model.onnx` must be there.
async fn fetch_version_folder(base: &remote::Location, uri: &str, dest: &Path) -> Result<()> {
    let model = base.join(MODEL_FILE).read_all().await?;
    std::fs::write(dest.join(MODEL_FILE), &model)
        .with_context(|| format!("cannot write into {}", dest.display()))?;
    for optional in ["model.json", crate::repository::warmup::WARMUP_FILE] {
        if let Some(bytes) = base.join(optional).read_if_exists().await? {
            std::fs::write(dest.join(optional), &bytes)
                .with_context(|| format!("cannot write into {}", dest.display()))?;
        }
    }
    tracing::debug!(uri, "fetched a version folder by name");
    Ok(())
}
