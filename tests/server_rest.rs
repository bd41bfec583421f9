//! `mlengine serve` over real sockets: every REST endpoint of the three protocol families, the
//! error table, and metrics.

mod common;

use common::*;
use serde_json::{json, Value};

fn bundled_server(extra: &[&str]) -> (Server, String) {
    let version = bundled_version()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let labels = format!("v1={version},stable={version}");
    let mut args = vec![
        "--file-system-poll-wait-seconds",
        "0",
        "--version-labels",
        labels.as_str(),
    ];
    args.extend_from_slice(extra);
    (Server::start(&args), version)
}

#[test]
fn cloud_ml_vertex_and_tf_serving_endpoints() {
    let (server, version) = bundled_server(&[]);
    let body = json!({"instances": [census_instance(), census_instance()]});

    let (status, answer) = server.post_json("/v1/projects/p/models/census:predict?alt=json", &body);
    assert_eq!(status, 200, "{answer}");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2);
    let p = &predictions[0];
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["probabilities", "logits", "classes", "logistic"]);
    assert_eq!(p["classes"], 0);
    assert!(p["probabilities"][1].as_f64().unwrap() < 0.01, "{p}");

    for path in [
        format!("/v1/projects/p/models/census/versions/{version}:predict"),
        "/v1/projects/p/models/census/versions/v1:predict".to_string(),
        "/v1/models/census:predict".to_string(),
        format!("/v1/models/census/versions/{version}:predict"),
        "/v1/models/census/labels/stable:predict".to_string(),
    ] {
        let (status, a) = server.post_json(&path, &body);
        assert_eq!(status, 200, "{path}: {a}");
        assert_eq!(a["predictions"][0], *p, "{path}");
    }
    // Vertex: integral floats accepted, deployedModelId is the version.
    let mut as_floats = census_instance();
    as_floats["age"] = json!(25.0);
    let (status, a) = server.post_json(
        "/v1/projects/p/locations/us-central1/endpoints/census:predict",
        &json!({"instances": [as_floats]}),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["predictions"][0], *p);
    assert_eq!(a["deployedModelId"], version.as_str());
    assert_eq!(a["modelVersionId"], version.as_str());
    assert_eq!(a["modelDisplayName"], "census");
    assert_eq!(a["model"], "projects/p/locations/us-central1/models/census");

    // TF Serving columnar form.
    let mut columns = serde_json::Map::new();
    for (k, v) in census_instance().as_object().unwrap() {
        columns.insert(k.clone(), json!([v, v]));
    }
    let (status, a) = server.post_json("/v1/models/census:predict", &json!({"inputs": columns}));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["outputs"]["classes"], json!([0, 0]));
    assert_eq!(a["outputs"]["probabilities"][0], p["probabilities"]);

    // b64-wrapped strings decode to the same text.
    let mut b64 = census_instance();
    b64["workclass"] = json!({"b64": "IFByaXZhdGU="}); // " Private"
    let (status, a) = server.post_json("/v1/models/census:predict", &json!({"instances": [b64]}));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["predictions"][0], *p);

    // Status and metadata.
    let (status, text) = server.get("/v1/models/census");
    assert_eq!(status, 200);
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["model_version_status"][0]["version"], version.as_str());
    assert_eq!(s["model_version_status"][0]["state"], "AVAILABLE");
    assert_eq!(s["model_version_status"][0]["status"]["error_code"], "OK");
    for path in [
        format!("/v1/models/census/versions/{version}"),
        "/v1/models/census/labels/v1".to_string(),
    ] {
        let (status, text) = server.get(&path);
        assert_eq!(status, 200, "{path}: {text}");
    }
    let (status, text) = server.get("/v1/models/census/metadata");
    assert_eq!(status, 200);
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["model_spec"]["version"], version.as_str());
    let sig = &m["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(sig["inputs"]["age"]["dtype"], "DT_INT64");
    assert_eq!(sig["inputs"]["workclass"]["dtype"], "DT_STRING");
    assert_eq!(
        sig["outputs"]["probabilities"]["tensor_shape"]["dim"][1]["size"],
        "2"
    );
    assert_eq!(sig["method_name"], "tensorflow/serving/predict");
}

