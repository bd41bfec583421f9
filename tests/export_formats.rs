//! The census sample's `--export-format`: a CSV model (one string input, a census file row,
//! parsed inside the graph) answers exactly what the JSON model trained alike answers, through
//! local predict, the REST APIs and batch prediction; bad rows are refused naming their field.

mod common;

use common::*;
use mlengine::census::fixture;
use serde_json::{json, Value};

/// Trains the fixture into `job` with `format`, the same seed and steps every time.
fn train_as(tmp: &std::path::Path, job: &str, format: &str) -> std::path::PathBuf {
    train_fixture(
        &tmp.join(job),
        tmp,
        &["--train-steps", "30", "--export-format", format],
    )
}

#[test]
fn a_csv_model_answers_as_the_json_model_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let json_model = train_as(tmp.path(), "json", "JSON");
    let csv_model = train_as(tmp.path(), "csv", "csv");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(csv_model.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["export_format"], "CSV");
    assert_eq!(
        meta["signature"]["inputs"],
        json!([{"name": "csv_row", "dtype": "string", "shape": [-1]}])
    );

    // The same rows as census file lines (the label last, as in adult.data) and as JSON.
    let rows = fixture::rows(40, 21);
    let csv_lines: Vec<String> = fixture::to_uci_csv(&rows, false)
        .lines()
        .map(String::from)
        .collect();
    let json_lines = fixture::to_json_instances(&rows);
    let text = tmp.path().join("rows.csv");
    std::fs::write(&text, csv_lines.join("\n")).unwrap();
    let instances = tmp.path().join("rows.json");
    std::fs::write(&instances, &json_lines).unwrap();

    // Local predict: --text-instances on the CSV model, --json-instances on the JSON one.
    let predict = |model: &std::path::Path, flag: &str, file: &std::path::Path| {
        let out = run(bin()
            .args(["predict", "--model-dir"])
            .arg(model)
            .arg(flag)
            .arg(file));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let from_json = predict(&json_model, "--json-instances", &instances);
    assert_eq!(from_json.lines().count(), 40);
    assert_eq!(predict(&csv_model, "--text-instances", &text), from_json);

    // The official checker and Python onnxruntime take the CSV model too.
    let python = python_env("onnx", "tests/python/requirements-onnx.txt");
    let reference = |model: &std::path::Path, lines: String, name: &str| -> Value {
        let inst = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&inst, lines).unwrap();
        let out_path = tmp.path().join(format!("{name}.out.json"));
        let out = run(std::process::Command::new(&python)
            .arg(root().join("tests/python/onnx_reference.py"))
            .arg(model.join("model.onnx"))
            .arg(&inst)
            .arg(&out_path));
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap()
    };
    let csv_rows: String = csv_lines
        .iter()
        .map(|l| format!("{}\n", json!({ "csv_row": l })))
        .collect();
    let py_csv = reference(&csv_model, csv_rows, "csv");
    let py_json = reference(&json_model, json_lines.clone(), "json");
    assert_eq!(py_csv["checker"], "ok");
    assert_eq!(py_csv["outputs"], py_json["outputs"]);

    // Serving: Cloud ML's instances are the rows as strings; a bad row names its field.
    let server = Server::start(&[
        "--model-base-path",
        csv_model.parent().unwrap().to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0",
    ]);
    let (status, answer) = server.post_json(
        "/v1/projects/p/models/census:predict",
        &json!({"instances": [csv_lines[0], csv_lines[1]]}),
    );
    assert_eq!(status, 200, "{answer}");
    let want: Vec<Value> = from_json
        .lines()
        .take(2)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answer["predictions"], json!(want));
    let bad = csv_lines[2].replacen(|c: char| c.is_ascii_digit(), "x", 1);
    let (status, answer) = server.post_json(
        "/v1/projects/p/models/census:predict",
        &json!({"instances": [csv_lines[0], bad]}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("input 'csv_row': row 1: field 1 (age) must be a whole number"),
        "{answer}"
    );

    // Batch prediction reads the CSV lines as they are.
    let mut lines = csv_lines.clone();
    lines.insert(5, "not, a, census, row".to_string());
    let input = tmp.path().join("batch.csv");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = tmp.path().join("out");
    let o = run(bin()
        .args(["batch-predict", "--model-dir"])
        .arg(&csv_model)
        .arg("--input-paths")
        .arg(&input)
        .arg("--output-path")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("predictionCount: 40, errorCount: 1"),
        "{}",
        stdout(&o)
    );
    let results = std::fs::read_to_string(out.join("prediction.results-00000-of-00001")).unwrap();
    assert_eq!(results, from_json);
    // With keys, a malformed row is its own error as without them (it failed every row of its
    // batch), and so is a number the graph's cast would refuse (a no-break space before it
    // passed the check, then failed the whole run).
    let mut keyed: Vec<String> = csv_lines
        .iter()
        .enumerate()
        .map(|(i, l)| json!({"csv_row": l, "id": i}).to_string())
        .collect();
    keyed.insert(
        5,
        json!({"csv_row": "not, a, census, row", "id": "bad"}).to_string(),
    );
    let nbsp = csv_lines[0].replacen(|c: char| c.is_ascii_digit(), "\u{a0}1", 1);
    keyed.insert(9, json!({"csv_row": nbsp, "id": "nbsp"}).to_string());
    let keyed_input = tmp.path().join("keyed.jsonl");
    std::fs::write(&keyed_input, keyed.join("\n")).unwrap();
    let keyed_out = tmp.path().join("keyed-out");
    let o = run(bin()
        .args(["batch-predict", "--key-field", "id", "--model-dir"])
        .arg(&csv_model)
        .arg("--input-paths")
        .arg(&keyed_input)
        .arg("--output-path")
        .arg(&keyed_out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("predictionCount: 40, errorCount: 2"),
        "{}",
        stdout(&o)
    );

    // Local predict names a malformed row by its file and line (the 6th line), in chunks or not.
    for batch_size in ["64", "2"] {
        let o = run(bin()
            .args(["predict", "--batch-size", batch_size, "--model-dir"])
            .arg(&csv_model)
            .arg("--text-instances")
            .arg(&input));
        assert_one_line_error(&o, &format!("{}:6: input 'csv_row':", input.display()));
    }

    // The JSON model given a CSV row says what it takes.
    let o = run(bin()
        .args(["predict", "--model-dir"])
        .arg(&json_model)
        .arg("--text-instances")
        .arg(&text));
    assert_one_line_error(
        &o,
        "this model takes JSON objects with fields age, workclass",
    );
    assert!(
        stderr(&o).contains("this looks like a CSV row"),
        "{}",
        stderr(&o)
    );
}

/// A census instance as a serialized `tensorflow.Example`.
fn serialized_example(instance: &Value) -> Vec<u8> {
    use mlengine::proto::tensorflow::{
        feature::Kind, BytesList, Example, Feature, Features, Int64List,
    };
    use prost::Message;
    let feature = instance
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| {
            let kind = match v {
                Value::String(s) => Kind::BytesList(BytesList {
                    value: vec![s.as_bytes().to_vec()],
                }),
                other => Kind::Int64List(Int64List {
                    value: vec![other.as_i64().unwrap()],
                }),
            };
            (name.clone(), Feature { kind: Some(kind) })
        })
        .collect();
    Example {
        features: Some(Features { feature }),
    }
    .encode_to_vec()
}

