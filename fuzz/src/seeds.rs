//! Seed inputs: the requests real clients send (gcloud and google-api-python-client bodies,
//! TF Serving's REST and gRPC clients, tritonclient's JSON and binary forms, batch-predict files,
//! a model config). `tests/corpus.rs` writes them to `fuzz/seeds/` and checks the files match.

use std::collections::HashMap;

use mlengine::api::grpc::proto::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use mlengine::api::grpc::proto::inference::{InferTensorContents, ModelInferRequest};
use mlengine::api::grpc::proto::tensorflow::serving::{
    input::Kind, ClassificationRequest, ExampleList, ExampleListWithContext, Input, ModelSpec,
    PredictRequest,
};
use mlengine::api::grpc::proto::tensorflow::{
    feature, tensor_shape_proto::Dim, BytesList, DataType, Example, Feature, Features, Int64List,
    TensorProto, TensorShapeProto,
};
use prost::Message;
use serde_json::{json, Value};

fn census_row() -> Value {
    json!({
        "age": 25, "workclass": "Private", "education": "11th", "education_num": 7,
        "marital_status": "Never-married", "occupation": "Machine-op-inspct",
        "relationship": "Own-child", "race": "Black", "gender": "Male", "capital_gain": 0,
        "capital_loss": 0, "hours_per_week": 40, "native_country": "United-States"
    })
}

const CSV_ROW: &str = "25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, \
                       Own-child, Black, Male, 0, 0, 40, United-States";

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// Triton's binary form: the JSON header's length, the header, then the raw bytes.
fn framed(header: &Value, binary: &[u8]) -> Vec<u8> {
    let header = header.to_string().into_bytes();
    let len = u16::try_from(header.len()).unwrap_or(0xfffe);
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(binary);
    out
}

fn unframed(v: &Value) -> Vec<u8> {
    let mut out = vec![0xff, 0xff];
    out.extend_from_slice(&bytes(v));
    out
}

