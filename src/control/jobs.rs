//! `projects.jobs`: training and prediction jobs, run as child processes of this binary
//! (`mlengine train`, `mlengine batch-predict`) at a lower CPU priority, at most
//! `--max-running-jobs` at a time and queued beyond that, off the serving threads. Each job's
//! output is kept as its log in the state dir; `cancel` stops the child (SIGTERM, then SIGKILL
//! after a grace period). A job that was running when the server stopped is failed at the next
//! start (a training job resubmitted resumes from its checkpoints).

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::list::{page, ListQuery};
use super::operations::listed;
use super::roots::Access;
use super::store::Kind;
use super::{check_fields, etag, internal, names, now, ControlPlane};
use crate::status::{Code, Error, Result};

const JOB_FIELDS: &[&str] = &[
    "jobId",
    "trainingInput",
    "predictionInput",
    "labels",
    "etag",
    "state",
    "errorMessage",
    "createTime",
    "startTime",
    "endTime",
    "trainingOutput",
    "predictionOutput",
    "jobPosition",
];

/// How long a cancelled child has to stop after SIGTERM before SIGKILL.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// Lines of a failed job's log kept as its `errorMessage`.
const ERROR_LINES: usize = 5;

fn final_state(state: &str) -> bool {
    matches!(state, "SUCCEEDED" | "FAILED" | "CANCELLED")
}

