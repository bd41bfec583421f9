//! `mlengine bench-ort` flags.

use std::path::PathBuf;

use clap::Args;

use crate::runtime::Device;

#[derive(Debug, Clone, Args)]
pub struct BenchOrtArgs {
    /// A version directory, an export/Servo base (its latest version) or a job-dir.
    #[arg(long, env = "MLENGINE_MODEL_DIR")]
    pub model_dir: String,

    /// Rows per run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub batch_sizes: Vec<usize>,

    /// Census rows to run (UCI format); without it, generated fixture rows.
    #[arg(long)]
    pub data: Option<PathBuf>,

    /// Measured seconds per batch size (after a warm-up of a tenth of it).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,

    /// Idle microseconds between runs (the thread sleeps), as a server's runs come apart when
    /// one client waits for each answer: shows what an idle core's cooled caches cost a run.
    #[arg(long, default_value_t = 0)]
    pub pause_us: u64,

    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub intra_op_threads: usize,

    #[arg(long, default_value = "cpu", value_parser = super::device_parser())]
    pub device: Device,

    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}
