//! The batcher: one bounded queue per model version and the threads that take requests from it,
//! each owning a [`Runner`] (in the server, an ONNX Runtime session).
//!
//! A free thread takes the request at the head of the queue and, with dynamic batching on, the
//! requests behind it (up to `max_batch_size` rows, waiting at most `batch_timeout` for more),
//! runs them as one batch and hands each request its own rows back. The queue is bounded: a full
//! queue refuses at once (RESOURCE_EXHAUSTED / 429) rather than letting latency grow. A request
//! whose client has gone or whose deadline has passed is dropped when a thread reaches it, never
//! run.
//!
//! A request may also run on the thread that received it (`run_here`) when a hand-off could only
//! cost time: the caller knows nobody else is waiting for its thread, nothing is in flight on the
//! version, the request is small and the version's small runs are quick. Two thread wake-ups per
//! request are then saved (a worker's, and the receiving thread's for the answer).
//!
//! Dropping the last `Batcher` handle closes the queue: the threads finish what is queued and
//! exit, freeing their runners, which is how a retired version goes away after its last request.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::scheduling::{self, WorkerScheduling};
use crate::status::{Code, Error, Result};
use crate::tensor::{Outputs, Signature, Tensor};

/// What runs a batch: an ONNX Runtime session in the server, a fake in the batcher's tests.
/// `run` takes `&mut self` (as `ort::Session::run` does), so one thread at a time holds each:
/// its worker thread, or a thread running a request in place (`Batcher::run_here`).
pub trait Runner: Send + 'static {
    fn signature(&self) -> &Signature;

    /// Refuses inputs the model declares bad before they run, so that one request's bad input
    /// never fails the requests merged with it.
    fn check(&self, _inputs: &[Tensor]) -> Result<()> {
        Ok(())
    }

    /// Runs one tensor per input (signature order) and returns the outputs asked for by index
    /// (all when `outputs` is empty), in signature order.
    fn run(&mut self, inputs: &[Tensor], outputs: &[usize]) -> Result<Outputs>;
}

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
    /// Whether it ran on the calling thread rather than a worker's (see `Batcher::run`).
    pub in_place: bool,
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
    reply: oneshot::Sender<Result<Ran>>,
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

/// Most rows a request may have to run in place.
const HERE_MAX_ROWS: usize = 8;

/// The default longest run of at most `HERE_MAX_ROWS` rows for a version's requests to run in
/// place, in microseconds: a few thread wake-ups. A slower model runs on its workers.
pub const HERE_MAX_RUN_MICROS: u64 = 200;

/// Small runs in a row that must each have been quick before requests run in place; one slow
/// run (a model whose run time depends on its input, a stall) sends requests to the workers again.
const HERE_QUICK_STREAK: u32 = 8;

/// A run's inputs: rows, and elements of every input together.
#[derive(Debug, Clone, Copy)]
struct Size {
    rows: usize,
    elements: usize,
}

impl Size {
    fn of(inputs: &[Tensor]) -> Size {
        Size {
            rows: inputs.first().map_or(0, Tensor::rows),
            elements: inputs.iter().map(|t| t.data.len()).sum(),
        }
    }
}

/// A version's runners, each behind its own lock, with what their small runs take.
struct Runners<R> {
    slots: Vec<Mutex<R>>,
    /// Longest small run that counts as quick; zero: none does, and requests never run in place.
    max_quick_run: Duration,
    /// Runs of at most `HERE_MAX_ROWS` rows in a row that took at most `max_quick_run`.
    quick_streak: AtomicU32,
    /// The most input elements among those runs. A request with more (a longer sequence, a
    /// larger image in the same row count) may take longer, so it runs on a worker instead.
    quick_elements: AtomicUsize,
}