fn not_found(job: &str) -> Error {
    Error::not_found(format!("The job resource: \"{job}\" was not found.")).on_field("name")
}

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
    pub(super) fn new(
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
    pub(super) fn start(&self) -> anyhow::Result<()> {
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

    fn enqueue(&self, id: &str) {
        if let Ok(mut q) = self.queue.lock() {
            q.waiting.push_back(id.to_string());
        }
        self.wake.notify_all();
    }

    /// 1-based position of a queued job, 0 once it is scheduled.
    fn position(&self, id: &str) -> usize {
        self.queue
            .lock()
            .ok()
            .and_then(|q| q.waiting.iter().position(|j| j == id))
            .map_or(0, |p| p + 1)
    }

    fn log_path(&self, id: &str) -> PathBuf {
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
    pub fn create_job(&self, project: &str, body: &Value) -> Result<Value> {
        check_fields(body, JOB_FIELDS, "job")?;
        let id = body
            .get("jobId")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid("A job needs a jobId.").on_field("job.job_id"))?;
        names::check_id(id, "job.job_id")?;
        match (body.get("trainingInput"), body.get("predictionInput")) {
            (Some(t), None) => self.check_training(t)?,
            (None, Some(p)) => self.check_prediction(project, p)?,
            _ => {
                return Err(Error::invalid(
                    "A job needs exactly one of trainingInput or predictionInput.",
                ))
            }
        }
        let mut job = json!({
            "jobId": id,
            "state": "QUEUED",
            "createTime": now(),
            "etag": etag(),
        });
        for key in ["trainingInput", "predictionInput", "labels"] {
            if let Some(v) = body.get(key) {
                job[key] = v.clone();
            }
        }
        // Job ids are never reused: a finished job keeps its record.
        let stored = self
            .store
            .transaction(|tx| {
                if tx.get(Kind::Job, id)?.is_some() {
                    return Ok(false);
                }
                tx.put(Kind::Job, id, project, &job)?;
                Ok(true)
            })
            .map_err(internal)?;
        if !stored {
            return Err(
                Error::already_exists("A job with this id already exists.").on_field("job.job_id")
            );
        }
        self.jobs.enqueue(id);
        job["jobPosition"] = json!(self.jobs.position(id).to_string());
        Ok(job)
    }

    fn check_training(&self, t: &Value) -> Result<()> {
        if t.get("hyperparameters").is_some() {
            return Err(Error::new(
                Code::Unimplemented,
                "hyperparameter tuning jobs are not available in this build yet",
            )
            .on_field("job.training_input.hyperparameters"));
        }
        let custom = t
            .get("packageUris")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
        if custom && !self.jobs.allow_custom_code {
            return Err(Error::failed_precondition(
                "this server runs a user's own Python trainer (packageUris and pythonModule) only \
                 when started with --allow-custom-code; without packages, a job runs mlengine's \
                 census trainer",
            )
            .on_field("job.training_input.package_uris"));
        }
        if custom && t.get("pythonModule").and_then(Value::as_str).is_none() {
            return Err(
                Error::invalid("A job with packageUris needs a pythonModule.")
                    .on_field("job.training_input.python_module"),
            );
        }
        for package in strings(t.get("packageUris")) {
            self.roots
                .check(&package, "job.training_input.package_uris", Access::Read)?;
        }
        if let Some(dir) = t.get("jobDir").and_then(Value::as_str) {
            self.roots
                .check(dir, "job.training_input.job_dir", Access::Write)?;
        }
        let args = strings(t.get("args"));
        for flag in ["--train-files", "--eval-files"] {
            for value in flag_values(&args, flag) {
                for uri in value.split(',') {
                    self.roots
                        .check(uri, "job.training_input.args", Access::Read)?;
                }
            }
        }
        for flag in ["--job-dir"] {
            for value in flag_values(&args, flag) {
                self.roots
                    .check(&value, "job.training_input.args", Access::Write)?;
            }
        }
        Ok(())
    }

    fn check_prediction(&self, project: &str, p: &Value) -> Result<()> {
        let format = p
            .get("dataFormat")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !matches!(format, "JSON" | "TEXT") {
            return Err(Error::invalid(format!(
                "dataFormat {format:?} is not supported; JSON and TEXT (one JSON instance per line) are"
            ))
            .on_field("job.prediction_input.data_format"));
        }
        let inputs = strings(p.get("inputPaths"));
        if inputs.is_empty() {
            return Err(Error::invalid("A prediction job needs inputPaths.")
                .on_field("job.prediction_input.input_paths"));
        }
        for uri in &inputs {
            self.roots
                .check(uri, "job.prediction_input.input_paths", Access::Read)?;
        }
        let output = p.get("outputPath").and_then(Value::as_str).ok_or_else(|| {
            Error::invalid("A prediction job needs an outputPath.")
                .on_field("job.prediction_input.output_path")
        })?;
        self.roots
            .check(output, "job.prediction_input.output_path", Access::Write)?;
        self.model_dir_of(project, p)?;
        Ok(())
    }

    /// The model a prediction job runs: a managed model's default version, a named version, or
    /// a `uri`.
    fn model_dir_of(&self, project: &str, p: &Value) -> Result<String> {
        let field = "job.prediction_input";
        if let Some(uri) = p.get("uri").and_then(Value::as_str) {
            self.roots
                .check(uri, "job.prediction_input.uri", Access::Read)?;
            return Ok(uri.to_string());
        }
        let name = p
            .get("versionName")
            .or_else(|| p.get("modelName"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::invalid("A prediction job needs one of modelName, versionName or uri.")
                    .on_field(field)
            })?;
        let Some((_, model, version)) = names::parse_version_name(name) else {
            return Err(
                Error::invalid(format!("{name:?} is not a model or version name")).on_field(field),
            );
        };

        let version = match version {
            Some(v) => v.to_string(),
            None => self
                .get_model(project, model)?
                .pointer("/defaultVersion/name")
                .and_then(Value::as_str)
                .map(|n| names::basename(n).to_string())
                .ok_or_else(|| {
                    Error::failed_precondition(format!("model '{model}' has no default version"))
                })?,
        };
        let (number, v) = self
            .store
            .version(model, &version)
            .map_err(internal)?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "The version resource: \"{version}\" was not found."
                ))
                .on_field(field)
            })?;
        if v.get("state").and_then(Value::as_str) != Some("READY") {
            return Err(Error::failed_precondition(format!(
                "version '{version}' is not READY"
            )));
        }
        Ok(self
            .models_dir
            .join(model)
            .join(number.to_string())
            .display()
            .to_string())
    }

    fn job_view(&self, mut job: Value) -> Value {
        let id = job["jobId"].as_str().unwrap_or_default().to_string();
        if job["state"] == "QUEUED" {
            job["jobPosition"] = json!(self.jobs.position(&id).to_string());
        }
        job
    }

    pub fn get_job(&self, project: &str, id: &str) -> Result<Value> {
        let in_project = self.store.project(Kind::Job, id).map_err(internal)?;
        if in_project.as_deref() != Some(project) {
            return Err(not_found(id));
        }
        let job = self
            .store
            .get(Kind::Job, id)
            .map_err(internal)?
            .ok_or_else(|| not_found(id))?;
        Ok(self.job_view(job))
    }

    /// Newest first.
    pub fn list_jobs(&self, project: &str, query: &ListQuery) -> Result<Value> {
        let mut all = self.store.list(Kind::Job, project).map_err(internal)?;
        all.reverse();
        let all = all.into_iter().map(|j| self.job_view(j)).collect();
        let (jobs, next) = page(all, query)?;
        Ok(listed("jobs", jobs, next))
    }

    /// `jobs.cancel`: a queued job is cancelled at once, a running one stopped; a finished one
    /// is refused.
    pub fn cancel_job(&self, project: &str, id: &str) -> Result<Value> {
        let job = self.get_job(project, id)?;
        let state = job["state"].as_str().unwrap_or_default().to_string();
        if final_state(&state) {
            return Err(Error::failed_precondition(format!(
                "Job {id} is already in a final state ({state})."
            )));
        }
        let queued = self
            .jobs
            .queue
            .lock()
            .map(|mut q| {
                let before = q.waiting.len();
                q.waiting.retain(|j| j != id);
                before != q.waiting.len()
            })
            .unwrap_or(false);
        if queued {
            self.finish_job(
                id,
                "CANCELLED",
                Some("Job cancelled by the user.".into()),
                None,
            );
            return Ok(json!({}));
        }
        self.set_job_state(id, "CANCELLING")?;
        let running = self
            .jobs
            .queue
            .lock()
            .ok()
            .and_then(|q| q.running.get(id).cloned());
        if let Some(r) = running {
            r.cancelled.store(true, Ordering::Release);
        }
        Ok(json!({}))
    }

    /// `jobs.patch`: `labels`, with `etag` for optimistic concurrency.
    pub fn patch_job(
        &self,
        project: &str,
        id: &str,
        body: &Value,
        mask: &[String],
    ) -> Result<Value> {
        check_fields(body, JOB_FIELDS, "job")?;
        let job = self.get_job(project, id)?;
        if let Some(tag) = body.get("etag").and_then(Value::as_str) {
            if job["etag"].as_str() != Some(tag) {
                return Err(Error::new(
                    Code::Aborted,
                    "The etag does not match the job's: it changed since it was read.",
                )
                .on_field("job.etag"));
            }
        }
        for field in mask {
            if field != "labels" && field != "etag" {
                return Err(Error::invalid(format!(
                    "field '{field}' cannot be updated; the mask takes labels and etag"
                ))
                .on_field("update_mask"));
            }
        }
        self.store
            .transaction(|tx| {
                let mut job = tx.get(Kind::Job, id)?.unwrap_or_default();
                if mask.iter().any(|m| m == "labels") {
                    job["labels"] = body.get("labels").cloned().unwrap_or(json!({}));
                }
                job["etag"] = json!(etag());
                tx.put(Kind::Job, id, project, &job)?;
                Ok(job)
            })
            .map_err(internal)
            .map(|j| self.job_view(j))
    }

    /// Bytes of a job's log from `offset`, and whether the job has finished (its log is then
    /// complete).
    pub fn job_log(&self, project: &str, id: &str, offset: u64) -> Result<Value> {
        let job = self.get_job(project, id)?;
        let done = final_state(job["state"].as_str().unwrap_or_default());
        let mut text = Vec::new();
        if let Ok(mut f) = std::fs::File::open(self.jobs.log_path(id)) {
            if f.seek(SeekFrom::Start(offset)).is_ok() {
                let _ = f.take(1 << 20).read_to_end(&mut text);
            }
        }
        let next = offset + text.len() as u64;
        Ok(json!({
            "text": String::from_utf8_lossy(&text),
            "nextOffset": next.to_string(),
            "done": done,
            "state": job["state"],
        }))
    }

    fn set_job_state(&self, id: &str, state: &str) -> Result<()> {
        self.store
            .transaction(|tx| {
                if let Some(mut job) = tx.get(Kind::Job, id)? {
                    if !final_state(job["state"].as_str().unwrap_or_default()) {
                        job["state"] = json!(state);
                        if state == "RUNNING" {
                            job["startTime"] = json!(now());
                        }
                        let project = tx.project(Kind::Job, id)?.unwrap_or_default();
                        tx.put(Kind::Job, id, &project, &job)?;
                    }
                }
                Ok(())
            })
            .map_err(internal)
    }

    /// Records a job's end: its state, why it failed, what it produced.
    fn finish_job(&self, id: &str, state: &str, error: Option<String>, output: Option<Value>) {
        let result = self.store.transaction(|tx| {
            if let Some(mut job) = tx.get(Kind::Job, id)? {
                job["state"] = json!(state);
                job["endTime"] = json!(now());
                if let Some(e) = &error {
                    job["errorMessage"] = json!(e);
                }
                if let Some(o) = &output {
                    let key = if job.get("trainingInput").is_some() {
                        "trainingOutput"
                    } else {
                        "predictionOutput"
                    };
                    job[key] = o.clone();
                }
                if let Some(o) = job.as_object_mut() {
                    o.remove("jobPosition");
                }
                let project = tx.project(Kind::Job, id)?.unwrap_or_default();
                tx.put(Kind::Job, id, &project, &job)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::error!("cannot record the end of job {id}: {e:#}");
        }
    }

    /// The command line of a job: this binary's `train` or `batch-predict`, or a user's Python
    /// module in a virtual environment of its packages.
    fn command(
        &self,
        project: &str,
        job: &Value,
        dir: &Path,
        log: &std::fs::File,
    ) -> std::result::Result<Command, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        if let Some(t) = job.get("trainingInput") {
            let workers = t.get("workerCount").and_then(|w| {
                w.as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .or_else(|| w.as_u64())
            });
            let tier = t
                .get("scaleTier")
                .and_then(Value::as_str)
                .unwrap_or("BASIC");
            if workers.unwrap_or(0) > 0 || !matches!(tier, "BASIC" | "BASIC_GPU" | "CUSTOM") {
                return Err(format!(
                    "scale tier {tier} with {} workers needs the distributed trainer, which runs \
                     on MPI; this build has no MPI",
                    workers.unwrap_or(0)
                ));
            }
            let mut args = strings(t.get("args"));
            if let Some(dir) = t.get("jobDir").and_then(Value::as_str) {
                args.push(format!("--job-dir={dir}"));
            }
            let packages = strings(t.get("packageUris"));
            if !packages.is_empty() {
                let module = t
                    .get("pythonModule")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let packages = self.fetch_packages(&packages, dir)?;
                let python = custom_environment(dir, &packages, log)?;
                let mut cmd = nice(&python);
                cmd.arg("-m").arg(module).args(&args);
                return Ok(cmd);
            }
            let mut cmd = nice(&exe);
            cmd.arg("train").args(&args);
            return Ok(cmd);
        }
        let p = job.get("predictionInput").cloned().unwrap_or_default();
        let model_dir = self.model_dir_of(project, &p).map_err(|e| e.message)?;
        let mut cmd = nice(&exe);
        cmd.arg("batch-predict")
            .arg("--model-dir")
            .arg(model_dir)
            .arg("--input-paths")
            .arg(strings(p.get("inputPaths")).join(","))
            .arg("--output-path")
            .arg(
                p.get("outputPath")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            );
        for (field, flag) in [
            ("batchSize", "--batch-size"),
            ("maxWorkerCount", "--max-worker-count"),
        ] {
            if let Some(v) = p.get(field) {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                cmd.arg(flag).arg(v);
            }
        }
        Ok(cmd)
    }

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
        let log = match std::fs::File::create(&log_path) {
            Ok(f) => f,
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
        let err_log = match log.try_clone() {
            Ok(f) => f,
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
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(_) => break None,
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
        } else {
            Some(json!({"consumedMLUnits": 0.0, "isHyperparameterTuningJob": false}))
        };
        match status {
            Some(s) if s.success() => self.finish_job(id, "SUCCEEDED", None, output),
            other => {
                let tail: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .take(ERROR_LINES)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let code = other
                    .and_then(|s| s.code())
                    .map_or("a signal".to_string(), |c| format!("code {c}"));
                let message = format!("The job exited with {code}: {}", tail.join("\n"));
                self.finish_job(id, "FAILED", Some(message), output);
            }
        }
    }
}