fn kserve_inputs(instances: &[Value]) -> Vec<Value> {
    mlengine::census::schema::INPUTS
        .iter()
        .map(|n| {
            let data: Vec<Value> = instances.iter().map(|i| i[n].clone()).collect();
            let dt = if data[0].is_string() {
                "BYTES"
            } else {
                "INT64"
            };
            json!({"name": n, "shape": [instances.len()], "datatype": dt, "data": data})
        })
        .collect()
}

#[test]
fn kserve_v2_json_and_binary_tensors() {
    let (server, version) = bundled_server(&[]);
    let (status, text) = server.get("/v2");
    assert_eq!(status, 200);
    assert!(text.contains("binary_tensor_data"), "{text}");
    assert_eq!(server.get("/v2/health/live").0, 200);
    assert_eq!(server.get("/v2/health/ready").0, 200);
    assert_eq!(server.get("/v2/models/census/ready").0, 200);
    assert_eq!(
        server
            .get(&format!("/v2/models/census/versions/{version}/ready"))
            .0,
        200
    );
    let (status, body) = server.get("/v2/models/nosuch/ready");
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("nosuch"), "{body}");
    let (status, text) = server.get("/v2/models/census");
    assert_eq!(status, 200);
    let meta: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(meta["platform"], "onnxruntime_onnx");
    assert_eq!(meta["versions"], json!([version]));
    assert!(meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == &json!({"name": "age", "datatype": "INT64", "shape": [-1]})));
    assert!(meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == &json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]})));

    let instances = vec![census_instance(), census_instance()];
    let request = json!({"id": "abc", "inputs": kserve_inputs(&instances), "outputs": [{"name": "classes"}, {"name": "logistic"}]});
    let (status, a) = server.post_json(
        &format!("/v2/models/census/versions/{version}/infer"),
        &request,
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["id"], "abc");
    assert_eq!(a["model_version"], version.as_str());
    let outputs = a["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2, "requested outputs only: {a}");
    assert_eq!(
        outputs[0],
        json!({"name": "classes", "datatype": "INT64", "shape": [2], "data": [0, 0]})
    );
    // Triton's classification extension (tritonclient's class_count) is refused, not answered
    // with raw tensors the client would misread.
    let classify = json!({"inputs": kserve_inputs(&instances),
        "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]});
    let (status, e) = server.post_json("/v2/models/census/infer", &classify);
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("outputs[0].parameters.classification"),
        "{e}"
    );

    // The same request in Triton's binary tensor extension: a JSON header, then raw tensors.
    let mut inputs = kserve_inputs(&instances);
    let mut blob = Vec::new();
    for input in inputs.iter_mut() {
        let start = blob.len();
        for v in input["data"].as_array().unwrap() {
            match v {
                Value::String(s) => {
                    blob.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    blob.extend_from_slice(s.as_bytes());
                }
                n => blob.extend_from_slice(&n.as_i64().unwrap().to_le_bytes()),
            }
        }
        let obj = input.as_object_mut().unwrap();
        obj.remove("data");
        obj.insert(
            "parameters".into(),
            json!({"binary_data_size": blob.len() - start}),
        );
    }
    let header = json!({"inputs": inputs, "outputs": [{"name": "classes", "parameters": {"binary_data": true}}, {"name": "logistic"}]}).to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&blob);
    let len = header.len().to_string();
    let (status, head, answer) = http_bytes(
        &server.addr,
        "POST",
        "/v2/models/census/infer",
        &[("Inference-Header-Content-Length", &len)],
        &body,
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    // The answer in the same extension: `classes` (asked for as binary) as raw INT64 after the
    // JSON, `logistic` as JSON.
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    let json_len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("inference-header-content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Inference-Header-Content-Length in {head}"));
    let b: Value = serde_json::from_slice(&answer[..json_len]).unwrap();
    assert_eq!(
        b["outputs"][0],
        json!({"name": "classes", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}})
    );
    assert_eq!(b["outputs"][1], a["outputs"][1]);
    let classes: Vec<Value> = answer[json_len..]
        .chunks(8)
        .map(|c| json!(i64::from_le_bytes(c.try_into().unwrap())))
        .collect();
    assert_eq!(json!(classes), a["outputs"][0]["data"]);

    // Truncated binary data and a BYTES length prefix past the end are 400s.
    let (status, text) = http(
        &server.addr,
        "POST",
        "/v2/models/census/infer",
        &[("Inference-Header-Content-Length", &len)],
        &body[..body.len() - 3],
    )
    .unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("native_country"), "{text}");

    // A known endpoint with the wrong method is 405 naming the one to use (as Triton answers);
    // an unknown one stays 404.
    for (method, path, want, allow) in [
        ("GET", "/v2/models/census/infer", 405, Some("POST")),
        (
            "PUT",
            "/v2/models/census/versions/1/infer",
            405,
            Some("POST"),
        ),
        ("POST", "/v2/models/census/ready", 405, Some("GET")),
        ("DELETE", "/v2/models/census", 405, Some("GET")),
        ("GET", "/v2/models/census/stats", 404, None),
    ] {
        let (status, head, body) = http_bytes(&server.addr, method, path, &[], b"").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, want, "{method} {path}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(path), "{message}");
        match allow {
            Some(allow) => {
                assert!(message.contains(&format!("use {allow}")), "{message}");
                assert!(
                    head.to_ascii_lowercase()
                        .contains(&format!("allow: {}", allow.to_ascii_lowercase())),
                    "{head}"
                );
            }
            None => assert!(message.contains("no such endpoint"), "{message}"),
        }
    }
}

