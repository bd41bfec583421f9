//! The server with models other than census: signatures come from the ONNX file, warm-up files,
//! and readiness across several models.

mod common;

use common::*;
use mlengine::onnx::builder::{to_bytes, Attr, Dim, GraphBuilder};
use onnx_protobuf::tensor_proto::DataType;
use serde_json::{json, Value};

/// `y = x + 1` over float `[batch, 2]`: a single-input, single-output model.
fn plus_one_model(path: &std::path::Path) {
    let mut g = GraphBuilder::new("plus_one");
    g.input("x", DataType::FLOAT, &[Dim::Named("batch"), Dim::Fixed(2)]);
    let one = g.const_f32("one", &[], vec![1.0]);
    g.node("", "Add", &["x", &one], &["y"], vec![]);
    g.output("y", DataType::FLOAT, &[Dim::Named("batch"), Dim::Fixed(2)]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, to_bytes(&g.finish("test", "")).unwrap()).unwrap();
}

/// `text_bytes = s` (strings) and `picked = table[idx]` (a Gather over five floats): an output
/// of bytes, and a run that fails for an index past the table.
fn bytes_and_gather_model(path: &std::path::Path) {
    let mut g = GraphBuilder::new("bytes_gather");
    g.input("s", DataType::STRING, &[Dim::Named("batch")]);
    g.input("idx", DataType::INT64, &[Dim::Named("batch")]);
    let table = g.const_f32("table", &[5], vec![0.0, 1.5, 2.5, 3.5, 4.5]);
    g.node("", "Identity", &["s"], &["text_bytes"], vec![]);
    g.node("", "Gather", &[&table, "idx"], &["picked"], vec![]);
    g.output("text_bytes", DataType::STRING, &[Dim::Named("batch")]);
    g.output("picked", DataType::FLOAT, &[Dim::Named("batch")]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, to_bytes(&g.finish("test", "")).unwrap()).unwrap();
}

/// A model that answers twice as many rows as it is given (`y = concat(x, x)` on the batch
/// axis): its rows cannot be given to instances, in any answer nor in batch prediction.
#[test]
fn a_model_that_does_not_answer_a_row_per_instance_is_an_error_not_a_shifted_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("double");
    let mut g = GraphBuilder::new("double");
    g.input("x", DataType::FLOAT, &[Dim::Named("batch"), Dim::Fixed(2)]);
    g.node(
        "",
        "Concat",
        &["x", "x"],
        &["y"],
        vec![("axis", Attr::Int(0))],
    );
    g.output("y", DataType::FLOAT, &[Dim::Named("rows"), Dim::Fixed(2)]);
    std::fs::create_dir_all(base.join("1")).unwrap();
    std::fs::write(
        base.join("1/model.onnx"),
        to_bytes(&g.finish("test", "")).unwrap(),
    )
    .unwrap();
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--model-name",
        "double",
        "--file-system-poll-wait-seconds",
        "0",
    ]);
    for path in [
        "/v1/models/double:predict",
        "/v1/projects/p/models/double:predict",
    ] {
        let (status, a) = server.post_json(path, &json!({"instances": [[1, 2], [3, 4]]}));
        assert_eq!(status, 500, "{a}");
        assert!(
            a["error"]
                .as_str()
                .unwrap()
                .contains("the model's output 'y' has 4 rows for 2 instances"),
            "{a}"
        );
    }
    // Batch prediction counts the instances as errors rather than writing 4 predictions.
    let input = tmp.path().join("x.jsonl");
    std::fs::write(&input, "[1, 2]\n[3, 4]\n").unwrap();
    let out = run(bin()
        .args(["batch-predict", "--model-dir"])
        .arg(base.join("1"))
        .arg("--input-paths")
        .arg(&input)
        .arg("--output-path")
        .arg(tmp.path().join("out")));
    assert!(
        stdout(&out).contains("predictionCount: 0, errorCount: 2"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn bytes_outputs_are_b64_and_a_value_the_model_cannot_take_is_a_400() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("bg");
    bytes_and_gather_model(&base.join("1/model.onnx"));
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--model-name",
        "bg",
        "--file-system-poll-wait-seconds",
        "0",
    ]);
    // An output whose name ends in `_bytes` is sent as {"b64": ...} (Cloud ML and TF Serving).
    for path in ["/v1/models/bg:predict", "/v1/projects/p/models/bg:predict"] {
        let (status, a) = server.post_json(
            path,
            &json!({"instances": [{"s": "héllo", "idx": 1}, {"s": "", "idx": 4}]}),
        );
        assert_eq!(status, 200, "{a}");
        assert_eq!(
            a["predictions"],
            json!([
                {"text_bytes": {"b64": "aMOpbGxv"}, "picked": 1.5},
                {"text_bytes": {"b64": ""}, "picked": 4.5}
            ]),
            "{path}"
        );
    }
    let (status, a) = server.post_json(
        "/v1/models/bg:predict",
        &json!({"inputs": {"s": ["x"], "idx": [0]}}),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        a,
        json!({"outputs": {"text_bytes": [{"b64": "eA=="}], "picked": [0.0]}})
    );
    // An index past the table fails the model's run: the client's value, so a 400 naming the
    // run's failure (as TF Serving answers its kernels' INVALID_ARGUMENT), not a 500.
    let (status, a) = server.post_json(
        "/v1/models/bg:predict",
        &json!({"instances": [{"s": "x", "idx": 10}]}),
    );
    assert_eq!(status, 400, "{a}");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("model execution failed"),
        "{a}"
    );
    // Local prediction writes the same (bytes as b64), and a failed run is one line on stderr:
    // ONNX Runtime's own copy of the error is debug logging.
    let instances = tmp.path().join("i.jsonl");
    std::fs::write(&instances, "{\"s\": \"hi\", \"idx\": 1}\n").unwrap();
    let predict = |file: &std::path::Path| {
        run(bin()
            .args(["predict", "--model-dir"])
            .arg(base.join("1"))
            .arg("--json-instances")
            .arg(file))
    };
    let out = predict(&instances);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{\"text_bytes\":{\"b64\":\"aGk=\"},\"picked\":1.5}\n"
    );
    std::fs::write(&instances, "{\"s\": \"hi\", \"idx\": 10}\n").unwrap();
    assert_one_line_error(&predict(&instances), "model execution failed");
}

