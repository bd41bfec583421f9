//! `mlengine predict` on an exported model: Cloud ML Engine's prediction shape, the model
//! contract's input handling, and clear errors.

mod common;

use common::*;
use mlengine::census::fixture;

fn model(tmp: &std::path::Path) -> std::path::PathBuf {
    train_fixture(&tmp.join("job"), tmp, &["--train-steps", "30"])
}

#[test]
fn predictions_have_cloud_ml_engines_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let version = model(tmp.path());
    let rows = fixture::rows(20, 99);
    let instances = tmp.path().join("instances.json");
    std::fs::write(&instances, fixture::to_json_instances(&rows)).unwrap();
    // Also accept the export base and the job-dir: both resolve to the latest version.
    for dir in [
        version.clone(),
        version.parent().unwrap().to_path_buf(),
        tmp.path().join("job"),
    ] {
        let out = run(bin()
            .args(["predict", "--model-dir"])
            .arg(&dir)
            .arg("--json-instances")
            .arg(&instances));
        assert!(out.status.success(), "{}", stderr(&out));
        let lines: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 20);
        for p in &lines {
            let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["probabilities", "logits", "classes", "logistic"]);
            let probs: Vec<f64> = p["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(probs.len(), 2);
            assert!((probs[0] + probs[1] - 1.0).abs() < 1e-6, "{p}");
            let logit = p["logits"][0].as_f64().unwrap();
            let logistic = p["logistic"][0].as_f64().unwrap();
            assert!(
                (logistic - 1.0 / (1.0 + (-logit).exp())).abs() < 1e-6,
                "{p}"
            );
            assert_eq!(logistic, probs[1]);
            assert_eq!(
                p["classes"].as_i64().unwrap(),
                i64::from(probs[1] > probs[0])
            );
        }
    }
}

#[test]
fn spaces_unknown_categories_and_integral_floats_follow_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let version = model(tmp.path());
    let base = r#"{"age": 25, "workclass": " Private", "education": " Bachelors", "education_num": 13, "marital_status": " Never-married", "occupation": " Sales", "relationship": " Own-child", "race": " White", "gender": " Male", "capital_gain": 0, "capital_loss": 0, "hours_per_week": 40, "native_country": " United-States"}"#;
    let trimmed = base.replace("\" ", "\"");
    let padded = base.replace("\" Private\"", "\"  Private   \"");
    let as_floats = base
        .replace("\"age\": 25", "\"age\": 25.0")
        .replace("\"hours_per_week\": 40", "\"hours_per_week\": 40.0");
    let unknown = base
        .replace(" Private", " Astronaut")
        .replace(" United-States", " Atlantis");
    let instances = tmp.path().join("i.json");
    std::fs::write(
        &instances,
        [base.to_string(), trimmed, padded, as_floats, unknown].join("\n"),
    )
    .unwrap();
    let out = run(bin()
        .args(["predict", "--model-dir"])
        .arg(&version)
        .arg("--json-instances")
        .arg(&instances));
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0], lines[1], "leading spaces changed the answer");
    assert_eq!(lines[0], lines[2], "padding spaces changed the answer");
    assert_eq!(lines[0], lines[3], "25.0 and 25 differ");
    assert_ne!(
        lines[0], lines[4],
        "out-of-vocabulary values should map to the OOV id, not to the known one"
    );
}

#[test]
fn bad_instances_name_the_field_and_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let version = model(tmp.path());
    let good = fixture::to_json_instances(&fixture::rows(1, 5));
    let good = good.trim();
    let cases = [
        (
            good.replace("\"age\":", "\"agee\":"),
            ":2: unknown input 'agee'",
        ),
        ("{not json".to_string(), ":2: invalid JSON"),
    ];
    for (bad, needle) in cases {
        let instances = tmp.path().join("bad.json");
        std::fs::write(&instances, format!("{good}\n{bad}\n")).unwrap();
        let out = run(bin()
            .args(["predict", "--model-dir"])
            .arg(&version)
            .arg("--json-instances")
            .arg(&instances));
        assert_one_line_error(&out, needle);
    }
    let mut obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(good).unwrap();
    obj.remove("occupation");
    let missing = serde_json::Value::Object(obj.clone()).to_string();
    obj.insert("occupation".into(), serde_json::json!(" Sales"));
    obj.insert("age".into(), serde_json::json!("forty"));
    let mistyped = serde_json::Value::Object(obj.clone()).to_string();
    obj.insert("age".into(), serde_json::json!(40));
    obj.insert("occupation".into(), serde_json::json!(7));
    let number_for_string = serde_json::Value::Object(obj).to_string();
    for (bad, needle) in [
        (missing, ":3: missing input 'occupation'"),
        (
            mistyped,
            ":3: input 'age': expected an integer (int64), got \"forty\"",
        ),
        (
            number_for_string,
            ":3: input 'occupation': expected a string, got 7",
        ),
    ] {
        let instances = tmp.path().join("bad.json");
        std::fs::write(&instances, format!("{good}\n\n{bad}\n")).unwrap();
        let out = run(bin()
            .args(["predict", "--model-dir"])
            .arg(&version)
            .arg("--json-instances")
            .arg(&instances));
        assert_one_line_error(&out, needle);
    }
    let out = run(bin()
        .args(["predict", "--model-dir"])
        .arg(tmp.path().join("nope"))
        .arg("--json-instances")
        .arg(tmp.path().join("bad.json")));
    assert_one_line_error(&out, "does not exist");
}

