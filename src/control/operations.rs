//! Long-running operations: what `versions.create`, `versions.delete`, `models.delete` and the
//! patches answer, which clients poll with `operations.get` until `done`, then read `response`
//! or `error`.

use serde_json::{json, Value};

use super::list::{page_keyed, ListQuery};
use super::store::{Kind, Tx};
use super::{internal, names, now, ControlPlane};
use crate::status::{Error, Result};

const METADATA_TYPE: &str = "type.googleapis.com/google.cloud.ml.v1.OperationMetadata";

/// The `@type` of an operation's response.
pub const VERSION_TYPE: &str = "type.googleapis.com/google.cloud.ml.v1.Version";
pub const MODEL_TYPE: &str = "type.googleapis.com/google.cloud.ml.v1.Model";
pub const EMPTY_TYPE: &str = "type.googleapis.com/google.protobuf.Empty";

/// A new operation record (not yet stored): `{kind}_{model}[_{version}]-{millis}`.
pub fn new(
    project: &str,
    kind: &str,
    operation_type: &str,
    model: &str,
    version: Option<&Value>,
) -> Value {
    let millis = unique_millis();
    let short_version = version
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .map(|n| format!("_{}", names::basename(n)))
        .unwrap_or_default();
    let id = format!("{kind}_{model}{short_version}-{millis}");
    let mut metadata = json!({
        "@type": METADATA_TYPE,
        "createTime": now(),
        "startTime": now(),
        "operationType": operation_type,
        "modelName": names::model_name(project, model),
    });
    if let Some(v) = version {
        metadata["version"] = v.clone();
    }
    json!({"name": names::operation_name(project, &id), "metadata": metadata})
}

/// The epoch milliseconds of a new operation's id, never the same twice in this process: ids
/// of one kind and model made within one millisecond (parallel patches) would otherwise be
/// one id, and the later operation would replace the earlier. A clock that does not go
/// backwards keeps them unique across restarts too.
fn unique_millis() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// Stores a new operation; one whose name is taken is refused, never written over.
pub fn put(tx: &Tx, project: &str, op: &Value) -> anyhow::Result<()> {
    let name = op["name"].as_str().unwrap_or_default();
    if tx.get(Kind::Operation, name)?.is_some() {
        anyhow::bail!("operation {name} exists already");
    }
    tx.put(Kind::Operation, name, project, op)
}

/// Marks an operation done with its response (given its `@type`) or its error.
pub fn finish(op: &mut Value, result: Result<Value>) {
    op["done"] = json!(true);
    op["metadata"]["endTime"] = json!(now());
    match result {
        Ok(response) => op["response"] = response,
        Err(e) => {
            op["error"] = json!({"code": e.code.grpc_code(), "message": e.message});
        }
    }
}

impl ControlPlane {
    /// Finishes a stored operation.
    pub(super) fn finish_operation(&self, name: &str, result: Result<Value>) -> Result<()> {
        let project = name.split('/').nth(1).unwrap_or_default().to_string();
        self.store
            .transaction(|tx| {
                if let Some(mut op) = tx.get(Kind::Operation, name)? {
                    finish(&mut op, result);
                    tx.put(Kind::Operation, name, &project, &op)?;
                }
                Ok(())
            })
            .map_err(internal)
    }

    pub fn get_operation(&self, project: &str, id: &str) -> Result<Value> {
        self.store
            .get(Kind::Operation, &names::operation_name(project, id))
            .map_err(internal)?
            .ok_or_else(|| {
                Error::not_found(format!("The operation resource: \"{id}\" was not found."))
                    .on_field("name")
            })
    }

    /// `operations.cancel`: an operation that is done answers `{}` (as Google's does); a
    /// version's creation or deletion runs to its end once started, so one still running is
    /// refused rather than reported cancelled.
    pub fn cancel_operation(&self, project: &str, id: &str) -> Result<Value> {
        let op = self.get_operation(project, id)?;
        if op.get("done").and_then(Value::as_bool) == Some(true) {
            return Ok(json!({}));
        }
        let kind = op
            .pointer("/metadata/operationType")
            .and_then(Value::as_str)
            .unwrap_or("the operation");
        Err(Error::failed_precondition(format!(
            "{kind} cannot be cancelled once started; poll the operation until it is done"
        )))
    }

    /// Newest first.
    pub fn list_operations(&self, project: &str, query: &ListQuery) -> Result<Value> {
        let mut all = self
            .store
            .list_keyed(Kind::Operation, project)
            .map_err(internal)?;
        all.reverse();
        let (operations, next) = page_keyed(all, query, true)?;
        Ok(listed("operations", operations, next))
    }
}

/// A list answer: `{}` when empty, as the API's discovery document says.
pub fn listed(key: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut out = json!({});
    if !items.is_empty() {
        out[key] = Value::Array(items);
    }
    if let Some(token) = next {
        out["nextPageToken"] = json!(token);
    }
    out
}