#[test]
fn tf_examples_classify_regress_and_predict_over_rest() {
    use base64::Engine;
    let tmp = tempfile::tempdir().unwrap();
    let example_model = train_as(tmp.path(), "example", "EXAMPLE");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(example_model.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["export_format"], "EXAMPLE");
    let server = Server::start(&[
        "--model-base-path",
        example_model.parent().unwrap().to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0",
    ]);
    let instances: Vec<Value> = fixture::to_json_instances(&fixture::rows(3, 8))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (status, predicted) = server.post_json(
        "/v1/models/census:predict",
        &json!({ "instances": instances }),
    );
    assert_eq!(status, 200, "{predicted}");
    let predicted = predicted["predictions"].as_array().unwrap().clone();

    // Predict with serialized tf.Examples as `{"b64": ...}` instances; a feature the model
    // does not take (the label, as census examples carry it) is left out, as TF's parsing does.
    let b64: Vec<Value> = instances
        .iter()
        .map(|i| {
            let mut labelled = i.clone();
            labelled["income_bracket"] = json!(" <=50K");
            let bytes = serialized_example(&labelled);
            json!({"b64": base64::engine::general_purpose::STANDARD.encode(bytes)})
        })
        .collect();
    let (status, answer) =
        server.post_json("/v1/models/census:predict", &json!({ "instances": b64 }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["predictions"], json!(predicted));

    // Classify and regress JSON examples; a feature they share comes from the context.
    let examples: Vec<Value> = instances
        .iter()
        .map(|i| {
            let mut e = i.clone();
            e.as_object_mut().unwrap().remove("native_country");
            e
        })
        .collect();
    let context = json!({"native_country": instances[0]["native_country"]});
    let same_country: Vec<Value> = instances
        .iter()
        .map(|i| {
            let mut i = i.clone();
            i["native_country"] = context["native_country"].clone();
            i
        })
        .collect();
    let (_, want) = server.post_json(
        "/v1/models/census:predict",
        &json!({ "instances": same_country }),
    );
    let want = want["predictions"].as_array().unwrap().clone();
    let (status, answer) = server.post_json(
        "/v1/models/census:classify",
        &json!({"signature_name": "serving_default", "context": context, "examples": examples}),
    );
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (classes, p) in results.iter().zip(&want) {
        assert_eq!(classes[0][0], "<=50K");
        assert_eq!(classes[1][0], ">50K");
        for k in 0..2 {
            let (a, b) = (
                classes[k][1].as_f64().unwrap(),
                p["probabilities"][k].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-6, "{classes} vs {p}");
        }
    }
    let (status, answer) = server.post_json(
        "/v1/models/census:regress",
        &json!({"context": context, "examples": examples}),
    );
    assert_eq!(status, 200, "{answer}");
    for (v, p) in answer["results"].as_array().unwrap().iter().zip(&want) {
        let (a, b) = (v.as_f64().unwrap(), p["logistic"][0].as_f64().unwrap());
        assert!((a - b).abs() < 1e-6, "{v} vs {p}");
    }

    // Errors name the example and the feature.
    let (status, answer) =
        server.post_json("/v1/models/census:classify", &json!({"examples": examples}));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("example 0: missing feature 'native_country'"),
        "{answer}"
    );
    let mut bad = examples[0].clone();
    bad["age"] = json!(30.5);
    let (status, answer) = server.post_json(
        "/v1/models/census:regress",
        &json!({"context": context, "examples": [bad]}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("example 0: feature 'age': float32 value 30.5"),
        "{answer}"
    );
}
