//! One storage layer for every URI the CLI takes: local paths, `file://`, `s3://` (endpoint,
//! region and credentials from the usual `AWS_*` variables), `gs://` (the usual Google
//! credentials) and `https://` / `http://` for reading. Built on the `object_store` crate.

use std::ops::Range;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

/// A store and an object path (or prefix) within it, with the URI it came from for messages.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub path: ObjectPath,
    pub uri: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri)
    }
}

/// An object found by listing.
#[derive(Debug, Clone)]
pub struct Object {
    pub location: Location,
    pub size: u64,
}

/// The scheme of a string that reads as a URI (`scheme:/...`, the scheme two characters or
/// more), lowercased as URI schemes compare.
fn scheme(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once(':')?;
    let ok = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'));
    (ok && rest.starts_with('/')).then(|| scheme.to_ascii_lowercase())
}

/// Whether `s` is a URI rather than a local path: any `scheme:/...` but `file:`. A URI this
/// layer cannot reach (`gcs://`, `s3a://`) is refused by `open`, never taken as a folder name.
pub fn is_remote(s: &str) -> bool {
    scheme(s).is_some_and(|scheme| scheme != "file")
}

/// The local path a `file:` URI (any case: `FILE:///tmp/x`, `file:/tmp/x`) names, or `s` itself
/// when it is no `file:` URI.
pub fn local_path(s: &str) -> &str {
    if scheme(s).as_deref() != Some("file") {
        return s;
    }
    let rest = &s[s.find(':').map_or(0, |i| i + 1)..];
    match rest.strip_prefix("//") {
        Some(path) => path,
        None => rest,
    }
}

/// Opens `uri`. Local paths are made absolute; `file://` URIs are local paths.
pub fn open(uri: &str) -> Result<Location> {
    let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("invalid storage URI {uri}: {e}");
    if scheme(uri).as_deref() == Some("file") {
        return open_local(local_path(uri), uri);
    }
    if !is_remote(uri) {
        return open_local(uri, uri);
    }
    let url = url::Url::parse(uri).map_err(|e| bad(&e))?;
    if !matches!(url.scheme(), "s3" | "gs" | "http" | "https") {
        bail!(
            "unsupported storage scheme {}:// in {uri}: use gs://, s3://, http(s):// or a local path",
            url.scheme()
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("invalid storage URI {uri}: it names no bucket or host (gs://BUCKET/PATH)");
    }
    let path = ObjectPath::from_url_path(url.path()).map_err(|e| bad(&e))?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(uri)
                .with_retry(retry())
                .build()
                .map_err(|e| bad(&e))?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(uri)
                .with_retry(retry())
                .build()
                .map_err(|e| bad(&e))?,
        ),
        "http" | "https" => {
            let base = format!("{}://{}", url.scheme(), url.authority());
            Arc::new(
                object_store::http::HttpBuilder::new()
                    .with_url(base)
                    .with_retry(retry())
                    // The URI's own scheme decides: an http:// URI was asked for in plain text.
                    .with_client_options(
                        object_store::ClientOptions::new().with_allow_http(url.scheme() == "http"),
                    )
                    .build()
                    .map_err(|e| bad(&e))?,
            )
        }
        other => bail!("unsupported storage scheme {other}:// in {uri}"),
    };
    Ok(Location {
        store,
        path,
        uri: uri.to_string(),
    })
}

/// Retries of one request: enough for a blip (about 1.5 s of backoff over 4 tries), short enough
/// that an object store that is gone is reported in seconds, not after object_store's default of
/// about a minute. The server's poller tries again at every poll anyway.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(30),
        ..Default::default()
    }
}

fn open_local(path: &str, uri: &str) -> Result<Location> {
    let absolute = std::path::absolute(path).with_context(|| format!("invalid path {uri}"))?;
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
    let path = ObjectPath::from_absolute_path(&absolute)
        .map_err(|e| anyhow::anyhow!("invalid path {uri}: {e}"))?;
    Ok(Location {
        store,
        path,
        uri: uri.to_string(),
    })
}

