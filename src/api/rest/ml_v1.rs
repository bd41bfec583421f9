//! The `ml` v1 management API over REST: paths, query parameters and bodies as Google's
//! discovery document has them (`projects/{p}/models`, `.../versions/{v}:setDefault`,
//! `.../jobs/{j}:cancel`, `.../operations/{o}`, `projects/{p}:getConfig`), answers as stored
//! resources, errors in Google's envelope. The control plane does the work.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{json_response, read_body, Shared};
use crate::control::list::ListQuery;
use crate::control::ControlPlane;
use crate::status::{Error, Result};

/// A management call, parsed from its path and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manage {
    GetConfig,
    CreateModel,
    ListModels,
    GetModel(String),
    PatchModel(String),
    DeleteModel(String),
    CreateVersion(String),
    ListVersions(String),
    GetVersion(String, String),
    PatchVersion(String, String),
    DeleteVersion(String, String),
    SetDefault(String, String),
    CreateJob,
    ListJobs,
    GetJob(String),
    PatchJob(String),
    CancelJob(String),
    JobLog(String),
    ListOperations,
    GetOperation(String),
    CancelOperation(String),
}

/// The management call of `segs` (after `/v1/`) and `verb`, with its project; `None` when the
/// path is not a management path.
pub fn parse(method: &Method, segs: &[&str], verb: Option<&str>) -> Option<(String, Manage)> {
    use Manage::*;
    let s = |x: &&str| x.to_string();
    let m = method.clone();
    let call = match (segs, verb, m) {
        (["projects", _], Some("getConfig"), Method::GET) => GetConfig,
        (["projects", _, "models"], None, Method::POST) => CreateModel,
        (["projects", _, "models"], None, Method::GET) => ListModels,
        (["projects", _, "models", mo], None, Method::GET) => GetModel(s(mo)),
        (["projects", _, "models", mo], None, Method::PATCH) => PatchModel(s(mo)),
        (["projects", _, "models", mo], None, Method::DELETE) => DeleteModel(s(mo)),
        (["projects", _, "models", mo, "versions"], None, Method::POST) => CreateVersion(s(mo)),
        (["projects", _, "models", mo, "versions"], None, Method::GET) => ListVersions(s(mo)),
        (["projects", _, "models", mo, "versions", v], None, Method::GET) => {
            GetVersion(s(mo), s(v))
        }
        (["projects", _, "models", mo, "versions", v], None, Method::PATCH) => {
            PatchVersion(s(mo), s(v))
        }
        (["projects", _, "models", mo, "versions", v], None, Method::DELETE) => {
            DeleteVersion(s(mo), s(v))
        }
        (["projects", _, "models", mo, "versions", v], Some("setDefault"), Method::POST) => {
            SetDefault(s(mo), s(v))
        }
        (["projects", _, "jobs"], None, Method::POST) => CreateJob,
        (["projects", _, "jobs"], None, Method::GET) => ListJobs,
        (["projects", _, "jobs", j], None, Method::GET) => GetJob(s(j)),
        (["projects", _, "jobs", j], None, Method::PATCH) => PatchJob(s(j)),
        (["projects", _, "jobs", j], Some("cancel"), Method::POST) => CancelJob(s(j)),
        (["projects", _, "jobs", j, "logs"], None, Method::GET) => JobLog(s(j)),
        (["projects", _, "operations"], None, Method::GET) => ListOperations,
        (["projects", _, "operations", o], None, Method::GET) => GetOperation(s(o)),
        (["projects", _, "operations", o], Some("cancel"), Method::POST) => CancelOperation(s(o)),
        _ => return None,
    };
    Some((segs[1].to_string(), call))
}

/// A local server is one project: every project id in a path names it. Resources are stored
/// under this placeholder and answered under the project the request named.
const PROJECT: &str = "_";

/// The resource with its names under the request's project: every string that starts with
/// the stored placeholder's `projects/_/` (resource names and the names resources hold).
fn localized(mut v: Value, project: &str) -> Response {
    fn walk(v: &mut Value, stored: &str, answered: &str) {
        match v {
            Value::String(s) => {
                if let Some(rest) = s.strip_prefix(stored) {
                    *s = format!("{answered}{rest}");
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| walk(v, stored, answered)),
            Value::Object(o) => o.values_mut().for_each(|v| walk(v, stored, answered)),
            _ => {}
        }
    }
    walk(
        &mut v,
        &format!("projects/{PROJECT}/"),
        &format!("projects/{project}/"),
    );
    json_response(StatusCode::OK, &v)
}

/// A project id as Google's resource names take it: letters, digits, hyphens, and the dots
/// and colon of domain-scoped ids (`example.com:my-project`), at most 100 characters. Anything
/// else would be echoed into every name the answer holds.
fn check_project(project: &str) -> Result<()> {
    let ok = !project.is_empty()
        && project.len() <= 100
        && project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "project id {project:?} is not valid: letters, digits, '-', '.', ':' and '_', at most 100 characters"
        ))
        .on_field("name"))
    }
}

