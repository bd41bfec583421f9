//! How the processes of one training job agree: alone, or (the distributed trainer) synchronous
//! data parallelism, where each process takes its share of every batch and the gradients are
//! averaged before each step, so every process applies the same update.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::Var;

pub trait Collective {
    /// This process's rank, 0 for the one that writes checkpoints, metrics and exports.
    fn rank(&self) -> usize {
        0
    }

    /// Processes in the job.
    fn size(&self) -> usize {
        1
    }

    /// Averages every variable's gradient across the processes.
    fn average_gradients(&self, _vars: &[(String, &Var)], _grads: &mut GradStore) -> Result<()> {
        Ok(())
    }
}

/// One process training alone.
pub struct Alone;

impl Collective for Alone {}
