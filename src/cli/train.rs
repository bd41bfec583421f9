//! `mlengine train` flags: those of the census sample's `task.py`, same names and defaults, plus
//! seed, optimizer and checkpoint settings. Every flag can also be set by an environment variable.

use clap::Args;

use crate::onnx::census_graph::ExportFormat;
use crate::trainer::optimizer::OptimizerKind;
use crate::trainer::TrainConfig;

#[derive(Debug, Clone, Args)]
// How long to train is a usage error when missing, as task.py's argparse made it.
#[command(group(
    clap::ArgGroup::new("length")
        .required(true)
        .multiple(true)
        .args(["train_steps", "num_epochs"])
))]
pub struct TrainArgs {
    /// Training files (census CSV, UCI or Cloud ML form); one or more.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', action = clap::ArgAction::Set, env = "MLENGINE_TRAIN_FILES")]
    pub train_files: Vec<String>,

    /// Evaluation files; one or more.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', action = clap::ArgAction::Set, env = "MLENGINE_EVAL_FILES")]
    pub eval_files: Vec<String>,

    /// Where checkpoints, evaluation results and the export go: a local folder, s3:// or gs://.
    #[arg(long, env = "MLENGINE_JOB_DIR")]
    pub job_dir: String,

    /// Train until this global step (counted across resumed runs).
    #[arg(long, env = "MLENGINE_TRAIN_STEPS")]
    pub train_steps: Option<u64>,

    /// Train for this many passes over the training files (counted across resumed runs).
    #[arg(long, env = "MLENGINE_NUM_EPOCHS")]
    pub num_epochs: Option<u64>,

    #[arg(long, default_value_t = 40, env = "MLENGINE_TRAIN_BATCH_SIZE")]
    pub train_batch_size: usize,

    #[arg(long, default_value_t = 40, env = "MLENGINE_EVAL_BATCH_SIZE")]
    pub eval_batch_size: usize,

    /// Number of embedding dimensions for categorical columns.
    #[arg(long, default_value_t = 8, env = "MLENGINE_EMBEDDING_SIZE")]
    pub embedding_size: usize,

    /// Number of nodes in the first layer of the DNN.
    #[arg(long, default_value_t = 100, env = "MLENGINE_FIRST_LAYER_SIZE")]
    pub first_layer_size: usize,

    /// Number of layers in the DNN.
    #[arg(long, default_value_t = 4, env = "MLENGINE_NUM_LAYERS")]
    pub num_layers: usize,

    /// How quickly layer sizes decay: layer i has max(2, first_layer_size * scale_factor^i) nodes.
    #[arg(long, default_value_t = 0.7, env = "MLENGINE_SCALE_FACTOR")]
    pub scale_factor: f64,

    /// Debug-level logging.
    #[arg(long, env = "MLENGINE_VERBOSE_LOGGING")]
    pub verbose_logging: bool,

    /// Seconds to wait after start before the first evaluation during training.
    #[arg(long, default_value_t = 1, env = "MLENGINE_EVAL_DELAY_SECS")]
    pub eval_delay_secs: u64,

    /// Minimum number of training steps between evaluations (evaluations follow checkpoints).
    #[arg(long, default_value_t = 10, env = "MLENGINE_MIN_EVAL_FREQUENCY")]
    pub min_eval_frequency: u64,

    /// Evaluate on at most this many eval batches during training (default: all of them).
    #[arg(long, env = "MLENGINE_EVAL_STEPS")]
    pub eval_steps: Option<u64>,

    /// Save a checkpoint every this many steps (and at the end).
    #[arg(long, default_value_t = 1000, env = "MLENGINE_SAVE_CHECKPOINTS_STEPS")]
    pub save_checkpoints_steps: u64,

    /// Number of checkpoints kept in the job-dir.
    #[arg(long, default_value_t = 5, env = "MLENGINE_KEEP_CHECKPOINT_MAX")]
    pub keep_checkpoint_max: usize,

    /// Seed of initialisation and shuffling; the same data and seed give the same model.onnx.
    #[arg(long, default_value_t = 42, env = "MLENGINE_SEED")]
    pub seed: u64,

    #[arg(long, default_value = "adagrad", value_parser = super::parse_with::<OptimizerKind>(&["adagrad", "adam", "sgd"]), env = "MLENGINE_OPTIMIZER")]
    pub optimizer: OptimizerKind,

    #[arg(long, default_value_t = 0.05, env = "MLENGINE_LEARNING_RATE")]
    pub learning_rate: f64,

    /// L2 regularisation strength applied to every weight.
    #[arg(long, default_value_t = 0.0, env = "MLENGINE_L2")]
    pub l2: f64,

    /// CPU threads for training arithmetic. The network is small: on the 2-core reference machine
    /// one thread trained the reference command in 3.4 s, two in 6.3 s (thread hand-offs cost more
    /// than they save).
    #[arg(long, default_value_t = 1, env = "MLENGINE_NUM_THREADS")]
    pub num_threads: usize,

    /// What the exported model takes, as the census sample's flag: JSON instances (one input
    /// per column), CSV rows of the census file (one string input, `csv_row`, parsed inside the
    /// graph) or serialized tf.Examples (decoded by the server).
    #[arg(long, default_value = "JSON", ignore_case = true, value_parser = super::parse_with::<ExportFormat>(&["JSON", "CSV", "EXAMPLE"]), env = "MLENGINE_EXPORT_FORMAT")]
    pub export_format: ExportFormat,

    /// Log a progress line every this many steps when stderr is not a terminal.
    #[arg(long, default_value_t = 100, env = "MLENGINE_LOG_STEP_COUNT_STEPS")]
    pub log_step_count_steps: u64,

    /// Train with --worker-count processes on this machine (`mpirun -np N` of this command), as
    /// `gcloud ml-engine local train --distributed` did; needs a build with the `mpi` feature.
    #[arg(long, env = "MLENGINE_DISTRIBUTED")]
    pub distributed: bool,

    /// Processes of a --distributed run.
    #[arg(long, default_value_t = 2, requires = "distributed", value_parser = clap::value_parser!(u32).range(1..=1024), env = "MLENGINE_DISTRIBUTED_WORKER_COUNT")]
    pub worker_count: u32,
}

impl From<TrainArgs> for TrainConfig {
    fn from(a: TrainArgs) -> Self {
        TrainConfig {
            train_files: a.train_files,
            eval_files: a.eval_files,
            job_dir: a.job_dir,
            train_steps: a.train_steps,
            num_epochs: a.num_epochs,
            train_batch_size: a.train_batch_size,
            eval_batch_size: a.eval_batch_size,
            embedding_size: a.embedding_size,
            first_layer_size: a.first_layer_size,
            num_layers: a.num_layers,
            scale_factor: a.scale_factor,
            eval_delay_secs: a.eval_delay_secs,
            min_eval_frequency: a.min_eval_frequency,
            eval_steps: a.eval_steps,
            save_checkpoints_steps: a.save_checkpoints_steps,
            keep_checkpoint_max: a.keep_checkpoint_max,
            seed: a.seed,
            optimizer: a.optimizer,
            learning_rate: a.learning_rate,
            l2: a.l2,
            num_threads: a.num_threads,
            log_step_count_steps: a.log_step_count_steps,
            export_format: a.export_format,
        }
    }
}
