//! How the processes of one training job agree: alone, or (the distributed trainer, `mpirun -np N
//! mlengine train`) synchronous data parallelism. Every process starts from rank 0's
//! parameters, takes its share of every batch, and the shares' gradients are combined into the
//! batch's before each step, so every process applies the same update and holds the same
//! parameters and optimizer state.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::Var;

/// What one step's exchange gives back.
pub struct Combined {
    /// The batch's mean loss (the shares' losses weighted by their sizes).
    pub loss: f32,
    /// Whether any process was asked to stop (every process then stops after this step).
    pub stop: bool,
}

pub trait Collective {
    /// This process's rank, 0 for the one that evaluates and writes checkpoints, metrics, event
    /// files and exports.
    fn rank(&self) -> usize {
        0
    }

    /// Processes in the job.
    fn size(&self) -> usize {
        1
    }

    /// Before the first step: every process takes rank 0's parameters.
    fn broadcast_parameters(&self, _vars: &[(String, &Var)]) -> Result<()> {
        Ok(())
    }

    /// Turns this process's gradients of its share's mean loss (`share` rows of a `batch`-row
    /// batch) into the batch's, in place, and says the batch's loss and whether any process
    /// was asked to stop.
    fn combine_gradients(
        &self,
        _vars: &[(String, &Var)],
        _grads: &mut GradStore,
        loss: f32,
        stop: bool,
        _share: usize,
        _batch: usize,
    ) -> Result<Combined> {
        Ok(Combined { loss, stop })
    }
}

/// One process training alone.
pub struct Alone;

impl Collective for Alone {}
