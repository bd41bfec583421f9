//! Command-line interface. Every flag can also be set through the environment variable named in
//! its help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::batch::BatchArgs;
use crate::bench::BenchOrtArgs;
use crate::predict::PredictArgs;
use crate::serve::ServeArgs;
use crate::trainer::TrainArgs;

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
    Train(TrainArgs),
    /// Predict locally from JSON instances, as `gcloud ml-engine local predict`.
    Predict(PredictArgs),
    /// Batch prediction of JSON-lines files, as a Cloud ML Engine prediction job.
    BatchPredict(BatchArgs),
    /// Serve model versions over REST and gRPC: Cloud ML Engine / Vertex, TensorFlow Serving and
    /// KServe v2.
    Serve(ServeArgs),
    /// Time raw ONNX Runtime runs of a model for several batch sizes (no server around them).
    BenchOrt(BenchOrtArgs),
}
