//! Cloud ML Engine's control plane (the `ml` v1 management API): models, versions, long-running
//! operations and jobs, kept in the state dir's database and files. It sits beside the inference
//! core: a managed model is a model of the same `repository::Manager` (its versions in the state
//! dir, its version names as labels, its default version as the version a request without one
//! gets), and jobs run the same trainer and batch prediction as the commands, as child processes.
//!
//! A management call's path: `api/rest/ml_v1.rs` parses it → a `ControlPlane` method checks the
//! rules and records the change in one transaction → long work (copying and loading a version,
//! deleting one, a job) goes to a thread of its own, off the serving threads, and finishes the
//! operation or the job in the store.

mod deploy;
pub mod jobs;
pub mod list;
mod models;
pub mod names;
pub mod operations;
pub mod roots;
pub mod store;
mod versions;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{json, Value};

use crate::repository::policy::VersionPolicy;
use crate::repository::{Manager, ModelConfig};
use crate::status::{Error, Result};
use roots::Roots;
use store::{Kind, Store};

/// What the management API needs, free of flag parsing.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub state_dir: PathBuf,
    /// Local roots requests may read and write below (buckets are always allowed).
    pub allowed_roots: Vec<PathBuf>,
    pub max_running_jobs: usize,
    /// Whether training jobs may run a user's own Python package.
    pub allow_custom_code: bool,
    /// Models created with version `v1` from a URI at start when the state has no such model.
    pub bootstrap: Vec<(String, String)>,
}

pub struct ControlPlane {
    store: Store,
    manager: Arc<Manager>,
    roots: Roots,
    models_dir: PathBuf,
    runtime: tokio::runtime::Handle,
    jobs: jobs::Runner,
}

/// The current time as the API writes it (RFC 3339, UTC, seconds).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A fresh etag (base64 bytes, as the API's `etag` fields are).
fn etag() -> String {
    use base64::Engine;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    base64::engine::general_purpose::STANDARD.encode(&nanos.to_le_bytes()[..8])
}

/// A store failure: the server's fault, not the request's.
fn internal(e: anyhow::Error) -> Error {
    Error::internal(format!("state database: {e:#}"))
}

/// The JSON type a resource's field must have, as Google's JSON parser checks it before anything
/// is stored (a later patch walks into the objects, and clients read the values back).
#[derive(Debug, Clone, Copy)]
enum FieldType {
    Any,
    String,
    Bool,
    Object,
    /// An object of strings.
    Labels,
    /// An array of strings.
    Strings,
    /// An int64, which proto3's JSON gives as a number or a string.
    Int64,
    /// An object whose named members are int32s (proto3's JSON gives them as numbers or strings).
    Int32s(&'static [&'static str]),
}

impl FieldType {
    fn holds(self, v: &Value) -> bool {
        match self {
            FieldType::Any => true,
            FieldType::String => v.is_string(),
            FieldType::Bool => v.is_boolean(),
            FieldType::Object => v.is_object(),
            FieldType::Labels => v
                .as_object()
                .is_some_and(|o| o.values().all(Value::is_string)),
            FieldType::Strings => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            FieldType::Int64 => match v {
                Value::Number(n) => n.as_i64().is_some(),
                Value::String(s) => s.parse::<i64>().is_ok(),
                _ => false,
            },
            FieldType::Int32s(members) => v.as_object().is_some_and(|o| {
                members.iter().all(|k| match o.get(*k) {
                    None => true,
                    Some(Value::Number(n)) => n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                    Some(Value::String(s)) => s.parse::<i32>().is_ok(),
                    Some(_) => false,
                })
            }),
        }
    }

    fn expected(self) -> String {
        match self {
            FieldType::Any => "anything".into(),
            FieldType::String => "a string".into(),
            FieldType::Bool => "a boolean".into(),
            FieldType::Object => "an object".into(),
            FieldType::Labels => "an object of strings".into(),
            FieldType::Strings => "an array of strings".into(),
            FieldType::Int64 => "an int64 (a number or a string of digits)".into(),
            FieldType::Int32s(members) => format!("an object with int32 {}", members.join(", ")),
        }
    }
}

