//! Real clients against `mlengine serve`, each in its own virtual environment:
//! google-api-python-client (Cloud ML Engine), tritonclient.http (KServe v2, binary and JSON),
//! and Python onnxruntime as the reference for every prediction served over REST.

mod common;

use std::process::Command;

use common::*;
use mlengine::census::{csv, fixture};
use serde_json::{json, Value};

fn flat(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
        x => out.push(x.as_f64().unwrap()),
    }
}

/// Every output of every prediction, flattened per output name.
fn columns(predictions: &[Value]) -> std::collections::BTreeMap<String, Vec<f64>> {
    let mut out = std::collections::BTreeMap::<String, Vec<f64>>::new();
    for p in predictions {
        for (k, v) in p.as_object().unwrap() {
            flat(v, out.entry(k.clone()).or_default());
        }
    }
    out
}

fn write_instances(
    dir: &std::path::Path,
    rows: &[mlengine::census::CensusRow],
) -> std::path::PathBuf {
    let path = dir.join("instances.jsonl");
    std::fs::write(&path, fixture::to_json_instances(rows)).unwrap();
    path
}

#[test]
fn rest_predictions_equal_python_onnxruntime_on_adult_test() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = match census_dir() {
        Some(d) => csv::read_local_files(&[d.join("adult.test")]).unwrap(),
        None => {
            eprintln!("census data absent: comparing on fixture rows");
            fixture::rows(500, 3)
        }
    };
    let instances_path = write_instances(tmp.path(), &rows);
    let python = python_env("onnx", "tests/python/requirements-onnx.txt");
    let out_path = tmp.path().join("py.json");
    let out = run(Command::new(&python)
        .arg(root().join("tests/python/onnx_reference.py"))
        .arg(bundled_version().join("model.onnx"))
        .arg(&instances_path)
        .arg(&out_path));
    assert!(out.status.success(), "{}", stderr(&out));
    let reference: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();

    let server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    let instances: Vec<Value> = std::fs::read_to_string(&instances_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut predictions = Vec::new();
    for chunk in instances.chunks(250) {
        let (status, answer) = server.post_json(
            "/v1/projects/p/models/census:predict",
            &json!({"instances": chunk}),
        );
        assert_eq!(status, 200, "{answer}");
        predictions.extend(answer["predictions"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(predictions.len(), rows.len());
    let served = columns(&predictions);
    let mut worst = 0.0f64;
    for name in ["probabilities", "logits", "classes", "logistic"] {
        let mut want = Vec::new();
        flat(&reference["outputs"][name], &mut want);
        let got = &served[name];
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            worst = worst.max((a - b).abs());
            assert!(
                (a - b).abs() <= 1e-6,
                "{name}[{i}]: served {a}, onnxruntime {b}"
            );
        }
    }
    eprintln!(
        "{} rows: largest difference from Python onnxruntime {worst:e}",
        rows.len()
    );
}

#[test]
fn google_api_python_client_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = fixture::rows(5, 21);
    let instances = write_instances(tmp.path(), &rows);
    let python = python_env("googleapi", "tests/python/requirements-googleapi.txt");
    let version = bundled_version()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let server = Server::start(&[
        "--file-system-poll-wait-seconds",
        "0",
        "--version-labels",
        &format!("v1={version}"),
    ]);
    let base = format!("http://{}", server.addr);
    let body: Vec<Value> = fixture::to_json_instances(&rows)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (_, expected) = server.post_json(
        "/v1/projects/p/models/census:predict",
        &json!({"instances": body}),
    );

    for version_arg in [None, Some(version.as_str()), Some("v1")] {
        let mut cmd = Command::new(&python);
        cmd.arg(root().join("tests/python/googleapi_predict.py"))
            .arg(&base)
            .arg("census")
            .arg(&instances);
        if let Some(v) = version_arg {
            cmd.arg(v);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{version_arg:?}: {}", stderr(&out));
        let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(
            answer["predictions"], expected["predictions"],
            "{version_arg:?}"
        );
    }
    // A server error reaches the client as HttpError with the server's message.
    let out = run(Command::new(&python)
        .arg(root().join("tests/python/googleapi_predict.py"))
        .arg(&base)
        .arg("census")
        .arg(&instances)
        .arg("999"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("HttpError 404")
            && stderr(&out).contains("has no available version 999"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tritonclient_http_with_binary_data_on_and_off() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = fixture::rows(40, 22);
    let instances = write_instances(tmp.path(), &rows);
    let python = python_env("tritonclient", "tests/python/requirements-tritonclient.txt");
    let server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    let body: Vec<Value> = fixture::to_json_instances(&rows)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (_, expected) = server.post_json(
        "/v1/projects/p/models/census:predict",
        &json!({"instances": body}),
    );
    let expected = columns(expected["predictions"].as_array().unwrap());
    // Plain, and with the request body and the answer compressed as tritonclient asks for them
    // (the answers of 40 rows are over the size that the server compresses, binary or JSON).
    for (mode, compression) in [
        ("--binary", None),
        ("--json", None),
        ("--binary", Some("gzip")),
        ("--json", Some("deflate")),
    ] {
        let mut cmd = Command::new(&python);
        cmd.arg(root().join("tests/python/triton_http_infer.py"))
            .arg(&server.addr)
            .arg("census")
            .arg(&instances)
            .arg(mode)
            .args(compression);
        let out = run(&mut cmd);
        let mode = format!("{mode} {compression:?}");
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(
            answer["model_version"],
            bundled_version().file_name().unwrap().to_str().unwrap()
        );
        for (name, want) in &expected {
            let mut got = Vec::new();
            flat(&answer["outputs"][name], &mut got);
            assert_eq!(&got, want, "{mode} {name}");
        }
    }
}

/// Flattens every output of a {"outputs": {name: nested}} answer.
fn output_columns(answer: &Value) -> std::collections::BTreeMap<String, Vec<f64>> {
    answer
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let mut out = Vec::new();
            flat(v, &mut out);
            (k.clone(), out)
        })
        .collect()
}

#[test]
fn grpcio_client_from_the_projects_protos_and_health_checking() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = fixture::rows(6, 23);
    let instances = write_instances(tmp.path(), &rows);
    let python = python_env("grpc", "tests/python/requirements-grpc.txt");
    let server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    let body: Vec<Value> = fixture::to_json_instances(&rows)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (_, expected) = server.post_json(
        "/v1/projects/p/models/census:predict",
        &json!({"instances": body}),
    );
    let expected = columns(expected["predictions"].as_array().unwrap());
    let out = run(Command::new(&python)
        .arg(root().join("tests/python/tf_serving_grpc.py"))
        .arg(&server.grpc_addr)
        .arg("census")
        .arg(&instances)
        .arg(tmp.path().join("stubs")));
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(output_columns(&answer["predict"]), expected);
    // Whole numbers sent as DT_FLOAT convert exactly; serialized tf.Examples decode to the same
    // inputs.
    assert_eq!(answer["predict_float"], answer["predict"]);
    assert_eq!(answer["predict_examples"], answer["predict"]);
    // Classify: every class with its label and score (the probabilities); Regress: logistic.
    let probabilities = answer["predict"]["probabilities"].as_array().unwrap();
    let classified = answer["classify"].as_array().unwrap();
    assert_eq!(classified.len(), probabilities.len());
    for (classes, p) in classified.iter().zip(probabilities) {
        assert_eq!(classes[0][0], "<=50K");
        assert_eq!(classes[1][0], ">50K");
        for k in 0..2 {
            let (a, b) = (classes[k][1].as_f64().unwrap(), p[k].as_f64().unwrap());
            assert!((a - b).abs() < 1e-6, "{classes} vs {p}");
        }
    }
    let logistic: Vec<f64> = answer["predict"]["logistic"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_f64().unwrap())
        .collect();
    let regressed: Vec<f64> = answer["regress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(regressed.len(), logistic.len());
    for (a, b) in regressed.iter().zip(&logistic) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    let version: u64 = bundled_version()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(answer["model_version"], version);
    assert_eq!(answer["filtered_outputs"], json!(["classes"]));
    assert_eq!(answer["signature_inputs"]["age"], "DT_INT64");
    assert_eq!(answer["signature_inputs"]["native_country"], "DT_STRING");
    assert_eq!(
        answer["status"],
        json!([{"version": version, "state": "AVAILABLE", "error_code": "OK"}])
    );
    assert_eq!(
        answer["health"],
        json!({"": "SERVING", "tensorflow.serving.PredictionService": "SERVING"})
    );

    // An unknown model reaches the client as NOT_FOUND with the server's message.
    let out = run(Command::new(&python)
        .arg(root().join("tests/python/tf_serving_grpc.py"))
        .arg(&server.grpc_addr)
        .arg("nope")
        .arg(&instances)
        .arg(tmp.path().join("stubs")));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("NOT_FOUND: model 'nope' not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tritonclient_grpc_infer_metadata_and_readiness() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = fixture::rows(9, 24);
    let instances = write_instances(tmp.path(), &rows);
    let python = python_env(
        "tritonclient-grpc",
        "tests/python/requirements-tritonclient-grpc.txt",
    );
    let server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    let body: Vec<Value> = fixture::to_json_instances(&rows)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (_, expected) = server.post_json(
        "/v1/projects/p/models/census:predict",
        &json!({"instances": body}),
    );
    let expected = columns(expected["predictions"].as_array().unwrap());
    // Compressed as tritonclient's `compression_algorithm` sends it, then plain.
    let grpc_infer = |compression: Option<&str>| {
        let out = run(Command::new(&python)
            .arg(root().join("tests/python/triton_grpc_infer.py"))
            .arg(&server.grpc_addr)
            .arg("census")
            .arg(&instances)
            .args(compression));
        assert!(out.status.success(), "{compression:?}: {}", stderr(&out));
        let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(
            output_columns(&answer["outputs"]),
            expected,
            "{compression:?}"
        );
        (out, answer)
    };
    grpc_infer(Some("gzip"));
    grpc_infer(Some("deflate"));
    let (out, answer) = grpc_infer(None);
    assert_eq!(answer["id"], "req-7");
    assert_eq!(
        answer["model_version"],
        bundled_version().file_name().unwrap().to_str().unwrap()
    );
    assert!(
        stderr(&out).contains("onnxruntime_onnx"),
        "metadata: {}",
        stderr(&out)
    );
}