#[test]
fn bad_requests_get_4xx_naming_the_problem() {
    let (server, _) = bundled_server(&["--max-body-bytes", "20000"]);
    let good = census_instance();
    let with = |key: &str, value: Value| {
        let mut i = good.clone();
        i[key] = value;
        i
    };
    let without = |key: &str| {
        let mut i = good.clone();
        i.as_object_mut().unwrap().remove(key);
        i
    };
    let predict = "/v1/projects/p/models/census:predict";
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (predict, "{\"instances\": [".into(), 400, "malformed JSON in request body: EOF while parsing a list at line 1 column 15"),
        (predict, json!({"signature_name": "x"}).to_string(), 400, "Serving signature name: \"x\" not found in signature def"),
        (predict, json!({"signature_name": 7, "instances": [good]}).to_string(), 400, "'signature_name' must be a string, got 7"),
        (predict, json!({"instances": [with("workclass", json!("NAN_TOKEN"))]}).to_string().replace("\"NAN_TOKEN\"", "NaN"), 400, "instance 0: input 'workclass': expected a string, got NaN"),
        (predict, json!({"instances": [with("age", json!("NAN_TOKEN"))]}).to_string().replace("\"NAN_TOKEN\"", "Infinity"), 400, "instance 0: input 'age': expected an integer (int64), got Infinity"),
        (predict, json!({"signature_name": "serving_default"}).to_string(), 400, "missing 'instances'"),
        (predict, json!({"instances": [good], "inputs": {}}).to_string(), 400, "only one of 'inputs' or 'instances'"),
        (predict, json!({"instances": []}).to_string(), 400, "'instances' is empty"),
        (predict, json!({"instances": [good, without("race")]}).to_string(), 400, "instance 1: missing input 'race'"),
        (predict, json!({"instances": [with("salary", json!(1))]}).to_string(), 400, "instance 0: unknown input 'salary'"),
        (predict, json!({"instances": [with("age", json!("old"))]}).to_string(), 400, "instance 0: input 'age': expected an integer (int64), got \"old\""),
        (predict, json!({"instances": [with("gender", json!(1))]}).to_string(), 400, "instance 0: input 'gender': expected a string, got 1"),
        (predict, json!({"instances": [with("age", json!([25]))]}).to_string(), 400, "instance 0: input 'age': expected a scalar per instance, got a list"),
        (predict, json!({"instances": [with("age", json!(25.5))]}).to_string(), 400, "expected an integer (int64), got 25.5"),
        (predict, json!({"instances": [with("race", json!({"b64": "!!notbase64"}))]}).to_string(), 400, "instance 0: input 'race': invalid base64"),
        (predict, json!({"instances": [with("race", json!("Wh\u{0}ite"))]}).to_string(), 400, "instance 0: input 'race': string contains a NUL byte"),
        ("/v1/models/census:predict", json!({"inputs": {"age": [1, 2], "workclass": ["a"], "education": ["a"], "education_num": [1], "marital_status": ["a"], "occupation": ["a"], "relationship": ["a"], "race": ["a"], "gender": ["a"], "capital_gain": [0], "capital_loss": [0], "hours_per_week": [1], "native_country": ["a"]}}).to_string(), 400, "ragged input: the inputs have different batch sizes"),
        ("/v1/projects/p/models/nosuch:predict", json!({"instances": [good]}).to_string(), 404, "model 'nosuch' not found"),
        ("/v1/projects/p/models/census/versions/123:predict", json!({"instances": [good]}).to_string(), 404, "has no available version 123"),
        ("/v1/projects/p/models/census/versions/prod:predict", json!({"instances": [good]}).to_string(), 404, "has no version label 'prod'"),
        ("/v1/models/census/labels/prod:predict", json!({"instances": [good]}).to_string(), 404, "has no version label 'prod'"),
        ("/v2/models/census/infer", json!({"inputs": [{"name": "age", "shape": [1], "datatype": "BYTES", "data": ["1"]}]}).to_string(), 400, "datatype \"BYTES\" does not match the model's INT64"),
        ("/v2/models/census/infer", json!({"inputs": kserve_inputs(std::slice::from_ref(&good)), "outputs": "probabilities"}).to_string(), 400, "outputs must be a list of output objects"),
        ("/v2/models/census/infer", json!({"inputs": kserve_inputs(std::slice::from_ref(&good)), "id": 5}).to_string(), 400, "id must be a string"),
        (predict, format!("{{\"instances\": [{}]}}", vec![good.to_string(); 200].join(",")), 413, "larger than the limit of 20000 bytes"),
    ];
    for (path, body, want_status, needle) in cases {
        let (status, text) = server.post(path, &body);
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        let message = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error string: {text}"));
        assert_eq!(status, want_status, "{path} {needle}: {message}");
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    // Compressed bodies are decoded (gzip, zlib and raw deflate); the body limit holds for the
    // decoded bytes; an encoding the server lacks, or bytes that do not decode, are named.
    use std::io::Write;
    let body = json!({"instances": [good]}).to_string();
    let (_, plain) = server.post(predict, &body);
    let compress = |encoder: &mut dyn std::io::Write| encoder.write_all(body.as_bytes()).unwrap();
    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        compress(&mut e);
        e.finish().unwrap()
    };
    let zlib = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        compress(&mut e);
        e.finish().unwrap()
    };
    let raw = {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        compress(&mut e);
        e.finish().unwrap()
    };
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b' '; 1 << 20]).unwrap();
        e.finish().unwrap()
    };
    assert!(bomb.len() < 20000, "the bomb fits the limit compressed");
    let cases: Vec<(&str, &[u8], u16, &str)> = vec![
        ("gzip", &gzip, 200, "predictions"),
        ("deflate", &zlib, 200, "predictions"),
        ("deflate", &raw, 200, "predictions"),
        (
            "gzip",
            b"\x1f\x8b\x08\x00not gzip",
            400,
            "not valid gzip data",
        ),
        ("gzip", &bomb, 413, "larger than the limit of 20000 bytes"),
        (
            "br",
            b"{}",
            415,
            "Content-Encoding \\\"br\\\" is not supported",
        ),
    ];
    for (encoding, bytes, want, needle) in cases {
        let (status, text) = http(
            &server.addr,
            "POST",
            predict,
            &[("Content-Encoding", encoding)],
            bytes,
        )
        .unwrap();
        assert_eq!(status, want, "{encoding}: {text}");
        assert!(text.contains(needle), "{encoding}: {text}");
        if want == 200 {
            assert_eq!(text, plain, "{encoding}");
        }
    }
    // None of them stopped the server.
    let (status, _) = server.post_json(predict, &json!({"instances": [good]}));
    assert_eq!(status, 200);
}

