//! `mlengine batch-predict` and online `mlengine predict --url`: local files and wildcards, a real
//! S3-compatible server, sharded runs, bad lines, interrupted runs, and equality with the
//! server's online predictions.

mod common;

use std::path::Path;

use common::moto::Moto;
use common::*;
use mlengine::census::fixture;
use serde_json::{json, Value};

fn model_base() -> String {
    root()
        .join("models/census/export/Servo")
        .to_string_lossy()
        .into_owned()
}

/// Writes the fixture instances as JSON lines, with `bad` lines inserted at their indices.
fn write_lines(path: &Path, rows: usize, seed: u64, bad: &[(usize, &str)]) -> Vec<String> {
    let mut lines: Vec<String> = fixture::to_json_instances(&fixture::rows(rows, seed))
        .lines()
        .map(String::from)
        .collect();
    for (i, text) in bad {
        lines.insert(*i, text.to_string());
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    lines
}

fn batch(args: &[&str]) -> std::process::Output {
    run(bin()
        .arg("batch-predict")
        .arg("--model-dir")
        .arg(model_base())
        .args(args))
}

/// The output files' names, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The same predictions line by line: identical keys and classes, floats within 1e-5 relative. ONNX
/// Runtime's CPU kernels round a row's float arithmetic differently depending on its position in
/// a batch (every fourth row of the census model's logit differs in the last bit), so runs that
/// group rows differently agree to float precision, not bit for bit.
fn assert_same_predictions(got: &[String], want: &[String], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: line counts");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w): (Value, Value) = (
            serde_json::from_str(g).unwrap(),
            serde_json::from_str(w).unwrap(),
        );
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&g), keys(&w), "{what}: line {i}");
        assert_eq!(g["classes"], w["classes"], "{what}: line {i}");
        for k in ["probabilities", "logits", "logistic"] {
            for (a, b) in g[k]
                .as_array()
                .unwrap()
                .iter()
                .zip(w[k].as_array().unwrap())
            {
                let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                    "{what}: line {i} {k}: {a} vs {b}"
                );
            }
        }
    }
}

