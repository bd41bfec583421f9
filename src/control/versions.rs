//! `projects.models.versions`: create (an operation: the model is copied into the state dir,
//! loaded and warmed, and only then READY), get, list, patch, delete (an operation: unloaded
//! after its in-flight requests, then removed), setDefault.

use std::sync::Arc;

use serde_json::{json, Value};

use super::list::{page_keyed, ListQuery};
use super::operations::{self, listed, EMPTY_TYPE, VERSION_TYPE};
use super::roots::Access;
use super::store::{Kind, Tx};
use super::{check_fields, check_types, etag, internal, names, now, ControlPlane, FieldType};
use crate::repository::VersionState;
use crate::status::{Code, Error, Result};

const VERSION_FIELDS: &[&str] = &[
    "name",
    "description",
    "isDefault",
    "deploymentUri",
    "createTime",
    "lastUseTime",
    "runtimeVersion",
    "framework",
    "pythonVersion",
    "machineType",
    "autoScaling",
    "manualScaling",
    "state",
    "errorMessage",
    "predictionClass",
    "packageUris",
    "labels",
    "etag",
    "acceleratorConfig",
    "serviceAccount",
    "requestLoggingConfig",
    "explanationConfig",
    "container",
    "routes",
];

/// Fields `versions.patch` may change.
const PATCHABLE: &[&str] = &[
    "description",
    "labels",
    "requestLoggingConfig",
    "autoScaling.minNodes",
    "autoScaling.maxNodes",
    "manualScaling.nodes",
    "predictionClass",
    "packageUris",
];

/// The type of each Version field (strings unless named here).
fn version_field(key: &str) -> FieldType {
    match key {
        "isDefault" => FieldType::Bool,
        "labels" => FieldType::Labels,
        "packageUris" => FieldType::Strings,
        "autoScaling" => FieldType::Int32s(&["minNodes", "maxNodes"]),
        "manualScaling" => FieldType::Int32s(&["nodes"]),
        "acceleratorConfig"
        | "requestLoggingConfig"
        | "explanationConfig"
        | "container"
        | "routes" => FieldType::Object,
        _ => FieldType::String,
    }
}

/// Sets (or with `None` removes) the field at `path` inside `v`, making the objects on the way.
/// A version stored before its fields' types were checked may hold a non-object where the path
/// walks: it is replaced, never indexed into.
fn set_path(v: &mut Value, path: &[&str], value: Option<Value>) {
    if !v.is_object() {
        *v = json!({});
    }
    let Some(o) = v.as_object_mut() else {
        return;
    };
    match path {
        [] => {}
        [last] => match value {
            Some(value) => {
                o.insert(last.to_string(), value);
            }
            None => {
                o.remove(*last);
            }
        },
        [first, rest @ ..] => {
            let child = o.entry(first.to_string()).or_insert_with(|| json!({}));
            set_path(child, rest, value);
        }
    }
}

fn not_found(version: &str) -> Error {
    Error::not_found(format!(
        "The version resource: \"{version}\" was not found."
    ))
    .on_field("name")
}

fn state(v: &Value) -> &str {
    v.get("state").and_then(Value::as_str).unwrap_or("UNKNOWN")
}

/// Stores a new version and its operation, in `tx`: refused when the model is gone or the name
/// taken; the version's directory number otherwise.
pub(super) fn insert_version(
    tx: &Tx,
    project: &str,
    model: &str,
    id: &str,
    version: &Value,
    op: &Value,
) -> anyhow::Result<Result<i64>> {
    if tx.get(Kind::Model, model)?.is_none() {
        return Ok(Err(super::models::not_found(model)));
    }
    if tx.version(model, id)?.is_some() {
        return Ok(Err(Error::already_exists(
            "A version with the same name already exists.",
        )
        .on_field("version.name")));
    }
    let n = tx.next_number(model)?;
    tx.put_version(model, id, n, version)?;
    operations::put(tx, project, op)?;
    Ok(Ok(n))
}