#[test]
fn any_onnx_model_is_served_from_its_own_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("plus_one");
    plus_one_model(&base.join("1/model.onnx"));
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--model-name",
        "plus_one",
        "--file-system-poll-wait-seconds",
        "0",
    ]);

    // Single input: instances are bare values; single output: predictions are bare values.
    let (status, a) = server.post_json(
        "/v1/models/plus_one:predict",
        &json!({"instances": [[1.0, 2.0], [3.5, -1]]}),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a, json!({"predictions": [[2.0, 3.0], [4.5, 0.0]]}));
    // Columnar, single input.
    let (status, a) = server.post_json(
        "/v1/models/plus_one:predict",
        &json!({"inputs": [[0.5, 0.5]]}),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a, json!({"outputs": [[1.5, 1.5]]}));
    // NaN and Infinity tokens as TF Serving accepts them, and answers them (a JSON value would
    // make each `null`, losing which it was), in every answer form.
    let (status, text) = server.post(
        "/v1/models/plus_one:predict",
        r#"{"instances": [[NaN, -Infinity], [Infinity, 1]]}"#,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, r#"{"predictions":[[NaN,-Infinity],[Infinity,2.0]]}"#);
    for (path, body, want) in [
        (
            "/v1/models/plus_one:predict",
            r#"{"inputs": [[NaN, 1]]}"#,
            r#"{"outputs":[[NaN,2.0]]}"#,
        ),
        (
            "/v1/projects/p/models/plus_one:predict",
            r#"{"instances": [[-Infinity, 1]]}"#,
            r#"{"predictions":[{"y":[-Infinity,2.0]}]}"#,
        ),
    ] {
        let (status, text) = server.post(path, body);
        assert_eq!((status, text.as_str()), (200, want));
    }
    let (status, text) = server.post(
        "/v2/models/plus_one/infer",
        r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [NaN, Infinity]}]}"#,
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""data":[NaN,Infinity]"#), "{text}");
    // Cloud ML answers an object per instance keyed by output name.
    let (status, a) = server.post_json(
        "/v1/projects/p/models/plus_one:predict",
        &json!({"instances": [[1, 1]]}),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a, json!({"predictions": [{"y": [2.0, 2.0]}]}));
    // A number past FP32's range is refused, not turned into infinity, by every decoder (FP32's
    // largest, as every language prints it, is not past it).
    for (path, body) in [
        (
            "/v1/models/plus_one:predict",
            json!({"instances": [[1e39, 1]]}),
        ),
        (
            "/v2/models/plus_one/infer",
            json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1e39, 1]}]}),
        ),
    ] {
        let (status, a) = server.post_json(path, &body);
        assert_eq!(status, 400, "{a}");
        assert!(
            a["error"].as_str().unwrap().contains("out of FP32's range"),
            "{a}"
        );
    }
    let (status, a) = server.post_json(
        "/v1/models/plus_one:predict",
        &json!({"instances": [[3.4028235e38, 1]]}),
    );
    assert_eq!(status, 200, "{a}");
    // Shape errors name the dimension.
    let (status, a) = server.post_json(
        "/v1/models/plus_one:predict",
        &json!({"instances": [[1, 2, 3]]}),
    );
    assert_eq!(status, 400);
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("dimension 1 has size 3, the model expects 2"),
        "{a}"
    );
    // KServe metadata from the ONNX file.
    let (_, text) = server.get("/v2/models/plus_one");
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        m["inputs"],
        json!([{"name": "x", "datatype": "FP32", "shape": [-1, 2]}])
    );
    let (status, a) = server.post_json(
        "/v2/models/plus_one/infer",
        &json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [[1, 2]]}]}),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["outputs"][0]["data"], json!([2.0, 3.0]));
}

