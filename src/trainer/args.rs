//! `mlengine train` flags: those of the census sample's `task.py`, same names and defaults, plus
//! seed, optimizer and checkpoint settings. Every flag can also be set by an environment variable.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;

use super::optimizer::{OptimizerConfig, OptimizerKind};

#[derive(Debug, Clone, Args, Serialize)]
pub struct TrainArgs {
    /// Training files (census CSV, UCI or Cloud ML form); one or more.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', env = "MLENGINE_TRAIN_FILES")]
    pub train_files: Vec<PathBuf>,

    /// Evaluation files; one or more.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', env = "MLENGINE_EVAL_FILES")]
    pub eval_files: Vec<PathBuf>,

    /// Where checkpoints, evaluation results and the export go.
    #[arg(long, env = "MLENGINE_JOB_DIR")]
    pub job_dir: PathBuf,

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

    #[arg(long, value_enum, default_value_t = OptimizerKind::Adagrad, env = "MLENGINE_OPTIMIZER")]
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

    /// Log a progress line every this many steps when stderr is not a terminal.
    #[arg(long, default_value_t = 100, env = "MLENGINE_LOG_STEP_COUNT_STEPS")]
    pub log_step_count_steps: u64,
}

impl TrainArgs {
    /// Checks values that clap's types cannot, before anything is written.
    pub fn validate(&self) -> Result<()> {
        if self.train_steps.is_none() && self.num_epochs.is_none() {
            bail!("one of --train-steps or --num-epochs is required");
        }
        if self.train_steps == Some(0) {
            bail!("--train-steps must be at least 1");
        }
        if self.num_epochs == Some(0) {
            bail!("--num-epochs must be at least 1");
        }
        for (name, value) in [
            ("--train-batch-size", self.train_batch_size),
            ("--eval-batch-size", self.eval_batch_size),
            ("--embedding-size", self.embedding_size),
            ("--first-layer-size", self.first_layer_size),
            ("--num-layers", self.num_layers),
            ("--keep-checkpoint-max", self.keep_checkpoint_max),
            ("--num-threads", self.num_threads),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1");
            }
        }
        if self.save_checkpoints_steps == 0 || self.log_step_count_steps == 0 {
            bail!("--save-checkpoints-steps and --log-step-count-steps must be at least 1");
        }
        if !(self.scale_factor.is_finite() && self.scale_factor > 0.0) {
            bail!(
                "--scale-factor must be a positive number, got {}",
                self.scale_factor
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            bail!(
                "--learning-rate must be a positive number, got {}",
                self.learning_rate
            );
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            bail!("--l2 must be zero or positive, got {}", self.l2);
        }
        Ok(())
    }

    pub fn hidden_units(&self) -> Vec<usize> {
        crate::census::schema::hidden_units(
            self.first_layer_size,
            self.num_layers,
            self.scale_factor,
        )
    }

    pub fn optimizer_config(&self) -> OptimizerConfig {
        OptimizerConfig {
            kind: self.optimizer,
            learning_rate: self.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            l2: self.l2,
        }
    }
}
