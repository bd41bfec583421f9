//! Sessions shared by the tasks of a batch prediction job. Every runtime thread of that job
//! decodes, runs and encodes a batch of its own, so each run takes a free session on the thread
//! that decoded the batch: handing runs to dedicated worker threads (as the server does, for
//! batching across requests) would only add two thread wake-ups per batch.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Result;

use super::session::{InputCheck, ModelSession, SessionConfig};
use crate::status::{self, Error};
use crate::tensor::{Outputs, Signature, Tensor};

pub struct SessionPool {
    sessions: Vec<Mutex<ModelSession>>,
    signature: Signature,
    check: InputCheck,
}

impl SessionPool {
    /// Loads `count` sessions of the model (at least one).
    pub fn load(
        env: &ort::environment::Environment,
        model: &Path,
        count: usize,
        config: SessionConfig,
    ) -> Result<Self> {
        let sessions = (0..count.max(1))
            .map(|_| ModelSession::load(env, model, config).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        let (signature, check) = {
            let first = sessions[0]
                .lock()
                .map_err(|_| anyhow::anyhow!("a model session is unusable"))?;
            (first.signature().clone(), first.input_check())
        };
        Ok(SessionPool {
            sessions,
            signature,
            check,
        })
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The rows the model's declared input checks refuse.
    pub fn bad_rows(&self, inputs: &[Tensor]) -> Vec<(usize, String, String)> {
        self.check.bad_rows(&self.signature, inputs)
    }

    /// Runs on a free session, or waits for the first one when all are busy (the job runs no
    /// more tasks at once than it has sessions, so that is rare).
    pub fn run(&self, inputs: &[Tensor], outputs: &[usize]) -> status::Result<Outputs> {
        let unusable = || Error::internal("a model session is unusable");
        for session in &self.sessions {
            if let Ok(mut free) = session.try_lock() {
                return free.run(inputs, outputs);
            }
        }
        self.sessions[0]
            .lock()
            .map_err(|_| unusable())?
            .run(inputs, outputs)
    }
}