/// Google's error envelope: `{"error": {"code", "message", "status", "details"}}`.
pub fn error_response(e: &Error) -> Response {
    let mut error = json!({
        "code": e.code.http_status(),
        "message": e.message,
        "status": e.code.name(),
    });
    if let Some(field) = &e.field {
        let description = e
            .message
            .split_once(" Error: ")
            .map_or(e.message.as_str(), |(_, d)| d);
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": description}],
        }]);
    }
    json_response(
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json!({ "error": error }),
    )
}

/// The query parameters the API reads; the standard ones (`alt`, `key`, `prettyPrint`,
/// `fields`, ...) are accepted and ignored.
fn query(req: &Request) -> Result<(ListQuery, Vec<String>, u64)> {
    let mut list = ListQuery::default();
    let mut mask = Vec::new();
    let mut offset = 0;
    if let Some(q) = req.uri().query() {
        for (key, value) in url::form_urlencoded::parse(q.as_bytes()) {
            match key.as_ref() {
                "pageSize" | "page_size" => {
                    list.page_size = Some(value.parse().map_err(|_| {
                        Error::invalid(format!("pageSize {value:?} is not a number"))
                            .on_field("page_size")
                    })?)
                }
                "pageToken" | "page_token" => list.page_token = Some(value.into_owned()),
                "filter" => list.filter = Some(value.into_owned()),
                "updateMask" | "update_mask" => mask.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|f| !f.is_empty())
                        .map(str::to_string),
                ),
                "offset" => offset = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    Ok((list, mask, offset))
}

pub async fn handle(state: &Shared, project: String, call: Manage, req: Request) -> Response {
    let Some(control) = state.control.clone() else {
        return error_response(&Error::failed_precondition(
            "the management API is off: start the server with --state-dir",
        ));
    };
    let result = async {
        check_project(&project)?;
        let (mut list, mask, offset) = query(&req)?;
        // Filters compare names as the answer will show them, under the request's project.
        list.projects = Some((PROJECT.to_string(), project.clone()));
        let bytes = read_body(state, req).await?;
        // setDefault and cancel may come with an empty body and no content type.
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            // Strict JSON, as Google's API reads it (no NaN or Infinity tokens).
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::invalid(format!(
                    "Invalid JSON payload received. malformed JSON in request body: {e}"
                ))
            })?
        };
        // Store writes and file work are long next to a prediction: off the serving threads.
        tokio::task::spawn_blocking(move || {
            run(&control, PROJECT, call, &body, &list, &mask, offset)
        })
        .await
        .map_err(|e| Error::internal(format!("the call failed: {e}")))?
    }
    .await;
    match result {
        Ok(v) => localized(v, &project),
        Err(e) => error_response(&e),
    }
}

fn run(
    c: &Arc<ControlPlane>,
    project: &str,
    call: Manage,
    body: &Value,
    list: &ListQuery,
    mask: &[String],
    offset: u64,
) -> Result<Value> {
    use Manage::*;
    match call {
        GetConfig => Ok(c.get_config(project)),
        CreateModel => c.create_model(project, body),
        ListModels => c.list_models(project, list),
        GetModel(m) => c.get_model(project, &m),
        PatchModel(m) => c.patch_model(project, &m, body, mask),
        DeleteModel(m) => c.delete_model(project, &m),
        CreateVersion(m) => c.create_version(project, &m, body),
        ListVersions(m) => c.list_versions(project, &m, list),
        GetVersion(m, v) => c.get_version(project, &m, &v),
        PatchVersion(m, v) => c.patch_version(project, &m, &v, body, mask),
        DeleteVersion(m, v) => c.delete_version(project, &m, &v),
        SetDefault(m, v) => c.set_default(project, &m, &v),
        CreateJob => c.create_job(project, body),
        ListJobs => c.list_jobs(project, list),
        GetJob(j) => c.get_job(project, &j),
        PatchJob(j) => c.patch_job(project, &j, body, mask),
        CancelJob(j) => c.cancel_job(project, &j),
        JobLog(j) => c.job_log(project, &j, offset),
        ListOperations => c.list_operations(project, list),
        GetOperation(o) => c.get_operation(project, &o),
        CancelOperation(o) => c.cancel_operation(project, &o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_paths() {
        let p = |m: Method, path: &str, verb| parse(&m, &path.split('/').collect::<Vec<_>>(), verb);
        assert_eq!(
            p(Method::POST, "projects/p/models", None),
            Some(("p".into(), Manage::CreateModel))
        );
        assert_eq!(
            p(
                Method::POST,
                "projects/p/models/m/versions/v1",
                Some("setDefault")
            ),
            Some(("p".into(), Manage::SetDefault("m".into(), "v1".into())))
        );
        assert_eq!(
            p(Method::GET, "projects/p", Some("getConfig")),
            Some(("p".into(), Manage::GetConfig))
        );
        assert_eq!(
            p(Method::POST, "projects/p/jobs/j", Some("cancel")),
            Some(("p".into(), Manage::CancelJob("j".into())))
        );
        assert_eq!(
            p(Method::POST, "projects/p/models/m", Some("predict")),
            None
        );
        assert_eq!(p(Method::PUT, "projects/p/models", None), None);
    }
}
