//! `projects.models`: create, get, list, patch, delete. A model is served from its folder in the
//! state dir as soon as it has a READY version.

use serde_json::{json, Value};

use super::list::{page_keyed, ListQuery};
use super::operations::{self, listed, EMPTY_TYPE, MODEL_TYPE};
use super::store::{Kind, Tx};
use super::{check_fields, check_types, etag, internal, names, now, ControlPlane, FieldType};
use crate::repository::policy::VersionPolicy;
use crate::repository::ModelConfig;
use crate::status::{Code, Error, Result};

const MODEL_FIELDS: &[&str] = &[
    "name",
    "description",
    "defaultVersion",
    "regions",
    "onlinePredictionLogging",
    "onlinePredictionConsoleLogging",
    "labels",
    "etag",
];

pub(super) fn not_found(model: &str) -> Error {
    Error::not_found(format!("The model resource: \"{model}\" was not found.")).on_field("name")
}

/// The type of each Model field.
fn model_field(key: &str) -> FieldType {
    match key {
        "name" | "description" | "etag" => FieldType::String,
        "labels" => FieldType::Labels,
        "regions" => FieldType::Strings,
        "defaultVersion" => FieldType::Object,
        "onlinePredictionLogging" | "onlinePredictionConsoleLogging" => FieldType::Bool,
        _ => FieldType::Any,
    }
}

/// A stored model with its default version in full (the stored body keeps only its id).
fn default_in(tx: &Tx, mut model: Value) -> anyhow::Result<Value> {
    if let Some(default) = model.get("defaultVersion").and_then(Value::as_str) {
        let id = names::basename(model["name"].as_str().unwrap_or_default()).to_string();
        let default = default.to_string();
        match tx.version(&id, &default)? {
            Some((_, mut v)) => {
                v["isDefault"] = json!(true);
                model["defaultVersion"] = v;
            }
            None => {
                if let Some(o) = model.as_object_mut() {
                    o.remove("defaultVersion");
                }
            }
        }
    }
    Ok(model)
}

