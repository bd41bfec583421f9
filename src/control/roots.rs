//! Where requests may point: local paths only below the allowed roots (the state dir and the
//! working directory's subtree by default), after `..` and links are resolved; bucket URIs
//! anywhere; `https://` only for reading.

use std::path::{Component, Path, PathBuf};

use crate::status::{Error, Result};
use crate::storage::remote::is_remote;

#[derive(Debug, Clone)]
pub struct Roots {
    roots: Vec<PathBuf>,
}

/// Whether a location is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Roots {
    /// The roots, resolved (a root that does not exist yet is created).
    pub fn new(roots: &[PathBuf]) -> std::io::Result<Roots> {
        let roots = roots
            .iter()
            .map(|r| {
                std::fs::create_dir_all(r)?;
                r.canonicalize()
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Roots { roots })
    }

    /// Checks `uri` (the value of request field `field`).
    pub fn check(&self, uri: &str, field: &str, access: Access) -> Result<()> {
        let refuse = |why: &str| Err(Error::invalid(format!("{uri} {why}")).on_field(field));
        if uri.starts_with("s3://") || uri.starts_with("gs://") {
            return Ok(());
        }
        if uri.starts_with("http://") || uri.starts_with("https://") {
            return match access {
                Access::Read => Ok(()),
                Access::Write => refuse("is read-only: write to a local path or a bucket"),
            };
        }
        if is_remote(uri) {
            return refuse("is not a storage location this server takes");
        }
        let path = Path::new(crate::storage::remote::local_path(uri));
        if !path.is_absolute() {
            return refuse("must be an absolute path or a bucket URI");
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return refuse("must not contain '..'");
        }
        // Resolve links through the deepest part of the path that exists.
        let mut existing = path.to_path_buf();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.file_name(), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name.to_os_string());
                    existing = parent.to_path_buf();
                }
                _ => return refuse("is not under an allowed storage root"),
            }
        }
        let Ok(mut resolved) = existing.canonicalize() else {
            return refuse("cannot be resolved");
        };
        for name in rest.into_iter().rev() {
            resolved.push(name);
        }
        if self.roots.iter().any(|r| resolved.starts_with(r)) {
            Ok(())
        } else {
            refuse(&format!(
                "is outside the allowed storage roots ({}); see --allowed-storage-roots",
                self.roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let at = |p: &Path| p.to_str().unwrap().to_string();
        assert!(roots
            .check(&at(&root.join("a/b")), "f", Access::Write)
            .is_ok());
        assert!(roots.check("gs://bucket/x", "f", Access::Write).is_ok());
        assert!(roots.check("https://h/x", "f", Access::Read).is_ok());
        for (uri, access) in [
            (at(&outside), Access::Read),
            (at(&root.join("link/x")), Access::Read),
            (format!("{}/../outside", at(&root)), Access::Read),
            ("relative/path".to_string(), Access::Read),
            ("https://h/x".to_string(), Access::Write),
        ] {
            let e = roots
                .check(&uri, "version.deployment_uri", access)
                .unwrap_err();
            assert!(
                e.message
                    .starts_with("Field: version.deployment_uri Error:"),
                "{}",
                e.message
            );
        }
    }
}