impl ControlPlane {
    fn model_default(&self, model: &str) -> Result<Option<String>> {
        Ok(self
            .store
            .get(Kind::Model, model)
            .map_err(internal)?
            .and_then(|m| {
                m.get("defaultVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }))
    }

    pub(super) fn marked(&self, model: &str, mut v: Value) -> Result<Value> {
        let default = self.model_default(model)?;
        let name = names::basename(v["name"].as_str().unwrap_or_default()).to_string();
        v["isDefault"] = json!(default.as_deref() == Some(name.as_str()));
        Ok(v)
    }

    pub fn create_version(
        self: &Arc<Self>,
        project: &str,
        model: &str,
        body: &Value,
    ) -> Result<Value> {
        self.create_version_from(project, model, body, false)
    }

    /// `versions.create`; `trusted` origins (the operator's own `--bootstrap-model`) may lie
    /// outside the roots requests are held to.
    pub(super) fn create_version_from(
        self: &Arc<Self>,
        project: &str,
        model: &str,
        body: &Value,
        trusted: bool,
    ) -> Result<Value> {
        check_fields(body, VERSION_FIELDS, "version")?;
        check_types(body, "version", version_field)?;
        self.get_model(project, model)?;
        let id = body
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid("A version needs a name.").on_field("version.name"))?;
        names::check_id(id, "version.name")?;
        let uri = body
            .get("deploymentUri")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::invalid("A version needs a deploymentUri.")
                    .on_field("version.deployment_uri")
            })?;
        if !trusted {
            self.roots
                .check(uri, "version.deployment_uri", Access::Read)?;
        }
        let mut version = body.clone();
        version["name"] = json!(names::version_name(project, model, id));
        version["state"] = json!("CREATING");
        version["createTime"] = json!(now());
        version["etag"] = json!(etag());
        version["framework"] = body.get("framework").cloned().unwrap_or(json!("ONNX"));
        if let Some(o) = version.as_object_mut() {
            o.remove("isDefault");
            o.remove("errorMessage");
            o.remove("lastUseTime");
        }
        let op = operations::new(project, "create", "CREATE_VERSION", model, Some(&version));
        // The model is looked for again in the transaction that inserts: a model deleted since
        // the check above would otherwise leave this version behind it, served by no model.
        let number = self
            .store
            .transaction(|tx| insert_version(tx, project, model, id, &version, &op))
            .map_err(internal)??;
        self.spawn_deploy(model, number, version);
        Ok(op)
    }

    /// Copies, loads and warms a CREATING version on a thread of its own, then records the
    /// outcome in the version and its operation.
    pub(super) fn spawn_deploy(self: &Arc<Self>, model: &str, number: i64, version: Value) {
        let control = Arc::clone(self);
        let model = model.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("deploy-{model}-{number}"))
            .spawn(move || control.deploy(&model, number, version));
        if let Err(e) = spawned {
            tracing::error!("cannot start a deployment thread: {e}");
        }
    }

