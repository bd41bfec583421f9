//! The job queue: at most `--max-running-jobs` jobs at a time, each on a thread of its own that
//! runs the job's child process to its end, cancels it (SIGTERM, then SIGKILL) and records the
//! outcome. At start, jobs a restart interrupted are failed and queued ones queued again.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{final_state, ControlPlane};
use crate::control::store::Kind;

/// How long a cancelled child has to stop after SIGTERM before SIGKILL.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// Lines of a failed job's log kept as its `errorMessage`.
const ERROR_LINES: usize = 5;
/// A running job's handle: its child and whether it was asked to stop.
#[derive(Default)]
struct Running {
    pid: Mutex<Option<u32>>,
    cancelled: AtomicBool,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<String>,
    running: HashMap<String, Arc<Running>>,
}

pub struct Runner {
    control: Weak<ControlPlane>,
    dir: PathBuf,
    max_running: usize,
    allow_custom_code: bool,
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Runner {
    pub(crate) fn new(
        control: Weak<ControlPlane>,
        dir: PathBuf,
        max_running: usize,
        allow_custom_code: bool,
    ) -> Self {
        Runner {
            control,
            dir,
            max_running,
            allow_custom_code,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        }
    }

    /// Fails the jobs a restart interrupted, queues the queued ones, and starts dispatching.
    pub(crate) fn start(&self) -> anyhow::Result<()> {
        let control = self
            .control
            .upgrade()
            .ok_or_else(|| anyhow::anyhow!("the control plane is gone"))?;
        let (_, jobs) =
            control
                .store
                .unfinished(&["QUEUED", "PREPARING", "RUNNING", "CANCELLING"])?;
        for job in jobs {
            let id = job["jobId"].as_str().unwrap_or_default().to_string();
            match job["state"].as_str() {
                Some("QUEUED") => self.enqueue(&id),
                Some("CANCELLING") => control.finish_job(&id, "CANCELLED", None, None),
                _ => control.finish_job(
                    &id,
                    "FAILED",
                    Some("the server restarted while the job ran; submit it again (a training job resumes from the checkpoints in its job-dir)".into()),
                    None,
                ),
            }
        }
        let weak = self.control.clone();
        std::thread::Builder::new()
            .name("job-dispatcher".into())
            .spawn(move || dispatch(weak))?;
        Ok(())
    }

    pub(super) fn enqueue(&self, id: &str) {
        if let Ok(mut q) = self.queue.lock() {
            q.waiting.push_back(id.to_string());
        }
        self.wake.notify_all();
    }

    /// 1-based position of a queued job, 0 once it is scheduled.
    pub(super) fn position(&self, id: &str) -> usize {
        self.queue
            .lock()
            .ok()
            .and_then(|q| q.waiting.iter().position(|j| j == id))
            .map_or(0, |p| p + 1)
    }

    pub(super) fn allow_custom_code(&self) -> bool {
        self.allow_custom_code
    }

    /// Takes a job out of the queue; false when it was not waiting there.
    pub(super) fn unqueue(&self, id: &str) -> bool {
        self.queue
            .lock()
            .map(|mut q| {
                let before = q.waiting.len();
                q.waiting.retain(|j| j != id);
                before != q.waiting.len()
            })
            .unwrap_or(false)
    }

    /// Asks a running job's child to stop (its thread sends the signals).
    pub(super) fn stop(&self, id: &str) {
        let running = self
            .queue
            .lock()
            .ok()
            .and_then(|q| q.running.get(id).cloned());
        if let Some(r) = running {
            r.cancelled.store(true, Ordering::Release);
        }
    }

    pub(super) fn log_path(&self, id: &str) -> PathBuf {
        self.dir.join(id).join("log")
    }
}

/// Takes queued jobs while there are free slots, each on a thread of its own.
fn dispatch(control: Weak<ControlPlane>) {
    loop {
        let Some(c) = control.upgrade() else { return };
        let runner = &c.jobs;
        let next = {
            let Ok(mut q) = runner.queue.lock() else {
                return;
            };
            while q.waiting.is_empty() || q.running.len() >= runner.max_running {
                match runner.wake.wait_timeout(q, Duration::from_secs(1)) {
                    Ok((guard, _)) => q = guard,
                    Err(_) => return,
                }
                if Arc::strong_count(&c) == 1 {
                    return;
                }
            }
            let Some(id) = q.waiting.pop_front() else {
                continue;
            };
            let running = Arc::new(Running::default());
            q.running.insert(id.clone(), Arc::clone(&running));
            (id, running)
        };
        let (id, running) = next;
        let job_control = Arc::clone(&c);
        let spawned = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || {
                job_control.run_job(&id, &running);
                if let Ok(mut q) = job_control.jobs.queue.lock() {
                    q.running.remove(&id);
                }
                job_control.jobs.wake.notify_all();
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a job thread: {e}");
        }
        drop(c);
    }
}
impl ControlPlane {
    fn run_job(&self, id: &str, running: &Running) {
        let Ok(Some(job)) = self.store.get(Kind::Job, id) else {
            return;
        };
        if final_state(job["state"].as_str().unwrap_or_default()) {
            return;
        }
        let project = self
            .store
            .project(Kind::Job, id)
            .ok()
            .flatten()
            .unwrap_or_default();
        let dir = self.jobs.dir.join(id);
        let _ = std::fs::create_dir_all(&dir);
        let _ = self.set_job_state(id, "PREPARING");
        let log_path = self.jobs.log_path(id);
        let logs = std::fs::File::create(&log_path).and_then(|f| Ok((f.try_clone()?, f)));
        let (err_log, log) = match logs {
            Ok(files) => files,
            Err(e) => {
                self.finish_job(
                    id,
                    "FAILED",
                    Some(format!("cannot write the job's log: {e}")),
                    None,
                );
                return;
            }
        };
        let mut cmd = match self.command(&project, &job, &dir, &log) {
            Ok(c) => c,
            Err(message) => {
                self.finish_job(id, "FAILED", Some(message), None);
                return;
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .env("MLENGINE_LOG", "info,object_store=warn")
            .env("CLOUD_ML_JOB_ID", id);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.finish_job(
                    id,
                    "FAILED",
                    Some(format!("cannot start the job: {e}")),
                    None,
                );
                return;
            }
        };
        if let Ok(mut pid) = running.pid.lock() {
            *pid = Some(child.id());
        }
        if !running.cancelled.load(Ordering::Acquire) {
            let _ = self.set_job_state(id, "RUNNING");
        }
        let mut term_sent: Option<Instant> = None;
        // A tuning job's trials so far, from the tuner's output file, as they change.
        let tuning = tuning_output_file(&job);
        let mut seen: Option<std::time::SystemTime> = None;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(_) => break None,
            }
            if let Some(file) = &tuning {
                let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok();
                if modified.is_some() && modified != seen {
                    seen = modified;
                    if let Some(output) = read_tuning_output(file) {
                        self.set_job_output(id, &output);
                    }
                }
            }
            if running.cancelled.load(Ordering::Acquire) {
                match term_sent {
                    None => {
                        signal(child.id(), "TERM");
                        term_sent = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > CANCEL_GRACE => {
                        let _ = child.kill();
                    }
                    Some(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if running.cancelled.load(Ordering::Acquire) {
            self.finish_job(
                id,
                "CANCELLED",
                Some("Job cancelled by the user.".into()),
                None,
            );
            return;
        }
        let output = if job.get("predictionInput").is_some() {
            prediction_output(&text, &job)
        } else if let Some(file) = &tuning {
            read_tuning_output(file)
        } else {
            Some(json!({"consumedMLUnits": 0.0, "isHyperparameterTuningJob": false}))
        };
        match status {
            Some(s) if s.success() => self.finish_job(id, "SUCCEEDED", None, output),
            other => {
                let code = other
                    .and_then(|s| s.code())
                    .map_or("a signal".to_string(), |c| format!("code {c}"));
                let message = format!("The job exited with {code}: {}", error_lines(&text));
                self.finish_job(id, "FAILED", Some(message), output);
            }
        }
    }
}

/// The lines of a failed job's log its errorMessage keeps: the last few, and before them the
/// first `error:` line when the tail lacks it (clap prints the reason for a bad flag first and
/// its usage after, which alone would fill the tail).
fn error_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(ERROR_LINES);
    let mut kept = Vec::with_capacity(ERROR_LINES + 1);
    if let Some(first) = lines[..start].iter().find(|l| l.starts_with("error:")) {
        kept.push(*first);
    }
    kept.extend_from_slice(&lines[start..]);
    kept.join("\n")
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
/// Where a tuning job's tuner writes its `trainingOutput`.
fn tuning_output_file(job: &Value) -> Option<std::path::PathBuf> {
    let t = job.get("trainingInput")?;
    t.get("hyperparameters")?;
    let dir = t.get("jobDir").and_then(Value::as_str)?;
    Some(std::path::Path::new(dir).join(crate::tune::OUTPUT_FILE))
}

fn read_tuning_output(file: &std::path::Path) -> Option<Value> {
    let doc: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    doc.get("trainingOutput").cloned()
}

/// `predictionOutput` from batch prediction's summary line.
fn prediction_output(log: &str, job: &Value) -> Option<Value> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.starts_with("predictionCount: "))?;
    let count = |key: &str| -> Option<String> {
        let rest = line.split(key).nth(1)?;
        Some(rest.split(',').next()?.trim().to_string())
    };
    Some(json!({
        "outputPath": job.pointer("/predictionInput/outputPath").cloned().unwrap_or(Value::Null),
        "predictionCount": count("predictionCount: ")?,
        "errorCount": count("errorCount: ")?,
        "nodeHours": 0.0,
    }))
}
