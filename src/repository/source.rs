//! Versions on disk: numeric version directories under a base path (`export/Servo/<ts>`, TF
//! Serving's `<base>/<n>`), each holding `model.onnx`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::MODEL_FILE;

/// Numeric version directories under `base`, ascending. Hidden and non-numeric entries (such as
/// an export still being written) are ignored, and so are numbers that gRPC's int64 version
/// cannot carry, and a second spelling of a number (`01` beside `1`: the plain one counts).
pub fn versions(base: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(base).with_context(|| format!("cannot list {}", base.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
            continue;
        }
        let Ok(version) = name.parse::<u64>() else {
            continue;
        };
        if i64::try_from(version).is_err() {
            tracing::warn!(
                "ignoring version directory {}: numbers above {} cannot be addressed over gRPC",
                entry.path().display(),
                i64::MAX
            );
            continue;
        }
        if entry.path().is_dir() {
            out.push((version, entry.path()));
        }
    }
    // The plain spelling of a number first, then the others, which are dropped.
    let plain = |v: &u64, p: &Path| p.file_name().and_then(|n| n.to_str()) != Some(&v.to_string());
    out.sort_by(|(a, pa), (b, pb)| a.cmp(b).then(plain(a, pa).cmp(&plain(b, pb))));
    out.dedup_by(|(b, dropped), (a, kept)| {
        let same = a == b;
        if same {
            tracing::warn!(
                "ignoring version directory {}: {} is version {a} too",
                dropped.display(),
                kept.display()
            );
        }
        same
    });
    Ok(out)
}

/// The versions a base path serves: its numeric version directories or, when it has none and
/// holds `model.onnx` itself, the base path as version 1. KServe's storage initializer lays a
/// model out that way in `/mnt/models` when the `storageUri` is one model's folder or file.
/// A numeric folder without a model file yet (being copied in, or stray) does not turn the
/// base path's own model away.
pub fn served_versions(base: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let numeric = versions(base)?;
    let any_model = numeric
        .iter()
        .any(|(_, dir)| dir.join(MODEL_FILE).is_file());
    if !any_model && base.join(MODEL_FILE).is_file() {
        return Ok(vec![(1, base.to_path_buf())]);
    }
    Ok(numeric)
}

/// The model file of `dir`: `dir/model.onnx` when `dir` is a version directory, otherwise the
/// latest version under `dir` taken as a base path (or `dir/export/Servo` of a job-dir).
pub fn resolve_model_file(dir: &Path) -> Result<PathBuf> {
    if dir.is_file() {
        return Ok(dir.to_path_buf());
    }
    let direct = dir.join(MODEL_FILE);
    if direct.is_file() {
        return Ok(direct);
    }
    if !dir.is_dir() {
        bail!("--model-dir {} does not exist", dir.display());
    }
    let servo = dir.join("export").join("Servo");
    let base = if servo.is_dir() {
        servo
    } else {
        dir.to_path_buf()
    };
    let versions = versions(&base)?;
    match versions
        .iter()
        .rev()
        .find(|(_, p)| p.join(MODEL_FILE).is_file())
    {
        Some((_, p)) => Ok(p.join(MODEL_FILE)),
        None => bail!(
            "--model-dir {} holds neither {MODEL_FILE} nor a numeric version directory with one",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_path_holding_the_model_is_version_one() {
        let root = tempfile::tempdir().unwrap();
        assert!(served_versions(root.path()).unwrap().is_empty());
        std::fs::write(root.path().join(MODEL_FILE), b"x").unwrap();
        assert_eq!(
            served_versions(root.path()).unwrap(),
            vec![(1, root.path().to_path_buf())]
        );
        // A numeric folder without a model file (being copied in, or stray) changes nothing;
        // once it holds one, numeric version directories win over the model beside them.
        std::fs::create_dir(root.path().join("7")).unwrap();
        assert_eq!(
            served_versions(root.path()).unwrap(),
            vec![(1, root.path().to_path_buf())]
        );
        std::fs::write(root.path().join("7").join(MODEL_FILE), b"x").unwrap();
        assert_eq!(
            served_versions(root.path()).unwrap(),
            vec![(7, root.path().join("7"))]
        );
    }

    #[test]
    fn one_directory_per_number_and_numbers_grpc_can_carry() {
        let root = tempfile::tempdir().unwrap();
        for v in [
            "01",
            "1",
            "002",
            "9223372036854775808",
            "9223372036854775807",
        ] {
            std::fs::create_dir(root.path().join(v)).unwrap();
        }
        assert_eq!(
            versions(root.path()).unwrap(),
            vec![
                (1, root.path().join("1")),
                (2, root.path().join("002")),
                (i64::MAX as u64, root.path().join("9223372036854775807")),
            ]
        );
    }

    #[test]
    fn picks_latest_numeric_version_with_a_model() {
        let root = tempfile::tempdir().unwrap();
        for v in ["1", "20", "3", ".tmp-5", "abc"] {
            std::fs::create_dir(root.path().join(v)).unwrap();
        }
        std::fs::write(root.path().join("3").join(MODEL_FILE), b"x").unwrap();
        std::fs::write(root.path().join("1").join(MODEL_FILE), b"x").unwrap();
        let found: Vec<u64> = versions(root.path())
            .unwrap()
            .into_iter()
            .map(|v| v.0)
            .collect();
        assert_eq!(found, vec![1, 3, 20]);
        // 20 has no model.onnx yet: 3 is the latest complete version.
        assert_eq!(
            resolve_model_file(root.path()).unwrap(),
            root.path().join("3").join(MODEL_FILE)
        );
        assert!(resolve_model_file(&root.path().join("nope")).is_err());
    }
}
