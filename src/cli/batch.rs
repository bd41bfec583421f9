//! `mlengine batch-predict` flags, turned into a [`BatchConfig`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::batch::BatchConfig;
use crate::runtime::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum DataFormat {
    /// One JSON instance per line.
    Json,
    /// The same (gcloud's name for JSON lines).
    Text,
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(crate::batch::MAX_WORKER_COUNT)
}

#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// A version directory or an export/Servo base (its latest version), local or a storage URI.
    #[arg(long, env = "MLENGINE_MODEL_DIR")]
    pub model_dir: String,

    /// Input files or URIs; `*` and `?` match within the last path components.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', env = "MLENGINE_INPUT_PATHS")]
    pub input_paths: Vec<String>,

    /// Where the prediction.results and prediction.errors_stats shards go (local or URI).
    #[arg(long, env = "MLENGINE_OUTPUT_PATH")]
    pub output_path: String,

    #[arg(
        long,
        value_enum,
        ignore_case = true,
        default_value = "JSON",
        env = "MLENGINE_DATA_FORMAT"
    )]
    pub data_format: DataFormat,

    /// Instances per ONNX Runtime run.
    #[arg(long, default_value_t = 64, env = "MLENGINE_BATCH_SIZE")]
    pub batch_size: usize,

    /// ONNX Runtime sessions running batches in parallel (default: the machine's cores).
    #[arg(long, default_value_t = default_workers(), env = "MLENGINE_MAX_WORKER_COUNT")]
    pub max_worker_count: usize,

    /// Accepted for compatibility with Cloud ML; the model's one signature is used.
    #[arg(long, env = "MLENGINE_SIGNATURE_NAME")]
    pub signature_name: Option<String>,

    #[arg(long, default_value = "cpu", env = "MLENGINE_DEVICE", value_parser = super::device_parser())]
    pub device: Device,

    /// This process's share of the input (a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX).
    #[arg(long, default_value_t = 0, env = "JOB_COMPLETION_INDEX")]
    pub worker_index: usize,

    /// Number of processes sharing the input; each writes its own shards.
    #[arg(long, default_value_t = 1, env = "MLENGINE_WORKER_COUNT")]
    pub worker_count: usize,

    /// A field of every instance that is not a model input but is copied into its prediction,
    /// so predictions can be joined to their inputs (Vertex's keyField).
    #[arg(long, env = "MLENGINE_KEY_FIELD")]
    pub key_field: Option<String>,

    /// Largest share of instances that may fail (0 to 1) before the command exits non-zero;
    /// a run where every instance failed always does. Outputs are published either way.
    #[arg(long, default_value_t = 1.0, env = "MLENGINE_MAX_ERROR_RATE")]
    pub max_error_rate: f64,
}

impl BatchArgs {
    pub fn config(&self, ort_library: Option<PathBuf>) -> BatchConfig {
        BatchConfig {
            model_dir: self.model_dir.clone(),
            input_paths: self.input_paths.clone(),
            output_path: self.output_path.clone(),
            batch_size: self.batch_size,
            max_worker_count: self.max_worker_count,
            device: self.device,
            worker_index: self.worker_index,
            worker_count: self.worker_count,
            key_field: self.key_field.clone(),
            ort_library,
        }
    }
}
