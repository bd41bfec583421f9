//! The training loop: batches in a seeded order per epoch, a step each, checkpoints every
//! `save_checkpoints_steps` and always at the last step, evaluations after checkpoints (at least
//! `min_eval_frequency` steps apart, not before `eval_delay_secs`), as an Estimator's
//! `train_and_evaluate` does. What happens is told to the observers.

use std::time::Instant;

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, CheckpointState};
use super::collective::Collective;
use super::config::TrainConfig;
use super::job_dir::JobDir;
use super::network::{sigmoid_cross_entropy, Batch, Network};
use super::observe::Observer;
use super::optimizer::Optimizer;
use super::{evaluate, Interrupted};
use crate::census::features::Encoded;

/// The order of training rows in an epoch: a permutation fixed by the seed and the epoch, so a
/// resumed run continues exactly where the interrupted one was.
fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

/// The global step a run stops at (steps per epoch are fixed: partial batches are dropped),
/// never before the step it starts from.
pub(super) fn last_step(config: &TrainConfig, state: &CheckpointState, rows: usize) -> Option<u64> {
    let per_epoch = (rows / state.train_batch_size).max(1) as u64;
    // Epochs beyond what a step count can hold are as good as endless: saturate.
    let by_epochs = config.num_epochs.map(|e| e.saturating_mul(per_epoch));
    let last = match (config.train_steps, by_epochs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    last.map(|l| l.max(state.global_step))
}

pub(super) struct Loop<'a> {
    pub config: &'a TrainConfig,
    pub job_dir: &'a JobDir,
    pub state: &'a mut CheckpointState,
    pub network: &'a Network,
    pub optimizer: &'a mut Optimizer,
    pub train: &'a Encoded,
    pub eval: &'a Encoded,
    pub observers: &'a mut Vec<Box<dyn Observer>>,
    pub collective: &'a dyn Collective,
    pub cancel: &'a CancellationToken,
}

impl Loop<'_> {
    fn done(&self) -> bool {
        let c = self.config;
        c.train_steps.is_some_and(|s| self.state.global_step >= s)
            || c.num_epochs.is_some_and(|e| self.state.epoch >= e)
    }

    /// Moves to the next epoch when the current one has no full batch left; true if it did.
    fn next_epoch_if_spent(&mut self) -> bool {
        let n = self.train.n;
        let batch_size = self.state.train_batch_size;
        let first = self.state.batch_in_epoch as usize * batch_size;
        // A partial last batch is dropped (tf.data's drop_remainder): one step on a handful of
        // rows moves every weight towards those rows, which measurably hurts a model evaluated
        // right after it. Rows skipped here are seen in other epochs, whose orders differ.
        if first >= n || (first > 0 && first + batch_size > n) {
            self.state.epoch += 1;
            self.state.batch_in_epoch = 0;
            return true;
        }
        false
    }

    fn last_step(&self) -> Option<u64> {
        last_step(self.config, self.state, self.train.n)
    }

    fn checkpoint(&mut self) -> Result<()> {
        if self.collective.rank() == 0 {
            checkpoint::save(
                self.job_dir,
                self.state,
                self.network,
                self.optimizer,
                self.config.keep_checkpoint_max,
            )?;
        }
        for o in self.observers.iter_mut() {
            o.checkpointed(self.state.global_step);
        }
        Ok(())
    }

    /// Stops at a signal: the step reached is checkpointed, and the error says which it is.
    fn interrupted(&mut self, last_saved: u64) -> Result<()> {
        if last_saved != self.state.global_step {
            self.checkpoint()?;
        }
        Err(Interrupted {
            global_step: self.state.global_step,
            job_dir: self.job_dir.uri().to_string(),
        }
        .into())
    }

    pub fn train(&mut self) -> Result<()> {
        // A finished epoch whose last batches were dropped counts before the first step, so a
        // resumed `--num-epochs` run that is already done trains nothing.
        self.next_epoch_if_spent();
        if self.done() {
            tracing::info!(
                global_step = self.state.global_step,
                "the checkpoint already reached the requested steps or epochs; evaluating and exporting"
            );
            return Ok(());
        }
        let batch_size = self.state.train_batch_size;
        if batch_size != self.config.train_batch_size {
            tracing::warn!(
                checkpoint = batch_size,
                flag = self.config.train_batch_size,
                "keeping the checkpoint's batch size so the resumed run sees the same batches"
            );
        }
        let last_step = self.last_step();
        for o in self.observers.iter_mut() {
            o.started(self.state.global_step, last_step);
        }
        let vars = self.network.named_vars();
        let start = Instant::now();
        let mut last_eval_step = self.state.global_step;
        let mut last_saved = self.state.global_step;
        let mut order = epoch_order(self.train.n, self.state.seed, self.state.epoch);
        while !self.done() {
            // Alone, a stop is taken before the next step; together, every process learns of it
            // in the step's exchange and they stop after the same step.
            if self.collective.size() == 1 && self.cancel.is_cancelled() {
                return self.interrupted(last_saved);
            }
            let first = self.state.batch_in_epoch as usize * batch_size;
            let rows = &order[first..(first + batch_size).min(self.train.n)];
            // Each process takes its share of the batch; the averaged gradients are the batch's.
            let (rank, size) = (self.collective.rank(), self.collective.size());
            let share: Vec<usize> = rows.iter().copied().skip(rank).step_by(size).collect();
            let batch = Batch::gather(self.train, &share)?;
            let logits = self.network.forward(&batch)?;
            let loss = sigmoid_cross_entropy(&logits, &batch.labels)?;
            let mut grads = loss.backward()?;
            let combined = self.collective.combine_gradients(
                &vars,
                &mut grads,
                loss.to_scalar::<f32>()?,
                self.cancel.is_cancelled(),
                share.len(),
                rows.len(),
            )?;
            // As an Estimator's NanTensorHook: a diverged model stops the run (every process
            // sees the same combined loss) before its weights reach a checkpoint.
            if !combined.loss.is_finite() {
                anyhow::bail!(
                    "the loss is {} at step {}: training diverged; lower --learning-rate",
                    combined.loss,
                    self.state.global_step + 1
                );
            }
            self.optimizer.step(&vars, &grads)?;
            self.state.global_step += 1;
            self.state.batch_in_epoch += 1;
            let loss = combined.loss;
            for o in self.observers.iter_mut() {
                o.step(self.state.global_step, loss);
            }
            if self.next_epoch_if_spent() {
                order = epoch_order(self.train.n, self.state.seed, self.state.epoch);
            }
            if combined.stop && self.collective.size() > 1 {
                return self.interrupted(last_saved);
            }
            let finished = self.done();
            if finished
                || self
                    .state
                    .global_step
                    .is_multiple_of(self.config.save_checkpoints_steps)
            {
                self.checkpoint()?;
                last_saved = self.state.global_step;
                let due = self.state.global_step - last_eval_step >= self.config.min_eval_frequency
                    && start.elapsed().as_secs() >= self.config.eval_delay_secs;
                // The final evaluation follows the loop. Rank 0 alone
                // evaluates (the others go on to the next exchange and wait for it there).
                if due && !finished && self.collective.rank() == 0 {
                    let metrics = evaluate(
                        self.network,
                        self.eval,
                        self.config.eval_batch_size,
                        self.config.eval_steps,
                        self.state.global_step,
                    )?;
                    for o in self.observers.iter_mut() {
                        o.evaluated(&metrics)?;
                    }
                    last_eval_step = self.state.global_step;
                }
            }
        }
        for o in self.observers.iter_mut() {
            o.finished(self.state.global_step);
        }
        Ok(())
    }
}