impl Location {
    /// A child of this location (a path below a prefix).
    pub fn join(&self, name: &str) -> Location {
        let mut path = self.path.clone();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        Location {
            store: Arc::clone(&self.store),
            path,
            uri: format!("{}/{}", self.uri.trim_end_matches('/'), name),
        }
    }

    /// The local file system path, for locations that are local.
    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        (!is_remote(&self.uri))
            .then(|| std::path::PathBuf::from(format!("/{}", self.path.as_ref())))
    }

    pub async fn read_all(&self) -> Result<Bytes> {
        let result = self
            .store
            .get(&self.path)
            .await
            .map_err(|e| failed("read", &self.uri, e))?;
        result
            .bytes()
            .await
            .map_err(|e| failed("read", &self.uri, e))
    }

    /// The object's bytes from `offset` to its end, as a stream.
    pub async fn read_from(&self, offset: u64) -> Result<BoxStream<'static, Result<Bytes>>> {
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..Default::default()
        };
        let uri = self.uri.clone();
        let result = self
            .store
            .get_opts(&self.path, options)
            .await
            .map_err(|e| failed("read", &self.uri, e))?;
        Ok(result
            .into_stream()
            .map_err(move |e| anyhow::anyhow!("cannot read {uri}: {e}"))
            .boxed())
    }

    pub async fn read_range(&self, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.path, range)
            .await
            .map_err(|e| failed("read", &self.uri, e))
    }

    pub async fn put(&self, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path, bytes.into())
            .await
            .map_err(|e| failed("write", &self.uri, e))?;
        Ok(())
    }

    pub async fn rename_to(&self, to: &Location) -> Result<()> {
        self.store
            .rename(&self.path, &to.path)
            .await
            .map_err(|e| failed("move", &format!("{} to {}", self.uri, to.uri), e))
    }

    pub async fn copy_to(&self, to: &Location) -> Result<()> {
        self.store
            .copy(&self.path, &to.path)
            .await
            .map_err(|e| failed("copy", &format!("{} to {}", self.uri, to.uri), e))
    }

    /// Whether the object exists (`false` when the store says it is not found).
    pub async fn exists(&self) -> Result<bool> {
        match self.store.head(&self.path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed("read", &self.uri, e)),
        }
    }

    /// The object's bytes, or `None` when it does not exist.
    pub async fn read_if_exists(&self) -> Result<Option<Bytes>> {
        match self.store.get(&self.path).await {
            Ok(result) => Ok(Some(
                result
                    .bytes()
                    .await
                    .map_err(|e| failed("read", &self.uri, e))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("read", &self.uri, e)),
        }
    }

    pub async fn delete(&self) -> Result<()> {
        match self.store.delete(&self.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("delete", &self.uri, e)),
        }
    }

    /// Objects directly or indirectly below this prefix.
    /// The names of the folders directly below this prefix (one listing with a delimiter, so
    /// that what lies deeper, however its keys are spelled, is not read).
    pub async fn folders(&self) -> Result<Vec<String>> {
        let prefix = (!self.path.as_ref().is_empty()).then_some(&self.path);
        let listing = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| failed("list", &self.uri, e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    pub async fn list(&self) -> Result<Vec<Object>> {
        let prefix = (!self.path.as_ref().is_empty()).then_some(&self.path);
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(prefix)
            .try_collect()
            .await
            .map_err(|e| failed("list", &self.uri, e))?;
        let base = self.path.as_ref().to_string();
        Ok(metas
            .into_iter()
            .map(|m| {
                let rel = m
                    .location
                    .as_ref()
                    .strip_prefix(base.as_str())
                    .unwrap_or(m.location.as_ref())
                    .trim_start_matches('/')
                    .to_string();
                Object {
                    location: Location {
                        store: Arc::clone(&self.store),
                        uri: format!("{}/{}", self.uri.trim_end_matches('/'), rel),
                        path: m.location,
                    },
                    size: m.size,
                }
            })
            .collect())
    }
}

/// A failed write through a buffered object writer (an `io::Error` around the store's own), as
/// one line like [`failed`]'s.
pub fn write_failed(uri: &str, e: std::io::Error) -> anyhow::Error {
    match e
        .into_inner()
        .map(|inner| inner.downcast::<object_store::Error>())
    {
        Some(Ok(store)) => failed("write to", uri, *store),
        Some(Err(other)) => anyhow::anyhow!("cannot write to {uri}: {other}"),
        None => anyhow::anyhow!("cannot write to {uri}"),
    }
}

/// A storage failure as one clear line. Without credentials, object_store falls back to the
/// cloud's metadata server, which answers nothing useful off the cloud: say once what is missing
/// and which variable sets it, rather than the token request's failure.
fn failed(action: &str, uri: &str, e: object_store::Error) -> anyhow::Error {
    let text = e.to_string();
    let metadata = text.contains("169.254.169.254") || text.contains("token request");
    let set = |vars: &[&str]| vars.iter().any(|v| std::env::var_os(v).is_some());
    if metadata
        && uri.starts_with("gs://")
        && !set(&[
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_SERVICE_ACCOUNT",
            "GOOGLE_SERVICE_ACCOUNT_PATH",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
        ])
    {
        return anyhow::anyhow!(
            "cannot {action} {uri}: no Google Cloud credentials; set GOOGLE_APPLICATION_CREDENTIALS \
             to a service account key file"
        );
    }
    if metadata && uri.starts_with("s3://") && !set(&["AWS_ACCESS_KEY_ID", "AWS_PROFILE"]) {
        return anyhow::anyhow!(
            "cannot {action} {uri}: no AWS credentials; set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT for an S3-compatible server)"
        );
    }
    anyhow::Error::new(e).context(format!("cannot {action} {uri}"))
}

/// Expands `*` and `?` in the last components of a URI (Cloud ML's `dir/*`, `prefix*`) into the
/// matching objects, sorted by URI. A URI without wildcards names one object, which must exist.
pub async fn expand(uri: &str) -> Result<Vec<Object>> {
    let wild = |s: &str| s.contains('*') || s.contains('?');
    if !wild(uri) {
        let location = open(uri)?;
        let meta = location
            .store
            .head(&location.path)
            .await
            .map_err(|e| failed("read", uri, e))?;
        return Ok(vec![Object {
            location,
            size: meta.size,
        }]);
    }
    // A pattern without a directory part matches in the current directory.
    let (dir, pattern) = match uri[..uri.find(['*', '?']).unwrap_or(uri.len())].rfind('/') {
        Some(cut) => (&uri[..cut], &uri[cut + 1..]),
        None => (".", uri),
    };
    let dir = if dir.is_empty() { "/" } else { dir };
    let local_dir = local_path(dir);
    if !is_remote(dir) && !pattern.contains('/') {
        // One directory's entries, not a walk of everything below it (a working directory may
        // hold a build tree).
        let mut found = Vec::new();
        let listed = if local_dir.is_empty() { "/" } else { local_dir };
        let entries = std::fs::read_dir(listed).with_context(|| format!("cannot list {dir}"))?;
        // A link is followed only to a file below the folder listed (where its caller's checks
        // of allowed roots apply), never out of it.
        let within = std::fs::canonicalize(listed).ok();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {dir}"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !matches(pattern, &name) {
                continue;
            }
            // Through a symbolic link to what it names, as a shell's wildcard does, when that
            // stays below the folder; a dangling or escaping link is skipped.
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            let link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if link {
                let target = std::fs::canonicalize(entry.path()).ok();
                let inside = target
                    .zip(within.as_ref())
                    .is_some_and(|(target, within)| target.starts_with(within));
                if !inside {
                    tracing::warn!(
                        "{uri}: skipping {}, a link out of {dir}",
                        entry.path().display()
                    );
                    continue;
                }
            }
            if meta.is_file() {
                let uri = if dir == "." {
                    name
                } else {
                    format!("{}/{name}", dir.trim_end_matches('/'))
                };
                found.push(Object {
                    location: open(&uri)?,
                    size: meta.len(),
                });
            }
        }
        found.sort_by(|a, b| a.location.uri.cmp(&b.location.uri));
        if found.is_empty() {
            bail!("no files match {uri}");
        }
        return Ok(found);
    }
    let base = open(dir)?;
    // A local walk follows links; what it finds must still lie below the folder walked.
    let within = (!is_remote(dir)).then(|| std::fs::canonicalize(local_path(dir)).ok());
    let mut found: Vec<Object> = base
        .list()
        .await?
        .into_iter()
        .filter(|o| {
            let rel = &o.location.uri[dir.trim_end_matches('/').len() + 1..];
            matches(pattern, rel)
        })
        .filter(|o| match &within {
            None => true,
            Some(within) => {
                let path = std::path::Path::new("/").join(o.location.path.as_ref());
                let real = std::fs::canonicalize(path).ok();
                real.zip(within.as_ref())
                    .is_some_and(|(real, within)| real.starts_with(within))
            }
        })
        .collect();
    found.sort_by(|a, b| a.location.uri.cmp(&b.location.uri));
    if found.is_empty() {
        bail!("no files match {uri}");
    }
    Ok(found)
}

