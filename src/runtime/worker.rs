//! Worker threads that own ONNX Runtime sessions, fed by one bounded queue per model version.
//!
//! `Session::run` takes `&mut self`, so each worker owns one session. A free worker takes the
//! request at the head of the queue and, with dynamic batching on, the requests behind it (up to
//! `max_batch_size` rows, waiting at most `batch_timeout` for more), runs them as one batch and
//! hands each request its own rows back. The queue is bounded: a full queue refuses at once
//! (RESOURCE_EXHAUSTED / 429) rather than letting latency grow. A request whose client has gone
//! or whose deadline has passed is dropped when a worker reaches it, never run.
//!
//! Dropping the last `Workers` handle closes the queue: the workers finish what is queued and
//! exit, freeing their sessions, which is how a retired version goes away after its last request.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::oneshot;

use super::session::{ModelSession, SessionConfig};
use crate::inference::error::{ErrorKind, InferenceError, InferenceResult};
use crate::inference::tensor::{Signature, Tensor};

/// Named output tensors of one run.
pub type Outputs = Vec<(String, Tensor)>;

/// How requests are merged into runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most rows in one run; a request larger than this runs alone. 1 turns merging off.
    pub max_batch_size: usize,
    /// How long a worker holding a partial batch waits for more requests; zero takes only what
    /// is already queued.
    pub batch_timeout: Duration,
}

impl BatchConfig {
    /// Every request runs alone.
    pub const OFF: BatchConfig = BatchConfig {
        max_batch_size: 1,
        batch_timeout: Duration::ZERO,
    };
}

/// Settings of a version's workers.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub workers: usize,
    /// Requests queued (not yet taken by a worker) before new ones are refused.
    pub queue_capacity: usize,
    pub batching: BatchConfig,
    pub session: SessionConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            workers: 1,
            queue_capacity: 256,
            batching: BatchConfig::OFF,
            session: SessionConfig::default(),
        }
    }
}

/// A request's answer with what its run looked like.
#[derive(Debug)]
pub struct Ran {
    pub outputs: Outputs,
    /// Rows in the run this request was part of.
    pub batch_rows: usize,
    /// True for exactly one request of each run, so per-run statistics are counted once.
    pub first_in_batch: bool,
    /// Time from enqueue to the start of the run.
    pub queued: Duration,
}

/// Requests dropped by the workers without running, by reason.
#[derive(Debug, Default)]
pub struct DropCounts {
    /// The client went away while the request was queued.
    pub cancelled: AtomicU64,
    /// The request's deadline passed while it was queued.
    pub expired: AtomicU64,
}

/// How many requests a version holds right now, for the queue and in-flight gauges (what an
/// autoscaler, and a test waiting for a busy worker, read).
#[derive(Debug, Default)]
pub struct Load {
    /// Requests waiting in the queue for a worker.
    pub queued: AtomicUsize,
    /// Requests accepted and not yet answered: queued, held for the next batch, or running.
    pub inflight: AtomicUsize,
}

impl Load {
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    fn answered(&self, n: usize) {
        self.inflight.fetch_sub(n, Ordering::Relaxed);
    }
}

struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    outputs: Vec<usize>,
    deadline: Option<Instant>,
    enqueued: Instant,
    reply: oneshot::Sender<InferenceResult<Ran>>,
}

impl Job {
    /// Whether the job should still run; answers or drops it (and counts it) when not.
    fn admit(self, drops: &DropCounts, load: &Load) -> Option<Job> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            drops.expired.fetch_add(1, Ordering::Relaxed);
            load.answered(1);
            let _ = self.reply.send(Err(deadline_exceeded()));
            return None;
        }
        if self.reply.is_closed() {
            drops.cancelled.fetch_add(1, Ordering::Relaxed);
            load.answered(1);
            return None;
        }
        Some(self)
    }

    /// Whether `other` can share a run with this job: same outputs, same input types and row
    /// shapes.
    fn fits_with(&self, other: &Job) -> bool {
        self.outputs == other.outputs
            && self.inputs.len() == other.inputs.len()
            && self.inputs.iter().zip(&other.inputs).all(|(a, b)| {
                a.dtype() == b.dtype()
                    && a.shape.len() == b.shape.len()
                    && a.shape.get(1..) == b.shape.get(1..)
            })
    }
}

fn deadline_exceeded() -> InferenceError {
    InferenceError::new(
        ErrorKind::DeadlineExceeded,
        "the request's deadline passed before it ran",
    )
}