#[test]
fn a_missing_onnxruntime_library_is_one_line_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let version = model(tmp.path());
    let instances = tmp.path().join("i.json");
    std::fs::write(&instances, fixture::to_json_instances(&fixture::rows(1, 5))).unwrap();
    let out = run(bin()
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .args(["predict", "--model-dir"])
        .arg(&version)
        .arg("--json-instances")
        .arg(&instances));
    assert_one_line_error(&out, "scripts/install-onnxruntime.sh");
}

#[test]
fn every_instance_is_checked_before_anything_is_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let version = model(tmp.path());
    let good: Vec<String> = fixture::to_json_instances(&fixture::rows(6, 5))
        .lines()
        .map(String::from)
        .collect();
    // Line 5 and line 3 are bad; with two instances a batch, line 3 is in the second batch and
    // line 5 in the third: the first one in the file is named, and nothing is printed.
    let mut lines = good.clone();
    lines[4] = good[4].replace("\"age\":", "\"agee\":");
    lines[2] = good[2].replace("\"gender\":", "\"genre\":");
    let instances = tmp.path().join("bad.json");
    std::fs::write(&instances, lines.join("\n")).unwrap();
    let out = run(bin()
        .args(["predict", "--batch-size", "2", "--model-dir"])
        .arg(&version)
        .arg("--json-instances")
        .arg(&instances));
    assert_one_line_error(&out, "bad.json:3: unknown input 'genre'");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    // Standard input (`-`, as gcloud), with a UTF-8 byte order mark.
    let mut child = bin()
        .args(["predict", "--json-instances", "-", "--model-dir"])
        .arg(&version)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "\u{feff}{}", good.join("\n")).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 6);
}

#[test]
fn missing_cloud_credentials_are_one_line_naming_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let instances = tmp.path().join("i.json");
    std::fs::write(&instances, fixture::to_json_instances(&fixture::rows(1, 5))).unwrap();
    let out = run(bin()
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_SERVICE_ACCOUNT")
        .env_remove("GOOGLE_SERVICE_ACCOUNT_PATH")
        .env_remove("GOOGLE_SERVICE_ACCOUNT_KEY")
        .args([
            "predict",
            "--model-dir",
            "gs://bucket/census",
            "--json-instances",
        ])
        .arg(&instances));
    assert_one_line_error(
        &out,
        "cannot list gs://bucket/census: no Google Cloud credentials; set GOOGLE_APPLICATION_CREDENTIALS",
    );
    // The output side says the same (it gave the token request's own error).
    let out = run(bin()
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_SERVICE_ACCOUNT")
        .env_remove("GOOGLE_SERVICE_ACCOUNT_PATH")
        .env_remove("GOOGLE_SERVICE_ACCOUNT_KEY")
        .args(["batch-predict", "--model-dir"])
        .arg(bundled_version())
        .arg("--input-paths")
        .arg(&instances)
        .args(["--output-path", "gs://bucket/out"]));
    assert_one_line_error(
        &out,
        "cannot write to gs://bucket/out: no Google Cloud credentials; set GOOGLE_APPLICATION_CREDENTIALS",
    );
}

#[test]
fn bench_ort_times_the_model_and_refuses_durations_it_cannot_hold() {
    let model = bundled_version();
    let out = run(bin()
        .args([
            "bench-ort",
            "--batch-sizes",
            "1,4",
            "--seconds",
            "0.2",
            "--model-dir",
        ])
        .arg(&model));
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    for size in ["1", "4"] {
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().next() == Some(size)),
            "no row for batch {size}: {table}"
        );
    }
    for seconds in ["inf", "1e30", "0", "NaN"] {
        let out = run(bin()
            .args(["bench-ort", "--seconds", seconds, "--model-dir"])
            .arg(&model));
        assert_one_line_error(&out, "--seconds above zero and at most 86400");
    }
}
