//! `mlengine models|versions|jobs|operations`: gcloud's `ml-engine` management commands against a
//! server's `ml` v1 API. `describe` prints YAML (keys sorted, as gcloud does), `list` a table;
//! `versions create` waits for its operation unless `--async`; `jobs submit` prints the job's id
//! and state, and `--stream-logs` follows its log. A server error is one line with its status.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::cli::manage::{
    ApiArgs, JobsArgs, JobsCommand, ModelsArgs, ModelsCommand, OperationsArgs, OperationsCommand,
    SubmitCommand, VersionsArgs, VersionsCommand,
};

/// How often a waiting command reads an operation or a log again.
const POLL: Duration = Duration::from_millis(300);

/// An error the server answered: its status and message, shown as gcloud shows them.
#[derive(Debug)]
struct ServerError {
    status: String,
    message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ServerError {}

struct Client {
    base: String,
    project: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// rustls with the server's crypto provider; the public roots, or `ca_cert`'s certificates.
pub(super) fn tls_config(ca_cert: Option<&std::path::Path>) -> Result<ureq::tls::TlsConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider);
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => bail!("--ca-cert {}: {e}", path.display()),
            }
        }
        if certs.is_empty() {
            bail!("--ca-cert {} holds no certificate", path.display());
        }
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)));
    }
    Ok(tls.build())
}

impl Client {
    fn new(api: &ApiArgs) -> Result<Client> {
        let url = api.url.trim_end_matches('/');
        let base = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        if api.ca_cert.is_some() && !base.starts_with("https://") {
            bail!("--ca-cert is for an https:// --url");
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls_config(api.ca_cert.as_deref())?)
            .build()
            .into();
        Ok(Client {
            base,
            project: api.project.clone(),
            token: api.token.clone(),
            agent,
        })
    }