impl<R: Runner> Runners<R> {
    /// A slot's runner. A run that panicked leaves none of our state half-changed in it (the
    /// session holds nothing between runs), so the lock's poison is ignored rather than turning
    /// every later run of the slot into an error.
    fn slot(&self, slot: usize) -> MutexGuard<'_, R> {
        self.slots[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn timed(
        &self,
        runner: &mut R,
        inputs: &[Tensor],
        size: Size,
        outputs: &[usize],
    ) -> Result<Outputs> {
        let started = Instant::now();
        let result = runner.run(inputs, outputs);
        self.ran(size, started.elapsed());
        result
    }

    fn ran(&self, size: Size, took: Duration) {
        if size.rows > HERE_MAX_ROWS {
            return;
        }
        if took <= self.max_quick_run {
            // Read first: once proven, a run writes nothing to these shared lines.
            if size.elements > self.quick_elements.load(Ordering::Relaxed) {
                self.quick_elements
                    .fetch_max(size.elements, Ordering::Relaxed);
            }
            // An update, not a load and a store: a slow run's reset is never overwritten.
            let _ = self
                .quick_streak
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < HERE_QUICK_STREAK).then_some(n + 1)
                });
        } else {
            self.quick_streak.store(0, Ordering::Relaxed);
            self.quick_elements.store(0, Ordering::Relaxed);
        }
    }
}

/// The batcher's type-erased view of its runners, for runs in place.
trait RunHere: Send + Sync {
    /// Whether a request of this size is expected to run quickly.
    fn quick_for(&self, size: Size) -> bool;

    /// Runs on the first free runner; gives the inputs back when all are busy.
    fn try_run(
        &self,
        inputs: Vec<Tensor>,
        size: Size,
        outputs: &[usize],
    ) -> std::result::Result<Result<Outputs>, Vec<Tensor>>;
}

impl<R: Runner> RunHere for Runners<R> {
    fn quick_for(&self, size: Size) -> bool {
        !self.max_quick_run.is_zero()
            && size.rows <= HERE_MAX_ROWS
            && self.quick_streak.load(Ordering::Relaxed) >= HERE_QUICK_STREAK
            && size.elements <= self.quick_elements.load(Ordering::Relaxed)
    }

    fn try_run(
        &self,
        inputs: Vec<Tensor>,
        size: Size,
        outputs: &[usize],
    ) -> std::result::Result<Result<Outputs>, Vec<Tensor>> {
        for slot in &self.slots {
            let runner = match slot.try_lock() {
                Ok(runner) => Some(runner),
                Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(mut runner) = runner {
                return Ok(self.timed(&mut runner, &inputs, size, outputs));
            }
        }
        Err(inputs)
    }
}

/// Takes a request out of the in-flight count when dropped, even by a panicking run.
struct Answering<'a>(&'a Load);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.answered(1);
    }
}

fn deadline_exceeded() -> Error {
    Error::new(
        Code::DeadlineExceeded,
        "the request's deadline passed before it ran",
    )
}

pub struct Batcher {
    queue: SyncSender<Job>,
    signature: Signature,
    load: Arc<Load>,
    runners: Arc<dyn RunHere>,
}