#[test]
fn answers_are_compressed_for_clients_that_ask() {
    let (server, _) = bundled_server(&[]);
    let predict = "/v1/projects/p/models/census:predict";
    let body = json!({"instances": vec![census_instance(); 40]}).to_string();
    let (status, plain) = server.post(predict, &body);
    assert_eq!(status, 200, "{plain}");
    assert!(plain.len() > 1024, "a large answer: {} bytes", plain.len());
    let decode = |coding: &str, bytes: &[u8]| -> String {
        use std::io::Read;
        let mut out = String::new();
        match coding {
            "gzip" => flate2::read::GzDecoder::new(bytes).read_to_string(&mut out),
            _ => flate2::read::ZlibDecoder::new(bytes).read_to_string(&mut out),
        }
        .unwrap_or_else(|e| panic!("{coding}: {e}"));
        out
    };
    // What each Accept-Encoding gets: tritonclient sends one coding, httplib2 (under
    // google-api-python-client) "gzip, deflate", curl --compressed a list with more.
    let cases = [
        ("gzip", Some("gzip")),
        ("gzip, deflate", Some("gzip")),
        ("deflate, gzip, br, zstd", Some("gzip")),
        ("deflate", Some("deflate")),
        ("gzip;q=0.2, deflate", Some("deflate")),
        ("gzip;q=0, deflate;q=0", None),
        ("br", None),
        ("identity", None),
    ];
    for (accept, want) in cases {
        let (status, head, bytes) = http_bytes(
            &server.addr,
            "POST",
            predict,
            &[
                ("Content-Type", "application/json"),
                ("Accept-Encoding", accept),
            ],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 200, "{accept}: {head}");
        let head = head.to_ascii_lowercase();
        match want {
            Some(coding) => {
                assert!(
                    head.contains(&format!("content-encoding: {coding}")),
                    "{accept}: {head}"
                );
                assert!(head.contains("vary: accept-encoding"), "{accept}: {head}");
                assert!(bytes.len() < plain.len() / 4, "{accept}: {}", bytes.len());
                assert_eq!(decode(coding, &bytes), plain, "{accept}");
            }
            None => {
                assert!(!head.contains("content-encoding"), "{accept}: {head}");
                assert_eq!(String::from_utf8_lossy(&bytes), plain, "{accept}");
            }
        }
    }
    // A small answer goes out as it is; the metrics page (as Prometheus scrapes it) is compressed.
    let one = json!({"instances": [census_instance()]}).to_string();
    let (_, head, bytes) = http_bytes(
        &server.addr,
        "POST",
        predict,
        &[("Accept-Encoding", "gzip")],
        one.as_bytes(),
    )
    .unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&bytes).contains("predictions"));
    let (status, head, bytes) = http_bytes(
        &server.addr,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip")],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    assert!(decode("gzip", &bytes).contains("mlengine_requests_total"));
}