    fn project(&self) -> String {
        format!("projects/{}", self.project)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}/v1/{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (m, b) => {
                let mut r = if m == "PATCH" {
                    self.agent.patch(&url)
                } else {
                    self.agent.post(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.header("Content-Type", "application/json")
                    .send(b.cloned().unwrap_or(json!({})).to_string())
            }
        };
        let mut response = response.with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {url}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if status >= 400 {
            let error = &value["error"];
            let (status_name, message) = match error {
                Value::Object(_) => (
                    error["status"].as_str().unwrap_or("ERROR").to_string(),
                    error["message"].as_str().unwrap_or_default().to_string(),
                ),
                Value::String(s) => (format!("HTTP {status}"), s.clone()),
                _ => (format!("HTTP {status}"), text.trim().to_string()),
            };
            return Err(ServerError {
                status: status_name,
                message,
            }
            .into());
        }
        Ok(value)
    }

    /// Reads an operation until it is done; its response, or its error as a failure.
    fn wait(&self, op: &Value, what: &str) -> Result<Value> {
        let name = op["name"].as_str().unwrap_or_default().to_string();
        let mut err = std::io::stderr();
        let _ = write!(err, "{what} (this might take a few minutes)...");
        let mut op = op.clone();
        while op.get("done").and_then(Value::as_bool) != Some(true) {
            std::thread::sleep(POLL);
            let _ = write!(err, ".");
            op = self.call("GET", &name, None)?;
        }
        if let Some(e) = op.get("error") {
            let _ = writeln!(err, "failed.");
            bail!(ServerError {
                status: status_name(e["code"].as_i64().unwrap_or(2)),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        let _ = writeln!(err, "done.");
        Ok(op.get("response").cloned().unwrap_or(json!({})))
    }
}

/// The name of a `google.rpc.Code` number.
fn status_name(code: i64) -> String {
    match code {
        3 => "INVALID_ARGUMENT",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        9 => "FAILED_PRECONDITION",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
    .to_string()
}

/// A value with every object's keys sorted, as gcloud prints resources.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&o[k])))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn yaml(v: &Value) -> Result<()> {
    let text = serde_yaml_ng::to_string(&sorted(v)).context("cannot print YAML")?;
    std::io::stdout().write_all(quote_timestamps(&text).as_bytes())?;
    Ok(())
}

/// Whether a plain scalar is one that YAML 1.1 readers (PyYAML's `safe_load`) take for a
/// timestamp: a string of digits, '-', ':', '.', 'T', 'Z', '+' and spaces that starts with a
/// date. A superset is fine: quoting another string changes nothing for a reader.
fn timestamp_like(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5].is_ascii_digit()
        && s.chars().all(|c| {
            c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | 'T' | 't' | 'Z' | '+' | ' ')
        })
}

/// YAML with timestamp strings single-quoted, as gcloud prints them (`createTime:
/// '2020-12-14T08:34:36Z'`), so that a YAML reader gives back the string, not a datetime.
/// serde's emitter leaves them plain; block scalars' lines are text, never touched.
fn quote_timestamps(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    // The indentation a block scalar's lines are deeper than, while inside one.
    let mut block: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(depth) = block {
            if line.trim().is_empty() || indent > depth {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block = None;
        }
        // `key: value`, `- value` or `- key: value`, the value last on the line.
        let value_at = match line.rfind(": ") {
            Some(i) => i + 2,
            None if line.trim_start().starts_with("- ") => indent + 2,
            None => line.len(),
        };
        let (head, value) = line.split_at(value_at);
        if value.starts_with(['|', '>']) {
            block = Some(indent);
        }
        out.push_str(head);
        if timestamp_like(value) {
            out.push('\'');
            out.push_str(value);
            out.push('\'');
        } else {
            out.push_str(value);
        }
        out.push('\n');
    }
    out
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = std::io::stdout();
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(
        out,
        "{}",
        line(headers.iter().map(|h| h.to_string()).collect())
    )?;
    for row in rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

fn basename(v: &Value) -> String {
    v.as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Whether `s` is one segment of a URL path as an id: a '/' would reach another resource
/// (`census/versions/v1` named as a model), '?', '#' or ':' another method.
fn plain_id(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains(['/', '?', '#', ':', '%'])
        && !s.contains(char::is_whitespace)
}

/// The path of a resource given on the command line as its id or as its full name
/// `projects/PROJECT/{collection}/ID`; anything else is refused before it reaches a URL.
fn resource(client: &Client, given: &str, collection: &str, what: &str) -> Result<String> {
    if plain_id(given) {
        return Ok(format!("{}/{collection}/{given}", client.project()));
    }
    let parts: Vec<&str> = given.split('/').collect();
    match parts.as_slice() {
        ["projects", project, c, id]
            if *c == collection && plain_id(id) && plain_id(&project.replace(':', "")) =>
        {
            Ok(given.to_string())
        }
        _ => bail!(
            "{what} {given:?} is neither an id nor a full name projects/PROJECT/{collection}/ID"
        ),
    }
}

/// The path of a version given as its id (of `--model`) or its full name.
fn version_path(client: &Client, model: &str, version: &str) -> Result<String> {
    let model_path = resource(client, model, "models", "--model")?;
    if plain_id(version) {
        return Ok(format!("{model_path}/versions/{version}"));
    }
    match version.rsplit_once("/versions/") {
        Some((parent, id))
            if plain_id(id) && resource(client, parent, "models", "--model").is_ok() =>
        {
            if last_segment(parent) != last_segment(&model_path) {
                bail!("version {version:?} is not a version of --model {model:?}");
            }
            Ok(version.to_string())
        }
        _ => bail!(
            "version {version:?} is neither an id nor a full name \
             projects/PROJECT/models/MODEL/versions/ID"
        ),
    }
}

/// The id at the end of a resource's path.
fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A local path as the server takes it: absolute, with `.` and `..` resolved in the text (the
/// server refuses a path with `..`); wildcards stay. A URI with a scheme is sent as it is.
fn absolute(path: &str) -> Result<String> {
    if path.is_empty() || path.contains("://") {
        return Ok(path.to_string());
    }
    let abs = std::path::absolute(path)
        .with_context(|| format!("cannot make the path {path:?} absolute"))?;
    let mut out = std::path::PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.to_str()
        .map(str::to_string)
        .with_context(|| format!("the path {path:?} is not UTF-8"))
}

/// Each path of a comma-separated list made absolute.
fn absolute_list(list: &str) -> Result<String> {
    Ok(list
        .split(',')
        .map(absolute)
        .collect::<Result<Vec<_>>>()?
        .join(","))
}

/// The trainer's arguments with the paths of `--train-files`, `--eval-files` and `--job-dir`
/// made absolute, in both `--flag value...` and `--flag=value` forms.
fn absolute_args(args: &[String]) -> Result<Vec<String>> {
    const MANY: &[&str] = &["--train-files", "--eval-files"];
    const ONE: &[&str] = &["--job-dir"];
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if let Some((flag, value)) = arg.split_once('=') {
            if MANY.contains(&flag) {
                out.push(format!("{flag}={}", absolute_list(value)?));
                continue;
            }
            if ONE.contains(&flag) {
                out.push(format!("{flag}={}", absolute(value)?));
                continue;
            }
        }
        out.push(arg.clone());
        let many = MANY.contains(&arg.as_str());
        if many || ONE.contains(&arg.as_str()) {
            // As the trainer's parser reads them: values up to the next argument that starts
            // with '-', or just one.
            while i < args.len() && !args[i].starts_with('-') {
                out.push(if many {
                    absolute_list(&args[i])?
                } else {
                    absolute(&args[i])?
                });
                i += 1;
                if !many {
                    break;
                }
            }
        }
    }
    Ok(out)
}

fn strings_of(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every page of a list.
fn all_pages(client: &Client, path: &str, key: &str) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            Some(t) => format!("{path}?pageSize=100&pageToken={t}"),
            None => format!("{path}?pageSize=100"),
        };
        let page = client.call("GET", &url, None)?;
        if let Some(list) = page.get(key).and_then(Value::as_array) {
            items.extend(list.iter().cloned());
        }
        match page.get("nextPageToken").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(items),
        }
    }
}

/// Runs a command; a server error becomes `ERROR: (mlengine.<command>) STATUS: message`.
fn report(command: &str, result: Result<ExitCode>) -> Result<ExitCode> {
    match result {
        Err(e) if e.downcast_ref::<ServerError>().is_some() => {
            eprintln!("ERROR: (mlengine.{command}) {e}");
            Ok(ExitCode::FAILURE)
        }
        other => other,
    }
}

pub fn models(args: &ModelsArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let models = format!("{}/models", client.project());
    let (name, result) = match &args.command {
        ModelsCommand::Create {
            name,
            regions,
            description,
        } => (
            "models.create",
            (|| {
                let mut body = json!({"name": name});
                if !regions.is_empty() {
                    body["regions"] = json!(regions);
                }
                if let Some(d) = description {
                    body["description"] = json!(d);
                }
                let model = client.call("POST", &models, Some(&body))?;
                eprintln!(
                    "Created ml engine model [{}].",
                    model["name"].as_str().unwrap_or_default()
                );
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        ModelsCommand::List => (
            "models.list",
            (|| {
                let rows = all_pages(&client, &models, "models")?
                    .iter()
                    .map(|m| vec![basename(&m["name"]), basename(&m["defaultVersion"]["name"])])
                    .collect();
                table(&["NAME", "DEFAULT_VERSION_NAME"], rows)?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        ModelsCommand::Describe { name } => (
            "models.describe",
            (|| {
                let path = resource(&client, name, "models", "model")?;
                yaml(&client.call("GET", &path, None)?)?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        ModelsCommand::Delete { name } => (
            "models.delete",
            (|| {
                let path = resource(&client, name, "models", "model")?;
                let op = client.call("DELETE", &path, None)?;
                client.wait(&op, &format!("Deleting model [{name}]"))?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
    };
    report(name, result)
}

pub fn versions(args: &VersionsArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let versions = |model: &str| -> Result<String> {
        Ok(format!(
            "{}/versions",
            resource(&client, model, "models", "--model")?
        ))
    };
    let (name, result) = match &args.command {
        VersionsCommand::Create {
            name,
            model,
            origin,
            runtime_version,
            description,
            no_wait,
        } => (
            "versions.create",
            (|| {
                let mut body = json!({"name": name, "deploymentUri": absolute(origin)?});
                if let Some(r) = runtime_version {
                    body["runtimeVersion"] = json!(r);
                }
                if let Some(d) = description {
                    body["description"] = json!(d);
                }
                let op = client.call("POST", &versions(model)?, Some(&body))?;
                if *no_wait {
                    yaml(&op)?;
                } else {
                    client.wait(&op, "Creating version")?;
                }
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        VersionsCommand::List { model } => (
            "versions.list",
            (|| {
                let rows = all_pages(&client, &versions(model)?, "versions")?
                    .iter()
                    .map(|v| {
                        vec![
                            basename(&v["name"]),
                            v["deploymentUri"].as_str().unwrap_or_default().to_string(),
                            v["state"].as_str().unwrap_or_default().to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "DEPLOYMENT_URI", "STATE"], rows)?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        VersionsCommand::Describe { name, model } => (
            "versions.describe",
            (|| {
                yaml(&client.call("GET", &version_path(&client, model, name)?, None)?)?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        VersionsCommand::Delete {
            name,
            model,
            no_wait,
        } => (
            "versions.delete",
            (|| {
                let op = client.call("DELETE", &version_path(&client, model, name)?, None)?;
                if *no_wait {
                    yaml(&op)?;
                } else {
                    client.wait(&op, &format!("Deleting version [{name}]"))?;
                }
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        VersionsCommand::SetDefault { name, model } => (
            "versions.set-default",
            (|| {
                yaml(&client.call(
                    "POST",
                    &format!("{}:setDefault", version_path(&client, model, name)?),
                    Some(&json!({})),
                )?)?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
    };
    report(name, result)
}

pub fn operations(args: &OperationsArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let path = |op: &str| resource(&client, op, "operations", "operation");
    let (name, result) = match &args.command {
        OperationsCommand::Describe { operation } => (
            "operations.describe",
            (|| {
                yaml(&client.call("GET", &path(operation)?, None)?)?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        OperationsCommand::List => (
            "operations.list",
            (|| {
                let operations = format!("{}/operations", client.project());
                let rows = all_pages(&client, &operations, "operations")?
                    .iter()
                    .map(|op| {
                        let done = op.get("done").and_then(Value::as_bool) == Some(true);
                        // gcloud prints booleans as Python does.
                        vec![
                            basename(&op["name"]),
                            if done { "True" } else { "False" }.to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "DONE"], rows)?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        OperationsCommand::Cancel { operation } => (
            "operations.cancel",
            (|| {
                let path = path(operation)?;
                client.call("POST", &format!("{path}:cancel"), Some(&json!({})))?;
                eprintln!("Cancelled operation [{operation}].");
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        OperationsCommand::Wait { operation } => (
            "operations.wait",
            (|| {
                let path = path(operation)?;
                let mut op = client.call("GET", &path, None)?;
                while op.get("done").and_then(Value::as_bool) != Some(true) {
                    std::thread::sleep(POLL);
                    op = client.call("GET", &path, None)?;
                }
                // The operation whatever its end (as `describe` shows it), then its error.
                yaml(&op)?;
                if let Some(e) = op.get("error") {
                    bail!(ServerError {
                        status: status_name(e["code"].as_i64().unwrap_or(2)),
                        message: e["message"].as_str().unwrap_or_default().to_string(),
                    });
                }
                Ok(ExitCode::SUCCESS)
            })(),
        ),
    };
    report(name, result)
}

/// Follows a job's log to its end; the exit code says whether it SUCCEEDED.
fn stream_logs(client: &Client, job: &str) -> Result<ExitCode> {
    let path = format!("{}/jobs/{job}/logs", client.project());
    let mut offset = 0u64;
    let mut out = std::io::stdout();
    loop {
        let chunk = client.call("GET", &format!("{path}?offset={offset}"), None)?;
        let text = chunk["text"].as_str().unwrap_or_default();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        offset = chunk["nextOffset"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(offset);
        if chunk["done"] == true && text.is_empty() {
            let state = chunk["state"].as_str().unwrap_or_default().to_string();
            eprintln!("Job [{job}] ended: {state}");
            return Ok(if state == "SUCCEEDED" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if text.is_empty() {
            std::thread::sleep(POLL);
        }
    }
}

fn submitted(client: &Client, job: &Value, stream: bool) -> Result<ExitCode> {
    let id = job["jobId"].as_str().unwrap_or_default().to_string();
    eprintln!("Job [{id}] submitted successfully.");
    if stream {
        return stream_logs(client, &id);
    }
    eprintln!(
        "Your job is still active. You may view the status of your job with the command\n\n  $ mlengine jobs describe {id}\n\nor continue streaming the logs with the command\n\n  $ mlengine jobs stream-logs {id}"
    );
    yaml(&json!({"jobId": id, "state": job["state"]}))?;
    Ok(ExitCode::SUCCESS)
}

pub fn jobs(args: &JobsArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api)?;
    let jobs = format!("{}/jobs", client.project());
    let (name, result) = match &args.command {
        JobsCommand::Submit(submit) => match submit.as_ref() {
            SubmitCommand::Training {
                job,
                config,
                job_dir,
                scale_tier,
                region,
                packages,
                module_name,
                stream_logs,
                args,
            } => (
                "jobs.submit.training",
                (|| {
                    let mut body = match config {
                        Some(path) => {
                            let text = std::fs::read_to_string(path).with_context(|| {
                                format!("cannot read --config {}", path.display())
                            })?;
                            let v: Value = serde_yaml_ng::from_str(&text).with_context(|| {
                                format!("--config {} is not YAML or JSON", path.display())
                            })?;
                            if !v.is_object() {
                                bail!(
                                    "--config {} must hold a job (trainingInput: ...)",
                                    path.display()
                                );
                            }
                            v
                        }
                        None => json!({}),
                    };
                    body["jobId"] = json!(job);
                    if body.get("trainingInput").is_none() {
                        body["trainingInput"] = json!({});
                    }
                    if !body["trainingInput"].is_object() {
                        bail!("trainingInput in --config must be a mapping of the job's fields");
                    }
                    let t = &mut body["trainingInput"];
                    // Flags override the config's fields; those not given leave them as they are.
                    match region {
                        Some(r) => t["region"] = json!(r),
                        None if t.get("region").is_none() => t["region"] = json!("us-central1"),
                        None => {}
                    }
                    if !args.is_empty() {
                        t["args"] = json!(args);
                    }
                    // The server takes only absolute paths; gcloud takes local ones relative
                    // to where it runs.
                    let given = strings_of(&t["args"]);
                    if !given.is_empty() {
                        t["args"] = json!(absolute_args(&given)?);
                    }
                    if t.get("scaleTier").is_none() {
                        t["scaleTier"] = json!("BASIC");
                    }
                    if let Some(s) = scale_tier {
                        t["scaleTier"] = json!(s);
                    }
                    if let Some(d) = job_dir {
                        t["jobDir"] = json!(d);
                    }
                    if let Some(d) = t["jobDir"].as_str() {
                        t["jobDir"] = json!(absolute(d)?);
                    }
                    if !packages.is_empty() {
                        let packages = packages
                            .iter()
                            .map(|p| absolute(p))
                            .collect::<Result<Vec<_>>>()?;
                        t["packageUris"] = json!(packages);
                    }
                    if let Some(m) = module_name {
                        t["pythonModule"] = json!(m);
                    }
                    let created = client.call("POST", &jobs, Some(&body))?;
                    submitted(&client, &created, *stream_logs)
                })(),
            ),
            SubmitCommand::Prediction {
                job,
                model,
                version,
                model_dir,
                data_format,
                input_paths,
                output_path,
                region,
                batch_size,
                max_worker_count,
                stream_logs,
            } => (
                "jobs.submit.prediction",
                (|| {
                    let input_paths = input_paths
                        .iter()
                        .map(|p| absolute(p))
                        .collect::<Result<Vec<_>>>()?;
                    let mut input = json!({
                        "dataFormat": data_format.to_ascii_uppercase(),
                        "inputPaths": input_paths,
                        "outputPath": absolute(output_path)?,
                        "region": region,
                    });
                    match (model, version, model_dir) {
                        (_, Some(_), Some(_)) => bail!("--version cannot go with --model-dir"),
                        (Some(m), Some(v), None) => {
                            input["versionName"] = json!(version_path(&client, m, v)?)
                        }
                        (Some(m), None, None) => {
                            input["modelName"] = json!(resource(&client, m, "models", "--model")?)
                        }
                        (None, None, Some(dir)) => input["uri"] = json!(absolute(dir)?),
                        _ => bail!("give --model (with an optional --version) or --model-dir"),
                    }
                    if let Some(b) = batch_size {
                        input["batchSize"] = json!(b.to_string());
                    }
                    if let Some(w) = max_worker_count {
                        input["maxWorkerCount"] = json!(w.to_string());
                    }
                    let created = client.call(
                        "POST",
                        &jobs,
                        Some(&json!({"jobId": job, "predictionInput": input})),
                    )?;
                    submitted(&client, &created, *stream_logs)
                })(),
            ),
        },
        JobsCommand::Describe { job } => (
            "jobs.describe",
            (|| {
                yaml(&client.call("GET", &resource(&client, job, "jobs", "job")?, None)?)?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        JobsCommand::List => (
            "jobs.list",
            (|| {
                let rows = all_pages(&client, &jobs, "jobs")?
                    .iter()
                    .map(|j| {
                        vec![
                            j["jobId"].as_str().unwrap_or_default().to_string(),
                            j["state"].as_str().unwrap_or_default().to_string(),
                            j["createTime"].as_str().unwrap_or_default().to_string(),
                        ]
                    })
                    .collect();
                table(&["JOB_ID", "STATUS", "CREATED"], rows)?;
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        JobsCommand::Cancel { job } => (
            "jobs.cancel",
            (|| {
                let path = resource(&client, job, "jobs", "job")?;
                client.call("POST", &format!("{path}:cancel"), Some(&json!({})))?;
                eprintln!("Cancelled job [{job}].");
                Ok(ExitCode::SUCCESS)
            })(),
        ),
        JobsCommand::StreamLogs { job } => (
            "jobs.stream-logs",
            resource(&client, job, "jobs", "job")
                .and_then(|path| stream_logs(&client, last_segment(&path))),
        ),
    };
    report(name, result)
}
