//! `projects.jobs`: training and prediction jobs, run as child processes of this binary
//! (`mlengine train`, `mlengine batch-predict`) at a lower CPU priority, at most
//! `--max-running-jobs` at a time and queued beyond that, off the serving threads. Each job's
//! output is kept as its log in the state dir; `cancel` stops the child (SIGTERM, then SIGKILL
//! after a grace period). A job that was running when the server stopped is failed at the next
//! start (a training job resubmitted resumes from its checkpoints).
//!
//! `mod.rs` holds the API (create, get, list, cancel, patch, logs) and the job records;
//! `runner.rs` the queue and each job's life as a child process; `command.rs` what a job runs.

mod command;
mod runner;

pub use runner::Runner;

use std::io::{Read, Seek, SeekFrom};

use serde_json::{json, Value};

use super::list::{page_keyed, ListQuery};
use super::operations::listed;
use super::roots::Access;
use super::store::Kind;
use super::{check_fields, check_types, etag, internal, names, now, ControlPlane, FieldType};
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

/// TrainingInput's fields, as the API's discovery document lists them.
const TRAINING_FIELDS: &[&str] = &[
    "scaleTier",
    "masterType",
    "workerType",
    "parameterServerType",
    "evaluatorType",
    "workerCount",
    "parameterServerCount",
    "evaluatorCount",
    "masterConfig",
    "workerConfig",
    "parameterServerConfig",
    "evaluatorConfig",
    "packageUris",
    "pythonModule",
    "args",
    "hyperparameters",
    "region",
    "jobDir",
    "runtimeVersion",
    "pythonVersion",
    "scheduling",
    "network",
    "serviceAccount",
    "encryptionConfig",
    "useChiefInTfConfig",
    "enableWebAccess",
];

/// PredictionInput's fields; `accelerator` is not in the current discovery document but
/// gcloud's bundled client still sends it.
const PREDICTION_FIELDS: &[&str] = &[
    "dataFormat",
    "outputDataFormat",
    "inputPaths",
    "outputPath",
    "region",
    "modelName",
    "versionName",
    "uri",
    "runtimeVersion",
    "maxWorkerCount",
    "batchSize",
    "signatureName",
    "accelerator",
];

/// The type of each Job field the request sets (output-only fields are never read).
fn job_field(key: &str) -> FieldType {
    match key {
        "jobId" | "etag" => FieldType::String,
        "trainingInput" | "predictionInput" => FieldType::Object,
        "labels" => FieldType::Labels,
        _ => FieldType::Any,
    }
}

fn training_field(key: &str) -> FieldType {
    match key {
        "workerCount" | "parameterServerCount" | "evaluatorCount" => FieldType::Int64,
        "masterConfig"
        | "workerConfig"
        | "parameterServerConfig"
        | "evaluatorConfig"
        | "hyperparameters"
        | "scheduling"
        | "encryptionConfig" => FieldType::Object,
        "packageUris" | "args" => FieldType::Strings,
        "useChiefInTfConfig" | "enableWebAccess" => FieldType::Bool,
        _ => FieldType::String,
    }
}

fn prediction_field(key: &str) -> FieldType {
    match key {
        "inputPaths" => FieldType::Strings,
        "maxWorkerCount" | "batchSize" => FieldType::Int64,
        "accelerator" => FieldType::Object,
        _ => FieldType::String,
    }
}

fn final_state(state: &str) -> bool {
    matches!(state, "SUCCEEDED" | "FAILED" | "CANCELLED")
}

fn not_found(job: &str) -> Error {
    Error::not_found(format!("The job resource: \"{job}\" was not found.")).on_field("name")
}