#[test]
fn metrics_after_traffic_pass_promtool() {
    let (server, version) = bundled_server(&[]);
    for _ in 0..3 {
        server.post_json(
            "/v1/projects/p/models/census:predict",
            &json!({"instances": [census_instance()]}),
        );
    }
    server.post("/v1/projects/p/models/census:predict", "{");
    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(server.get("/monitoring/prometheus/metrics").0, 200);
    let ok = format!("mlengine_requests_total{{api=\"cloudml\",model=\"census\",protocol=\"rest\",status=\"200\",version=\"{version}\"}} 3");
    assert!(text.contains(&ok), "{text}");
    assert!(text.contains("status=\"400\""), "{text}");
    assert!(text.contains("mlengine_request_duration_seconds_bucket{api=\"cloudml\",model=\"census\",protocol=\"rest\",le=\"0.00005\"}"), "{text}");
    assert!(
        text.contains("mlengine_model_load_attempts_total{model=\"census\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mlengine_available_versions{model=\"census\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# HELP mlengine_inference_duration_seconds"),
        "{text}"
    );

    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child =
        promtool.expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn bad_serve_flags_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("models.yaml");
    std::fs::write(
        &config,
        "models:\n  - name: census\n    base_path: nowhere\n",
    )
    .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--model-base-path".into(), "/nonexistent/Servo".into()],
            "is not a directory",
        ),
        (
            vec!["--version-policy".into(), "newest".into()],
            "invalid value 'newest' for '--version-policy <VERSION_POLICY>': invalid version policy",
        ),
        (
            vec!["--version-labels".into(), "v1=abc".into()],
            "is not a version number",
        ),
        (
            vec![
                "--model-config-file".into(),
                config.to_str().unwrap().into(),
            ],
            "model 'census': base path",
        ),
        (
            vec!["--file-system-poll-wait-seconds".into(), "soon".into()],
            "invalid value 'soon'",
        ),
        (
            vec!["--file-system-poll-wait-seconds".into(), "1e30".into()],
            "must be 0 (no polling) or between 0.01 and 31536000 (a year), got 1000000000000000000000000000000",
        ),
        (
            vec!["--version-labels".into(), "5=1".into()],
            "a label is letters, digits, '_' or '-', and not a number",
        ),
        (
            vec!["--version-labels".into(), "=1".into()],
            "a label is letters, digits",
        ),
        (
            vec!["--version-labels".into(), "a=1,a=9".into()],
            "names label \"a\" twice",
        ),
        (
            vec!["--model-name".into(), "..".into()],
            "--model-name: model name \"..\" must be non-empty, not '.' or '..'",
        ),
        (
            vec!["--header-read-timeout-seconds".into(), "0".into()],
            "invalid value '0' for '--header-read-timeout-seconds",
        ),
    ];
    for (args, needle) in cases {
        let out = run(bin()
            .args(["serve", "--host", "127.0.0.1", "--rest-port", "0"])
            .args(&args));
        assert_error(&out, needle);
    }
    // Without a GPU (or the onnxruntime-gpu build), --device cuda stops with the reason rather
    // than silently serving on the CPU.
    let out = run(&mut Server::command(&["--device", "cuda"]));
    assert!(!out.status.success());
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{last}");
    assert!(
        last.contains("--gpu") || last.contains("--device cuda"),
        "{last}"
    );
}