/// Glob match where `*` and `?` do not cross `/`.
pub fn matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                go(&p[1..], t) || (t.first().is_some_and(|&c| c != b'/') && go(p, &t[1..]))
            }
            (Some(b'?'), Some(&c)) if c != b'/' => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_that_reads_as_a_uri_is_never_a_local_folder() {
        for uri in [
            "gs://b/x",
            "GS://b/x",
            "s3://b",
            "https://h/x",
            "gcs://b/x",
            "s3a://b",
            "gs:/b",
        ] {
            assert!(is_remote(uri), "{uri}");
        }
        for path in [
            "/tmp/x",
            "rel/x",
            "file:///tmp/x",
            "./a:/b",
            "c:/x",
            "name:x",
        ] {
            assert!(!is_remote(path), "{path}");
        }
        let refused = |uri: &str| open(uri).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused("gcs://b/x").contains("unsupported storage scheme gcs://"));
        assert!(refused("s3a://b/x").contains("unsupported storage scheme s3a://"));
        assert!(refused("gs:/b/x").contains("names no bucket"));
        // A `file:` URI in any case is the local path it names.
        for (uri, path) in [
            ("file:///tmp/x", "/tmp/x"),
            ("FILE:///tmp/x", "/tmp/x"),
            ("File:/tmp/x", "/tmp/x"),
            ("/tmp/file:x", "/tmp/file:x"),
            ("rel/x", "rel/x"),
        ] {
            assert_eq!(local_path(uri), path, "{uri}");
        }
        assert_eq!(open("FILE:///tmp/x").unwrap().path.as_ref(), "tmp/x");
    }

    #[test]
    fn wildcards_stay_within_a_directory() {
        assert!(matches("*.json", "a.json"));
        assert!(matches("census*", "census-2.json"));
        assert!(!matches("*.json", "dir/a.json"));
        assert!(matches("part-?", "part-1"));
        assert!(!matches("part-?", "part-10"));
        assert!(matches("*", "x"));
    }

    #[test]
    fn expands_local_wildcards_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.json", "a.json", "c.txt"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        // A link to a file in the folder is that file (as a shell's wildcard reads it); a
        // dangling one is none, and so is one out of the folder (past its allowed roots).
        std::os::unix::fs::symlink(dir.path().join("a.json"), dir.path().join("d.json")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("e.json")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.json"), "s").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.json"),
            dir.path().join("f.json"),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let uri = format!("{}/*.json", dir.path().display());
        let found = rt.block_on(expand(&uri)).unwrap();
        let names: Vec<&str> = found
            .iter()
            .map(|o| o.location.uri.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["a.json", "b.json", "d.json"]);
        assert_eq!(found[0].size, 6);
        assert_eq!(found[2].size, 6);
        // A pattern over folders walks them, following links only to what lies below.
        std::fs::create_dir(dir.path().join("sub1")).unwrap();
        std::fs::write(dir.path().join("sub1/g.json"), "g").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("sub2")).unwrap();
        let found = rt
            .block_on(expand(&format!("{}/sub*/*.json", dir.path().display())))
            .unwrap();
        let names: Vec<&str> = found
            .iter()
            .map(|o| o.location.uri.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["g.json"]);
        let err = rt
            .block_on(expand(&format!("{}/*.csv", dir.path().display())))
            .unwrap_err();
        assert!(err.to_string().contains("no files match"), "{err}");
    }
}