impl Batcher {
    /// Starts one thread per runner (at least one runner), each under `scheduling`. Dropped
    /// requests are counted in `drops` (shared by a model's versions, so the counts outlive a
    /// retired version). Small requests may run in place once the version's small runs each take
    /// at most `max_quick_run` (zero: never; see `run_here`).
    pub fn start<R: Runner>(
        runners: Vec<R>,
        label: &str,
        batching: BatchConfig,
        queue_capacity: usize,
        drops: Arc<DropCounts>,
        max_quick_run: Duration,
        scheduling: WorkerScheduling,
    ) -> std::io::Result<Self> {
        let signature = match runners.first() {
            Some(r) => r.signature().clone(),
            None => return Err(std::io::Error::other("a batcher needs a runner")),
        };
        // Merging needs every input and output to have a free first (batch) dimension.
        let batching = if batchable(&signature) {
            batching
        } else {
            BatchConfig::OFF
        };
        let (tx, rx) = sync_channel::<Job>(queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let load = Arc::new(Load::default());
        let count = runners.len();
        let runners = Arc::new(Runners {
            slots: runners.into_iter().map(Mutex::new).collect(),
            max_quick_run,
            quick_streak: AtomicU32::new(0),
            quick_elements: AtomicUsize::new(0),
        });
        for i in 0..count {
            let worker = Worker {
                runners: Arc::clone(&runners),
                slot: i,
                queue: Arc::clone(&rx),
                batching,
                drops: Arc::clone(&drops),
                load: Arc::clone(&load),
                held: None,
            };
            std::thread::Builder::new()
                .name(format!("run-{label}-{i}"))
                .spawn(move || {
                    scheduling::apply_to_this_thread(scheduling);
                    worker.work()
                })?;
        }
        Ok(Batcher {
            queue: tx,
            signature,
            load,
            runners,
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
    ) -> (Job, oneshot::Receiver<Result<Ran>>) {
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
    /// is still queued). With `alone` (the caller knows that no other request waits for its
    /// thread: `Connections::alone`), a small request may run in place instead (`run_here`).
    pub async fn run(
        &self,
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
        deadline: Option<Instant>,
        alone: bool,
    ) -> Result<Ran> {
        let inputs = if alone {
            match self.run_here(inputs, &outputs, deadline) {
                Ok(ran) => return ran,
                Err(inputs) => inputs,
            }
        } else {
            inputs
        };
        let (job, answer) = Self::job(inputs, outputs, deadline);
        self.enter();
        let sent = self.queue.try_send(job);
        if sent.is_err() {
            self.refused();
        }
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::new(
                    Code::ResourceExhausted,
                    "the model's request queue is full; retry later",
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::new(
                    Code::Unavailable,
                    "the model version is unloading",
                ))
            }
        }
        let stopped = || Err(Error::internal("the inference worker stopped"));
        match deadline {
            None => answer.await.unwrap_or_else(|_| stopped()),
            Some(d) => match tokio::time::timeout_at(d.into(), answer).await {
                Ok(result) => result.unwrap_or_else(|_| stopped()),
                Err(_) => Err(deadline_exceeded()),
            },
        }
    }

    /// Runs the request on the calling thread, when nothing is in flight on this version, a
    /// runner is free, the request has at most `HERE_MAX_ROWS` rows and no more input elements
    /// than the version's last `HERE_QUICK_STREAK` runs of up to that many rows, and each of those
    /// took at most the batcher's quick bound. Gives the inputs back otherwise, for `run` (which
    /// also answers a request already past its deadline).
    fn run_here(
        &self,
        inputs: Vec<Tensor>,
        outputs: &[usize],
        deadline: Option<Instant>,
    ) -> std::result::Result<Result<Ran>, Vec<Tensor>> {
        let size = Size::of(&inputs);
        if !self.runners.quick_for(size) || deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(inputs);
        }
        // Counted in flight first, so a request arriving meanwhile queues for a worker.
        if self
            .load
            .inflight
            .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Err(inputs);
        }
        let _answering = Answering(&self.load);
        self.runners.try_run(inputs, size, outputs).map(|ran| {
            ran.map(|outputs| Ran {
                outputs,
                batch_rows: size.rows,
                first_in_batch: true,
                queued: Duration::ZERO,
                in_place: true,
            })
        })
    }

