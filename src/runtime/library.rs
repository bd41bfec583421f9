//! Locating and loading the ONNX Runtime shared library. `ort` is built with `load-dynamic`
//! because its prebuilt-binary download is unreachable here; the library comes from the
//! `onnxruntime` wheel on PyPI (`scripts/install-onnxruntime.sh`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use ort::environment::Environment;

/// File name of the library inside the project's git-ignored folder.
pub const LIBRARY_FILE: &str = "libonnxruntime.so";

/// The folder `scripts/install-onnxruntime.sh` fills, relative to the project root.
pub const PROJECT_FOLDER: &str = ".ort/cpu/lib";
/// The same for the GPU build (`onnxruntime-gpu`).
pub const PROJECT_GPU_FOLDER: &str = ".ort/gpu/lib";

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// Where the library is looked for when no path is given: the project folder beside the source
/// tree this binary was built from, beside the executable's build folder, and under the current
/// directory.
pub fn candidates(gpu: bool) -> Vec<PathBuf> {
    let folder = if gpu {
        PROJECT_GPU_FOLDER
    } else {
        PROJECT_FOLDER
    };
    let mut out = vec![Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(folder)
        .join(LIBRARY_FILE)];
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            out.push(up.join(folder).join(LIBRARY_FILE));
        }
    }
    out.push(Path::new(folder).join(LIBRARY_FILE));
    out.dedup();
    out
}

/// Loads the library once per process and returns the ONNX Runtime environment. `explicit` is the
/// `--ort-library` flag or `ORT_DYLIB_PATH`; a relative path is taken from the executable's folder
/// when it does not exist from the current one (as `ort` does).
pub fn environment(explicit: Option<&Path>, gpu: bool) -> Result<&'static Environment> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = match explicit {
        Some(p) => {
            let resolved = resolve_explicit(p);
            if !resolved.is_file() {
                bail!(
                    "ONNX Runtime library {} does not exist; run scripts/install-onnxruntime.sh{} \
                     or point --ort-library / ORT_DYLIB_PATH at libonnxruntime.so",
                    p.display(),
                    if gpu { " --gpu" } else { "" }
                );
            }
            resolved
        }
        None => match candidates(gpu).into_iter().find(|p| p.is_file()) {
            Some(p) => p,
            None => bail!(
                "ONNX Runtime library not found; run scripts/install-onnxruntime.sh{} (it fetches \
                 the onnxruntime wheel from PyPI) or point --ort-library / ORT_DYLIB_PATH at \
                 libonnxruntime.so",
                if gpu { " --gpu" } else { "" }
            ),
        },
    };
    let env = load(&path)?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

fn resolve_explicit(p: &Path) -> PathBuf {
    if p.is_relative() && !p.exists() {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            return dir.join(p);
        }
    }
    p.to_path_buf()
}

/// ONNX Runtime's own log lines, through ours. A failed run's error reaches its caller (the
/// client's answer, the CLI's one line, a batch job's error stats) with our context, so ORT's
/// copy of it (a colored line on stderr per failed batch) is only for debugging; its warnings
/// (a node a GPU provider does not take) stay visible.
fn ort_log(
    level: ort::logging::LogLevel,
    category: &str,
    _id: &str,
    location: &str,
    message: &str,
) {
    use ort::logging::LogLevel;
    match level {
        LogLevel::Fatal => tracing::error!(category, location, "ONNX Runtime: {message}"),
        LogLevel::Warning => tracing::warn!(category, location, "ONNX Runtime: {message}"),
        LogLevel::Error => tracing::debug!(category, location, "ONNX Runtime: {message}"),
        LogLevel::Info | LogLevel::Verbose => {
            tracing::trace!(category, location, "ONNX Runtime: {message}")
        }
    }
}

fn load(path: &Path) -> Result<Environment> {
    let builder = ort::init_from(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot load ONNX Runtime from {}", path.display()))?;
    let env = builder
        .with_name("mlengine")
        .with_logger(std::sync::Arc::new(ort_log))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start ONNX Runtime from {}: {e}", path.display()))?;
    tracing::debug!(library = %path.display(), "ONNX Runtime loaded");
    Ok(env)
}