#[test]
fn warmup_files_run_before_a_version_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("census");
    let model = bundled_version().join("model.onnx");
    publish_version(&base, 1, &model);
    std::fs::write(
        base.join("1/warmup.jsonl"),
        format!("{}\n{}\n", census_instance(), census_instance()),
    )
    .unwrap();
    // Version 2's warm-up file does not fit the model: the version must not be served.
    publish_version(&base, 2, &model);
    std::fs::write(base.join("2/warmup.jsonl"), "{\"age\": \"x\"}\n").unwrap();
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0",
        "--version-labels",
        "canary=2",
    ]);
    let (_, text) = server.get("/v1/models/census");
    let s: Value = serde_json::from_str(&text).unwrap();
    let list = s["model_version_status"].as_array().unwrap();
    assert_eq!(list[0]["state"], "AVAILABLE", "{s}");
    assert_eq!(list[1]["state"], "END", "{s}");
    let message = list[1]["status"]["error_message"].as_str().unwrap();
    assert!(message.contains("warm-up of version 2 failed"), "{message}");
    // Asked by a label, the failed version's status is the answer (not "not found").
    let (status, text) = server.get("/v1/models/census/labels/canary");
    assert_eq!(status, 200, "{text}");
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["model_version_status"], json!([list[1]]), "{s}");
    let (status, a) = server.post_json(
        "/v1/projects/p/locations/l/endpoints/census:predict",
        &json!({"instances": [census_instance()]}),
    );
    assert_eq!(status, 200);
    assert_eq!(a["deployedModelId"], "1");
}

/// A version that failed to load is tried again when its warm-up file changes (not only its
/// model file), and its failure metric goes once its folder does.
#[test]
fn a_failed_version_is_retried_when_any_of_its_files_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("census");
    let model = bundled_version().join("model.onnx");
    publish_version(&base, 1, &model);
    publish_version(&base, 2, &model);
    std::fs::write(base.join("2/warmup.jsonl"), "{\"age\": \"x\"}\n").unwrap();
    publish_version(&base, 3, &model);
    std::fs::write(base.join("3/warmup.jsonl"), "{\"age\": \"x\"}\n").unwrap();
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--version-policy",
        "all",
        "--file-system-poll-wait-seconds",
        "0.05",
    ]);
    let state = |v: u64| -> String {
        let (_, text) = server.get(&format!("/v1/models/census/versions/{v}"));
        let s: Value = serde_json::from_str(&text).unwrap();
        s["model_version_status"][0]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let failed_gauge = |v: u64| -> bool {
        server.get("/metrics").1.contains(&format!(
            "mlengine_model_version_load_failed{{model=\"census\",version=\"{v}\"}} 1"
        ))
    };
    assert_eq!(state(2), "END");
    assert!(failed_gauge(2) && failed_gauge(3));
    std::fs::write(
        base.join("2/warmup.jsonl"),
        format!("{}\n", census_instance()),
    )
    .unwrap();
    wait_until("version 2 loads once its warm-up file is fixed", || {
        state(2) == "AVAILABLE"
    });
    let (status, a) = server.post_json(
        "/v1/models/census/versions/2:predict",
        &json!({"instances": [census_instance()]}),
    );
    assert_eq!(status, 200, "{a}");
    assert!(!failed_gauge(2));
    std::fs::remove_dir_all(base.join("3")).unwrap();
    wait_until("version 3's failure is forgotten with its folder", || {
        !server
            .get("/metrics")
            .1
            .contains("version_load_failed{model=\"census\",version=\"3\"}")
    });
}