    /// Runs synchronously from a non-async thread (warm-up, local prediction).
    pub fn run_blocking(&self, inputs: Vec<Tensor>, outputs: Vec<usize>) -> Result<Ran> {
        let (job, answer) = Self::job(inputs, outputs, None);
        self.enter();
        self.queue.send(job).map_err(|_| {
            self.refused();
            Error::internal("the inference worker stopped")
        })?;
        answer
            .blocking_recv()
            .unwrap_or_else(|_| Err(Error::internal("the inference worker stopped")))
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

struct Worker<R> {
    runners: Arc<Runners<R>>,
    /// This worker's runner in `runners`.
    slot: usize,
    queue: Arc<Mutex<Receiver<Job>>>,
    batching: BatchConfig,
    drops: Arc<DropCounts>,
    load: Arc<Load>,
    /// A job taken from the queue that did not fit the last batch; it starts the next one.
    held: Option<Job>,
}

impl<R: Runner> Worker<R> {
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
        // The runner first: a run in place may hold it for a moment, and the jobs' deadlines and
        // clients are checked after that wait.
        let runners = Arc::clone(&self.runners);
        let mut runner = runners.slot(self.slot);
        // Jobs may have expired or lost their client while the batch formed; a merged job whose
        // input the model refuses is answered alone.
        let merged = batch.len() > 1;
        let batch: Vec<Job> = batch
            .into_iter()
            .filter_map(|j| j.admit(&self.drops, &self.load))
            .filter_map(|j| {
                if !merged {
                    return Some(j);
                }
                match runner.check(&j.inputs) {
                    Ok(()) => Some(j),
                    Err(e) => {
                        self.load.answered(1);
                        let _ = j.reply.send(Err(e));
                        None
                    }
                }
            })
            .collect();
        let started = Instant::now();
        if batch.len() == 1 {
            let Some(job) = batch.into_iter().next() else {
                return;
            };
            let rows = job.rows;
            let size = Size::of(&job.inputs);
            let result = runners.timed(&mut runner, &job.inputs, size, &job.outputs);
            // Free before the answer goes out: the client's next request may run in place.
            drop(runner);
            self.load.answered(1);
            let _ = job.reply.send(result.map(|outputs| Ran {
                outputs,
                batch_rows: rows,
                first_in_batch: true,
                queued: started.saturating_duration_since(job.enqueued),
                in_place: false,
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
            replies.push((job.reply, job.enqueued, job.deadline));
        }
        let merged: Option<Vec<Tensor>> = columns.into_iter().map(Tensor::concat_rows).collect();
        let result = match &merged {
            Some(inputs) => runners.timed(&mut runner, inputs, Size::of(inputs), &outputs),
            // `fits_with` checked types and row shapes, so this is not reached.
            None => Err(Error::internal("requests of one batch do not stack")),
        };
        if let (Err(_), Some(inputs)) = (&result, merged) {
            // A run can fail for one request's values that no check foresaw (an index past a
            // Gather's table): each request runs again alone, so only the one at fault fails.
            if let Some(alone) = unmerge(inputs, &rows) {
                for ((reply, enqueued, deadline), (inputs, rows)) in replies.into_iter().zip(alone)
                {
                    // Its deadline may have passed, or its client left, during the failed run.
                    let job = Job {
                        inputs,
                        rows,
                        outputs: outputs.clone(),
                        deadline,
                        enqueued,
                        reply,
                    };
                    let Some(job) = job.admit(&self.drops, &self.load) else {
                        continue;
                    };
                    let size = Size::of(&job.inputs);
                    let result = runners.timed(&mut runner, &job.inputs, size, &outputs);
                    self.load.answered(1);
                    let _ = job.reply.send(result.map(|outputs| Ran {
                        outputs,
                        batch_rows: rows,
                        first_in_batch: true,
                        queued: started.saturating_duration_since(enqueued),
                        in_place: false,
                    }));
                }
                return;
            }
        }
        drop(runner);
        let mut per_job: Vec<Outputs> = (0..replies.len())
            .map(|_| Vec::with_capacity(outputs.len().max(1)))
            .collect();
        let result = result.and_then(|named| {
            for (name, tensor) in named {
                let parts = tensor.split_rows(&rows).ok_or_else(|| {
                    Error::internal(format!(
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
        for (i, ((reply, enqueued, _), outputs)) in replies.into_iter().zip(per_job).enumerate() {
            let answer = match &result {
                Ok(()) => Ok(Ran {
                    outputs,
                    batch_rows: total,
                    first_in_batch: i == 0,
                    queued: started.saturating_duration_since(enqueued),
                    in_place: false,
                }),
                Err(e) => Err(e.clone()),
            };
            let _ = reply.send(answer);
        }
    }
}

/// A merged run's inputs split back into each request's (with its row count).
fn unmerge(inputs: Vec<Tensor>, rows: &[usize]) -> Option<Vec<(Vec<Tensor>, usize)>> {
    let mut jobs: Vec<(Vec<Tensor>, usize)> = rows
        .iter()
        .map(|&r| (Vec::with_capacity(inputs.len()), r))
        .collect();
    for column in inputs {
        for (job, part) in jobs.iter_mut().zip(column.split_rows(rows)?) {
            job.0.push(part);
        }
    }
    Some(jobs)
}

#[cfg(test)]
mod tests {
    //! The batching policy with a fake runner that holds each run until the test lets it go, so
    //! every state (running, queued, merged, dropped) is reached by the test's own steps.

    use std::sync::mpsc::{channel, Receiver, Sender};

    use super::*;
    use crate::tensor::{DType, TensorData, TensorSpec};

    /// Echoes `x` as `y`; reports each run's inputs, then waits for the test's go-ahead.
    struct Gated {
        signature: Signature,
        started: Sender<Vec<f32>>,
        go: Receiver<()>,
    }

    impl Runner for Gated {
        fn signature(&self) -> &Signature {
            &self.signature
        }

        /// Negative values are refused, as a model's declared input check would.
        fn check(&self, inputs: &[Tensor]) -> Result<()> {
            match &inputs[0].data {
                TensorData::F32(v) if v.iter().any(|x| *x < 0.0) => Err(Error::invalid("negative")),
                _ => Ok(()),
            }
        }

        /// A NaN fails the run, as a value no check foresaw fails a model's.
        fn run(&mut self, inputs: &[Tensor], _outputs: &[usize]) -> Result<Outputs> {
            let Some(x) = inputs.first() else {
                return Err(Error::internal("no input"));
            };
            let TensorData::F32(values) = &x.data else {
                return Err(Error::internal("not floats"));
            };
            let _ = self.started.send(values.clone());
            let _ = self.go.recv();
            if values.iter().any(|v| v.is_nan()) {
                return Err(Error::internal("model execution failed: NaN"));
            }
            Ok(vec![("y".to_string(), x.clone())])
        }
    }

    struct Fixture {
        batcher: Arc<Batcher>,
        drops: Arc<DropCounts>,
        started: Receiver<Vec<f32>>,
        go: Sender<()>,
        runtime: tokio::runtime::Runtime,
    }

    fn fixture(max_batch_size: usize, queue_capacity: usize) -> Fixture {
        fixture_with(
            max_batch_size,
            queue_capacity,
            Duration::from_micros(HERE_MAX_RUN_MICROS),
        )
    }

    fn fixture_with(
        max_batch_size: usize,
        queue_capacity: usize,
        max_quick_run: Duration,
    ) -> Fixture {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![-1],
        };
        let (started_tx, started) = channel();
        let (go, go_rx) = channel();
        let runner = Gated {
            signature: Signature {
                inputs: vec![spec("x")],
                outputs: vec![spec("y")],
                class_labels: vec![],
            },
            started: started_tx,
            go: go_rx,
        };
        let drops = Arc::new(DropCounts::default());
        let batching = BatchConfig {
            max_batch_size,
            batch_timeout: Duration::ZERO,
        };
        let batcher = Batcher::start(
            vec![runner],
            "test",
            batching,
            queue_capacity,
            drops.clone(),
            max_quick_run,
            WorkerScheduling::Batch,
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Fixture {
            batcher: Arc::new(batcher),
            drops,
            started,
            go,
            runtime,
        }
    }

    fn floats(values: &[f32]) -> Vec<Tensor> {
        vec![Tensor::new(
            vec![values.len()],
            TensorData::F32(values.to_vec()),
        )]
    }

    impl Fixture {
        /// Sends a request; its answer arrives on the returned task.
        fn send(
            &self,
            values: &[f32],
            deadline: Option<Instant>,
        ) -> tokio::task::JoinHandle<Result<Ran>> {
            let batcher = Arc::clone(&self.batcher);
            let inputs = floats(values);
            self.runtime
                .spawn(async move { batcher.run(inputs, vec![], deadline, false).await })
        }

        fn answer(&self, task: tokio::task::JoinHandle<Result<Ran>>) -> Result<Ran> {
            self.runtime.block_on(task).unwrap()
        }

        fn wait_queued(&self, n: usize) {
            while self.batcher.load().queued() != n {
                std::thread::yield_now();
            }
        }

        /// Waits for the next run to start and returns the values it holds.
        fn next_run(&self) -> Vec<f32> {
            self.started.recv().unwrap()
        }
    }

    fn values(ran: &Ran) -> &[f32] {
        match &ran.outputs[0].1.data {
            TensorData::F32(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn small_requests_run_in_place_once_small_runs_have_proven_quick() {
        // Any run counts as quick here: the test must not depend on the machine's speed.
        let f = fixture_with(64, 16, Duration::from_secs(3600));
        // Until the streak is proven, requests are given back and run on the worker.
        for i in 0..HERE_QUICK_STREAK {
            let inputs = floats(&[i as f32]);
            let inputs = f.batcher.run_here(inputs, &[], None).err().unwrap();
            let batcher = Arc::clone(&f.batcher);
            let task = f
                .runtime
                .spawn(async move { batcher.run(inputs, vec![], None, false).await });
            assert_eq!(f.next_run(), [i as f32]);
            f.go.send(()).unwrap();
            f.answer(task).unwrap();
        }
        // Now on this thread: the gate is opened before the run reaches it.
        f.go.send(()).unwrap();
        let ran = f
            .batcher
            .run_here(floats(&[7.0]), &[], None)
            .unwrap()
            .unwrap();
        assert_eq!(f.next_run(), [7.0]);
        assert_eq!(values(&ran), [7.0]);
        assert_eq!((ran.batch_rows, ran.queued), (1, Duration::ZERO));
        assert_eq!(f.batcher.load().inflight(), 0);
        // More rows than a run in place may have: given back.
        let big = floats(&[0.0; HERE_MAX_ROWS + 1]);
        assert!(f.batcher.run_here(big, &[], None).is_err());
        // Another request in flight: given back, to queue behind it.
        let busy = f.send(&[1.0], None);
        assert_eq!(f.next_run(), [1.0]);
        assert!(f.batcher.run_here(floats(&[2.0]), &[], None).is_err());
        f.go.send(()).unwrap();
        f.answer(busy).unwrap();
        // Past its deadline: given back, for the queue's path to answer and count.
        let late = f
            .batcher
            .run_here(floats(&[3.0]), &[], Some(Instant::now()));
        assert!(late.is_err());
        assert_eq!(f.batcher.load().inflight(), 0);
        assert!(f.started.try_recv().is_err(), "nothing else ran");
    }

    #[test]
    fn one_slow_small_run_ends_runs_in_place_until_proven_again() {
        let runners = Runners {
            slots: Vec::<Mutex<Gated>>::new(),
            max_quick_run: Duration::from_micros(200),
            quick_streak: AtomicU32::new(0),
            quick_elements: AtomicUsize::new(0),
        };
        let size = |rows, elements| Size { rows, elements };
        let quick = Duration::from_micros(50);
        for _ in 1..HERE_QUICK_STREAK {
            runners.ran(size(1, 13), quick);
        }
        assert!(!runners.quick_for(size(1, 13)));
        runners.ran(size(2, 26), quick);
        assert!(runners.quick_for(size(1, 13)));
        assert!(runners.quick_for(size(2, 26)));
        // More input values than any quick run had (a longer sequence, say): not known quick.
        assert!(!runners.quick_for(size(2, 27)));
        assert!(!runners.quick_for(size(HERE_MAX_ROWS + 1, 1)));
        // Large runs say nothing about small ones.
        runners.ran(size(HERE_MAX_ROWS + 1, 117), Duration::from_secs(1));
        assert!(runners.quick_for(size(1, 13)));
        runners.ran(size(1, 13), Duration::from_millis(1));
        assert!(!runners.quick_for(size(1, 13)));
        for _ in 0..HERE_QUICK_STREAK {
            runners.ran(size(1, 13), quick);
        }
        assert!(runners.quick_for(size(1, 13)));
        assert!(
            !runners.quick_for(size(2, 26)),
            "the slow run reset the elements too"
        );
    }

    #[test]
    fn queued_requests_merge_up_to_the_batch_size_and_get_their_own_rows_back() {
        let f = fixture(4, 16);
        let first = f.send(&[1.0], None);
        assert_eq!(f.next_run(), [1.0]);
        // Five requests queue behind the running one; the next run takes 1 + 2 + 1 rows (4),
        // and the request that would overflow it starts the run after.
        let queued: Vec<_> = [&[2.0][..], &[3.0, 4.0], &[5.0], &[6.0, 7.0], &[8.0]]
            .into_iter()
            .enumerate()
            .map(|(k, v)| {
                let t = f.send(v, None);
                f.wait_queued(k + 1);
                t
            })
            .collect();
        assert_eq!(f.batcher.load().inflight(), 6);
        f.go.send(()).unwrap();
        assert_eq!(f.next_run(), [2.0, 3.0, 4.0, 5.0]);
        f.go.send(()).unwrap();
        assert_eq!(f.next_run(), [6.0, 7.0, 8.0]);
        f.go.send(()).unwrap();
        let ran = f.answer(first).unwrap();
        assert_eq!((values(&ran), ran.batch_rows), (&[1.0][..], 1));
        let answers: Vec<Ran> = queued.into_iter().map(|t| f.answer(t).unwrap()).collect();
        let got: Vec<(&[f32], usize, bool)> = answers
            .iter()
            .map(|r| (values(r), r.batch_rows, r.first_in_batch))
            .collect();
        assert_eq!(
            got,
            [
                (&[2.0][..], 4, true),
                (&[3.0, 4.0][..], 4, false),
                (&[5.0][..], 4, false),
                (&[6.0, 7.0][..], 3, true),
                (&[8.0][..], 3, false),
            ]
        );
        assert_eq!(f.batcher.load().inflight(), 0);
        assert_eq!(f.batcher.load().queued(), 0);
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let f = fixture(1, 2);
        let running = f.send(&[1.0], None);
        f.next_run();
        let a = f.send(&[2.0], None);
        let b = f.send(&[3.0], None);
        f.wait_queued(2);
        let refused = f.answer(f.send(&[4.0], None)).unwrap_err();
        assert_eq!(refused.code, Code::ResourceExhausted);
        assert_eq!(
            f.batcher.load().queued(),
            2,
            "a refused request never queues"
        );
        for _ in 0..3 {
            f.go.send(()).unwrap();
        }
        for t in [running, a, b] {
            f.answer(t).unwrap();
        }
    }

    #[test]
    fn expired_requests_are_answered_and_dropped_unrun() {
        let f = fixture(4, 16);
        let running = f.send(&[1.0], None);
        f.next_run();
        let expired = f.send(&[2.0], Some(Instant::now()));
        let alive = f.send(&[3.0], None);
        f.wait_queued(2);
        // The expired request is answered while it waits.
        let e = f.answer(expired).unwrap_err();
        assert_eq!(e.code, Code::DeadlineExceeded);
        f.go.send(()).unwrap();
        // The next run holds only the live request.
        assert_eq!(f.next_run(), [3.0]);
        f.go.send(()).unwrap();
        f.answer(running).unwrap();
        f.answer(alive).unwrap();
        assert_eq!(f.drops.expired.load(Ordering::Relaxed), 1);
        assert_eq!(f.drops.cancelled.load(Ordering::Relaxed), 0);
        assert_eq!(f.batcher.load().inflight(), 0);
    }

    #[test]
    fn requests_whose_client_left_are_dropped_unrun() {
        let f = fixture(4, 16);
        let running = f.send(&[1.0], None);
        f.next_run();
        let gone = f.send(&[2.0], None);
        f.wait_queued(1);
        gone.abort();
        assert!(f.runtime.block_on(gone).unwrap_err().is_cancelled());
        let alive = f.send(&[3.0], None);
        f.wait_queued(2);
        f.go.send(()).unwrap();
        assert_eq!(f.next_run(), [3.0]);
        f.go.send(()).unwrap();
        f.answer(running).unwrap();
        f.answer(alive).unwrap();
        assert_eq!(f.drops.cancelled.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_refused_request_never_fails_the_requests_merged_with_it() {
        let f = fixture(4, 16);
        let running = f.send(&[1.0], None);
        f.next_run();
        let good = f.send(&[2.0], None);
        let bad = f.send(&[-3.0], None);
        let also_good = f.send(&[4.0], None);
        f.wait_queued(3);
        f.go.send(()).unwrap();
        assert_eq!(f.next_run(), [2.0, 4.0]);
        f.go.send(()).unwrap();
        assert_eq!(f.answer(bad).unwrap_err().message, "negative");
        for t in [running, good, also_good] {
            f.answer(t).unwrap();
        }
        assert_eq!(f.batcher.load().inflight(), 0);
    }

    #[test]
    fn a_request_that_fails_a_merged_run_fails_alone() {
        let f = fixture(4, 16);
        let running = f.send(&[1.0], None);
        f.next_run();
        let good = f.send(&[2.0], None);
        let bad = f.send(&[f32::NAN, 3.0], None);
        let also_good = f.send(&[4.0], None);
        f.wait_queued(3);
        f.go.send(()).unwrap();
        let merged = f.next_run();
        assert_eq!(merged.len(), 4);
        assert!(merged[1].is_nan());
        f.go.send(()).unwrap();
        // The merged run failed: each request runs again on its own.
        assert_eq!(f.next_run(), [2.0]);
        f.go.send(()).unwrap();
        let alone = f.next_run();
        assert!(alone[0].is_nan() && alone[1] == 3.0, "{alone:?}");
        f.go.send(()).unwrap();
        assert_eq!(f.next_run(), [4.0]);
        f.go.send(()).unwrap();
        assert!(f.answer(bad).unwrap_err().message.contains("NaN"));
        for (t, want) in [(running, 1.0), (good, 2.0), (also_good, 4.0)] {
            let ran = f.answer(t).unwrap();
            assert_eq!(ran.outputs[0].1.data, TensorData::F32(vec![want]));
        }
        assert_eq!(f.batcher.load().inflight(), 0);
    }

    #[test]
    fn a_request_larger_than_the_batch_runs_alone() {
        let f = fixture(2, 16);
        let running = f.send(&[1.0], None);
        f.next_run();
        let big = f.send(&[2.0, 3.0, 4.0], None);
        let small = f.send(&[5.0], None);
        f.wait_queued(2);
        f.go.send(()).unwrap();
        assert_eq!(f.next_run(), [2.0, 3.0, 4.0]);
        f.go.send(()).unwrap();
        assert_eq!(f.next_run(), [5.0]);
        f.go.send(()).unwrap();
        for t in [running, big, small] {
            f.answer(t).unwrap();
        }
    }
}