impl ControlPlane {
    /// The job's packages as local files: bucket and https objects are downloaded into its
    /// folder, local ones (already checked against the allowed roots) are used where they are.
    fn fetch_packages(
        &self,
        packages: &[String],
        dir: &Path,
    ) -> std::result::Result<Vec<PathBuf>, String> {
        let folder = dir.join("packages");
        let mut local = Vec::new();
        for uri in packages {
            if !crate::storage::remote::is_remote(uri) {
                local.push(PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri)));
                continue;
            }
            let name = uri
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty() && *n != "." && *n != "..")
                .ok_or_else(|| format!("package {uri} names no file"))?;
            let bytes = self
                .runtime
                .block_on(async { crate::storage::remote::open(uri)?.read_all().await })
                .map_err(|e| format!("cannot download package {uri}: {e:#}"))?;
            std::fs::create_dir_all(&folder)
                .and_then(|()| std::fs::write(folder.join(name), &bytes))
                .map_err(|e| format!("cannot store package {uri}: {e}"))?;
            local.push(folder.join(name));
        }
        Ok(local)
    }
}

/// A command run at a lower CPU priority than the server's, that dies with the server: a job
/// the server no longer watches (killed, restarted) must not go on writing its job-dir.
fn nice(program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("nice");
    cmd.arg("-n").arg("10").arg(program);
    // SAFETY: prctl is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A virtual environment with a user's packages installed, for a custom trainer.
fn custom_environment(
    dir: &Path,
    packages: &[PathBuf],
    log: &std::fs::File,
) -> std::result::Result<PathBuf, String> {
    // What venv and pip say goes to the job's log, where the user looks when an install fails.
    let to_log = || -> std::result::Result<(Stdio, Stdio), String> {
        let out = log
            .try_clone()
            .map_err(|e| format!("cannot write the job's log: {e}"))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot write the job's log: {e}"))?;
        Ok((Stdio::from(out), Stdio::from(err)))
    };
    let venv = dir.join("venv");
    let python3 = if Command::new("python3.11").arg("--version").output().is_ok() {
        "python3.11"
    } else {
        "python3"
    };
    let (out, err) = to_log()?;
    let made = Command::new(python3)
        .args(["-m", "venv"])
        .arg(&venv)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot create a Python environment: {e}"))?;
    if !made.success() {
        return Err("cannot create a Python environment (see the job's log)".into());
    }
    let python = venv.join("bin").join("python");
    let (out, err) = to_log()?;
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(packages)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot install the job's packages: {e}"))?;
    if !installed.success() {
        let names: Vec<String> = packages.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "pip could not install {} (see the job's log)",
            names.join(", ")
        ));
    }
    Ok(python)
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

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The values a flag takes in an argument list (`--flag value` and `--flag=value`).
fn flag_values(args: &[String], flag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == flag {
            if let Some(v) = args.get(i + 1) {
                out.push(v.clone());
            }
            i += 2;
            continue;
        }
        if let Some(v) = args[i].strip_prefix(&format!("{flag}=")) {
            out.push(v.to_string());
        }
        i += 1;
    }
    out
}