#[test]
fn several_models_from_a_config_file_with_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundled_version().join("model.onnx");
    for (name, versions) in [("a", vec![1u64, 2]), ("b", vec![5])] {
        for v in versions {
            publish_version(&tmp.path().join(name), v, &model);
        }
    }
    let config = tmp.path().join("models.yaml");
    std::fs::write(&config, "models:\n  - name: a\n    base_path: a\n    version_policy: all\n    version_labels: {stable: 1, canary: 2}\n  - name: b\n    base_path: b\n").unwrap();
    let server = Server::start(&[
        "--model-config-file",
        config.to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0",
    ]);
    let body = json!({"instances": [census_instance()]});
    for (path, version) in [
        ("/v1/projects/p/locations/l/endpoints/a:predict", "2"),
        ("/v1/projects/p/locations/l/endpoints/b:predict", "5"),
    ] {
        let (status, a) = server.post_json(path, &body);
        assert_eq!(status, 200, "{a}");
        assert_eq!(a["deployedModelId"], version);
    }
    for (label, version) in [("stable", "1"), ("canary", "2")] {
        let (status, text) = server.get(&format!("/v1/models/a/labels/{label}/metadata"));
        assert_eq!(status, 200, "{text}");
        let m: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(m["model_spec"]["version"], version);
    }
    let (_, text) = server.get("/v1/models/a");
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        s["model_version_status"].as_array().unwrap().len(),
        2,
        "policy all: {s}"
    );
    assert_eq!(server.get("/v2/health/ready").0, 200);
}

#[test]
fn metric_series_carry_only_names_the_server_knows() {
    let server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    let body = json!({"instances": [census_instance()]}).to_string();
    for i in 0..20 {
        let (status, _) = server.post(&format!("/v1/projects/p/models/nosuch{i}:predict"), &body);
        assert_eq!(status, 404);
        // Vertex: any endpoint id reaches the only model, and is labelled with its name.
        let (status, _) = server.post(
            &format!("/v1/projects/p/locations/l/endpoints/{i}:predict"),
            &body,
        );
        assert_eq!(status, 200);
        let (status, _) = server.post(&format!("/v2/models/m{i}/infer"), "{}");
        assert_eq!(status, 404);
    }
    let (_, text) = server.get("/metrics");
    let mut models: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("mlengine_requests_total{")
                || l.starts_with("mlengine_request_duration_seconds_count{")
        })
        .filter_map(|l| l.split("model=\"").nth(1)?.split('"').next())
        .collect();
    models.sort();
    models.dedup();
    assert_eq!(models, ["(unknown)", "census"], "{text}");
}