/// A version whose ONNX model keeps its weights in an external data file (as large models do)
/// and whose weights file arrives after the model: its failed load is tried again then, though
/// `model.onnx` did not change.
#[test]
fn a_failed_version_is_retried_when_its_external_weights_arrive() {
    use onnx_protobuf::tensor_proto::DataLocation;
    use onnx_protobuf::StringStringEntryProto;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("plus_one");
    let mut g = GraphBuilder::new("plus_one");
    g.input("x", DataType::FLOAT, &[Dim::Named("batch"), Dim::Fixed(2)]);
    let one = g.const_f32("one", &[], vec![1.0]);
    g.node("", "Add", &["x", &one], &["y"], vec![]);
    g.output("y", DataType::FLOAT, &[Dim::Named("batch"), Dim::Fixed(2)]);
    let mut model = g.finish("test", "");
    let weights = &mut model.graph.as_mut().unwrap().initializer[0];
    weights.float_data.clear();
    weights.data_location = DataLocation::EXTERNAL.into();
    for (key, value) in [
        ("location", "weights.bin"),
        ("offset", "0"),
        ("length", "4"),
    ] {
        weights.external_data.push(StringStringEntryProto {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        });
    }
    std::fs::create_dir_all(base.join("1")).unwrap();
    std::fs::write(base.join("1/model.onnx"), to_bytes(&model).unwrap()).unwrap();
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--model-name",
        "plus_one",
        "--file-system-poll-wait-seconds",
        "0.05",
    ]);
    let (_, text) = server.get("/v1/models/plus_one/versions/1");
    assert!(text.contains("\"END\""), "{text}");
    std::fs::write(base.join("1/weights.bin"), 1.0f32.to_le_bytes()).unwrap();
    wait_until("version 1 loads once its weights file is there", || {
        server
            .get("/v1/models/plus_one/versions/1")
            .1
            .contains("AVAILABLE")
    });
    let (status, a) = server.post_json(
        "/v1/models/plus_one:predict",
        &json!({"instances": [[1.0, 2.0]]}),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a, json!({"predictions": [[2.0, 3.0]]}));
}

#[test]
fn ready_only_when_every_model_has_a_version() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundled_version().join("model.onnx");
    publish_version(&tmp.path().join("a"), 1, &model);
    std::fs::create_dir_all(tmp.path().join("b")).unwrap();
    let config = tmp.path().join("models.json");
    std::fs::write(
        &config,
        r#"{"models": [{"name": "a", "base_path": "a"}, {"name": "b", "base_path": "b"}]}"#,
    )
    .unwrap();
    let server = Server::start(&[
        "--model-config-file",
        config.to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0.05",
    ]);
    assert_eq!(server.get("/v2/health/live").0, 200);
    assert_eq!(server.get("/v2/health/ready").0, 400);
    assert_eq!(server.get("/v2/models/a/ready").0, 200);
    assert_eq!(server.get("/v2/models/b/ready").0, 400);
    let (status, a) = server.post_json(
        "/v1/projects/p/models/b:predict",
        &json!({"instances": [census_instance()]}),
    );
    assert_eq!(status, 503, "{a}");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("has no available version"),
        "{a}"
    );
    publish_version(&tmp.path().join("b"), 7, &model);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.get("/v2/health/ready").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn serve_says_what_it_finds_and_takes_a_job_dir() {
    let tmp = tempfile::tempdir().unwrap();
    // An empty base path: every poll says so, as TF Serving does.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let log = tmp.path().join("empty.log");
    let server = Server::start_logging_to(
        &[
            "--model-base-path",
            empty.to_str().unwrap(),
            "--file-system-poll-wait-seconds",
            "0.05",
            "--version-labels",
            "v1=123",
        ],
        &log,
    );
    let text = || std::fs::read_to_string(&log).unwrap();
    wait_until("two polls that found no version", || {
        text()
            .matches("no versions of model 'census' found under base path")
            .count()
            >= 2
    });
    assert!(
        text().contains(
            "version label 'v1' of model 'census' points to version 123, which is not loaded"
        ),
        "{}",
        text()
    );
    drop(server);

    // A job-dir serves its exports.
    let job = tmp.path().join("job");
    train_fixture(&job, tmp.path(), &["--train-steps", "5"]);
    let server = Server::start(&[
        "--model-base-path",
        job.to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0",
    ]);
    let (status, text) = server.post(
        "/v1/models/census:predict",
        &json!({"instances": [census_instance()]}).to_string(),
    );
    assert_eq!(status, 200, "{text}");
}