fn shape(dims: &[i64]) -> Option<TensorShapeProto> {
    Some(TensorShapeProto {
        dim: dims
            .iter()
            .map(|&size| Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    })
}

fn example() -> Example {
    let mut feature = HashMap::new();
    for (k, v) in census_row().as_object().into_iter().flatten() {
        let kind = match v {
            Value::Number(n) => feature::Kind::Int64List(Int64List {
                value: vec![n.as_i64().unwrap_or_default()],
            }),
            other => feature::Kind::BytesList(BytesList {
                value: vec![other.as_str().unwrap_or_default().as_bytes().to_vec()],
            }),
        };
        feature.insert(k.clone(), Feature { kind: Some(kind) });
    }
    Example {
        features: Some(Features { feature }),
    }
}

/// An Example's bytes with its features in name order. Protobuf merges repeated occurrences of a
/// message field, so one feature per occurrence is the same Example, encoded the same every time.
fn serialized(example: &Example) -> Vec<u8> {
    let mut features: Vec<(&String, &Feature)> = example
        .features
        .iter()
        .flat_map(|f| f.feature.iter())
        .collect();
    features.sort_by_key(|(k, _)| *k);
    features
        .into_iter()
        .flat_map(|(k, v)| {
            Example {
                features: Some(Features {
                    feature: HashMap::from([(k.clone(), v.clone())]),
                }),
            }
            .encode_to_vec()
        })
        .collect()
}

fn spec() -> Option<ModelSpec> {
    Some(ModelSpec {
        name: "census".into(),
        signature_name: "serving_default".into(),
        version_choice: None,
    })
}

/// Whether two seeds of `target` say the same: protobuf maps encode in no fixed order, so those
/// are compared decoded.
pub fn same(target: &str, a: &[u8], b: &[u8]) -> bool {
    fn decoded<M: Message + Default + PartialEq>(a: &[u8], b: &[u8]) -> bool {
        matches!((M::decode(a), M::decode(b)), (Ok(x), Ok(y)) if x == y)
    }
    match target {
        "kserve_grpc" => decoded::<ModelInferRequest>(a, b),
        "tfserving_predict" => decoded::<PredictRequest>(a, b),
        "tfserving_examples" => decoded::<ClassificationRequest>(a, b),
        _ => a == b,
    }
}

/// The seeds of one target, named.
pub fn seeds(target: &str) -> Vec<(&'static str, Vec<u8>)> {
    let row = census_row();
    match target {
        "predict_json" => vec![
            ("instances", bytes(&json!({ "instances": [row, row] }))),
            (
                "signature_name",
                bytes(&json!({"signature_name": "serving_default", "instances": [row]})),
            ),
            (
                "columnar",
                bytes(&json!({"inputs": {"age": [25, 38], "workclass": ["Private", "Local-gov"]}})),
            ),
            (
                "dense",
                bytes(&json!({"instances": [{"x": [1.0, 2.5, -3.0], "mask": true}]})),
            ),
            (
                "dense_columnar",
                bytes(&json!({"inputs": {"x": [[1.0, 2.0, 3.0]], "mask": [false]}})),
            ),
            ("csv", bytes(&json!({ "instances": [CSV_ROW] }))),
            (
                "b64",
                bytes(&json!({"instances": [{"csv_row": {"b64": "MjUsIFByaXZhdGU="}}]})),
            ),
            ("float_age", bytes(&json!({"instances": [{"age": 25.0}]}))),
        ],
        "kserve_rest" => {
            let age: Vec<u8> = [25i64, 38].iter().flat_map(|v| v.to_le_bytes()).collect();
            let mut text = Vec::new();
            for s in ["Private", "Local-gov"] {
                text.extend_from_slice(&(s.len() as u32).to_le_bytes());
                text.extend_from_slice(s.as_bytes());
            }
            let floats: Vec<u8> = [1f32, 2.0, 3.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            vec![
                (
                    "json",
                    unframed(&json!({"id": "1", "inputs": [
                        {"name": "age", "datatype": "INT64", "shape": [2], "data": [25, 38]},
                        {"name": "csv_row", "datatype": "BYTES", "shape": [1], "data": [CSV_ROW]}
                    ], "outputs": [{"name": "probabilities"}]})),
                ),
                (
                    // The options tritonclient sends most, on a body the fast decoder takes.
                    "json_options",
                    unframed(&json!({"inputs": [
                        {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]},
                        {"name": "mask", "datatype": "BOOL", "shape": [1], "data": [true]}
                    ], "parameters": {"binary_data_output": true, "timeout": 100000},
                       "outputs": [{"name": "logits", "parameters": {"binary_data": false}},
                                   {"name": "probabilities"}]})),
                ),
                (
                    "binary",
                    framed(
                        &json!({"inputs": [
                            {"name": "age", "datatype": "INT64", "shape": [2],
                             "parameters": {"binary_data_size": age.len()}},
                            {"name": "workclass", "datatype": "BYTES", "shape": [2],
                             "parameters": {"binary_data_size": text.len()}}
                        ], "parameters": {"timeout": 1000000}}),
                        &[age.clone(), text.clone()].concat(),
                    ),
                ),
                (
                    "dense",
                    framed(
                        &json!({"inputs": [
                            {"name": "x", "datatype": "FP32", "shape": [1, 3],
                             "parameters": {"binary_data_size": floats.len()}},
                            {"name": "mask", "datatype": "BOOL", "shape": [1], "data": [true]}
                        ]}),
                        &floats,
                    ),
                ),
            ]
        }
        "kserve_grpc" => {
            let input = |name: &str, datatype: &str, shape: Vec<i64>, contents| InferInputTensor {
                name: name.into(),
                datatype: datatype.into(),
                shape,
                parameters: HashMap::new(),
                contents,
            };
            let raw = ModelInferRequest {
                model_name: "census".into(),
                inputs: vec![
                    input("age", "INT64", vec![1], None),
                    input("csv_row", "BYTES", vec![1], None),
                ],
                raw_input_contents: vec![
                    25i64.to_le_bytes().to_vec().into(),
                    [
                        &(CSV_ROW.len() as u32).to_le_bytes()[..],
                        CSV_ROW.as_bytes(),
                    ]
                    .concat()
                    .into(),
                ],
                outputs: vec![InferRequestedOutputTensor {
                    name: "probabilities".into(),
                    parameters: HashMap::new(),
                }],
                ..Default::default()
            };
            let typed = ModelInferRequest {
                model_name: "dense".into(),
                inputs: vec![
                    input(
                        "x",
                        "FP32",
                        vec![1, 3],
                        Some(InferTensorContents {
                            fp32_contents: vec![1.0, 2.0, 3.0],
                            ..Default::default()
                        }),
                    ),
                    input(
                        "mask",
                        "BOOL",
                        vec![1],
                        Some(InferTensorContents {
                            bool_contents: vec![true],
                            ..Default::default()
                        }),
                    ),
                ],
                ..Default::default()
            };
            vec![
                ("raw", raw.encode_to_vec()),
                ("typed", typed.encode_to_vec()),
            ]
        }
        "tfserving_predict" => {
            let tensor = |dtype: DataType, dims: &[i64]| TensorProto {
                dtype: dtype as i32,
                tensor_shape: shape(dims),
                ..Default::default()
            };
            let mut census = HashMap::new();
            for (k, v) in row.as_object().into_iter().flatten() {
                let t = match v {
                    // The original census model's clients send DT_FLOAT numbers.
                    Value::Number(n) => TensorProto {
                        float_val: vec![n.as_f64().unwrap_or_default() as f32],
                        ..tensor(DataType::DtFloat, &[1])
                    },
                    other => TensorProto {
                        string_val: vec![other.as_str().unwrap_or_default().as_bytes().to_vec()],
                        ..tensor(DataType::DtString, &[1])
                    },
                };
                census.insert(k.clone(), t);
            }
            let dense = HashMap::from([
                (
                    "x".to_string(),
                    TensorProto {
                        tensor_content: [1f32, 2.0, 3.0]
                            .iter()
                            .flat_map(|v| v.to_le_bytes())
                            .collect(),
                        ..tensor(DataType::DtFloat, &[1, 3])
                    },
                ),
                (
                    "mask".to_string(),
                    TensorProto {
                        bool_val: vec![true],
                        ..tensor(DataType::DtBool, &[4])
                    },
                ),
            ]);
            let examples = HashMap::from([(
                "inputs".to_string(),
                TensorProto {
                    string_val: vec![serialized(&example())],
                    ..tensor(DataType::DtString, &[1])
                },
            )]);
            [census, dense, examples]
                .into_iter()
                .zip(["census", "dense_broadcast", "examples"])
                .map(|(inputs, name)| {
                    let request = PredictRequest {
                        model_spec: spec(),
                        inputs,
                        output_filter: vec![],
                    };
                    (name, request.encode_to_vec())
                })
                .collect()
        }
        "tfserving_examples" => {
            let list = ClassificationRequest {
                model_spec: spec(),
                input: Some(Input {
                    kind: Some(Kind::ExampleList(ExampleList {
                        examples: vec![example(), example()],
                    })),
                }),
            };
            let mut partial = example();
            if let Some(f) = partial.features.as_mut() {
                f.feature.retain(|k, _| k == "age" || k == "occupation");
            }
            let mut context = example();
            if let Some(f) = context.features.as_mut() {
                f.feature.retain(|k, _| k != "age" && k != "occupation");
            }
            let with_context = ClassificationRequest {
                model_spec: spec(),
                input: Some(Input {
                    kind: Some(Kind::ExampleListWithContext(ExampleListWithContext {
                        examples: vec![partial],
                        context: Some(context),
                    })),
                }),
            };
            vec![
                ("example_list", list.encode_to_vec()),
                ("with_context", with_context.encode_to_vec()),
            ]
        }
        "b64_values" => vec![
            ("text", b"MjUsIFByaXZhdGUsIDIyNjgwMg==".to_vec()),
            ("urlsafe", b"-_-_".to_vec()),
        ],
        "batch_lines" => {
            let mut lines = Vec::new();
            lines.extend_from_slice(b"\xef\xbb\xbf");
            for _ in 0..3 {
                lines.extend_from_slice(&bytes(&row));
                lines.extend_from_slice(b"\r\n");
            }
            lines.extend_from_slice(b"{\"age\": \"x\"}\n\n");
            lines.extend_from_slice(CSV_ROW.as_bytes());
            vec![
                ("census", lines),
                (
                    "dense",
                    b"{\"x\": [1, 2, 3], \"mask\": true}\n[[1, 2, 3]]\n".to_vec(),
                ),
            ]
        }
        "model_config" => vec![
            (
                "yaml",
                b"models:\n  - name: census\n    base_path: models/census/export/Servo\n    \
                  version_policy: latest:2\n    version_labels: {stable: 1795690396}\n"
                    .to_vec(),
            ),
            (
                "json",
                bytes(&json!({"models": [
                    {"name": "a", "base_path": "/srv/a", "version_policy": "specific:1,2"},
                    {"name": "b", "base_path": "b", "version_policy": "all"}
                ]})),
            ),
        ],
        _ => vec![],
    }
}