/// Checks the type of every field `body` sets, named `{what}.{snake_case}` when wrong; null is
/// any field's default, as proto3's JSON reads it.
fn check_types(body: &Value, what: &str, type_of: impl Fn(&str) -> FieldType) -> Result<()> {
    let Some(obj) = body.as_object() else {
        return Ok(());
    };
    for (key, value) in obj.iter().filter(|(_, v)| !v.is_null()) {
        let ty = type_of(key);
        if !ty.holds(value) {
            return Err(Error::invalid(format!(
                "Invalid value {value}: expected {}.",
                ty.expected()
            ))
            .on_field(&format!("{what}.{}", snake_case(key))));
        }
    }
    Ok(())
}

/// A JSON field name as Google's field violations name it (`manualScaling` -> `manual_scaling`).
fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The fields of a request body, refusing any the resource does not have (as Google's APIs do).
fn check_fields(body: &Value, allowed: &[&str], what: &str) -> Result<()> {
    let Some(obj) = body.as_object() else {
        return Err(Error::invalid(format!(
            "Invalid JSON payload received: the {what} must be an object"
        )));
    };
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(Error::invalid(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at '{what}': Cannot find field."
            )));
        }
    }
    Ok(())
}

impl ControlPlane {
    /// Opens the state dir and brings the served models and the jobs in line with it: managed
    /// models are added to the manager (their READY versions load at the next poll), work that a
    /// restart interrupted is finished or failed, queued jobs are queued again.
    pub fn open(
        config: ControlConfig,
        manager: Arc<Manager>,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Arc<ControlPlane>> {
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create --state-dir {}", config.state_dir.display()))?;
        let store = Store::open(&config.state_dir.join("state.db"))?;
        let models_dir = config.state_dir.join("models");
        let jobs_dir = config.state_dir.join("jobs");
        let mut allowed = config.allowed_roots.clone();
        allowed.push(config.state_dir.clone());
        let roots = Roots::new(&allowed).context("cannot resolve --allowed-storage-roots")?;
        let control = Arc::new_cyclic(|weak| ControlPlane {
            store,
            manager,
            roots,
            models_dir,
            runtime,
            jobs: jobs::Runner::new(
                weak.clone(),
                jobs_dir,
                config.max_running_jobs.max(1),
                config.allow_custom_code,
            ),
        });
        control.recover()?;
        control.jobs.start()?;
        for (model, origin) in &config.bootstrap {
            control.bootstrap(model, origin)?;
        }
        Ok(control)
    }

    /// Creates `model` with version `v1` from `origin` unless the state already has the model.
    fn bootstrap(self: &Arc<Self>, model: &str, origin: &str) -> anyhow::Result<()> {
        if self.store.get(Kind::Model, model)?.is_some() {
            return Ok(());
        }
        let project = "_";
        self.create_model(project, &json!({"name": model}))
            .map_err(|e| anyhow::anyhow!("--bootstrap-model {model}: {}", e.message))?;
        self.create_version_from(
            project,
            model,
            &json!({"name": "v1", "deploymentUri": origin}),
            true,
        )
        .map_err(|e| anyhow::anyhow!("--bootstrap-model {model}: {}", e.message))?;
        Ok(())
    }

    /// The serving configuration of a managed model: its READY versions (and `loading`), their
    /// names as labels, its default version.
    fn model_config(&self, model: &str, loading: Option<i64>) -> anyhow::Result<ModelConfig> {
        let versions = self.store.versions(model)?;
        let body = self.store.get(Kind::Model, model)?;
        let default = body
            .as_ref()
            .and_then(|b| b.get("defaultVersion"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut numbers = Vec::new();
        let mut labels = HashMap::new();
        let mut default_version = None;
        for (n, v) in &versions {
            let ready = v.get("state").and_then(Value::as_str) == Some("READY");
            let name = names::basename(v.get("name").and_then(Value::as_str).unwrap_or_default());
            if ready || Some(*n) == loading {
                numbers.push(*n as u64);
                labels.insert(name.to_string(), *n as u64);
            }
            if ready && default.as_deref() == Some(name) {
                default_version = Some(*n as u64);
            }
        }
        Ok(ModelConfig {
            name: model.to_string(),
            base_path: self.models_dir.join(model),
            policy: VersionPolicy::Specific(numbers),
            labels,
            default_version,
        })
    }

    /// Applies a managed model's configuration to the manager and loads what it asks for.
    fn apply(&self, model: &str, loading: Option<i64>) -> anyhow::Result<()> {
        let config = self.model_config(model, loading)?;
        let served = self
            .manager
            .model(model)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        served.set_config(config);
        self.manager.poll_model(&served);
        Ok(())
    }

    fn recover(self: &Arc<Self>) -> anyhow::Result<()> {
        let mut interrupted = Vec::new();
        for model in self.store.all_models()? {
            let name = names::basename(model["name"].as_str().unwrap_or_default()).to_string();
            std::fs::create_dir_all(self.models_dir.join(&name))?;
            let config = self.model_config(&name, None)?;
            if let Err(e) = self.manager.add_model(config) {
                anyhow::bail!("managed model '{name}': {}", e.message);
            }
            for (number, version) in self.store.versions(&name)? {
                if matches!(
                    version.get("state").and_then(Value::as_str),
                    Some("CREATING" | "DELETING")
                ) {
                    interrupted.push((name.clone(), number, version));
                }
            }
        }
        let (ops, _) = self.store.unfinished(&[])?;
        for op in ops {
            let name = op["name"].as_str().unwrap_or_default().to_string();
            let result = match op
                .pointer("/metadata/operationType")
                .and_then(Value::as_str)
            {
                Some(kind @ ("CREATE_VERSION" | "DELETE_VERSION")) => {
                    match self.version_outcome(&op, kind)? {
                        Some(result) => result,
                        // Still CREATING or DELETING: finished by the work resumed below.
                        None => continue,
                    }
                }
                // Operations of other kinds never outlive their call; jobs are the runner's.
                _ => Err(Error::unavailable(
                    "the server restarted before the operation finished",
                )),
            };
            self.finish_operation(&name, result)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        }
        // Versions a restart interrupted: creations are finished, deletions too.
        for (model, number, version) in interrupted {
            match version.get("state").and_then(Value::as_str) {
                Some("CREATING") => self.spawn_deploy(&model, number, version),
                _ => self.spawn_delete(&model, number, version),
            }
        }
        Ok(())
    }

    /// The result of a version's creation or deletion whose operation a restart left open
    /// (killed between the version's last write and the operation's); `None` while the version
    /// is still on its way.
    fn version_outcome(&self, op: &Value, kind: &str) -> anyhow::Result<Option<Result<Value>>> {
        let full = op
            .pointer("/metadata/version/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((_, model, Some(id))) = names::parse_version_name(full) else {
            return Ok(Some(Err(Error::internal(format!(
                "the operation names no version ({full:?})"
            )))));
        };
        let version = self.store.version(model, id)?.map(|(_, v)| v);
        let state = version
            .as_ref()
            .and_then(|v| v.get("state"))
            .and_then(Value::as_str);
        Ok(match (kind, state) {
            (_, Some("CREATING" | "DELETING")) => None,
            ("CREATE_VERSION", Some("READY")) => {
                let mut v = self.marked(model, version.unwrap_or_default())?;
                v["@type"] = json!(operations::VERSION_TYPE);
                Some(Ok(v))
            }
            ("CREATE_VERSION", Some("FAILED")) => {
                let message = version
                    .as_ref()
                    .and_then(|v| v.get("errorMessage"))
                    .and_then(Value::as_str)
                    .unwrap_or("the version did not load")
                    .to_string();
                Some(Err(Error::failed_precondition(message)))
            }
            ("DELETE_VERSION", None) => Some(Ok(json!({"@type": operations::EMPTY_TYPE}))),
            _ => Some(Err(Error::unavailable(
                "the server restarted before the operation finished",
            ))),
        })
    }

    /// `projects.getConfig`.
    pub fn get_config(&self, project: &str) -> Value {
        json!({
            "serviceAccount": format!("mlengine@{project}.local"),
            "serviceAccountProject": "0",
            "config": {"tpuServiceAccount": ""},
        })
    }
}
