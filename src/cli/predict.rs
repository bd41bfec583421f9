//! `mlengine predict` flags.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["model_dir", "url"])))]
#[command(group(clap::ArgGroup::new("instances").required(true).args(["json_instances", "text_instances"])))]
pub struct PredictArgs {
    /// Local prediction: a version directory, an `export/Servo` base or a job-dir (local path or
    /// storage URI).
    #[arg(long, env = "MLENGINE_MODEL_DIR")]
    pub model_dir: Option<String>,

    /// Online prediction: the base URL of a server, e.g. http://localhost:8080 (http:// is
    /// assumed when no scheme is given).
    #[arg(long, env = "MLENGINE_URL")]
    pub url: Option<String>,

    /// Model name for --url.
    #[arg(long, default_value = "census", env = "MLENGINE_MODEL")]
    pub model: String,

    /// Version (number or name) for --url; default: the model's default version.
    #[arg(long, env = "MLENGINE_VERSION")]
    pub version: Option<String>,

    /// Project segment of the Cloud ML path for --url.
    #[arg(long, default_value = "mlengine", env = "MLENGINE_PROJECT")]
    pub project: String,

    /// File with one JSON instance per line (`-` for standard input).
    #[arg(long, env = "MLENGINE_JSON_INSTANCES")]
    pub json_instances: Option<PathBuf>,

    /// File with one instance per line, each sent as a JSON string (`-` for standard input).
    #[arg(long, env = "MLENGINE_TEXT_INSTANCES")]
    pub text_instances: Option<PathBuf>,

    /// Instances per run (local) or per request (online).
    #[arg(long, default_value_t = 64, env = "MLENGINE_BATCH_SIZE")]
    pub batch_size: usize,
}