/// The result lines of every results shard, in shard order.
fn results(dir: &Path) -> Vec<String> {
    files(dir)
        .iter()
        .filter(|n| n.starts_with("prediction.results-"))
        .flat_map(|n| {
            std::fs::read_to_string(dir.join(n))
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn local_files_wildcards_bad_lines_and_equality_with_online_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_lines(
        &tmp.path().join("census-a.json"),
        150,
        1,
        &[(3, "{not json"), (10, r#"{"age": "old"}"#)],
    );
    let b = write_lines(
        &tmp.path().join("census-b.json"),
        120,
        2,
        &[(0, r#"{"age": "old"}"#)],
    );
    std::fs::write(tmp.path().join("ignored.txt"), "not matched").unwrap();
    let out = tmp.path().join("out");
    let pattern = format!("{}/census-*.json", tmp.path().display());
    let o = batch(&[
        "--input-paths",
        &pattern,
        "--output-path",
        out.to_str().unwrap(),
        "--batch-size",
        "16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("predictionCount: 270, errorCount: 3"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        files(&out),
        [
            "prediction.errors_stats-00000-of-00001",
            "prediction.results-00000-of-00001",
            "prediction.summary-00000-of-00001.json"
        ]
    );
    let errors =
        std::fs::read_to_string(out.join("prediction.errors_stats-00000-of-00001")).unwrap();
    assert!(
        errors.contains("('input \\'age\\': expected an integer (int64), got \"old\"', 2)"),
        "{errors}"
    );
    assert!(errors.contains("invalid JSON"), "{errors}");
    let summary: Value = serde_json::from_slice(
        &std::fs::read(out.join("prediction.summary-00000-of-00001.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["predictionCount"], "270");
    assert_eq!(summary["errorCount"], "3");

    // The same instances online give the same objects, in input order.
    let server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    let good: Vec<Value> = a
        .iter()
        .chain(&b)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("workclass").is_some())
        .collect();
    assert_eq!(good.len(), 270);
    let (status, online) = server.post_json(
        "/v1/projects/p/models/census:predict",
        &json!({"instances": good}),
    );
    assert_eq!(status, 200);
    let online: Vec<String> = online["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    assert_same_predictions(&results(&out), &online, "batch vs online");

    // mlengine predict --url (gcloud ml-engine predict) prints the same lines.
    let instances = tmp.path().join("good.json");
    std::fs::write(
        &instances,
        good.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let o = run(bin()
        .args([
            "predict",
            "--url",
            &format!("http://{}", server.addr),
            "--json-instances",
        ])
        .arg(&instances));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_predictions(
        &stdout(&o).lines().map(String::from).collect::<Vec<_>>(),
        &online,
        "predict --url vs online",
    );
    let o = run(bin()
        .args([
            "predict",
            "--url",
            &format!("http://{}", server.addr),
            "--version",
            "v9",
            "--json-instances",
        ])
        .arg(&instances));
    assert_one_line_error(
        &o,
        "the server answered 404: model 'census' has no version label 'v9'",
    );

    // A re-run replaces the output.
    std::fs::write(tmp.path().join("census-b.json"), "").unwrap();
    let o = batch(&[
        "--input-paths",
        &pattern,
        "--output-path",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(results(&out).len(), 150);
}

#[test]
fn sharded_runs_union_to_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    write_lines(
        &tmp.path().join("x.json"),
        400,
        3,
        &[(17, "[1, 2"), (300, "{}")],
    );
    write_lines(&tmp.path().join("y.json"), 77, 4, &[]);
    let inputs = format!("{0}/x.json,{0}/y.json", tmp.path().display());
    let single = tmp.path().join("single");
    let o = batch(&[
        "--input-paths",
        &inputs,
        "--output-path",
        single.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = results(&single);
    assert_eq!(expected.len(), 477);
    // A file named twice, however spelled, is read once.
    let twice = tmp.path().join("twice");
    let o = batch(&[
        "--input-paths",
        &format!("{inputs},{}/./x.json", tmp.path().display()),
        "--output-path",
        twice.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_predictions(&results(&twice), &expected, "a file named twice");
    // Each split is run into the single run's output: a re-run replaces the output, the files
    // of a split into another number of shards included, but nothing below it (another job's).
    let nested = single.join("nested/prediction.results-00000-of-00007");
    std::fs::create_dir_all(nested.parent().unwrap()).unwrap();
    std::fs::write(&nested, "another job's output\n").unwrap();
    for count in [2usize, 3] {
        let out = single.clone();
        let mut errors = 0;
        for index in 0..count {
            // The worker index comes from the variable a Kubernetes Indexed Job sets.
            let o = run(bin()
                .env("JOB_COMPLETION_INDEX", index.to_string())
                .env("MLENGINE_WORKER_COUNT", count.to_string())
                .args([
                    "batch-predict",
                    "--model-dir",
                    &model_base(),
                    "--input-paths",
                    &inputs,
                    "--output-path",
                    out.to_str().unwrap(),
                    "--batch-size",
                    "7",
                ]));
            assert!(o.status.success(), "{}", stderr(&o));
            let summary: Value = serde_json::from_slice(
                &std::fs::read(
                    out.join(format!("prediction.summary-{index:05}-of-{count:05}.json")),
                )
                .unwrap(),
            )
            .unwrap();
            errors += summary["errorCount"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
        assert_same_predictions(&results(&out), &expected, &format!("{count} workers"));
        assert_eq!(errors, 2, "{count} workers");
        for base in [
            "prediction.results-",
            "prediction.errors_stats-",
            "prediction.summary-",
        ] {
            assert_eq!(
                files(&out).iter().filter(|n| n.starts_with(base)).count(),
                count,
                "{base}: {:?}",
                files(&out)
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(&nested).unwrap(),
        "another job's output\n"
    );
}

#[test]
fn fatal_errors_are_one_line_and_publish_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.json");
    write_lines(&input, 10, 5, &[]);
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let out = tmp.path().join("out");
    let o = run(bin().args([
        "batch-predict",
        "--model-dir",
        "/nonexistent/model",
        "--input-paths",
        input.to_str().unwrap(),
        "--output-path",
        out.to_str().unwrap(),
    ]));
    assert_one_line_error(&o, "--model-dir /nonexistent/model does not exist");
    let o = batch(&[
        "--input-paths",
        "/nonexistent/in.json",
        "--output-path",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "cannot read /nonexistent/in.json");
    // A read-only output is refused before anything is scored.
    let o = batch(&[
        "--input-paths",
        input.to_str().unwrap(),
        "--output-path",
        "HTTPS://127.0.0.1:9/out",
    ]);
    assert_one_line_error(&o, "http(s) storage is read-only");
    let o = batch(&[
        "--input-paths",
        &format!("{}/*.csv", tmp.path().display()),
        "--output-path",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "no files match");
    let o = batch(&[
        "--input-paths",
        input.to_str().unwrap(),
        "--output-path",
        blocker.join("out").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).lines().count() == 1 && stderr(&o).starts_with("error: "),
        "{}",
        stderr(&o)
    );
    let o = batch(&[
        "--input-paths",
        input.to_str().unwrap(),
        "--output-path",
        out.to_str().unwrap(),
        "--worker-index",
        "2",
        "--worker-count",
        "2",
    ]);
    assert_one_line_error(&o, "--worker-index 2 must be below --worker-count 2");
    // A session count past any machine is refused before a thread is started for it.
    for count in ["0", "100000", "9223372036854775808"] {
        let o = batch(&[
            "--input-paths",
            input.to_str().unwrap(),
            "--output-path",
            out.to_str().unwrap(),
            "--max-worker-count",
            count,
        ]);
        assert_one_line_error(
            &o,
            &format!("--max-worker-count must be between 1 and 256, got {count}"),
        );
    }
    let o = batch(&[
        "--input-paths",
        input.to_str().unwrap(),
        "--output-path",
        out.to_str().unwrap(),
        "--data-format",
        "TF_RECORD",
    ]);
    assert_usage_error(&o, "invalid value 'TF_RECORD'");
    assert!(results(&out).is_empty());
}

#[test]
fn an_interrupted_run_leaves_nothing_that_looks_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("big.json");
    let line = census_instance().to_string();
    let mut text = String::with_capacity(line.len() * 300_001);
    for _ in 0..300_000 {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let out = tmp.path().join("out");
    let mut child = bin()
        .args([
            "batch-predict",
            "--model-dir",
            &model_base(),
            "--input-paths",
            input.to_str().unwrap(),
            "--output-path",
            out.to_str().unwrap(),
            "--max-worker-count",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has started writing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !out.join("_temporary").exists() {
        assert!(std::time::Instant::now() < deadline, "never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before it was interrupted; make the input larger"
    );
    let visible: Vec<String> = files(&out)
        .into_iter()
        .filter(|n| n.starts_with("prediction."))
        .collect();
    assert!(
        visible.is_empty(),
        "an interrupted run published {visible:?}"
    );
    // Running again completes and publishes.
    let o = batch(&[
        "--input-paths",
        input.to_str().unwrap(),
        "--output-path",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("predictionCount: 300000, errorCount: 0"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn s3_inputs_model_and_outputs_through_a_real_s3_server() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = Moto::start();
    s3.tool(&["mb", "bucket"]);
    for (name, seed) in [("a.json", 6), ("b.json", 7)] {
        let local = tmp.path().join(name);
        write_lines(&local, 60, seed, &[(5, "oops")]);
        s3.tool(&[
            "put",
            "bucket",
            &format!("data/{name}"),
            local.to_str().unwrap(),
        ]);
    }
    let version = bundled_version();
    let v = version.file_name().unwrap().to_str().unwrap();
    s3.tool(&[
        "put",
        "bucket",
        &format!("models/census/{v}/model.onnx"),
        version.join("model.onnx").to_str().unwrap(),
    ]);

    // Model, inputs (with a wildcard) and output all in the bucket.
    let o = run(s3.env(&mut bin()).args([
        "batch-predict",
        "--model-dir",
        "s3://bucket/models/census",
        "--input-paths",
        "s3://bucket/data/*.json",
        "--output-path",
        "s3://bucket/predictions",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("predictionCount: 120, errorCount: 2"),
        "{}",
        stdout(&o)
    );
    let keys: Vec<String> = s3
        .tool(&["ls", "bucket", "predictions/"])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        keys,
        [
            "predictions/prediction.errors_stats-00000-of-00001",
            "predictions/prediction.results-00000-of-00001",
            "predictions/prediction.summary-00000-of-00001.json"
        ]
    );
    let remote_results = s3.tool(&[
        "get",
        "bucket",
        "predictions/prediction.results-00000-of-00001",
    ]);

    // The same run on local copies gives the same results.
    let out = tmp.path().join("out");
    let o = batch(&[
        "--input-paths",
        &format!("{0}/a.json,{0}/b.json", tmp.path().display()),
        "--output-path",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        remote_results.lines().map(String::from).collect::<Vec<_>>(),
        results(&out)
    );

    // `train` reads s3:// files and `predict --model-dir` takes the bucket's model.
    let (train, eval, _) = fixture_files(tmp.path());
    s3.tool(&[
        "put",
        "bucket",
        "census/adult.data",
        train.to_str().unwrap(),
    ]);
    s3.tool(&["put", "bucket", "census/adult.test", eval.to_str().unwrap()]);
    let job = tmp.path().join("job");
    let o = run(s3
        .env(&mut bin())
        .args([
            "train",
            "--train-files",
            "s3://bucket/census/adult.data",
            "--eval-files",
            "s3://bucket/census/adult.test",
            "--train-steps",
            "5",
            "--job-dir",
        ])
        .arg(&job));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(s3
        .env(&mut bin())
        .args([
            "predict",
            "--model-dir",
            "s3://bucket/models/census",
            "--json-instances",
        ])
        .arg(tmp.path().join("a.json")));
    assert!(!o.status.success(), "a.json holds a bad line");
    assert_one_line_error(&o, "a.json:6: invalid JSON");
    let o = run(s3
        .env(&mut bin())
        .args([
            "train",
            "--train-files",
            "s3://bucket/census/missing.csv",
            "--eval-files",
            "s3://bucket/census/adult.test",
            "--train-steps",
            "5",
            "--job-dir",
        ])
        .arg(tmp.path().join("job2")));
    assert_one_line_error(&o, "cannot read s3://bucket/census/missing.csv");
}

#[test]
fn serve_watches_a_bucket_prefix() {
    let s3 = Moto::start();
    s3.tool(&["mb", "bucket"]);
    let model = bundled_version().join("model.onnx");
    let model = model.to_str().unwrap();
    s3.tool(&["put", "bucket", "models/census/1/model.onnx", model]);
    let mut cmd = bin();
    s3.env(&mut cmd).arg("serve").args(LOOPBACK_ANY_PORT).args([
        "--model-base-path",
        "s3://bucket/models/census",
        "--file-system-poll-wait-seconds",
        "0.1",
    ]);
    let server = Server::spawn(cmd);
    let version = || -> Option<String> {
        let (status, text) = server.post(
            "/v1/projects/p/locations/l/endpoints/census:predict",
            &json!({"instances": [census_instance()]}).to_string(),
        );
        (status == 200).then(|| {
            serde_json::from_str::<Value>(&text).unwrap()["deployedModelId"]
                .as_str()
                .unwrap()
                .to_string()
        })
    };
    let wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while version().as_deref() != Some(want) {
            assert!(
                std::time::Instant::now() < deadline,
                "version {want} never served"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for("1");
    // An object whose key no path can name (an empty segment) does not hide the others.
    s3.tool(&["put", "bucket", "models/census/notes//x.txt", model]);
    s3.tool(&["put", "bucket", "models/census/2/model.onnx", model]);
    wait_for("2");
    s3.tool(&["rm", "bucket", "models/census/2/model.onnx"]);
    wait_for("1");
}

#[test]
fn failures_are_located_counted_against_a_bound_and_joined_by_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let summary = |dir: &Path| -> Value {
        serde_json::from_slice(
            &std::fs::read(dir.join("prediction.summary-00000-of-00001.json")).unwrap(),
        )
        .unwrap()
    };
    // Every line fails (the file opens with a UTF-8 byte order mark, which is not an error):
    // the command fails, and the summary says where each kind of error first happened.
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        "\u{feff}{\"age\": \"old\"}\n{not json\n\n{\"age\": \"older\"}\n",
    )
    .unwrap();
    let o = batch(&[
        "--input-paths",
        bad.to_str().unwrap(),
        "--output-path",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("predictionCount: 0, errorCount: 3"),
        "{}",
        stdout(&o)
    );
    assert_one_line_error(&o, "every one of the 3 instances failed");
    let stats = summary(&out)["errorStats"].clone();
    let at = |needle: &str| -> Vec<String> {
        stats
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {stats}"))["firstAt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(at("invalid JSON"), ["bad.json:2"]);
    // The first line parsed despite its byte order mark.
    assert_eq!(at("got \"old\""), ["bad.json:1"]);
    assert_eq!(at("got \"older\""), ["bad.json:4"]);

    // Some lines fail: within --max-error-rate the command succeeds, beyond it it fails; the
    // outputs are published either way. Inputs match a pattern in the working directory.
    write_lines(
        &tmp.path().join("in-1.json"),
        10,
        3,
        &[(4, "[1]"), (7, "[2]")],
    );
    for (rate, ok) in [("0.5", true), ("0.1", false)] {
        let o = run(bin().current_dir(tmp.path()).args([
            "batch-predict",
            "--model-dir",
            &model_base(),
            "--input-paths",
            "in-*.json",
            "--output-path",
            "mixed",
            "--max-error-rate",
            rate,
        ]));
        assert_eq!(o.status.success(), ok, "{rate}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("predictionCount: 10, errorCount: 2"),
            "{}",
            stdout(&o)
        );
        if !ok {
            assert_one_line_error(&o, "more than --max-error-rate 0.1");
        }
        assert_eq!(results(&tmp.path().join("mixed")).len(), 10);
    }
    assert_eq!(
        summary(&tmp.path().join("mixed"))["errorStats"][0]["firstAt"],
        json!(["in-1.json:5", "in-1.json:8"])
    );

    // A key field joins each prediction to its input, across bad lines.
    let keyed = tmp.path().join("keyed.json");
    let mut lines: Vec<String> = fixture::to_json_instances(&fixture::rows(5, 4))
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["id"] = json!(format!("row-{i}"));
            v.to_string()
        })
        .collect();
    lines.insert(2, r#"{"id": "row-bad", "age": 1}"#.to_string());
    lines.insert(3, r#"{"age": 1}"#.to_string());
    std::fs::write(&keyed, lines.join("\n")).unwrap();
    let kout = tmp.path().join("keyed-out");
    let o = batch(&[
        "--input-paths",
        keyed.to_str().unwrap(),
        "--output-path",
        kout.to_str().unwrap(),
        "--key-field",
        "id",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ids: Vec<String> = results(&kout)
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v.get("probabilities").is_some(), "{v}");
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids, ["row-0", "row-1", "row-2", "row-3", "row-4"]);
    let stats = summary(&kout)["errorStats"].to_string();
    assert!(stats.contains("no key field 'id'"), "{stats}");
    assert!(stats.contains("keyed.json:3"), "{stats}");
    // A key that names nothing, or one of the model's inputs (taken out of every instance, it
    // failed them all), is refused before anything runs.
    for (key, needle) in [
        ("", "--key-field must name a field"),
        ("age", "--key-field age names one of the model's inputs"),
    ] {
        let o = batch(&[
            "--input-paths",
            keyed.to_str().unwrap(),
            "--output-path",
            tmp.path().join("refused").to_str().unwrap(),
            "--key-field",
            key,
        ]);
        assert_one_line_error(&o, needle);
        assert!(!tmp.path().join("refused").exists());
    }
}