impl ControlPlane {
    pub fn create_job(&self, project: &str, body: &Value) -> Result<Value> {
        check_fields(body, JOB_FIELDS, "job")?;
        check_types(body, "job", job_field)?;
        // Unknown or mistyped inputs are refused before the job is stored: a typo would
        // otherwise be dropped silently, and the runner reads these fields as their types.
        for (key, field, allowed, type_of) in [
            (
                "trainingInput",
                "job.training_input",
                TRAINING_FIELDS,
                training_field as fn(&str) -> FieldType,
            ),
            (
                "predictionInput",
                "job.prediction_input",
                PREDICTION_FIELDS,
                prediction_field,
            ),
        ] {
            if let Some(input) = body.get(key).filter(|v| !v.is_null()) {
                check_fields(input, allowed, field)?;
                check_types(input, field, type_of)?;
            }
        }
        let id = body
            .get("jobId")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid("A job needs a jobId.").on_field("job.job_id"))?;
        names::check_id(id, "job.job_id")?;
        let input = |key| body.get(key).filter(|v: &&Value| !v.is_null());
        match (input("trainingInput"), input("predictionInput")) {
            (Some(t), None) => self.check_training(project, t)?,
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
            .insert_new(Kind::Job, id, project, &job)
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

    fn check_training(&self, project: &str, t: &Value) -> Result<()> {
        if let Some(h) = t.get("hyperparameters") {
            // The whole spec is checked now: a bad config never starts a trial.
            let spec = crate::tune::config::parse(h, "job.training_input.hyperparameters")?;
            let dir = t.get("jobDir").and_then(Value::as_str).unwrap_or_default();
            if dir.is_empty() || crate::storage::remote::is_remote(dir) {
                return Err(Error::invalid(
                    "A hyperparameter tuning job needs a local jobDir: trial k trains in \
                     <jobDir>/k, and the trials' reports are read from it.",
                )
                .on_field("job.training_input.job_dir"));
            }
            if let Some(previous) = &spec.resume_previous_job_id {
                self.previous_tuning_dir(project, previous)?;
            }
        }
        let custom = t
            .get("packageUris")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
        if !custom {
            check_tuned_flags(t)?;
        }
        if custom && !self.jobs.allow_custom_code() {
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
            // The tuner resumes the study it finds in its job-dir (a job restarted after the
            // server, or killed): another job's would be taken as this one's.
            let study = std::path::Path::new(crate::storage::remote::local_path(dir))
                .join(crate::tune::OUTPUT_FILE);
            if t.get("hyperparameters").is_some() && study.exists() {
                return Err(Error::failed_precondition(format!(
                    "jobDir {dir} already holds the trials of an earlier tuning job ({}): give \
                     a new jobDir (with resumePreviousJobId naming that job to build on its \
                     trials)",
                    crate::tune::OUTPUT_FILE
                ))
                .on_field("job.training_input.job_dir"));
            }
        }
        let args = strings(t.get("args"));
        for flag in ["--train-files", "--eval-files"] {
            for value in flag_values(&args, flag, true) {
                for uri in value.split(',') {
                    self.roots
                        .check(uri, "job.training_input.args", Access::Read)?;
                }
            }
        }
        for flag in ["--job-dir"] {
            for value in flag_values(&args, flag, false) {
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
            // The paths reach batch prediction as one comma-separated flag.
            if uri.contains(',') {
                return Err(Error::invalid(format!(
                    "input path {uri:?} holds a comma; give each path as its own inputPaths entry"
                ))
                .on_field("job.prediction_input.input_paths"));
            }
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
        let mut all = self
            .store
            .list_keyed(Kind::Job, project)
            .map_err(internal)?;
        all.reverse();
        let all = all
            .into_iter()
            .map(|(key, j)| (key, self.job_view(j)))
            .collect();
        let (jobs, next) = page_keyed(all, query, true)?;
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
        if self.jobs.unqueue(id) {
            self.finish_job(
                id,
                "CANCELLED",
                Some("Job cancelled by the user.".into()),
                None,
            );
            return Ok(json!({}));
        }
        self.set_job_state(id, "CANCELLING")?;
        self.jobs.stop(id);
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
        self.get_job(project, id)?;
        if mask.is_empty() {
            return Err(
                Error::invalid("updateMask names no field to update").on_field("update_mask")
            );
        }
        for field in mask {
            if field != "labels" && field != "etag" {
                return Err(Error::invalid(format!(
                    "field '{field}' cannot be updated; the mask takes labels and etag"
                ))
                .on_field("update_mask"));
            }
        }
        check_types(body, "job", |key| match key {
            "labels" => FieldType::Labels,
            _ => FieldType::Any,
        })?;
        let stale = || {
            Error::new(
                Code::Aborted,
                "The etag does not match the job's: it changed since it was read.",
            )
            .on_field("job.etag")
        };
        // The etag is compared in the transaction that writes: two patches that read the same
        // etag cannot both land.
        let patched = self
            .store
            .transaction(|tx| {
                let mut job = tx.get(Kind::Job, id)?.unwrap_or_default();
                // proto3 reads an empty string as unset: no etag to compare.
                if let Some(tag) = body
                    .get("etag")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    if job["etag"].as_str() != Some(tag) {
                        return Ok(None);
                    }
                }
                if mask.iter().any(|m| m == "labels") {
                    job["labels"] = body.get("labels").cloned().unwrap_or(json!({}));
                }
                job["etag"] = json!(etag());
                tx.put(Kind::Job, id, project, &job)?;
                Ok(Some(job))
            })
            .map_err(internal)?;
        patched.ok_or_else(stale).map(|j| self.job_view(j))
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

    /// The job-dir of an earlier tuning job of the project (`resumePreviousJobId`).
    fn previous_tuning_dir(&self, project: &str, job_id: &str) -> Result<String> {
        let field = "job.training_input.hyperparameters.resume_previous_job_id";
        let job = self
            .store
            .get(Kind::Job, job_id)
            .map_err(internal)?
            .filter(|_| {
                self.store
                    .project(Kind::Job, job_id)
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some(project)
            })
            .ok_or_else(|| {
                Error::not_found(format!("The job resource: \"{job_id}\" was not found."))
                    .on_field(field)
            })?;
        let input = &job["trainingInput"];
        match (
            input.get("hyperparameters"),
            input.get("jobDir").and_then(Value::as_str),
        ) {
            (Some(_), Some(dir)) => Ok(dir.to_string()),
            _ => Err(
                Error::invalid(format!("job {job_id} is not a hyperparameter tuning job"))
                    .on_field(field),
            ),
        }
    }

    /// Records a running tuning job's `trainingOutput` (its trials so far).
    fn set_job_output(&self, id: &str, output: &Value) {
        let result = self.store.transaction(|tx| {
            if let Some(mut job) = tx.get(Kind::Job, id)? {
                if !final_state(job["state"].as_str().unwrap_or_default()) {
                    job["trainingOutput"] = output.clone();
                    let project = tx.project(Kind::Job, id)?.unwrap_or_default();
                    tx.put(Kind::Job, id, &project, &job)?;
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!("cannot record the trials of job {id}: {e:#}");
        }
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
}

/// `mlengine train`'s flags that name files or folders. A trial appends `--{parameterName}=
/// {value}` after the job's args and the trainer takes a repeated flag's last value, so a tuned
/// path flag would override the paths checked against the allowed roots.
const TRAIN_PATH_FLAGS: &[&str] = &["job-dir", "train-files", "eval-files"];

/// Refuses hyperparameters named as a path flag of mlengine's own trainer: their values (any
/// categorical string, relative paths included) are never held to the allowed roots.
fn check_tuned_flags(t: &Value) -> Result<()> {
    let params = t
        .pointer("/hyperparameters/params")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, p) in params.iter().enumerate() {
        let name = p
            .get("parameterName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if TRAIN_PATH_FLAGS.contains(&name) {
            return Err(Error::invalid(format!(
                "--{name} names files or folders, and path flags cannot be tuned through the \
                 management API: give it in args or jobDir"
            ))
            .on_field(&format!(
                "job.training_input.hyperparameters.params[{i}].parameterName"
            )));
        }
    }
    Ok(())
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
fn flag_values(args: &[String], flag: &str, many: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == flag {
            // As the trainer's parser reads them: a flag that takes several values takes every
            // argument up to the next one that starts with '-'.
            let mut j = i + 1;
            while j < args.len() && !args[j].starts_with('-') {
                out.push(args[j].clone());
                j += 1;
                if !many {
                    break;
                }
            }
            i = j.max(i + 1);
            continue;
        }
        if let Some(v) = args[i].strip_prefix(&format!("{flag}=")) {
            out.push(v.to_string());
        }
        i += 1;
    }
    out
}
