//! `--model-config-file`: several models, each with a base path, version policy and labels, in
//! YAML or JSON (YAML is a superset of JSON, so one parser reads both):
//!
//! ```yaml
//! models:
//!   - name: census
//!     base_path: models/census/export/Servo   # relative to this file
//!     version_policy: latest:2                # latest[:N], all, specific:V1,V2
//!     version_labels: {v1: 1795690396}
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::policy::VersionPolicy;

/// What one model serves from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    pub name: String,
    pub base_path: PathBuf,
    pub policy: VersionPolicy,
    /// Version labels (Cloud ML version names, TF Serving labels) to version numbers.
    pub labels: HashMap<String, u64>,
    /// The version a request without one gets; `None`: the latest.
    pub default_version: Option<u64>,
}

impl ModelConfig {
    /// A model served from a base path with the default policy (the latest version).
    pub fn new(name: impl Into<String>, base_path: impl Into<PathBuf>) -> Self {
        ModelConfig {
            name: name.into(),
            base_path: base_path.into(),
            policy: VersionPolicy::default(),
            labels: HashMap::new(),
            default_version: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    models: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    base_path: String,
    #[serde(default)]
    version_policy: Option<String>,
    #[serde(default)]
    version_labels: HashMap<String, u64>,
}

pub fn load(path: &Path) -> Result<Vec<ModelConfig>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --model-config-file {}", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("--model-config-file {} is not valid", path.display()))
}

/// The models of a config file's text; base paths are relative to `dir`.
pub fn parse(text: &str, dir: &Path) -> Result<Vec<ModelConfig>> {
    let file: File = serde_yaml_ng::from_str(text)?;
    if file.models.is_empty() {
        bail!("it lists no models");
    }
    let mut seen = std::collections::HashSet::new();
    file.models
        .into_iter()
        .map(|e| {
            check_model_name(&e.name)?;
            if e.base_path.trim().is_empty() {
                bail!("model '{}': base_path is empty", e.name);
            }
            if !seen.insert(e.name.clone()) {
                bail!("model '{}' is listed twice", e.name);
            }
            let policy = match &e.version_policy {
                Some(p) => p.parse::<VersionPolicy>().map_err(|m| anyhow::anyhow!("model '{}': {m}", e.name))?,
                None => VersionPolicy::default(),
            };
            for label in e.version_labels.keys() {
                if !valid_label(label) {
                    bail!("model '{}': version label {label:?} must be letters, digits, '_' or '-' and not a number", e.name);
                }
            }
            Ok(ModelConfig {
                name: e.name,
                // A bucket as it is; a local path (or `file:` URI) relative to the file.
                base_path: if crate::storage::remote::is_remote(&e.base_path) {
                    PathBuf::from(&e.base_path)
                } else {
                    dir.join(crate::storage::remote::local_path(&e.base_path))
                },
                policy,
                labels: e.version_labels,
                default_version: None,
            })
        })
        .collect()
}

/// A model name is one path segment of every API (`/v1/models/{name}:predict`) and a folder
/// name (a bucket model's mirror): not empty, not `.` or `..`, without `/`, `:`, `?`, `#`, `%`
/// or spaces.
pub fn check_model_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', ':', '?', '#', '%'])
        && !name.chars().any(char::is_whitespace);
    if !ok {
        bail!(
            "model name {name:?} must be non-empty, not '.' or '..', without '/', ':', '?', '#', \
             '%' or spaces"
        );
    }
    Ok(())
}

/// A version label: letters, digits, `_` or `-`, and not a number (which names a version).
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !label.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yaml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("models.yaml");
        std::fs::write(&yaml, "models:\n  - name: a\n    base_path: a/Servo\n    version_policy: latest:2\n    version_labels: {v1: 7}\n  - name: b\n    base_path: /abs/b\n").unwrap();
        let models = load(&yaml).unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(models[0].base_path, dir.path().join("a/Servo"));
        assert_eq!(models[0].policy, VersionPolicy::Latest(2));
        assert_eq!(models[0].labels["v1"], 7);
        assert_eq!(models[1].base_path, Path::new("/abs/b"));
        let one = |entry: &str| parse(&format!("models:\n  - {entry}\n"), dir.path());
        assert_eq!(
            one("{name: s, base_path: \"gs://bucket/s\"}").unwrap()[0].base_path,
            Path::new("gs://bucket/s")
        );
        assert_eq!(
            one("{name: f, base_path: \"FILE:///abs/f\"}").unwrap()[0].base_path,
            Path::new("/abs/f")
        );
        for (entry, why) in [
            ("{name: '', base_path: a}", "must be non-empty"),
            ("{name: a/b, base_path: a}", "without '/'"),
            ("{name: 'x:predict', base_path: a}", "without '/', ':'"),
            ("{name: '..', base_path: a}", "not '.' or '..'"),
            ("{name: a, base_path: ''}", "base_path is empty"),
        ] {
            let e = one(entry).unwrap_err().to_string();
            assert!(e.contains(why), "{entry}: {e}");
        }

        let json = dir.path().join("models.json");
        std::fs::write(
            &json,
            r#"{"models": [{"name": "c", "base_path": "c", "version_policy": "specific:1,2"}]}"#,
        )
        .unwrap();
        assert_eq!(
            load(&json).unwrap()[0].policy,
            VersionPolicy::Specific(vec![1, 2])
        );

        for bad in [
            "models: []",
            "models:\n  - name: a\n    base_path: x\n    version_policy: newest",
            "models:\n  - name: a\n    base_path: x\n  - name: a\n    base_path: y",
            "models:\n  - name: a\n    base_path: x\n    version_labels: {'12': 3}",
            "models:\n  - name: a\n    basepath: x",
        ] {
            std::fs::write(&yaml, bad).unwrap();
            assert!(load(&yaml).is_err(), "{bad}");
        }
    }
}
