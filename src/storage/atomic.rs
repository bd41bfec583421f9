//! Atomic publication of files and directories on a local file system.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Builds a directory with `fill` in a hidden temporary sibling of `parent/<name>` and renames it
/// into place. `name` is chosen by `pick_name` among names not yet taken. A failure removes the
/// temporary directory, so no partial directory is ever visible under a final name.
pub fn publish_dir(
    parent: &Path,
    mut pick_name: impl FnMut(u32) -> String,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".tmp-{}-{}", std::process::id(), pick_name(0)));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> Result<PathBuf> {
        fill(&tmp)?;
        for entry in fs::read_dir(&tmp)? {
            fs::File::open(entry?.path())?.sync_all()?;
        }
        for attempt in 0..1000 {
            let target = parent.join(pick_name(attempt));
            if target.exists() {
                continue;
            }
            fs::rename(&tmp, &target)
                .with_context(|| format!("cannot publish {}", target.display()))?;
            return Ok(target);
        }
        anyhow::bail!("no free name under {}", parent.display())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_dir_skips_taken_names_and_cleans_up_failures() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("100")).unwrap();
        let out = publish_dir(
            root.path(),
            |i| (100 + i).to_string(),
            |d| {
                fs::write(d.join("a"), b"x")?;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(out, root.path().join("101"));
        assert_eq!(fs::read(out.join("a")).unwrap(), b"x");

        let err = publish_dir(
            root.path(),
            |i| (200 + i).to_string(),
            |_| anyhow::bail!("boom"),
        );
        assert!(err.is_err());
        let names: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn write_atomic_replaces_content() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("f.json");
        write_atomic(&p, b"1").unwrap();
        write_atomic(&p, b"22").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"22");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