pub struct Workers {
    queue: SyncSender<Job>,
    signature: Signature,
    load: Arc<Load>,
}

impl Workers {
    /// Loads one session per worker and starts the threads; fails if any session fails to load.
    /// Dropped requests are counted in `drops` (shared by a model's versions, so the counts
    /// outlive a retired version).
    pub fn start(
        env: &ort::environment::Environment,
        model: &Path,
        label: &str,
        config: WorkerConfig,
        drops: Arc<DropCounts>,
    ) -> Result<Self> {
        let mut sessions = Vec::with_capacity(config.workers.max(1));
        for _ in 0..config.workers.max(1) {
            sessions.push(ModelSession::load(env, model, config.session)?);
        }
        let signature = sessions[0].signature().clone();
        // Merging needs every input and output to have a free first (batch) dimension.
        let batching = if batchable(&signature) {
            config.batching
        } else {
            BatchConfig::OFF
        };
        let (tx, rx) = sync_channel::<Job>(config.queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let load = Arc::new(Load::default());
        for (i, session) in sessions.into_iter().enumerate() {
            let worker = Worker {
                session,
                queue: Arc::clone(&rx),
                batching,
                drops: Arc::clone(&drops),
                load: Arc::clone(&load),
                held: None,
            };
            std::thread::Builder::new()
                .name(format!("ort-{label}-{i}"))
                .spawn(move || worker.work())?;
        }
        Ok(Workers {
            queue: tx,
            signature,
            load,
        })
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Requests queued and in flight on this version.
    pub fn load(&self) -> &Load {
        &self.load
    }

    /// Counts a job in before it enters the queue (so a worker never sees it uncounted).
    fn enter(&self) {
        self.load.inflight.fetch_add(1, Ordering::Relaxed);
        self.load.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back the count of a job the queue refused.
    fn refused(&self) {
        self.load.queued.fetch_sub(1, Ordering::Relaxed);
        self.load.answered(1);
    }

    fn job(
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
        deadline: Option<Instant>,
    ) -> (Job, oneshot::Receiver<InferenceResult<Ran>>) {
        let (reply, answer) = oneshot::channel();
        let rows = inputs.first().map_or(0, Tensor::rows);
        let job = Job {
            inputs,
            rows,
            outputs,
            deadline,
            enqueued: Instant::now(),
            reply,
        };
        (job, answer)
    }

    /// Queues a run; answers at once with RESOURCE_EXHAUSTED when the queue is full, and with
    /// DEADLINE_EXCEEDED when `deadline` passes first (the request is then dropped unrun if it
    /// is still queued).
    pub async fn run(
        &self,
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
        deadline: Option<Instant>,
    ) -> InferenceResult<Ran> {
        let (job, answer) = Self::job(inputs, outputs, deadline);
        self.enter();
        let sent = self.queue.try_send(job);
        if sent.is_err() {
            self.refused();
        }
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(InferenceError::new(
                    ErrorKind::ResourceExhausted,
                    "the model's request queue is full; retry later",
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(InferenceError::new(
                    ErrorKind::Unavailable,
                    "the model version is unloading",
                ))
            }
        }
        let stopped = || Err(InferenceError::internal("the inference worker stopped"));
        match deadline {
            None => answer.await.unwrap_or_else(|_| stopped()),
            Some(d) => match tokio::time::timeout_at(d.into(), answer).await {
                Ok(result) => result.unwrap_or_else(|_| stopped()),
                Err(_) => Err(deadline_exceeded()),
            },
        }
    }

    /// Runs synchronously from a non-async thread (warm-up, local prediction).
    pub fn run_blocking(&self, inputs: Vec<Tensor>, outputs: Vec<usize>) -> InferenceResult<Ran> {
        let (job, answer) = Self::job(inputs, outputs, None);
        self.enter();
        self.queue.send(job).map_err(|_| {
            self.refused();
            InferenceError::internal("the inference worker stopped")
        })?;
        answer
            .blocking_recv()
            .unwrap_or_else(|_| Err(InferenceError::internal("the inference worker stopped")))
    }
}

/// Whether every input and output has a free first dimension that runs can be stacked along.
fn batchable(signature: &Signature) -> bool {
    signature
        .inputs
        .iter()
        .chain(&signature.outputs)
        .all(|s| s.shape.first().is_some_and(|&d| d < 0))
}

struct Worker {
    session: ModelSession,
    queue: Arc<Mutex<Receiver<Job>>>,
    batching: BatchConfig,
    drops: Arc<DropCounts>,
    load: Arc<Load>,
    /// A job taken from the queue that did not fit the last batch; it starts the next one.
    held: Option<Job>,
}

impl Worker {
    fn work(mut self) {
        while let Some(batch) = self.next_batch() {
            self.run(batch);
        }
    }

    /// The next batch: the first live job, then (batching on) whatever queued jobs fit behind it.
    /// `None` once the queue is closed and empty.
    fn next_batch(&mut self) -> Option<Vec<Job>> {
        // The queue lock is held while a batch forms (other free workers would only wait for
        // the same jobs), never across a run.
        let queue = Arc::clone(&self.queue);
        let queue = queue.lock().ok()?;
        let taken = |job: Job| {
            self.load.queued.fetch_sub(1, Ordering::Relaxed);
            job
        };
        let first = loop {
            let job = match self.held.take() {
                Some(job) => job,
                None => taken(queue.recv().ok()?),
            };
            if let Some(job) = job.admit(&self.drops, &self.load) {
                break job;
            }
        };
        let max = self.batching.max_batch_size;
        let mut rows = first.rows;
        let mut batch = vec![first];
        let until = Instant::now() + self.batching.batch_timeout;
        while rows < max {
            let job = match queue.try_recv() {
                Ok(job) => taken(job),
                Err(_) => {
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    match queue.recv_timeout(until - now) {
                        Ok(job) => taken(job),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let Some(job) = job.admit(&self.drops, &self.load) else {
                continue;
            };
            if rows + job.rows > max || !batch[0].fits_with(&job) {
                self.held = Some(job);
                break;
            }
            rows += job.rows;
            batch.push(job);
        }
        Some(batch)
    }

    fn run(&mut self, batch: Vec<Job>) {
        // Jobs may have expired or lost their client while the batch formed.
        let batch: Vec<Job> = batch
            .into_iter()
            .filter_map(|j| j.admit(&self.drops, &self.load))
            .collect();
        let started = Instant::now();
        if batch.len() == 1 {
            let Some(job) = batch.into_iter().next() else {
                return;
            };
            let rows = job.rows;
            let result = self.session.run(job.inputs, &job.outputs);
            self.load.answered(1);
            let _ = job.reply.send(result.map(|outputs| Ran {
                outputs,
                batch_rows: rows,
                first_in_batch: true,
                queued: started.saturating_duration_since(job.enqueued),
            }));
            return;
        }
        if batch.is_empty() {
            return;
        }
        let rows: Vec<usize> = batch.iter().map(|j| j.rows).collect();
        let total: usize = rows.iter().sum();
        let outputs = batch[0].outputs.clone();
        let mut columns: Vec<Vec<Tensor>> =
            vec![Vec::with_capacity(batch.len()); batch[0].inputs.len()];
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            for (column, tensor) in columns.iter_mut().zip(job.inputs) {
                column.push(tensor);
            }
            replies.push((job.reply, job.enqueued));
        }
        let merged: Option<Vec<Tensor>> = columns.into_iter().map(Tensor::concat_rows).collect();
        let result = match merged {
            Some(inputs) => self.session.run(inputs, &outputs),
            // `fits_with` checked types and row shapes, so this is not reached.
            None => Err(InferenceError::internal(
                "requests of one batch do not stack",
            )),
        };
        let mut per_job: Vec<Outputs> = (0..replies.len())
            .map(|_| Vec::with_capacity(outputs.len().max(1)))
            .collect();
        let result = result.and_then(|named| {
            for (name, tensor) in named {
                let parts = tensor.split_rows(&rows).ok_or_else(|| {
                    InferenceError::internal(format!(
                        "output '{name}' does not have one row per input row ({total} rows)"
                    ))
                })?;
                for (job, part) in per_job.iter_mut().zip(parts) {
                    job.push((name.clone(), part));
                }
            }
            Ok(())
        });
        self.load.answered(replies.len());
        for (i, ((reply, enqueued), outputs)) in replies.into_iter().zip(per_job).enumerate() {
            let answer = match &result {
                Ok(()) => Ok(Ran {
                    outputs,
                    batch_rows: total,
                    first_in_batch: i == 0,
                    queued: started.saturating_duration_since(enqueued),
                }),
                Err(e) => Err(e.clone()),
            };
            let _ = reply.send(answer);
        }
    }
}