impl ControlPlane {
    pub fn create_model(&self, project: &str, body: &Value) -> Result<Value> {
        check_fields(body, MODEL_FIELDS, "model")?;
        check_types(body, "model", model_field)?;
        let id = body
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid("A model needs a name.").on_field("model.name"))?;
        names::check_id(id, "model.name")?;
        let mut model = json!({
            "name": names::model_name(project, id),
            "regions": body.get("regions").cloned().unwrap_or(json!(["us-central1"])),
            "etag": etag(),
            "createTime": now(),
        });
        for key in [
            "description",
            "labels",
            "onlinePredictionLogging",
            "onlinePredictionConsoleLogging",
        ] {
            if let Some(v) = body.get(key) {
                model[key] = v.clone();
            }
        }
        let exists = || {
            Error::already_exists("A model with the same name already exists.")
                .on_field("model.name")
        };
        let stored = self
            .store
            .insert_new(Kind::Model, id, project, &model)
            .map_err(internal)?;
        if !stored {
            return Err(exists());
        }
        std::fs::create_dir_all(self.models_dir.join(id))
            .map_err(|e| Error::internal(format!("cannot create the model's folder: {e}")))?;
        let config = ModelConfig {
            policy: VersionPolicy::Specific(Vec::new()),
            ..ModelConfig::new(id, self.models_dir.join(id))
        };
        if let Err(e) = self.manager.add_model(config) {
            // A model of that name is served from a watched folder.
            let _ = self.store.transaction(|tx| tx.delete(Kind::Model, id));
            return Err(if e.code == Code::AlreadyExists {
                exists()
            } else {
                e
            });
        }
        Ok(model)
    }

    /// The stored model, with its default version in full.
    pub fn get_model(&self, project: &str, id: &str) -> Result<Value> {
        let model = self
            .store
            .get(Kind::Model, id)
            .map_err(internal)?
            .filter(|m| m["name"] == names::model_name(project, id))
            .ok_or_else(|| not_found(id))?;
        self.with_default(model)
    }

    fn with_default(&self, model: Value) -> Result<Value> {
        self.store
            .transaction(|tx| default_in(tx, model))
            .map_err(internal)
    }

    pub fn list_models(&self, project: &str, query: &ListQuery) -> Result<Value> {
        let all = self
            .store
            .list_keyed(Kind::Model, project)
            .map_err(internal)?;
        let all = all
            .into_iter()
            .map(|(key, m)| Ok((key, self.with_default(m)?)))
            .collect::<Result<Vec<_>>>()?;
        let (models, next) = page_keyed(all, query, false)?;
        Ok(listed("models", models, next))
    }

    /// `models.patch`: `description`, `labels`, `defaultVersion.name`; answered with a done
    /// operation.
    pub fn patch_model(
        &self,
        project: &str,
        id: &str,
        body: &Value,
        mask: &[String],
    ) -> Result<Value> {
        check_fields(body, MODEL_FIELDS, "model")?;
        self.get_model(project, id)?;
        if mask.is_empty() {
            return Err(
                Error::invalid("updateMask names no field to update").on_field("update_mask")
            );
        }
        // Every field of the mask is checked before anything changes: a refused patch leaves
        // the model as it was.
        let mut default = None;
        for field in mask {
            match field.as_str() {
                "description" | "labels" => {}
                "defaultVersion.name" | "default_version.name" => {
                    let name = body
                        .pointer("/defaultVersion/name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            Error::invalid("defaultVersion.name is missing from the body")
                                .on_field("model.default_version.name")
                        })?;
                    default = Some(names::basename(name));
                }
                other => {
                    return Err(Error::invalid(format!(
                        "field '{other}' cannot be updated; the mask takes description, labels and defaultVersion.name"
                    ))
                    .on_field("update_mask"))
                }
            }
        }
        check_types(body, "model", model_field)?;
        let stale = || {
            Error::new(
                Code::Aborted,
                "The etag does not match the model's: it changed since it was read.",
            )
            .on_field("model.etag")
        };
        let mut op = operations::new(project, "update", "UPDATE_MODEL", id, None);
        // The etag, the new default's state and the write are in one transaction: two patches
        // that read the same etag cannot both land, and a refused one changes nothing.
        let updated = self
            .store
            .transaction(|tx| {
                let Some(mut model) = tx.get(Kind::Model, id)? else {
                    return Ok(Err(not_found(id)));
                };
                // proto3 reads an empty string as unset: no etag to compare.
                if let Some(tag) = body
                    .get("etag")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    if model["etag"].as_str() != Some(tag) {
                        return Ok(Err(stale()));
                    }
                }
                if let Some(version) = default {
                    let Some((_, v)) = tx.version(id, version)? else {
                        return Ok(Err(Error::not_found(format!(
                            "The version resource: \"{version}\" was not found."
                        ))
                        .on_field("model.default_version.name")));
                    };
                    let state = v.get("state").and_then(Value::as_str).unwrap_or("UNKNOWN");
                    if state != "READY" {
                        return Ok(Err(Error::failed_precondition(format!(
                            "version '{version}' is {state}; only a READY version can be the \
                             default"
                        ))));
                    }
                    model["defaultVersion"] = json!(version);
                }
                for key in ["description", "labels"] {
                    if mask.iter().any(|m| m == key) {
                        match body.get(key) {
                            Some(v) => model[key] = v.clone(),
                            None => {
                                if let Some(o) = model.as_object_mut() {
                                    o.remove(key);
                                }
                            }
                        }
                    }
                }
                model["etag"] = json!(etag());
                tx.put(Kind::Model, id, project, &model)?;
                // The response is the model as models.get answers it: its default version in
                // full, not the stored id.
                let mut response = default_in(tx, model)?;
                response["@type"] = json!(MODEL_TYPE);
                operations::finish(&mut op, Ok(response));
                operations::put(tx, project, &op)?;
                Ok(Ok(op.clone()))
            })
            .map_err(internal)??;
        if default.is_some() {
            self.apply(id, None)
                .map_err(|e| Error::internal(format!("{e:#}")))?;
        }
        Ok(updated)
    }

    /// `models.delete`: only a model without versions; answered with a done operation.
    pub fn delete_model(&self, project: &str, id: &str) -> Result<Value> {
        self.get_model(project, id)?;
        let mut op = operations::new(project, "delete", "DELETE_MODEL", id, None);
        let deleted = self
            .store
            .transaction(|tx| {
                if !tx.versions(id)?.is_empty() {
                    return Ok(None);
                }
                tx.delete(Kind::Model, id)?;
                operations::finish(&mut op, Ok(json!({"@type": EMPTY_TYPE})));
                operations::put(tx, project, &op)?;
                Ok(Some(op.clone()))
            })
            .map_err(internal)?;
        let Some(op) = deleted else {
            return Err(Error::failed_precondition(
                "A model with versions cannot be deleted. Please delete the versions first.",
            ));
        };
        self.manager.remove_model(id);
        let _ = std::fs::remove_dir_all(self.models_dir.join(id));
        Ok(op)
    }
}
