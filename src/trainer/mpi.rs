//! The distributed trainer's collective over MPI (the `mpi` feature): `mpirun -np N mlengine
//! train ...` on one machine, or the Kubeflow MPI Operator's launcher on a cluster.
//!
//! Each step every process sends its share's gradient (scaled by the share's size), its loss
//! and its stop flag; the N vectors are gathered on every process and summed there in rank
//! order. An all-reduce would move less, but MPI libraries have returned different float bits
//! on different ranks (pmodels/mpich#6538), and one ulp of drift makes Adagrad's accumulators
//! and the parameters diverge silently; the ordered sum is identical everywhere by
//! construction. The model's gradient is ~45k floats, so gathering it costs little.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::collective::{Collective, Combined};

pub struct Mpi {
    // Finalizes MPI when dropped, after the communicator.
    world: SimpleCommunicator,
    _universe: Universe,
    rank: usize,
    size: usize,
    /// Steps exchanged and the time spent in the exchange itself, reported at the end (what the
    /// distributed benchmark reads).
    exchanges: Cell<u64>,
    exchange_time: Cell<Duration>,
}

impl Drop for Mpi {
    fn drop(&mut self) {
        let n = self.exchanges.get();
        if n > 0 {
            tracing::info!(
                rank = self.rank,
                exchanges = n,
                mean_exchange_us = self.exchange_time.get().as_secs_f64() * 1e6 / n as f64,
                "gradient exchanges"
            );
        }
    }
}

impl Mpi {
    /// Joins the job `mpirun` started. Only the main thread calls MPI (candle's threads compute).
    pub fn init() -> Result<Mpi> {
        let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Funneled) else {
            bail!("MPI is already initialized in this process");
        };
        let world = universe.world();
        let rank = usize::try_from(world.rank()).context("negative MPI rank")?;
        let size = usize::try_from(world.size()).context("negative MPI size")?;
        Ok(Mpi {
            world,
            _universe: universe,
            rank,
            size,
            exchanges: Cell::new(0),
            exchange_time: Cell::new(Duration::ZERO),
        })
    }

    /// Ends every process of the job: a rank that fails must not leave the others waiting in a
    /// collective forever.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn broadcast_u64(&self, values: &mut [u64]) -> Result<()> {
        self.world.process_at_rank(0).broadcast_into(values);
        Ok(())
    }

    fn broadcast_parameters(&self, vars: &[(String, &Var)]) -> Result<()> {
        let root = self.world.process_at_rank(0);
        for (name, var) in vars {
            let mut values = flat(var.as_tensor())?;
            root.broadcast_into(&mut values[..]);
            let t = Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?;
            var.set(&t)
                .with_context(|| format!("cannot set {name} from rank 0"))?;
        }
        Ok(())
    }

    fn combine_gradients(
        &self,
        vars: &[(String, &Var)],
        grads: &mut GradStore,
        loss: f32,
        stop: bool,
        share: usize,
        batch: usize,
    ) -> Result<Combined> {
        let weight = share as f32;
        let mut mine: Vec<f32> = Vec::new();
        for (_, var) in vars {
            match grads.get(var.as_tensor()) {
                Some(g) => mine.extend(flat(g)?.into_iter().map(|x| x * weight)),
                None => mine.extend(std::iter::repeat_n(0.0, var.elem_count())),
            }
        }
        mine.push(loss * weight);
        mine.push(if stop { 1.0 } else { 0.0 });
        let n = mine.len();
        let mut all = vec![0f32; n * self.size];
        let started = Instant::now();
        self.world.all_gather_into(&mine[..], &mut all[..]);
        self.exchange_time
            .set(self.exchange_time.get() + started.elapsed());
        self.exchanges.set(self.exchanges.get() + 1);
        let mut sum = vec![0f32; n];
        for part in all.chunks_exact(n) {
            for (s, x) in sum.iter_mut().zip(part) {
                *s += x;
            }
        }
        let scale = 1.0 / batch.max(1) as f32;
        let mut at = 0;
        for (_, var) in vars {
            let len = var.elem_count();
            let values: Vec<f32> = sum[at..at + len].iter().map(|x| x * scale).collect();
            at += len;
            let g = Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?;
            grads.insert(var.as_tensor(), g);
        }
        Ok(Combined {
            loss: sum[at] * scale,
            stop: sum[at + 1] > 0.0,
        })
    }
}
