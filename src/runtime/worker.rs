//! Worker threads that own ONNX Runtime sessions. `Session::run` takes `&mut self`, so each
//! worker owns one session and takes jobs from a bounded queue shared by the workers of one
//! model version. Dropping the last `Workers` handle closes the queue: the workers finish what is
//! queued and exit, freeing their sessions, which is how a retired version goes away after its
//! last request.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::sync::oneshot;

use super::session::{ModelSession, SessionConfig};
use crate::inference::error::{ErrorKind, InferenceError, InferenceResult};
use crate::inference::tensor::{Signature, Tensor};

/// Named output tensors of one run.
pub type Outputs = Vec<(String, Tensor)>;

struct Job {
    inputs: Vec<Tensor>,
    outputs: Vec<usize>,
    reply: oneshot::Sender<InferenceResult<Outputs>>,
}

/// Settings of a version's workers.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub workers: usize,
    pub queue_capacity: usize,
    pub session: SessionConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            workers: 1,
            queue_capacity: 256,
            session: SessionConfig::default(),
        }
    }
}

pub struct Workers {
    queue: SyncSender<Job>,
    signature: Signature,
}

impl Workers {
    /// Loads one session per worker and starts the threads; fails if any session fails to load.
    pub fn start(
        env: &ort::environment::Environment,
        model: &Path,
        label: &str,
        config: WorkerConfig,
    ) -> Result<Self> {
        let mut sessions = Vec::with_capacity(config.workers.max(1));
        for _ in 0..config.workers.max(1) {
            sessions.push(ModelSession::load(env, model, config.session)?);
        }
        let signature = sessions[0].signature().clone();
        let (tx, rx) = sync_channel::<Job>(config.queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for (i, session) in sessions.into_iter().enumerate() {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("ort-{label}-{i}"))
                .spawn(move || work(session, rx))?;
        }
        Ok(Workers {
            queue: tx,
            signature,
        })
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Queues a run; answers at once with RESOURCE_EXHAUSTED when the queue is full.
    pub async fn run(&self, inputs: Vec<Tensor>, outputs: Vec<usize>) -> InferenceResult<Outputs> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job {
            inputs,
            outputs,
            reply,
        }) {
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
        answer
            .await
            .unwrap_or_else(|_| Err(InferenceError::internal("the inference worker stopped")))
    }

    /// Runs synchronously from a non-async thread (warm-up).
    pub fn run_blocking(
        &self,
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
    ) -> InferenceResult<Outputs> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                inputs,
                outputs,
                reply,
            })
            .map_err(|_| InferenceError::internal("the inference worker stopped"))?;
        answer
            .blocking_recv()
            .unwrap_or_else(|_| Err(InferenceError::internal("the inference worker stopped")))
    }
}

fn work(mut session: ModelSession, rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        // The lock is held only to take a job, never across a run.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if job.reply.is_closed() {
            continue;
        }
        let result = session.run(job.inputs, &job.outputs);
        let _ = job.reply.send(result);
    }
}
