//! What a training run is asked to do: the census sample's `task.py` settings, plus seed,
//! optimizer and checkpoint settings. Free of flag parsing (the CLI fills it from its flags).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::optimizer::{OptimizerConfig, OptimizerKind};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Training files (census CSV, UCI or Cloud ML form); one or more.
    pub train_files: Vec<String>,

    /// Evaluation files; one or more.
    pub eval_files: Vec<String>,

    /// Where checkpoints, evaluation results and the export go.
    pub job_dir: String,

    /// Train until this global step (counted across resumed runs).
    pub train_steps: Option<u64>,

    /// Train for this many passes over the training files (counted across resumed runs).
    pub num_epochs: Option<u64>,

    pub train_batch_size: usize,

    pub eval_batch_size: usize,

    /// Number of embedding dimensions for categorical columns.
    pub embedding_size: usize,

    /// Number of nodes in the first layer of the DNN.
    pub first_layer_size: usize,

    /// Number of layers in the DNN.
    pub num_layers: usize,

    /// How quickly layer sizes decay: layer i has max(2, first_layer_size * scale_factor^i) nodes.
    pub scale_factor: f64,

    /// Seconds to wait after start before the first evaluation during training.
    pub eval_delay_secs: u64,

    /// Minimum number of training steps between evaluations (evaluations follow checkpoints).
    pub min_eval_frequency: u64,

    /// Evaluate on at most this many eval batches during training (default: all of them).
    pub eval_steps: Option<u64>,

    /// Save a checkpoint every this many steps (and at the end).
    pub save_checkpoints_steps: u64,

    /// Number of checkpoints kept in the job-dir.
    pub keep_checkpoint_max: usize,

    /// Seed of initialisation and shuffling; the same data and seed give the same model.onnx.
    pub seed: u64,

    pub optimizer: OptimizerKind,

    pub learning_rate: f64,

    /// L2 regularisation strength applied to every weight.
    pub l2: f64,

    /// CPU threads for training arithmetic. The network is small: on the 2-core reference machine
    /// one thread trained the reference command in 3.4 s, two in 6.3 s (thread hand-offs cost more
    /// than they save).
    pub num_threads: usize,

    /// What the exported model takes: JSON instances, CSV rows or tf.Examples.
    #[serde(default)]
    pub export_format: crate::onnx::census_graph::ExportFormat,

    /// Log a progress line every this many steps when stderr is not a terminal.
    pub log_step_count_steps: u64,
}

/// Most hidden layers, nodes in one layer (or embedding dimensions), and weights in the hidden
/// layers together: far above any census network worth training (the sample's has 4 layers of
/// at most 100 nodes and about 18,000 weights), far below what would exhaust a machine's memory
/// (the optimizer keeps two more copies of every weight).
const MAX_LAYERS: usize = 1_000;
const MAX_LAYER_SIZE: usize = 1_000_000;
const MAX_WEIGHTS: f64 = 100_000_000.0;

impl TrainConfig {
    /// Checks the values, before anything is written.
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
        if self.eval_steps == Some(0) {
            bail!("--eval-steps must be at least 1 (leave it out to evaluate on every eval batch)");
        }
        if self.job_dir.trim().is_empty() {
            bail!("--job-dir must name a folder or a bucket path");
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
        self.check_network_size()
    }

    /// Refuses a network too large to build (a tuning range's corner, say) with the flags to
    /// change, before anything is allocated.
    fn check_network_size(&self) -> Result<()> {
        use crate::census::schema::{CATEGORICAL, NUMERIC};
        if self.num_layers > MAX_LAYERS {
            bail!(
                "--num-layers must be at most {MAX_LAYERS}, got {}",
                self.num_layers
            );
        }
        if self.embedding_size > MAX_LAYER_SIZE {
            bail!(
                "--embedding-size must be at most {MAX_LAYER_SIZE}, got {}",
                self.embedding_size
            );
        }
        let mut inputs = (CATEGORICAL.len() * self.embedding_size + NUMERIC.len()) as f64;
        let mut weights = 0.0;
        for i in 0..self.num_layers {
            let size = self.first_layer_size as f64 * self.scale_factor.powi(i as i32);
            if size > MAX_LAYER_SIZE as f64 {
                bail!(
                    "--first-layer-size {} and --scale-factor {} give hidden layer {} {size:.0} \
                     nodes; at most {MAX_LAYER_SIZE}",
                    self.first_layer_size,
                    self.scale_factor,
                    i + 1
                );
            }
            let size = size.max(2.0);
            weights += inputs * size;
            inputs = size;
        }
        if weights > MAX_WEIGHTS {
            bail!(
                "the hidden layers would hold {weights:.0} weights, at most {MAX_WEIGHTS:.0}: \
                 lower --first-layer-size, --num-layers, --scale-factor or --embedding-size"
            );
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
