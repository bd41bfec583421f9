//! The management API (`ml` v1) as clients drive it: the census walkthrough with the real
//! google-api-python-client, the rules and their codes, and state that survives a SIGKILL.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use mlengine::census::fixture;
use serde_json::{json, Value};

/// A work dir with two exported versions, instances and census files.
fn work_dir(tmp: &Path) -> PathBuf {
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).unwrap();
    for (name, seed) in [("export1", "1"), ("export2", "2")] {
        let version = train_fixture(
            &tmp.join(format!("job_{name}")),
            tmp,
            &["--train-steps", "10", "--seed", seed],
        );
        let dest = work.join(name);
        std::fs::create_dir_all(&dest).unwrap();
        for f in ["model.onnx", "model.json"] {
            std::fs::copy(version.join(f), dest.join(f)).unwrap();
        }
    }
    std::fs::write(
        work.join("instances.json"),
        fixture::to_json_instances(&fixture::rows(7, 3)),
    )
    .unwrap();
    let (train, eval, _) = fixture_files(tmp);
    std::fs::copy(train, work.join("train.csv")).unwrap();
    std::fs::copy(eval, work.join("eval.csv")).unwrap();
    work
}

fn managed_server(tmp: &Path, extra: &[&str]) -> Server {
    let state = tmp.join("state");
    let mut args = vec![
        "--state-dir",
        state.to_str().unwrap(),
        "--allowed-storage-roots",
        tmp.to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn code(e: &Value) -> (u64, String) {
    (
        e["status"].as_u64().unwrap(),
        e["error"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn the_walkthrough_with_google_api_python_client() {
    let tmp = tempfile::tempdir().unwrap();
    let work = work_dir(tmp.path());
    let server = managed_server(tmp.path(), &[]);
    let python = python_env("googleapi", "tests/python/requirements-googleapi.txt");
    let out = run(std::process::Command::new(&python)
        .arg(root().join("tests/python/ml_walkthrough.py"))
        .arg(format!("http://{}", server.addr))
        .arg(&work));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();

    // Models and versions, their names in full, under the client's project.
    assert_eq!(r["model"]["name"], "projects/my-project/models/census");
    assert_eq!(r["model"]["regions"], json!(["us-central1"]));
    assert_eq!(
        r["v1_created"]["metadata"]["operationType"],
        "CREATE_VERSION"
    );
    assert_eq!(r["v1_created"]["metadata"]["version"]["state"], "CREATING");
    assert!(r["v1_created"].get("done").is_none(), "{}", r["v1_created"]);
    let v1 = &r["v1_done"]["response"];
    assert_eq!(v1["state"], "READY", "{}", r["v1_done"]);
    assert_eq!(v1["isDefault"], true, "the first version is the default");
    assert_eq!(r["v2_done"]["response"]["isDefault"], false);
    let p = |a: &Value| a["predictions"][0]["probabilities"].clone();
    assert_ne!(p(&r["predict_default"]), p(&r["predict_v2"]), "two models");
    assert_eq!(r["set_default"]["isDefault"], true);
    assert_eq!(
        r["model_after_default"]["defaultVersion"]["name"],
        "projects/my-project/models/census/versions/v2"
    );
    assert_eq!(p(&r["predict_default_after"]), p(&r["predict_v2"]));

    // Jobs: a prediction job's counts and output, a training job, a cancelled one.
    let batch = &r["batch_job"];
    assert_eq!(batch["state"], "SUCCEEDED", "{batch}");
    assert_eq!(batch["predictionOutput"]["predictionCount"], "7");
    assert_eq!(batch["predictionOutput"]["errorCount"], "0");
    let results =
        std::fs::read_to_string(work.join("predictions/prediction.results-00000-of-00001"))
            .unwrap();
    assert_eq!(results.lines().count(), 7);
    let train = &r["train_job"];
    assert_eq!(train["state"], "SUCCEEDED", "{train}");
    for key in ["createTime", "startTime", "endTime"] {
        assert!(train[key].as_str().unwrap().ends_with('Z'), "{train}");
    }
    assert!(work.join("train_job/checkpoint.json").is_file());
    assert_eq!(r["cancel"], json!({}));
    assert_eq!(
        r["cancelled_job"]["state"], "CANCELLED",
        "{}",
        r["cancelled_job"]
    );
    // Newest first, one a page, every job once.
    assert_eq!(
        r["listed_job_ids"],
        json!(["census_train_long", "census_train_1", "census_batch_1"])
    );
    assert_eq!(
        r["filtered"],
        json!(["census_train_long", "census_train_1"])
    );
    assert!(r["operations"].as_u64().unwrap() >= 2);

    // Every rule, with its code and message.
    let e = &r["errors"];
    for (case, want_status, want_code, needle) in [
        (
            "duplicate_model",
            409,
            "ALREADY_EXISTS",
            "Field: model.name Error: A model with the same name already exists.",
        ),
        (
            "bad_model_name",
            400,
            "INVALID_ARGUMENT",
            "A name should start with a letter",
        ),
        (
            "unknown_field",
            400,
            "INVALID_ARGUMENT",
            "Unknown name \"nope\"",
        ),
        (
            "missing_model",
            404,
            "NOT_FOUND",
            "The model resource: \"nosuch\" was not found.",
        ),
        (
            "delete_model_with_versions",
            400,
            "FAILED_PRECONDITION",
            "A model with versions cannot be deleted",
        ),
        (
            "delete_default_version",
            400,
            "FAILED_PRECONDITION",
            "default version",
        ),
        (
            "duplicate_version",
            409,
            "ALREADY_EXISTS",
            "A version with the same name already exists.",
        ),
        (
            "outside_roots",
            400,
            "INVALID_ARGUMENT",
            "outside the allowed storage roots",
        ),
        (
            "duplicate_job",
            409,
            "ALREADY_EXISTS",
            "Field: job.job_id Error: A job with this id already exists.",
        ),
        (
            "cancel_finished",
            400,
            "FAILED_PRECONDITION",
            "already in a final state",
        ),
        ("missing_operation", 404, "NOT_FOUND", "was not found"),
    ] {
        assert_eq!(
            code(&e[case]),
            (want_status, want_code.to_string()),
            "{case}: {}",
            e[case]
        );
        let message = e[case]["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{case}: {message}");
    }
    assert_eq!(
        e["duplicate_model"]["error"]["details"][0]["fieldViolations"][0]["field"],
        "model.name"
    );

    // Deleted: versions, then the model; empty lists are `{}`.
    assert_eq!(r["versions_after_delete"], json!({}));
    assert_eq!(r["model_delete"]["done"], true);
    assert_eq!(r["models_after_delete"], json!({}));
    let (status, _) = server.post(
        "/v1/projects/my-project/models/census:predict",
        &json!({"instances": [census_instance()]}).to_string(),
    );
    assert_eq!(status, 404);
}

#[test]
fn the_walkthrough_with_mlengine_s_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let work = work_dir(tmp.path());
    let server = managed_server(tmp.path(), &[]);
    let url = format!("http://{}", server.addr);
    let cli = |args: &[&str]| {
        run(bin()
            .env("MLENGINE_URL", &url)
            .env("MLENGINE_PROJECT", "my-project")
            .args(args))
    };
    let ok = |args: &[&str]| {
        let out = cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    };
    ok(&["models", "create", "census", "--regions", "us-central1"]);
    let origin = work.join("export1");
    ok(&[
        "versions",
        "create",
        "v1",
        "--model",
        "census",
        "--origin",
        origin.to_str().unwrap(),
    ]);
    let listed = ok(&["versions", "list", "--model", "census"]);
    assert!(listed.starts_with("NAME"), "{listed}");
    assert!(
        listed.contains("v1") && listed.contains("READY"),
        "{listed}"
    );
    let described = ok(&["versions", "describe", "v1", "--model", "census"]);
    assert!(described.contains("state: READY"), "{described}");
    assert!(described.contains("isDefault: true"), "{described}");
    assert!(ok(&["models", "list"]).contains("census  v1"));

    // Online prediction through the named version.
    let predicted = ok(&[
        "predict",
        "--model",
        "census",
        "--version",
        "v1",
        "--json-instances",
        work.join("instances.json").to_str().unwrap(),
    ]);
    assert_eq!(predicted.lines().count(), 7);

    // A prediction job, its log followed to the end.
    let out = cli(&[
        "jobs",
        "submit",
        "prediction",
        "census_pred",
        "--model",
        "census",
        "--version",
        "v1",
        "--data-format",
        "TEXT",
        "--input-paths",
        work.join("instances.json").to_str().unwrap(),
        "--output-path",
        work.join("cli_predictions").to_str().unwrap(),
        "--stream-logs",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("predictionCount: 7, errorCount: 0"),
        "{}",
        stdout(&out)
    );
    let described = ok(&["jobs", "describe", "census_pred"]);
    assert!(described.contains("state: SUCCEEDED"), "{described}");
    assert!(described.contains("predictionCount: '7'"), "{described}");

    // A training job with --stream-logs: its log to the end, exit 0 on SUCCEEDED. Its
    // arguments and region come from --config (flags not given leave them as they are).
    let config = work.join("job.yaml");
    std::fs::write(
        &config,
        format!(
            "trainingInput:\n  region: europe-west1\n  args: [--train-files, {}, --eval-files, {}, --train-steps, '5']\n",
            work.join("train.csv").display(),
            work.join("eval.csv").display()
        ),
    )
    .unwrap();
    let out = cli(&[
        "jobs",
        "submit",
        "training",
        "census_train",
        "--config",
        config.to_str().unwrap(),
        "--job-dir",
        work.join("cli_job").to_str().unwrap(),
        "--stream-logs",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Exported model to"),
        "{}",
        stdout(&out)
    );
    let described = ok(&["jobs", "describe", "census_train"]);
    assert!(described.contains("region: europe-west1"), "{described}");
    // A failing one: exit non-zero, its error in the job.
    let out = cli(&[
        "jobs",
        "submit",
        "training",
        "census_bad",
        "--stream-logs",
        "--",
        "--train-files",
        work.join("missing.csv").to_str().unwrap(),
        "--eval-files",
        work.join("eval.csv").to_str().unwrap(),
        "--train-steps",
        "5",
        "--job-dir",
        work.join("bad_job").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let described = ok(&["jobs", "describe", "census_bad"]);
    assert!(described.contains("state: FAILED"), "{described}");
    assert!(described.contains("missing.csv"), "{described}");
    let listed = ok(&["jobs", "list"]);
    assert!(listed.starts_with("JOB_ID"), "{listed}");
    assert_eq!(listed.lines().count(), 4, "{listed}");

    // A server error: its status and message on one line.
    let out = cli(&["models", "create", "census"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "ERROR: (mlengine.models.create) ALREADY_EXISTS: Field: model.name Error: A model with the same name already exists."
    );

    // --async returns the operation, which `operations describe` shows.
    let out = ok(&["versions", "delete", "v1", "--model", "census", "--async"]);
    let op = out
        .lines()
        .find_map(|l| l.strip_prefix("name: "))
        .unwrap()
        .to_string();
    wait_until("the deletion to finish", || {
        ok(&["operations", "describe", &op]).contains("done: true")
    });
    ok(&["models", "delete", "census"]);
    assert_eq!(ok(&["models", "list"]).trim(), "NAME  DEFAULT_VERSION_NAME");
}

/// A management call over plain HTTP; the answer's status and JSON.
fn call(server: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = http(
        &server.addr,
        method,
        &format!("/v1/projects/p/{path}"),
        &[],
        body.to_string().as_bytes(),
    )
    .unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn wait_state(server: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(&format!("{path} to reach its state"), || {
        last = call(server, "GET", path, Value::Null).1;
        done(&last)
    });
    last
}

#[test]
fn state_survives_sigkill_during_a_version_create_and_a_job() {
    let tmp = tempfile::tempdir().unwrap();
    let work = work_dir(tmp.path());
    let mut server = managed_server(tmp.path(), &[]);
    call(&server, "POST", "models", json!({"name": "census"}));
    let (_, op) = call(
        &server,
        "POST",
        "models/census/versions",
        json!({"name": "v1", "deploymentUri": work.join("export1")}),
    );
    let v1_op = op["name"]
        .as_str()
        .unwrap()
        .replace("projects/p/", "projects/_/");
    let op_path = op["name"].as_str().unwrap().replace("projects/p/", "");
    wait_state(&server, &op_path, |o| o["done"] == true);
    let job_dir = work.join("long_job");
    let train_args = |steps: &str| {
        json!([
            "--train-files",
            work.join("train.csv"),
            "--eval-files",
            work.join("eval.csv"),
            "--train-steps",
            steps,
            "--save-checkpoints-steps",
            "20"
        ])
    };
    call(
        &server,
        "POST",
        "jobs",
        json!({"jobId": "long", "trainingInput": {"jobDir": job_dir, "args": train_args("1000000000")}}),
    );
    wait_state(&server, "jobs/long", |j| j["state"] == "RUNNING");
    wait_until("the job's first checkpoint", || {
        job_dir.join("checkpoint.json").is_file()
    });
    // The trainer takes only the CPU serving leaves: nice 19 (field 19) under SCHED_IDLE (5,
    // field 41).
    let trainers = std::process::Command::new("pgrep")
        .args(["-f", job_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let trainers = String::from_utf8(trainers.stdout).unwrap();
    let pids: Vec<&str> = trainers.split_whitespace().collect();
    assert_eq!(pids.len(), 1, "one trainer: {trainers}");
    let stat = PathBuf::from(format!("/proc/{}/stat", pids[0]));
    assert_eq!(
        (proc_stat_field(&stat, 19), proc_stat_field(&stat, 41)),
        (Some(19), Some(5))
    );
    // A version creation in flight, then SIGKILL.
    let (status, op) = call(
        &server,
        "POST",
        "models/census/versions",
        json!({"name": "v2", "deploymentUri": work.join("export2")}),
    );
    assert_eq!(status, 200, "{op}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // The job's trainer died with the server.
    wait_until("the orphaned trainer to be gone", || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", job_dir.to_str().unwrap()])
            .output()
            .unwrap();
        !out.status.success()
    });

    let server = managed_server(tmp.path(), &[]);
    // READY versions serve again; the interrupted creation is finished one way or the other.
    let (status, answer) = server.post_json(
        "/v1/projects/p/models/census/versions/v1:predict",
        &json!({"instances": [census_instance()]}),
    );
    assert_eq!(status, 200, "{answer}");
    let v2 = wait_state(&server, "models/census/versions/v2", |v| {
        v["state"] == "READY" || v["state"] == "FAILED"
    });
    assert_eq!(v2["state"], "READY", "{v2}");
    let op_path = op["name"].as_str().unwrap().replace("projects/p/", "");
    let op = wait_state(&server, &op_path, |o| o["done"] == true);
    assert_eq!(op["response"]["state"], "READY", "{op}");
    // The running job is failed, saying why; resubmitted, it resumes from its checkpoints.
    let (_, job) = call(&server, "GET", "jobs/long", Value::Null);
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(
        job["errorMessage"]
            .as_str()
            .unwrap()
            .contains("the server restarted"),
        "{job}"
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(job_dir.join("checkpoint.json")).unwrap()).unwrap();
    let step = index["state"]["global_step"].as_u64().unwrap();
    call(
        &server,
        "POST",
        "jobs",
        json!({"jobId": "long_again", "trainingInput": {"jobDir": job_dir, "args": train_args(&(step + 5).to_string())}}),
    );
    let job = wait_state(&server, "jobs/long_again", |j| {
        matches!(j["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
    });
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    let (_, log) = call(&server, "GET", "jobs/long_again/logs", Value::Null);
    assert!(
        log["text"]
            .as_str()
            .unwrap()
            .contains("resuming from the latest checkpoint"),
        "{log}"
    );
    // The job id is never reused.
    let (status, _) = call(
        &server,
        "POST",
        "jobs",
        json!({"jobId": "long", "trainingInput": {}}),
    );
    assert_eq!(status, 409);

    // Killed between a version's last write and its operation's (as if): the restart finishes
    // the operation from the version's state instead of leaving it open for gcloud to poll.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    {
        use mlengine::control::store::{Kind, Store};
        let store = Store::open(&tmp.path().join("state").join("state.db")).unwrap();
        let mut op = store.get(Kind::Operation, &v1_op).unwrap().unwrap();
        let o = op.as_object_mut().unwrap();
        o.remove("done");
        o.remove("response");
        store
            .transaction(|tx| tx.put(Kind::Operation, &v1_op, "_", &op))
            .unwrap();
    }
    let server = managed_server(tmp.path(), &[]);
    let path = v1_op.replace("projects/_/", "");
    let op = wait_state(&server, &path, |o| o["done"] == true);
    assert_eq!(op["response"]["state"], "READY", "{op}");
    assert_eq!(
        op["response"]["name"],
        "projects/p/models/census/versions/v1"
    );
}

/// A wheel of a user's trainer package (`trainer.task`, as the walkthrough's), built with
/// Python's zipfile: the module writes its arguments, job id and whether it may use transparent
/// huge pages into the job-dir, says hello, and fails when given `--fail`.
fn trainer_wheel(dir: &Path) -> PathBuf {
    let wheel = dir.join("census_trainer-0.1-py3-none-any.whl");
    let task = r#"
import json, os, sys
args = sys.argv[1:]
if "--fail" in args:
    print("boom: the trainer failed on purpose", file=sys.stderr)
    sys.exit(3)
job_dir = [a.split("=", 1)[1] for a in args if a.startswith("--job-dir=")][0]
os.makedirs(job_dir, exist_ok=True)
with open(os.path.join(job_dir, "ran.json"), "w") as f:
    thp = [l.split()[1] for l in open("/proc/self/status") if l.startswith("THP_enabled:")]
    json.dump({"args": args, "job_id": os.environ.get("CLOUD_ML_JOB_ID"), "thp": thp}, f)
print("hello from trainer.task")
"#;
    let build = r#"
import base64, hashlib, sys, zipfile
wheel, task = sys.argv[1], sys.argv[2]
files = {
    "trainer/__init__.py": "",
    "trainer/task.py": task,
    "census_trainer-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: census-trainer\nVersion: 0.1\n",
    "census_trainer-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(wheel, "w") as z:
    for name, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
        z.writestr(name, data)
    record.append("census_trainer-0.1.dist-info/RECORD,,")
    z.writestr("census_trainer-0.1.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    let out = run(std::process::Command::new("python3")
        .args(["-c", build])
        .arg(&wheel)
        .arg(task));
    assert!(out.status.success(), "{}", stderr(&out));
    wheel
}

#[test]
fn a_users_python_trainer_runs_only_with_allow_custom_code() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = trainer_wheel(tmp.path());
    let job = |id: &str, args: Value| {
        json!({"jobId": id, "trainingInput": {
            "packageUris": [wheel],
            "pythonModule": "trainer.task",
            "jobDir": tmp.path().join(id),
            "args": args,
            "region": "us-central1",
        }})
    };
    let closed = managed_server(tmp.path(), &[]);
    assert_failed_precondition(
        call(&closed, "POST", "jobs", job("closed", json!([]))),
        "--allow-custom-code",
    );
    drop(closed);

    let server = managed_server(tmp.path(), &["--allow-custom-code"]);
    // Packages are paths like any other: outside the allowed roots they are refused.
    let (status, e) = call(
        &server,
        "POST",
        "jobs",
        json!({"jobId": "outside", "trainingInput": {
            "packageUris": ["/etc/passwd"], "pythonModule": "trainer.task"}}),
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/etc/passwd"),
        "{e}"
    );

    let (status, created) = call(
        &server,
        "POST",
        "jobs",
        job("custom", json!(["--epochs", "2"])),
    );
    assert_eq!(status, 200, "{created}");
    let done = wait_state(&server, "jobs/custom", |j| {
        matches!(j["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
    });
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let ran: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("custom/ran.json")).unwrap())
            .unwrap();
    assert_eq!(ran["job_id"], "custom", "{ran}");
    assert_eq!(ran["args"][0], "--epochs", "{ran}");
    // The server runs without transparent huge pages (its memory stays flat); its jobs get
    // them back.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    assert!(status.contains("THP_enabled:\t0"), "{status}");
    let rollup =
        std::fs::read_to_string(format!("/proc/{}/smaps_rollup", server.child.id())).unwrap();
    assert!(
        rollup.contains("\nAnonHugePages:         0 kB\n"),
        "{rollup}"
    );
    assert_eq!(ran["thp"], json!(["1"]), "{ran}");
    let (_, log) = call(&server, "GET", "jobs/custom/logs", Value::Null);
    assert!(
        log["text"]
            .as_str()
            .unwrap()
            .contains("hello from trainer.task"),
        "{log}"
    );

    // A trainer that fails: the job is FAILED with the trainer's last words.
    call(
        &server,
        "POST",
        "jobs",
        job("custom_fails", json!(["--fail"])),
    );
    let failed = wait_state(&server, "jobs/custom_fails", |j| {
        matches!(j["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
    });
    assert_eq!(failed["state"], "FAILED", "{failed}");
    let message = failed["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("code 3") && message.contains("boom"),
        "{failed}"
    );
}

/// A plain web server (Python's http.server: no listing) over `dir`; killed when dropped.
struct WebServer {
    child: std::process::Child,
    url: String,
}

impl WebServer {
    fn start(dir: &Path) -> WebServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|r| r.split(' ').next());
        let url = format!(
            "http://127.0.0.1:{}",
            port.unwrap_or_else(|| panic!("{line:?}"))
        );
        WebServer { child, url }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_version_from_a_plain_web_server() {
    let tmp = tempfile::tempdir().unwrap();
    let work = work_dir(tmp.path());
    let web = WebServer::start(&work);
    let server = managed_server(tmp.path(), &[]);
    call(&server, "POST", "models", json!({"name": "census"}));
    let create = |name: &str, uri: String| {
        let (status, op) = call(
            &server,
            "POST",
            "models/census/versions",
            json!({"name": name, "deploymentUri": uri}),
        );
        assert_eq!(status, 200, "{op}");
        let op_path = op["name"].as_str().unwrap().replace("projects/p/", "");
        wait_state(&server, &op_path, |o| o["done"] == true)
    };
    let op = create("web", format!("{}/export1", web.url));
    assert_eq!(op["response"]["state"], "READY", "{op}");
    let (status, answer) = server.post_json(
        "/v1/projects/p/models/census/versions/web:predict",
        &json!({"instances": [census_instance()]}),
    );
    assert_eq!(status, 200, "{answer}");
    let op = create("missing", format!("{}/nope", web.url));
    assert!(
        op["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model.onnx"),
        "{op}"
    );
    let (_, version) = call(
        &server,
        "GET",
        "models/census/versions/missing",
        Value::Null,
    );
    assert_eq!(version["state"], "FAILED", "{version}");
}

#[test]
fn workers_without_mpi_fail_saying_why() {
    let tmp = tempfile::tempdir().unwrap();
    let server = managed_server(tmp.path(), &[]);
    // Workers need the distributed trainer: the job fails saying why.
    let (status, job) = call(
        &server,
        "POST",
        "jobs",
        json!({"jobId": "workers", "trainingInput": {
            "scaleTier": "CUSTOM", "workerCount": "2", "jobDir": tmp.path().join("w")}}),
    );
    assert_eq!(status, 200, "{job}");
    let job = wait_state(&server, "jobs/workers", |j| {
        matches!(j["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
    });
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(
        job["errorMessage"].as_str().unwrap().contains("MPI"),
        "{job}"
    );
}

#[test]
fn a_tuning_job_runs_its_trials_through_the_tuner() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let server = managed_server(tmp.path(), &[]);
    let job_dir = tmp.path().join("tuning");
    let input = |spec: Value| {
        json!({"scaleTier": "BASIC", "jobDir": job_dir, "hyperparameters": spec, "args": [
            format!("--train-files={}", train.display()),
            format!("--eval-files={}", eval.display()),
            "--train-steps=50"
        ]})
    };
    // A bad spec is refused before anything is stored, naming the field and the rule.
    let (status, e) = call(
        &server,
        "POST",
        "jobs",
        json!({"jobId": "bad", "trainingInput": input(json!({"maxTrials": 2, "params": [
            {"parameterName": "learning-rate", "type": "DOUBLE", "minValue": 0, "maxValue": 1,
             "scaleType": "UNIT_LOG_SCALE"}]}))}),
    );
    assert_eq!(status, 400, "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("job.training_input.hyperparameters.params[0].minValue")
            && message.contains("log scales"),
        "{e}"
    );
    assert_eq!(call(&server, "GET", "jobs/bad", Value::Null).0, 404);
    // Grid search over num-layers 1..2: two trials of mlengine train, then trainingOutput.
    let (status, job) = call(
        &server,
        "POST",
        "jobs",
        json!({"jobId": "tune", "trainingInput": input(json!({
            "goal": "MAXIMIZE", "hyperparameterMetricTag": "auc", "algorithm": "GRID_SEARCH",
            "maxTrials": 4, "maxParallelTrials": 2, "params": [
                {"parameterName": "num-layers", "type": "INTEGER", "minValue": 1, "maxValue": 2}]
        }))}),
    );
    assert_eq!(status, 200, "{job}");
    let job = wait_state(&server, "jobs/tune", |j| {
        matches!(j["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
    });
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
    let out = &job["trainingOutput"];
    assert_eq!(out["isHyperparameterTuningJob"], true, "{job}");
    assert_eq!(out["completedTrialCount"], "2", "{job}");
    assert_eq!(out["hyperparameterMetricTag"], "auc");
    let trials = out["trials"].as_array().unwrap();
    let mut layers: Vec<&str> = trials
        .iter()
        .map(|t| t["hyperparameters"]["num-layers"].as_str().unwrap())
        .collect();
    layers.sort();
    assert_eq!(layers, ["1", "2"]);
    for t in trials {
        assert_eq!(t["finalMetric"]["trainingStep"], "50", "{t}");
        let dir = job_dir.join(t["trialId"].as_str().unwrap());
        assert_eq!(exported_versions(&dir).len(), 1);
    }
    // The trials carry the job's name: a second job queued with this jobDir before the first
    // ran would be refused by the tuner instead of taking them as its own (tests/tune.rs).
    let study: Value =
        serde_json::from_slice(&std::fs::read(job_dir.join("hyperparameter_tuning.json")).unwrap())
            .unwrap();
    assert_eq!(study["studyId"], "tune", "{study}");
    // Another job in the same jobDir would take these trials as its own: refused.
    assert_failed_precondition(
        call(
            &server,
            "POST",
            "jobs",
            json!({"jobId": "again", "trainingInput": input(json!({
                "goal": "MAXIMIZE", "hyperparameterMetricTag": "auc", "maxTrials": 1, "params": [
                    {"parameterName": "num-layers", "type": "INTEGER", "minValue": 1, "maxValue": 2}]
            }))}),
        ),
        "already holds the trials of an earlier tuning job",
    );
}

/// A 400 FAILED_PRECONDITION answer whose message holds `needle`.
fn assert_failed_precondition((status, e): (u16, Value), needle: &str) {
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["status"], "FAILED_PRECONDITION", "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{e}");
}

/// A management call's raw answer, for paths `call` cannot build.
fn raw_call(server: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, text) =
        http(&server.addr, method, path, &[], body.to_string().as_bytes()).unwrap();
    let answer = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, answer)
}

#[test]
fn odd_requests_are_refused_before_anything_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = managed_server(tmp.path(), &[]);
    let outside = tempfile::tempdir().unwrap();
    let inside = |name: &str| tmp.path().join(name);
    assert_eq!(
        call(&server, "POST", "models", json!({"name": "m1"})).0,
        200
    );
    let refused = |(status, e): (u16, Value), field: &str| {
        assert_eq!(status, 400, "{e}");
        assert_eq!(e["error"]["status"], "INVALID_ARGUMENT", "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message:?} lacks {field:?}");
    };

    // A Version field of the wrong JSON type is refused at once (a later patch walks into it).
    refused(
        call(
            &server,
            "POST",
            "models/m1/versions",
            json!({"name": "v1", "deploymentUri": inside("x"), "manualScaling": 3}),
        ),
        "version.manual_scaling",
    );
    // null is any field's default, as proto3's JSON reads it (the version fails to load: its
    // folder does not exist).
    let (status, op) = call(
        &server,
        "POST",
        "models/m1/versions",
        json!({"name": "v0", "deploymentUri": inside("x"), "manualScaling": null, "labels": null}),
    );
    assert_eq!(status, 200, "{op}");
    // A patch with one bad mask field changes nothing, the good fields included.
    refused(
        call(
            &server,
            "PATCH",
            "models/m1?updateMask=description,bogus",
            json!({"description": "new"}),
        ),
        "bogus",
    );
    let (_, model) = call(&server, "GET", "models/m1", Value::Null);
    assert!(model.get("description").is_none(), "{model}");

    // Every value of a many-valued trainer flag is held to the roots, not only the first.
    let args = json!([
        "--train-files",
        inside("train.csv"),
        outside.path().join("secret.csv"),
        "--eval-files",
        inside("eval.csv")
    ]);
    refused(
        call(
            &server,
            "POST",
            "jobs",
            json!({"jobId": "escape", "trainingInput": {"jobDir": inside("jd"), "args": args}}),
        ),
        "outside the allowed storage roots",
    );
    // A comma would split one input path into two for batch prediction.
    let sneaky = format!(
        "{},{}",
        inside("in.json").display(),
        outside.path().join("secret.json").display()
    );
    refused(
        call(
            &server,
            "POST",
            "jobs",
            json!({"jobId": "comma", "predictionInput": {"dataFormat": "JSON",
                "modelName": "projects/p/models/m1", "inputPaths": [sneaky],
                "outputPath": inside("out")}}),
        ),
        "holds a comma",
    );
    // A job patch needs a mask, as the model and version patches do.
    let (status, job) = call(
        &server,
        "POST",
        "jobs",
        json!({"jobId": "p1", "trainingInput": {"jobDir": inside("jd1"),
            "args": ["--train-files", inside("none.csv"), "--eval-files", inside("none.csv")]}}),
    );
    assert_eq!(status, 200, "{job}");
    refused(
        call(&server, "PATCH", "jobs/p1", json!({"labels": {"a": "b"}})),
        "update_mask",
    );

    // A project id that is no id is refused, in Google's envelope, not echoed into the JSON.
    let (status, e) = raw_call(&server, "GET", "/v1/projects/a\"b/models", Value::Null);
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT", "{e}");
    // Names come back under the project asked for.
    let (_, model) = raw_call(
        &server,
        "GET",
        "/v1/projects/my-proj.x:y/models/m1",
        Value::Null,
    );
    assert_eq!(model["name"], "projects/my-proj.x:y/models/m1", "{model}");

    // operations.cancel: a done operation answers {}; an unknown one 404.
    let (status, op) = call(
        &server,
        "PATCH",
        "models/m1?updateMask=description",
        json!({"description": "d"}),
    );
    assert_eq!((status, &op["done"]), (200, &json!(true)), "{op}");
    let id = op["name"].as_str().unwrap().rsplit('/').next().unwrap();
    let (status, answer) = call(
        &server,
        "POST",
        &format!("operations/{id}:cancel"),
        json!({}),
    );
    assert_eq!((status, answer), (200, json!({})));
    let (status, e) = call(&server, "POST", "operations/nosuch:cancel", json!({}));
    assert_eq!(
        (status, &e["error"]["status"]),
        (404, &json!("NOT_FOUND")),
        "{e}"
    );
    // A management path this server lacks answers in the same envelope.
    let (status, e) = call(&server, "POST", "models/m1:frobnicate", json!({}));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT", "{e}");
}

/// A 400 INVALID_ARGUMENT answer whose message holds every needle.
fn assert_invalid((status, e): (u16, Value), needles: &[&str]) {
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT", "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

/// The bundled model copied below `tmp` (inside the allowed roots), as a version's origin.
fn bundled_origin(tmp: &Path) -> PathBuf {
    let dest = tmp.join("origin");
    std::fs::create_dir_all(&dest).unwrap();
    for f in ["model.onnx", "model.json"] {
        std::fs::copy(bundled_version().join(f), dest.join(f)).unwrap();
    }
    dest
}

/// Model `m` with a READY version `v1`, its default.
fn model_with_version(server: &Server, tmp: &Path) {
    assert_eq!(call(server, "POST", "models", json!({"name": "m"})).0, 200);
    let (status, op) = call(
        server,
        "POST",
        "models/m/versions",
        json!({"name": "v1", "deploymentUri": bundled_origin(tmp)}),
    );
    assert_eq!(status, 200, "{op}");
    let v = wait_state(server, "models/m/versions/v1", |v| v["state"] != "CREATING");
    assert_eq!(v["state"], "READY", "{v}");
}

#[test]
fn tuned_path_flags_of_mlengine_train_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = managed_server(tmp.path(), &[]);
    let outside = tempfile::tempdir().unwrap();
    // A trial's `--{parameterName}={value}` comes after the job's args, and the trainer takes
    // a repeated flag's last value: a tuned path flag would escape the allowed roots.
    for (i, flag) in ["job-dir", "train-files", "eval-files"].iter().enumerate() {
        let id = format!("escape_{i}");
        let (status, e) = call(
            &server,
            "POST",
            "jobs",
            json!({"jobId": id, "trainingInput": {
                "jobDir": tmp.path().join(format!("tuning_{i}")),
                "args": ["--train-files", tmp.path().join("t.csv"),
                         "--eval-files", tmp.path().join("e.csv")],
                "hyperparameters": {"maxTrials": 1, "params": [
                    {"parameterName": "num-layers", "type": "INTEGER", "minValue": 1,
                     "maxValue": 2},
                    {"parameterName": flag, "type": "CATEGORICAL",
                     "categoricalValues": [outside.path().join("x")]}]}}}),
        );
        assert_invalid(
            (status, e),
            &[
                "job.training_input.hyperparameters.params[1].parameterName",
                "path flags cannot be tuned",
            ],
        );
        assert_eq!(
            call(&server, "GET", &format!("jobs/{id}"), Value::Null).0,
            404
        );
    }
    assert!(!outside.path().join("x").exists());
}

#[test]
fn the_cli_sends_local_paths_as_absolute_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval, _) = fixture_files(tmp.path());
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    let origin = bundled_origin(tmp.path());
    std::fs::rename(&origin, work.join("export")).unwrap();
    std::fs::copy(&train, work.join("train.csv")).unwrap();
    std::fs::copy(&eval, work.join("eval.csv")).unwrap();
    std::fs::write(
        work.join("instances.json"),
        fixture::to_json_instances(&fixture::rows(3, 5)),
    )
    .unwrap();
    let server = managed_server(tmp.path(), &[]);
    let url = format!("http://{}", server.addr);
    // Run from work/sub: every path below is relative to it.
    let ok = |args: &[&str]| {
        let out = run(bin()
            .current_dir(work.join("sub"))
            .env("MLENGINE_URL", &url)
            .env("MLENGINE_PROJECT", "p")
            .args(args));
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    };
    ok(&["models", "create", "m"]);
    ok(&[
        "versions",
        "create",
        "v1",
        "--model",
        "m",
        "--origin",
        "../export",
    ]);
    let (_, v) = call(&server, "GET", "models/m/versions/v1", Value::Null);
    assert_eq!(v["state"], "READY", "{v}");
    assert_eq!(v["deploymentUri"], json!(work.join("export")), "{v}");
    ok(&[
        "jobs",
        "submit",
        "prediction",
        "pred",
        "--model",
        "m",
        "--input-paths",
        "../inst*.json",
        "--output-path",
        "out",
        "--stream-logs",
    ]);
    assert!(work.join("sub/out").is_dir());
    let (_, job) = call(&server, "GET", "jobs/pred", Value::Null);
    assert_eq!(
        job["predictionInput"]["inputPaths"],
        json!([format!("{}/inst*.json", work.display())]),
        "{job}"
    );
    assert_eq!(job["predictionOutput"]["predictionCount"], "3", "{job}");
    ok(&[
        "jobs",
        "submit",
        "training",
        "train",
        "--job-dir",
        "job",
        "--stream-logs",
        "--",
        "--train-files",
        "../train.csv",
        "--eval-files=../eval.csv",
        "--train-steps",
        "5",
    ]);
    let (_, job) = call(&server, "GET", "jobs/train", Value::Null);
    let input = &job["trainingInput"];
    assert_eq!(input["jobDir"], json!(work.join("sub/job")), "{job}");
    assert_eq!(
        input["args"],
        json!([
            "--train-files",
            work.join("train.csv"),
            format!("--eval-files={}", work.join("eval.csv").display()),
            "--train-steps",
            "5"
        ]),
        "{job}"
    );
    assert_eq!(job["state"], "SUCCEEDED", "{job}");
}

#[test]
fn operations_list_wait_and_cancel_in_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = bundled_origin(tmp.path());
    let server = managed_server(tmp.path(), &[]);
    let url = format!("http://{}", server.addr);
    let cli = |args: &[&str]| {
        run(bin()
            .env("MLENGINE_URL", &url)
            .env("MLENGINE_PROJECT", "p")
            .args(args))
    };
    let ok = |args: &[&str]| {
        let out = cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    };
    ok(&["models", "create", "m"]);
    let op_of = |out: String| {
        out.lines()
            .find_map(|l| l.strip_prefix("name: "))
            .unwrap()
            .to_string()
    };
    let created = op_of(ok(&[
        "versions",
        "create",
        "v1",
        "--model",
        "m",
        "--origin",
        origin.to_str().unwrap(),
        "--async",
    ]));
    // wait: until done, then the operation as describe shows it.
    let waited = ok(&["operations", "wait", &created]);
    assert!(waited.contains("done: true"), "{waited}");
    assert!(waited.contains("state: READY"), "{waited}");
    let short = created.rsplit('/').next().unwrap();
    assert_eq!(ok(&["operations", "wait", short]), waited);
    // One that fails: non-zero, one line.
    let failing = op_of(ok(&[
        "versions",
        "create",
        "v2",
        "--model",
        "m",
        "--origin",
        tmp.path().join("missing").to_str().unwrap(),
        "--async",
    ]));
    let out = cli(&["operations", "wait", &failing]);
    assert_one_line_error(
        &out,
        "ERROR: (mlengine.operations.wait) FAILED_PRECONDITION",
    );
    // The failed operation is shown too, as describe shows it.
    assert!(stdout(&out).contains("done: true"), "{}", stdout(&out));
    assert!(stdout(&out).contains("error:"), "{}", stdout(&out));
    // list: every operation, newest first, with whether it is done.
    let listed = ok(&["operations", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "DONE"]
    );
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[1].starts_with(failing.rsplit('/').next().unwrap()));
    assert!(lines[2].starts_with(short) && lines[2].ends_with("True"));
    // cancel: a done operation answers as Google's does.
    ok(&["operations", "cancel", short]);
}

#[test]
fn a_model_patch_answers_the_default_version_in_full_and_patches_check_the_etag() {
    let tmp = tempfile::tempdir().unwrap();
    let server = managed_server(tmp.path(), &[]);
    model_with_version(&server, tmp.path());
    let (status, op) = call(
        &server,
        "PATCH",
        "models/m?updateMask=description",
        json!({"description": "d"}),
    );
    assert_eq!(status, 200, "{op}");
    let response = &op["response"];
    assert_eq!(response["description"], "d", "{op}");
    assert_eq!(
        response["defaultVersion"]["name"], "projects/p/models/m/versions/v1",
        "{op}"
    );
    assert_eq!(response["defaultVersion"]["isDefault"], true, "{op}");
    assert_eq!(
        response["defaultVersion"],
        call(&server, "GET", "models/m", Value::Null).1["defaultVersion"]
    );

    // A stale etag is refused (409 ABORTED) and changes nothing; the current one is taken.
    let aborted = |(status, e): (u16, Value), field: &str| {
        assert_eq!(
            (status, &e["error"]["status"]),
            (409, &json!("ABORTED")),
            "{e}"
        );
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{e}"
        );
    };
    let (_, model) = call(&server, "GET", "models/m", Value::Null);
    aborted(
        call(
            &server,
            "PATCH",
            "models/m?updateMask=description",
            json!({"description": "stale", "etag": "c3RhbGU="}),
        ),
        "model.etag",
    );
    assert_eq!(
        call(&server, "GET", "models/m", Value::Null).1["description"],
        "d"
    );
    let (status, op) = call(
        &server,
        "PATCH",
        "models/m?updateMask=description",
        json!({"description": "fresh", "etag": model["etag"]}),
    );
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["response"]["description"], "fresh");
    let (_, version) = call(&server, "GET", "models/m/versions/v1", Value::Null);
    aborted(
        call(
            &server,
            "PATCH",
            "models/m/versions/v1?updateMask=description",
            json!({"description": "stale", "etag": "c3RhbGU="}),
        ),
        "version.etag",
    );
    let (_, after) = call(&server, "GET", "models/m/versions/v1", Value::Null);
    assert!(after.get("description").is_none(), "{after}");
    let (status, op) = call(
        &server,
        "PATCH",
        "models/m/versions/v1?updateMask=description",
        json!({"description": "v", "etag": version["etag"]}),
    );
    assert_eq!(status, 200, "{op}");
    // The old etag is stale now.
    aborted(
        call(
            &server,
            "PATCH",
            "models/m/versions/v1?updateMask=description",
            json!({"description": "again", "etag": version["etag"]}),
        ),
        "version.etag",
    );
    // An empty etag is none (proto3's unset string); jobs.patch reads it the same way.
    for path in [
        "models/m?updateMask=description",
        "models/m/versions/v1?updateMask=description",
    ] {
        let (status, op) = call(
            &server,
            "PATCH",
            path,
            json!({"description": "no etag", "etag": ""}),
        );
        assert_eq!(status, 200, "{path}: {op}");
    }
}

#[test]
fn parallel_patches_get_operations_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let server = managed_server(tmp.path(), &[]);
    assert_eq!(call(&server, "POST", "models", json!({"name": "m"})).0, 200);
    let names: Vec<String> = std::thread::scope(|s| {
        let patches: Vec<_> = (0..20)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    let (status, op) = call(
                        server,
                        "PATCH",
                        "models/m?updateMask=description",
                        json!({"description": format!("d{i}")}),
                    );
                    assert_eq!(status, 200, "{op}");
                    op["name"].as_str().unwrap().to_string()
                })
            })
            .collect();
        patches.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), 20, "{names:?}");
    let (_, listed) = call(&server, "GET", "operations?pageSize=100", Value::Null);
    assert_eq!(
        listed["operations"].as_array().unwrap().len(),
        20,
        "{listed}"
    );
    for name in &names {
        let id = name.rsplit('/').next().unwrap();
        let (status, op) = call(&server, "GET", &format!("operations/{id}"), Value::Null);
        assert_eq!((status, &op["name"]), (200, &json!(name)), "{op}");
    }
}

#[test]
fn jobs_refuse_unknown_and_mistyped_inputs_and_keep_the_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let server = managed_server(tmp.path(), &[]);
    let create = |body: Value| call(&server, "POST", "jobs", body);
    assert_invalid(
        create(json!({"jobId": "a", "trainingInput": "x"})),
        &["job.training_input", "an object"],
    );
    assert_invalid(
        create(json!({"jobId": "b", "trainingInput": {"bogusField": 1}})),
        &["Unknown name \"bogusField\"", "job.training_input"],
    );
    assert_invalid(
        create(json!({"jobId": "c", "trainingInput": {"args": "--train-steps 5"}})),
        &["job.training_input.args"],
    );
    assert_invalid(
        create(json!({"jobId": "d", "labels": {"a": 1}, "trainingInput": {}})),
        &["job.labels"],
    );
    assert_invalid(
        create(
            json!({"jobId": "e", "predictionInput": {"dataFormat": "JSON",
            "inputPaths": [tmp.path().join("in.json")], "outputPath": tmp.path().join("out"),
            "modelName": "projects/p/models/m", "batchSize": "many"}}),
        ),
        &["job.prediction_input.batch_size"],
    );
    assert_invalid(
        create(json!({"jobId": "f", "predictionInput": {"dataFormat": "JSON", "bogus": true}})),
        &["Unknown name \"bogus\""],
    );
    for id in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(
            call(&server, "GET", &format!("jobs/{id}"), Value::Null).0,
            404
        );
    }
    // The trainer without its required flags: clap's `error:` line comes first, its usage
    // after; the job's errorMessage keeps the reason.
    let (status, job) = create(json!({"jobId": "noargs", "trainingInput": {"scaleTier": "BASIC"}}));
    assert_eq!(status, 200, "{job}");
    let job = wait_state(&server, "jobs/noargs", |j| {
        matches!(j["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
    });
    assert_eq!(job["state"], "FAILED", "{job}");
    let message = job["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("error: the following required arguments were not provided"),
        "{message}"
    );
}

#[test]
fn filters_match_names_under_the_project_and_refuse_what_they_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let server = managed_server(tmp.path(), &[]);
    for m in ["r1", "r2", "s1"] {
        assert_eq!(call(&server, "POST", "models", json!({"name": m})).0, 200);
    }
    let names = |filter: &str| -> Vec<String> {
        let (status, listed) = call(
            &server,
            "GET",
            &format!("models?filter={filter}"),
            Value::Null,
        );
        assert_eq!(status, 200, "{listed}");
        listed["models"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| m["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names("name=projects/p/models/r2"), ["projects/p/models/r2"]);
    assert_eq!(names("name:projects/p/models/r*").len(), 2);
    assert_eq!(names("name!=projects/p/models/r2").len(), 2);
    assert!(names("name=projects/other/models/r2").is_empty());
    for bad in [
        "name=projects/p/models/r1+OR+name=projects/p/models/r2",
        "name:projects/p/models/r*+and+name!=projects/p/models/r1",
        "createTime%3C2099-01-01",
        "createTime%3E%3D2000-01-01",
        "NOT+name:x",
    ] {
        assert_invalid(
            call(&server, "GET", &format!("models?filter={bad}"), Value::Null),
            &["Field: filter"],
        );
    }
}

#[test]
fn pages_neither_repeat_nor_skip_items_created_or_deleted_between_them() {
    let tmp = tempfile::tempdir().unwrap();
    let server = managed_server(tmp.path(), &[]);
    assert_eq!(call(&server, "POST", "models", json!({"name": "m"})).0, 200);
    let patch = || {
        let (status, op) = call(
            &server,
            "PATCH",
            "models/m?updateMask=description",
            json!({"description": "d"}),
        );
        assert_eq!(status, 200, "{op}");
        op["name"].as_str().unwrap().to_string()
    };
    let ops: Vec<String> = (0..3).map(|_| patch()).collect();
    let names = |page: &Value, key: &str| -> Vec<String> {
        page[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Operations are newest first: one created between two pages goes before the first.
    let (_, first) = call(&server, "GET", "operations?pageSize=2", Value::Null);
    assert_eq!(
        names(&first, "operations"),
        [ops[2].clone(), ops[1].clone()]
    );
    patch();
    let token = first["nextPageToken"].as_str().unwrap();
    let (_, second) = call(
        &server,
        "GET",
        &format!("operations?pageSize=2&pageToken={token}"),
        Value::Null,
    );
    assert_eq!(names(&second, "operations"), [ops[0].clone()], "{second}");
    assert!(second.get("nextPageToken").is_none(), "{second}");
    // Models are oldest first: one deleted between two pages leaves the next in place.
    for m in ["a", "b", "c"] {
        assert_eq!(call(&server, "POST", "models", json!({"name": m})).0, 200);
    }
    let (_, first) = call(&server, "GET", "models?pageSize=2", Value::Null);
    assert_eq!(
        names(&first, "models"),
        ["projects/p/models/m", "projects/p/models/a"]
    );
    assert_eq!(call(&server, "DELETE", "models/m", Value::Null).0, 200);
    let token = first["nextPageToken"].as_str().unwrap();
    let (_, second) = call(
        &server,
        "GET",
        &format!("models?pageSize=2&pageToken={token}"),
        Value::Null,
    );
    assert_eq!(
        names(&second, "models"),
        ["projects/p/models/b", "projects/p/models/c"],
        "{second}"
    );
}

#[test]
fn the_cli_quotes_timestamps_and_refuses_ids_that_name_other_resources() {
    let tmp = tempfile::tempdir().unwrap();
    let server = managed_server(tmp.path(), &[]);
    model_with_version(&server, tmp.path());
    let url = format!("http://{}", server.addr);
    let cli = |args: &[&str]| {
        run(bin()
            .env("MLENGINE_URL", &url)
            .env("MLENGINE_PROJECT", "p")
            .args(args))
    };
    let out = cli(&["models", "describe", "m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let described = stdout(&out);
    let line = described
        .lines()
        .find(|l| l.trim_start().starts_with("createTime: "))
        .unwrap();
    assert!(
        line.ends_with("Z'") && line.contains(": '20"),
        "{described}"
    );
    // A name in full, of the right kind, is taken.
    let out = cli(&["models", "describe", "projects/p/models/m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&[
        "versions",
        "describe",
        "projects/p/models/m/versions/v1",
        "--model",
        "m",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A path that reaches another resource is not.
    for args in [
        &["models", "describe", "m/versions/v1"][..],
        &["models", "delete", "m/versions/v1"],
        &["models", "delete", "projects/p/models/m/versions/v1"],
        &["versions", "delete", "v1/../v1", "--model", "m"],
        &["versions", "describe", "v1", "--model", "m/versions/v1"],
        &["jobs", "describe", "projects/p/models/m"],
        &["operations", "describe", "m:cancel"],
    ] {
        let out = cli(args);
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("is neither an id nor a full name"),
            "{}",
            stderr(&out)
        );
    }
    let (_, v) = call(&server, "GET", "models/m/versions/v1", Value::Null);
    assert_eq!(v["state"], "READY", "{v}");
}