/// Reads until the server closes the connection (or resets it), for at most `bound`; whether it
/// did.
fn closed_by_server(stream: &mut std::net::TcpStream, bound: std::time::Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(bound)).unwrap();
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn connections_that_never_finish_their_request_head_are_closed() {
    use std::io::Write;
    let (server, _) = bundled_server(&["--header-read-timeout-seconds", "1"]);
    let connect = |addr: &str| std::net::TcpStream::connect(addr).unwrap();
    // Half a request head, and nothing at all: both held their connection (and a task) for
    // good before the server had a header-read timeout. On the gRPC port: half of HTTP/2's
    // preface, and nothing.
    let mut half = connect(&server.addr);
    half.write_all(b"POST /v1/models/census:predict HTTP/1.1\r\nHost: x\r\nContent-Le")
        .unwrap();
    let mut nothing = connect(&server.addr);
    let mut grpc_half = connect(&server.grpc_addr);
    grpc_half.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    let mut grpc_nothing = connect(&server.grpc_addr);
    // The magic alone is not the whole preface: hyper then waits for the SETTINGS frame.
    let mut grpc_magic = connect(&server.grpc_addr);
    grpc_magic
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    // A body that never arrives whole: 408 (it held the connection, and shutdown, for good).
    let mut trickle = connect(&server.addr);
    trickle
        .write_all(
            b"POST /v1/models/census:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"instances\"",
        )
        .unwrap();
    // A keep-alive client is answered, then closed once idle past the timeout.
    let mut idle = connect(&server.addr);
    idle.write_all(b"GET /v1/models/census HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 15];
    std::io::Read::read_exact(&mut idle, &mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 OK");
    let bound = std::time::Duration::from_secs(60);
    trickle.set_read_timeout(Some(bound)).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut trickle, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request body did not arrive whole within 1 s"),
        "{answer}"
    );
    for (what, stream) in [
        ("half", &mut half),
        ("silent", &mut nothing),
        ("idle", &mut idle),
        ("gRPC half-preface", &mut grpc_half),
        ("gRPC silent", &mut grpc_nothing),
        ("gRPC magic only", &mut grpc_magic),
    ] {
        assert!(
            closed_by_server(stream, bound),
            "the {what} connection is still open after 60 s"
        );
    }
    // Meanwhile, and after, whole requests are answered.
    let (status, body) = server.post(
        "/v1/models/census:predict",
        &json!({"instances": [census_instance()]}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    // A connection that never greeted has no call to finish: on SIGTERM it does not hold the
    // server for its grace period (10 minutes here, with an hour to greet).
    let (mut server, _) = bundled_server(&[
        "--shutdown-grace-seconds",
        "600",
        "--header-read-timeout-seconds",
        "3600",
    ]);
    let _silent = connect(&server.grpc_addr);
    let _magic = {
        let mut s = connect(&server.grpc_addr);
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        s
    };
    let _idle = connect(&server.addr);
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status();
    wait_until("the server's exit after SIGTERM", || {
        server.child.try_wait().unwrap().is_some()
    });
}

#[test]
fn bad_bodies_unknown_paths_and_unrun_requests() {
    use std::io::{Read, Write};
    let (server, version) = bundled_server(&[]);
    // A badly chunked body is the client's malformed request (400), not one over the size
    // limit (413).
    let mut stream = std::net::TcpStream::connect(server.addr.as_str()).unwrap();
    stream
        .write_all(
            b"POST /v1/models/census:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("the request body could not be read"),
        "{answer}"
    );
    // A path no API has: a JSON error, as every other (tritonclient read an empty body as
    // "empty response").
    let (status, text) = server.post("/v2/repository/index", "{}");
    assert_eq!(status, 404);
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e, json!({"error": "no endpoint POST /v2/repository/index"}));
    // Requests answered without running (here: past their deadline before they queue) are
    // not inference time: under overload they pulled the histogram toward zero.
    let count = format!(
        "mlengine_inference_duration_seconds_count{{model=\"census\",version=\"{version}\"}}"
    );
    let body = json!({"instances": [census_instance()]}).to_string();
    for _ in 0..3 {
        let (status, text) = http(
            &server.addr,
            "POST",
            "/v1/models/census:predict",
            &[("X-Request-Timeout-Ms", "0")],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 504, "{text}");
    }
    assert_eq!(metric(&server, &count), 0.0);
    let (status, text) = server.post("/v1/models/census:predict", &body);
    assert_eq!(status, 200, "{text}");
    assert_eq!(metric(&server, &count), 1.0);
}
