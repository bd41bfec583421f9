//! The command line, clap only: each command's flags, turned into the plain configurations the
//! library takes. Every flag can also be set through the environment variable named in its help.

pub mod batch;
pub mod bench;
pub mod health;
pub mod manage;
pub mod predict;
pub mod serve;
pub mod train;
pub mod tune;

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};

pub use batch::BatchArgs;
pub use bench::BenchOrtArgs;
pub use predict::PredictArgs;
pub use serve::ServeArgs;
pub use train::TrainArgs;
pub use tune::TuneArgs;

#[derive(Debug, Parser)]
#[command(
    name = "mlengine",
    version,
    about = "Train the census Wide & Deep model, export it as ONNX, and serve it online and in batch"
)]
pub struct Cli {
    /// Path of libonnxruntime.so (default: the project's .ort folder, see scripts/install-onnxruntime.sh).
    #[arg(long, global = true, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the census Wide & Deep model and export it to <job-dir>/export/Servo/<timestamp>.
    // A flag given twice takes its last value, as task.py's argparse does: a tuner appends the
    // trial's values after the user's own arguments.
    #[command(args_override_self = true)]
    Train(TrainArgs),
    /// Tune hyperparameters from an hptuning_config.yaml: trials of `mlengine train` (or any
    /// trainer) chosen by Bayesian optimization, grid or random search, as Cloud ML Engine's
    /// HyperTune.
    Tune(TuneArgs),
    /// Predict locally from JSON instances, as `gcloud ml-engine local predict`.
    Predict(PredictArgs),
    /// Batch prediction of JSON-lines files, as a Cloud ML Engine prediction job.
    BatchPredict(BatchArgs),
    /// Serve model versions over REST and gRPC: Cloud ML Engine / Vertex, TensorFlow Serving and
    /// KServe v2.
    Serve(Box<ServeArgs>),
    /// Time raw ONNX Runtime runs of a model for several batch sizes (no server around them).
    BenchOrt(BenchOrtArgs),
    /// Ask a server's health endpoint (readiness by default): exit 0 when it answers 200, for
    /// container health checks.
    Health(health::HealthArgs),
    /// Manage models on a server's management API, as `gcloud ml-engine models`.
    Models(manage::ModelsArgs),
    /// Manage model versions, as `gcloud ml-engine versions`.
    Versions(manage::VersionsArgs),
    /// Submit and follow training and prediction jobs, as `gcloud ml-engine jobs`.
    Jobs(manage::JobsArgs),
    /// Show long-running operations, as `gcloud ml-engine operations`.
    Operations(manage::OperationsArgs),
}

/// A parser of one of `values` (listed in help and errors) into a type that parses itself.
pub fn parse_with<T>(values: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(values).try_map(|s| s.parse::<T>())
}

/// `--device`: where sessions run.
pub fn device_parser() -> impl TypedValueParser<Value = crate::runtime::Device> {
    parse_with(&["cpu", "cuda"])
}