    fn deploy(&self, model: &str, number: i64, mut version: Value) {
        let name = version["name"].as_str().unwrap_or_default().to_string();
        let id = names::basename(&name).to_string();
        let uri = version["deploymentUri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let folder = self.models_dir.join(model);
        let tmp = folder.join(format!(".tmp-{number}"));
        let target = folder.join(number.to_string());
        let _ = std::fs::remove_dir_all(&tmp);
        // Nothing half-copied is ever served: the folder takes its number only when complete.
        let copied = self
            .runtime
            .block_on(super::deploy::copy_version(&uri, &tmp))
            .and_then(|()| {
                let _ = std::fs::remove_dir_all(&target);
                std::fs::rename(&tmp, &target)?;
                Ok(())
            });
        let outcome = match copied {
            Err(e) => Err(format!(
                "cannot copy the model from {uri}: {}",
                crate::status::one_line(&e)
            )),
            Ok(()) => match self.apply(model, Some(number)) {
                Err(e) => Err(format!("{e:#}")),
                Ok(()) => {
                    let status = self
                        .manager
                        .model(model)
                        .map(|m| m.status())
                        .unwrap_or_default()
                        .into_iter()
                        .find(|s| s.version == number as u64);
                    match status {
                        Some(s) if s.state == VersionState::Available => Ok(()),
                        Some(s) => {
                            Err(s.error.unwrap_or_else(|| "the version did not load".into()))
                        }
                        None => Err("the version did not load".into()),
                    }
                }
            },
        };
        let _ = std::fs::remove_dir_all(&tmp);
        let op_name = self.pending_operation(&name, "CREATE_VERSION");
        let recorded = self.store.transaction(|tx| {
            let Some((_, mut stored)) = tx.version(model, &id)? else {
                return Ok(());
            };
            match &outcome {
                Ok(()) => {
                    stored["state"] = json!("READY");
                    // The first version of a model becomes its default.
                    if let Some(mut m) = tx.get(Kind::Model, model)? {
                        if m.get("defaultVersion").is_none() {
                            m["defaultVersion"] = json!(id);
                            let project = name.split('/').nth(1).unwrap_or_default();
                            tx.put(Kind::Model, model, project, &m)?;
                        }
                    }
                }
                Err(message) => {
                    stored["state"] = json!("FAILED");
                    stored["errorMessage"] = json!(message);
                }
            }
            tx.put_version(model, &id, number, &stored)?;
            version = stored;
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::error!("cannot record version {name}: {e:#}");
            return;
        }
        if outcome.is_err() {
            let _ = std::fs::remove_dir_all(&target);
        }
        // The labels and default follow the outcome.
        if let Err(e) = self.apply(model, None) {
            tracing::warn!("cannot apply model '{model}': {e:#}");
        }
        if let Some(op) = op_name {
            let result = match outcome {
                Ok(()) => {
                    let mut v = self.marked(model, version).unwrap_or_default();
                    v["@type"] = json!(VERSION_TYPE);
                    Ok(v)
                }
                Err(message) => Err(Error::failed_precondition(message)),
            };
            if let Err(e) = self.finish_operation(&op, result) {
                tracing::error!("cannot finish operation {op}: {}", e.message);
            }
        }
    }

    /// The operation of `kind` for a version that is not done yet.
    fn pending_operation(&self, version_name: &str, kind: &str) -> Option<String> {
        let (ops, _) = self.store.unfinished(&[]).ok()?;
        ops.into_iter()
            .find(|op| {
                op.pointer("/metadata/operationType")
                    .and_then(Value::as_str)
                    == Some(kind)
                    && op.pointer("/metadata/version/name").and_then(Value::as_str)
                        == Some(version_name)
            })
            .and_then(|op| op["name"].as_str().map(str::to_string))
    }

    pub fn get_version(&self, project: &str, model: &str, id: &str) -> Result<Value> {
        self.get_model(project, model)?;
        let (_, v) = self
            .store
            .version(model, id)
            .map_err(internal)?
            .ok_or_else(|| not_found(id))?;
        self.marked(model, v)
    }

    pub fn list_versions(&self, project: &str, model: &str, query: &ListQuery) -> Result<Value> {
        self.get_model(project, model)?;
        let all = self
            .store
            .versions(model)
            .map_err(internal)?
            .into_iter()
            .map(|(number, v)| Ok((number, self.marked(model, v)?)))
            .collect::<Result<Vec<_>>>()?;
        let (versions, next) = page_keyed(all, query, false)?;
        Ok(listed("versions", versions, next))
    }

    /// `versions.setDefault`: synchronous; answers the version, now the default.
    pub fn set_default(&self, project: &str, model: &str, id: &str) -> Result<Value> {
        self.get_version(project, model, id)?;
        // The state is read where the default is written: a version that began its deletion
        // since the read above must not become the default.
        self.store
            .transaction(|tx| {
                let Some(mut m) = tx.get(Kind::Model, model)? else {
                    return Ok(Err(super::models::not_found(model)));
                };
                let Some((_, v)) = tx.version(model, id)? else {
                    return Ok(Err(not_found(id)));
                };
                if state(&v) != "READY" {
                    return Ok(Err(Error::failed_precondition(format!(
                        "version '{id}' is {}; only a READY version can be the default",
                        state(&v)
                    ))));
                }
                m["defaultVersion"] = json!(id);
                m["etag"] = json!(etag());
                tx.put(Kind::Model, model, project, &m)?;
                Ok(Ok(()))
            })
            .map_err(internal)??;
        self.apply(model, None)
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        self.get_version(project, model, id)
    }

    /// `versions.patch`; answered with a done operation.
    pub fn patch_version(
        &self,
        project: &str,
        model: &str,
        id: &str,
        body: &Value,
        mask: &[String],
    ) -> Result<Value> {
        check_fields(body, VERSION_FIELDS, "version")?;
        check_types(body, "version", version_field)?;
        let current = self.get_version(project, model, id)?;
        if matches!(state(&current), "CREATING" | "DELETING" | "UPDATING") {
            return Err(Error::failed_precondition(format!(
                "version '{id}' is {}; it cannot be updated now",
                state(&current)
            )));
        }
        if mask.is_empty() {
            return Err(
                Error::invalid("updateMask names no field to update").on_field("update_mask")
            );
        }
        for field in mask {
            if !PATCHABLE.contains(&field.as_str()) {
                return Err(Error::invalid(format!(
                    "field '{field}' cannot be updated; the mask takes {}",
                    PATCHABLE.join(", ")
                ))
                .on_field("update_mask"));
            }
        }
        let mut op = operations::new(project, "update", "UPDATE_VERSION", model, Some(&current));
        // The etag is compared in the transaction that writes: two patches that read the same
        // etag cannot both land.
        self.store
            .transaction(|tx| {
                let Some((number, mut v)) = tx.version(model, id)? else {
                    return Ok(Err(not_found(id)));
                };
                // proto3 reads an empty string as unset: no etag to compare.
                if let Some(tag) = body
                    .get("etag")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    if v["etag"].as_str() != Some(tag) {
                        return Ok(Err(Error::new(
                            Code::Aborted,
                            "The etag does not match the version's: it changed since it was read.",
                        )
                        .on_field("version.etag")));
                    }
                }
                for field in mask {
                    let path: Vec<&str> = field.split('.').collect();
                    let pointer = format!("/{}", path.join("/"));
                    let value = body.pointer(&pointer).cloned();
                    set_path(&mut v, &path, value);
                }
                v["etag"] = json!(etag());
                tx.put_version(model, id, number, &v)?;
                let mut response = v.clone();
                response["@type"] = json!(VERSION_TYPE);
                operations::finish(&mut op, Ok(response));
                operations::put(tx, project, &op)?;
                Ok(Ok(op.clone()))
            })
            .map_err(internal)?
    }

    /// `versions.delete`: refused for the default version while others exist; the version is
    /// unloaded after its in-flight requests, then removed.
    pub fn delete_version(self: &Arc<Self>, project: &str, model: &str, id: &str) -> Result<Value> {
        let current = self.get_version(project, model, id)?;
        if matches!(state(&current), "CREATING" | "DELETING") {
            return Err(Error::failed_precondition(format!(
                "version '{id}' is {}; it cannot be deleted now",
                state(&current)
            )));
        }
        let mut deleting = current.clone();
        deleting["state"] = json!("DELETING");
        if let Some(o) = deleting.as_object_mut() {
            o.remove("isDefault");
        }
        let op = operations::new(project, "delete", "DELETE_VERSION", model, Some(&deleting));
        let number = self
            .store
            .transaction(|tx| {
                let versions = tx.versions(model)?;
                let default = tx.get(Kind::Model, model)?.and_then(|m| {
                    m.get("defaultVersion")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
                if default.as_deref() == Some(id) && versions.len() > 1 {
                    return Ok(Err(()));
                }
                let Some((number, _)) = tx.version(model, id)? else {
                    return Ok(Err(()));
                };
                tx.put_version(model, id, number, &deleting)?;
                operations::put(tx, project, &op)?;
                Ok(Ok(number))
            })
            .map_err(internal)?;
        let Ok(number) = number else {
            return Err(Error::failed_precondition(
                "Cannot delete the default version of a model while it has other versions; set \
                 another default version first.",
            ));
        };
        self.spawn_delete(model, number, deleting);
        Ok(op)
    }

    pub(super) fn spawn_delete(self: &Arc<Self>, model: &str, number: i64, version: Value) {
        let control = Arc::clone(self);
        let model = model.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("delete-{model}-{number}"))
            .spawn(move || control.delete(&model, number, version));
        if let Err(e) = spawned {
            tracing::error!("cannot start a deletion thread: {e}");
        }
    }

    fn delete(&self, model: &str, number: i64, version: Value) {
        let name = version["name"].as_str().unwrap_or_default().to_string();
        let id = names::basename(&name).to_string();
        // Out of the served set first (retired after its in-flight requests), then gone.
        if let Err(e) = self.apply(model, None) {
            tracing::warn!("cannot apply model '{model}': {e:#}");
        }
        let _ = std::fs::remove_dir_all(self.models_dir.join(model).join(number.to_string()));
        let removed = self.store.transaction(|tx| {
            tx.delete_version(model, &id)?;
            if let Some(mut m) = tx.get(Kind::Model, model)? {
                if m.get("defaultVersion").and_then(Value::as_str) == Some(id.as_str()) {
                    if let Some(o) = m.as_object_mut() {
                        o.remove("defaultVersion");
                    }
                    let project = name.split('/').nth(1).unwrap_or_default();
                    tx.put(Kind::Model, model, project, &m)?;
                }
            }
            Ok(())
        });
        if let Err(e) = removed {
            tracing::error!("cannot remove version {name}: {e:#}");
            return;
        }
        if let Err(e) = self.apply(model, None) {
            tracing::warn!("cannot apply model '{model}': {e:#}");
        }
        if let Some(op) = self.pending_operation(&name, "DELETE_VERSION") {
            let _ = self.finish_operation(&op, Ok(json!({"@type": EMPTY_TYPE})));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::store::Store;

    #[test]
    fn a_version_is_never_inserted_under_a_deleted_model() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let version = json!({"name": "projects/_/models/m/versions/v1", "state": "CREATING"});
        let op = operations::new("_", "create", "CREATE_VERSION", "m", Some(&version));
        // The model was there when the request was checked, and deleted since.
        let insert = |op: &Value| {
            store
                .transaction(|tx| insert_version(tx, "_", "m", "v1", &version, op))
                .unwrap()
        };
        assert_eq!(insert(&op).unwrap_err().code, Code::NotFound);
        assert!(store.versions("m").unwrap().is_empty());
        assert!(store.unfinished(&[]).unwrap().0.is_empty(), "no operation");
        store
            .transaction(|tx| {
                tx.put(
                    Kind::Model,
                    "m",
                    "_",
                    &json!({"name": "projects/_/models/m"}),
                )
            })
            .unwrap();
        assert_eq!(insert(&op).unwrap(), 1);
        let again = operations::new("_", "create", "CREATE_VERSION", "m", Some(&version));
        assert_eq!(insert(&again).unwrap_err().code, Code::AlreadyExists);
    }
}
