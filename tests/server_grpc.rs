//! gRPC over real sockets: TF Serving and KServe v2 methods, the error table, health, reflection,
//! equality with REST, and hot reload under gRPC load.

mod common;

use std::collections::HashMap;

use common::*;
use mlengine::api::grpc::proto::inference::{
    grpc_inference_service_client::GrpcInferenceServiceClient,
    model_infer_request::{InferInputTensor, InferRequestedOutputTensor},
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use mlengine::api::grpc::proto::tensorflow::serving::{
    model_service_client::ModelServiceClient, model_spec::VersionChoice,
    prediction_service_client::PredictionServiceClient, GetModelMetadataRequest,
    GetModelStatusRequest, ModelSpec, PredictRequest, SignatureDefMap,
};
use mlengine::api::grpc::proto::tensorflow::{
    tensor_shape_proto::Dim, DataType, TensorProto, TensorShapeProto,
};
use prost::Message;
use serde_json::{json, Value};
use tonic::transport::Channel;

use mlengine::census::schema::INPUTS;

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

/// TF Serving inputs from JSON instances: string_val and int64_val.
fn tf_inputs(instances: &[Value]) -> HashMap<String, TensorProto> {
    INPUTS
        .iter()
        .map(|name| {
            let values: Vec<&Value> = instances.iter().map(|i| &i[name]).collect();
            let mut t = TensorProto {
                tensor_shape: shape(&[values.len() as i64]),
                ..Default::default()
            };
            if values[0].is_string() {
                t.dtype = DataType::DtString as i32;
                t.string_val = values
                    .iter()
                    .map(|v| v.as_str().unwrap().as_bytes().to_vec())
                    .collect();
            } else {
                t.dtype = DataType::DtInt64 as i32;
                t.int64_val = values.iter().map(|v| v.as_i64().unwrap()).collect();
            }
            (name.to_string(), t)
        })
        .collect()
}

fn spec(version: Option<VersionChoice>) -> Option<ModelSpec> {
    Some(ModelSpec {
        name: "census".into(),
        version_choice: version,
        signature_name: String::new(),
    })
}

/// KServe inputs in raw_input_contents, as tritonclient sends them.
/// A `Predict` of `instances` on the served version.
fn predict_request(instances: &[Value]) -> PredictRequest {
    PredictRequest {
        model_spec: spec(None),
        inputs: tf_inputs(instances),
        ..Default::default()
    }
}

fn kserve_request(instances: &[Value]) -> ModelInferRequest {
    let mut req = ModelInferRequest {
        model_name: "census".into(),
        id: "req-1".into(),
        ..Default::default()
    };
    for name in INPUTS {
        let values: Vec<&Value> = instances.iter().map(|i| &i[name]).collect();
        let mut raw = Vec::new();
        let datatype = if values[0].is_string() {
            for v in &values {
                let s = v.as_str().unwrap();
                raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
            "BYTES"
        } else {
            values
                .iter()
                .for_each(|v| raw.extend_from_slice(&v.as_i64().unwrap().to_le_bytes()));
            "INT64"
        };
        req.inputs.push(InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![values.len() as i64],
            ..Default::default()
        });
        req.raw_input_contents.push(raw.into());
    }
    req
}

fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// REST predictions of the instances, per output, as f32 (the model's precision).
fn rest_outputs(server: &Server, instances: &[Value]) -> HashMap<String, Vec<f64>> {
    let mut out: HashMap<String, Vec<f64>> = HashMap::new();
    for chunk in instances.chunks(500) {
        let (status, a) = server.post_json(
            "/v1/projects/p/models/census:predict",
            &json!({"instances": chunk}),
        );
        assert_eq!(status, 200, "{a}");
        for p in a["predictions"].as_array().unwrap() {
            for (k, v) in p.as_object().unwrap() {
                let entry = out.entry(k.clone()).or_default();
                match v {
                    Value::Array(items) => entry.extend(items.iter().map(|x| x.as_f64().unwrap())),
                    x => entry.push(x.as_f64().unwrap()),
                }
            }
        }
    }
    out
}

#[test]
fn tf_serving_predict_metadata_and_status() {
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
        &format!("stable={version}"),
    ]);
    let instances = vec![census_instance(), census_instance()];
    let rest = rest_outputs(&server, &instances);
    rt().block_on(async {
        let mut client = PredictionServiceClient::new(channel(&server).await);
        let answer = client
            .predict(predict_request(&instances))
            .await
            .unwrap()
            .into_inner();
        let served = answer.model_spec.unwrap();
        assert_eq!(
            served.version_choice,
            Some(VersionChoice::Version(version.parse().unwrap()))
        );
        let probs = &answer.outputs["probabilities"];
        assert_eq!(probs.dtype, DataType::DtFloat as i32);
        assert_eq!(probs.tensor_shape, shape(&[2, 2]));
        let got: Vec<f64> = probs.float_val.iter().map(|&x| x as f64).collect();
        assert_eq!(got, rest["probabilities"], "gRPC and REST differ");
        assert_eq!(answer.outputs["classes"].int64_val, vec![0, 0]);

        // Version label, output_filter, tensor_content and a single value broadcast to the shape.
        let mut inputs = tf_inputs(&instances);
        let age = inputs.get_mut("age").unwrap();
        age.int64_val.clear();
        age.tensor_content = [25i64, 25].iter().flat_map(|v| v.to_le_bytes()).collect();
        inputs.get_mut("workclass").unwrap().string_val.truncate(1);
        let filtered = client
            .predict(PredictRequest {
                model_spec: spec(Some(VersionChoice::VersionLabel("stable".into()))),
                inputs,
                output_filter: vec!["logistic".into()],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(filtered.outputs.keys().collect::<Vec<_>>(), ["logistic"]);
        assert_eq!(
            filtered.outputs["logistic"].float_val,
            answer.outputs["logistic"].float_val
        );

        let meta = client
            .get_model_metadata(GetModelMetadataRequest {
                model_spec: spec(None),
                metadata_field: vec!["signature_def".into()],
            })
            .await
            .unwrap()
            .into_inner();
        let any = &meta.metadata["signature_def"];
        assert_eq!(
            any.type_url,
            "type.googleapis.com/tensorflow.serving.SignatureDefMap"
        );
        let map = SignatureDefMap::decode(any.value.as_slice()).unwrap();
        let sig = &map.signature_def["serving_default"];
        assert_eq!(sig.inputs["age"].dtype, DataType::DtInt64 as i32);
        assert_eq!(sig.inputs["workclass"].dtype, DataType::DtString as i32);
        assert_eq!(sig.outputs["probabilities"].tensor_shape, shape(&[-1, 2]));
        assert_eq!(sig.method_name, "tensorflow/serving/predict");

        let mut models = ModelServiceClient::new(channel(&server).await);
        let status = models
            .get_model_status(GetModelStatusRequest {
                model_spec: spec(None),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.model_version_status.len(), 1);
        assert_eq!(status.model_version_status[0].version.to_string(), version);
        assert_eq!(status.model_version_status[0].state, 30, "AVAILABLE");
    });
}

#[test]
fn kserve_v2_grpc_methods() {
    let server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    let version = bundled_version()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let instances = vec![census_instance(), census_instance(), census_instance()];
    let rest = rest_outputs(&server, &instances);
    rt().block_on(async {
        let mut c = GrpcInferenceServiceClient::new(channel(&server).await);
        assert!(
            c.server_live(ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live
        );
        assert!(
            c.server_ready(ServerReadyRequest {})
                .await
                .unwrap()
                .into_inner()
                .ready
        );
        assert!(
            c.model_ready(ModelReadyRequest {
                name: "census".into(),
                version: String::new()
            })
            .await
            .unwrap()
            .into_inner()
            .ready
        );
        assert!(
            c.model_ready(ModelReadyRequest {
                name: "census".into(),
                version: version.clone()
            })
            .await
            .unwrap()
            .into_inner()
            .ready
        );
        assert!(
            !c.model_ready(ModelReadyRequest {
                name: "other".into(),
                version: String::new()
            })
            .await
            .unwrap()
            .into_inner()
            .ready
        );
        let meta = c
            .server_metadata(ServerMetadataRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(meta.name, "mlengine");
        let m = c
            .model_metadata(ModelMetadataRequest {
                name: "census".into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(m.versions, vec![version.clone()]);
        assert_eq!(m.platform, "onnxruntime_onnx");
        let age = m.inputs.iter().find(|t| t.name == "age").unwrap();
        assert_eq!(
            (age.datatype.as_str(), age.shape.as_slice()),
            ("INT64", &[-1i64][..])
        );

        let answer: ModelInferResponse = c
            .model_infer(kserve_request(&instances))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.id, "req-1");
        assert_eq!(answer.model_version, version);
        assert_eq!(answer.outputs.len(), 4);
        assert_eq!(answer.raw_output_contents.len(), 4);
        let i = answer
            .outputs
            .iter()
            .position(|o| o.name == "probabilities")
            .unwrap();
        assert_eq!(answer.outputs[i].shape, vec![3, 2]);
        let got: Vec<f64> = f32s(&answer.raw_output_contents[i])
            .iter()
            .map(|&x| x as f64)
            .collect();
        assert_eq!(got, rest["probabilities"]);

        // Typed contents and requested outputs.
        let mut typed = kserve_request(&instances);
        for (input, raw) in typed
            .inputs
            .iter_mut()
            .zip(std::mem::take(&mut typed.raw_input_contents))
        {
            let mut contents = InferTensorContents::default();
            if input.datatype == "INT64" {
                contents.int64_contents = raw
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
            } else {
                let mut pos = 0;
                while pos < raw.len() {
                    let n = u32::from_le_bytes(raw[pos..pos + 4].try_into().unwrap()) as usize;
                    contents
                        .bytes_contents
                        .push(raw[pos + 4..pos + 4 + n].to_vec().into());
                    pos += 4 + n;
                }
            }
            input.contents = Some(contents);
        }
        typed.outputs = vec![InferRequestedOutputTensor {
            name: "logistic".into(),
            parameters: Default::default(),
        }];
        let answer = c.model_infer(typed).await.unwrap().into_inner();
        assert_eq!(answer.outputs.len(), 1);
        assert_eq!(answer.outputs[0].name, "logistic");
        let got: Vec<f64> = f32s(&answer.raw_output_contents[0])
            .iter()
            .map(|&x| x as f64)
            .collect();
        assert_eq!(got, rest["logistic"]);
    });
}

#[test]
fn grpc_errors_use_the_shared_table() {
    let server = Server::start(&[
        "--file-system-poll-wait-seconds",
        "0",
        "--grpc-max-message-bytes",
        "4000",
    ]);
    let instances = vec![census_instance()];
    rt().block_on(async {
        let mut tf = PredictionServiceClient::new(channel(&server).await);
        let mut kv = GrpcInferenceServiceClient::new(channel(&server).await);
        let mut cases: Vec<(PredictRequest, tonic::Code, &str)> = Vec::new();
        let mut wrong_dtype = tf_inputs(&instances);
        wrong_dtype.get_mut("age").unwrap().dtype = DataType::DtString as i32;
        cases.push((
            PredictRequest {
                model_spec: spec(None),
                inputs: wrong_dtype,
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            "input 'age': dtype DT_STRING does not match the model's DT_INT64",
        ));
        // Another numeric type converts only when every value does, exactly.
        let mut inexact = tf_inputs(&instances);
        let age = inexact.get_mut("age").unwrap();
        age.dtype = DataType::DtFloat as i32;
        age.int64_val.clear();
        age.float_val = vec![25.5];
        cases.push((
            PredictRequest {
                model_spec: spec(None),
                inputs: inexact,
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            "input 'age': float32 value 25.5 (element 0) does not convert exactly to int64",
        ));
        let mut wrong_shape = tf_inputs(&instances);
        wrong_shape.get_mut("race").unwrap().tensor_shape = shape(&[1, 1]);
        cases.push((
            PredictRequest {
                model_spec: spec(None),
                inputs: wrong_shape,
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            "input 'race': shape [1, 1] does not fit the model's [-1]",
        ));
        let mut missing = tf_inputs(&instances);
        missing.remove("gender");
        cases.push((
            PredictRequest {
                model_spec: spec(None),
                inputs: missing,
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            "missing input 'gender'",
        ));
        cases.push((
            PredictRequest {
                model_spec: Some(ModelSpec {
                    name: "nosuch".into(),
                    ..Default::default()
                }),
                inputs: tf_inputs(&instances),
                ..Default::default()
            },
            tonic::Code::NotFound,
            "model 'nosuch' not found",
        ));
        cases.push((
            PredictRequest {
                model_spec: spec(Some(VersionChoice::Version(42))),
                inputs: tf_inputs(&instances),
                ..Default::default()
            },
            tonic::Code::NotFound,
            "has no available version 42",
        ));
        cases.push((
            PredictRequest {
                model_spec: spec(Some(VersionChoice::VersionLabel("prod".into()))),
                inputs: tf_inputs(&instances),
                ..Default::default()
            },
            tonic::Code::NotFound,
            "has no version label 'prod'",
        ));
        cases.push((
            PredictRequest {
                model_spec: spec(Some(VersionChoice::Version(-5))),
                inputs: tf_inputs(&instances),
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            "model_spec.version -5 is negative",
        ));
        for (req, code, needle) in cases {
            let e = tf.predict(req).await.unwrap_err();
            assert_eq!(e.code(), code, "{}", e.message());
            assert!(
                e.message().contains(needle),
                "{:?} lacks {needle:?}",
                e.message()
            );
        }

        let mut truncated = kserve_request(&instances);
        let first = &truncated.raw_input_contents[0];
        truncated.raw_input_contents[0] = first.slice(..first.len() - 1);
        let e = kv.model_infer(truncated).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message()
                .contains("input 'age': 7 bytes of data for 1 int64 elements"),
            "{}",
            e.message()
        );
        let mut past_end = kserve_request(&instances);
        past_end.raw_input_contents[1] = vec![200, 0, 0, 0, b'x'].into();
        let e = kv.model_infer(past_end).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains(
                "input 'workclass': BYTES element 0: length prefix 200 runs past the end"
            ),
            "{}",
            e.message()
        );
        let mut bad_type = kserve_request(&instances);
        bad_type.inputs[0].datatype = "BYTES".into();
        let e = kv.model_infer(bad_type).await.unwrap_err();
        assert!(
            e.message()
                .contains("datatype \"BYTES\" does not match the model's INT64"),
            "{}",
            e.message()
        );

        // Triton's classification extension (tritonclient's class_count) is refused.
        let mut classify = kserve_request(&instances);
        classify.outputs = vec![InferRequestedOutputTensor {
            name: "probabilities".into(),
            parameters: [(
                "classification".to_string(),
                mlengine::api::grpc::proto::inference::InferParameter {
                    parameter_choice: Some(
                        mlengine::api::grpc::proto::inference::infer_parameter::ParameterChoice::Int64Param(2),
                    ),
                },
            )]
            .into(),
        }];
        let e = kv.model_infer(classify).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().contains("outputs[0].parameters.classification"),
            "{}",
            e.message()
        );

        // Over the message size limit.
        let big = kserve_request(&vec![census_instance(); 40]);
        let e = kv.model_infer(big).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("4000"), "{}", e.message());
        // The server still answers.
        assert!(
            kv.server_live(ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live
        );
    });
}

#[test]
fn grpc_predictions_equal_rest_on_adult_test() {
    let rows = match census_dir() {
        Some(d) => mlengine::census::csv::read_local_files(&[d.join("adult.test")]).unwrap(),
        None => mlengine::census::fixture::rows(500, 4),
    };
    let instances: Vec<Value> = mlengine::census::fixture::to_json_instances(&rows)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    let rest = rest_outputs(&server, &instances);
    rt().block_on(async {
        let mut tf = PredictionServiceClient::new(channel(&server).await);
        let mut kv = GrpcInferenceServiceClient::new(channel(&server).await);
        let (mut tf_probs, mut kv_probs, mut tf_logits) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in instances.chunks(500) {
            let a = tf
                .predict(PredictRequest {
                    model_spec: spec(None),
                    inputs: tf_inputs(chunk),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            tf_probs.extend(
                a.outputs["probabilities"]
                    .float_val
                    .iter()
                    .map(|&x| x as f64),
            );
            tf_logits.extend(a.outputs["logits"].float_val.iter().map(|&x| x as f64));
            let b = kv
                .model_infer(kserve_request(chunk))
                .await
                .unwrap()
                .into_inner();
            let i = b
                .outputs
                .iter()
                .position(|o| o.name == "probabilities")
                .unwrap();
            kv_probs.extend(f32s(&b.raw_output_contents[i]).iter().map(|&x| x as f64));
        }
        assert_eq!(tf_probs.len(), rows.len() * 2);
        // Bit-identical: the same session, the same f32 values.
        assert!(
            tf_probs == rest["probabilities"],
            "TF Serving gRPC differs from REST"
        );
        assert!(
            kv_probs == rest["probabilities"],
            "KServe gRPC differs from REST"
        );
        assert!(tf_logits == rest["logits"]);
    });
}

#[test]
fn health_follows_readiness_and_reflection_lists_services() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("Servo");
    std::fs::create_dir_all(&base).unwrap();
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0.05",
    ]);
    rt().block_on(async {
        let mut health = HealthClient::new(channel(&server).await);
        let check = |service: &str| HealthCheckRequest {
            service: service.into(),
        };
        let status = |r: tonic_health::pb::HealthCheckResponse| r.status;
        let s = status(health.check(check("")).await.unwrap().into_inner());
        assert_eq!(s, ServingStatus::NotServing as i32, "no version yet");
        publish_version(&base, 1, &bundled_version().join("model.onnx"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        for service in [
            "",
            "tensorflow.serving.PredictionService",
            "tensorflow.serving.ModelService",
            "inference.GRPCInferenceService",
        ] {
            loop {
                let s = status(health.check(check(service)).await.unwrap().into_inner());
                if s == ServingStatus::Serving as i32 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{service} never SERVING"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }

        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut reflection = ServerReflectionClient::new(channel(&server).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = reflection
            .server_reflection_info(tokio_stream_once(request))
            .await
            .unwrap()
            .into_inner();
        let response = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("{response:?}")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for want in [
            "tensorflow.serving.PredictionService",
            "tensorflow.serving.ModelService",
            "inference.GRPCInferenceService",
            "grpc.health.v1.Health",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
    });
}

/// A one-message request stream.
fn tokio_stream_once<T: Send + 'static>(
    item: T,
) -> impl tonic::codegen::tokio_stream::Stream<Item = T> + Send + 'static {
    tonic::codegen::tokio_stream::iter(vec![item])
}

#[test]
fn twenty_swaps_under_grpc_load_fail_no_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("Servo");
    let model = bundled_version().join("model.onnx");
    publish_version(&base, 1, &model);
    let server = Server::start(&[
        "--model-base-path",
        base.to_str().unwrap(),
        "--file-system-poll-wait-seconds",
        "0.05",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let latest = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (stop, failures, latest, addr) = (
            stop.clone(),
            failures.clone(),
            latest.clone(),
            server.grpc_addr.clone(),
        );
        tasks.push(runtime.spawn(async move {
            let ch = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut c = GrpcInferenceServiceClient::new(ch);
            while !stop.load(Ordering::Relaxed) {
                match c.model_infer(kserve_request(&[census_instance()])).await {
                    Ok(r) => latest.store(
                        r.into_inner().model_version.parse().unwrap(),
                        Ordering::Relaxed,
                    ),
                    Err(e) => failures.lock().unwrap().push(format!("{e:?}")),
                }
            }
        }));
    }
    for n in 2..=21usize {
        publish_version(&base, n as u64, &model);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while latest.load(Ordering::Relaxed) != n {
            assert!(
                std::time::Instant::now() < deadline,
                "version {n} never served over gRPC"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        runtime.block_on(t).unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed gRPC requests: {:?}",
        failures.len(),
        failures.first()
    );
}

/// One gRPC call sent as raw HTTP/2: `chunks` go out as separate DATA frames. Returns the gRPC
/// status (from the trailers, or the headers of a trailers-only answer), the response's
/// content type and its body.
async fn raw_call(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
    chunks: Vec<Vec<u8>>,
) -> (tonic::Status, Option<String>, bytes::Bytes) {
    use http_body_util::BodyExt;
    type Chunks = http_body_util::StreamBody<
        futures::stream::Iter<
            std::vec::IntoIter<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>,
        >,
    >;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Chunks>();
    let frames: Vec<_> = chunks
        .into_iter()
        .map(|c| Ok(hyper::body::Frame::data(bytes::Bytes::from(c))))
        .collect();
    let mut request = http::Request::post(format!("http://{}{path}", server.grpc_addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let head = tonic::Status::from_header_map(response.headers());
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .and_then(tonic::Status::from_header_map);
    let status = head
        .or(trailers)
        .expect("a grpc-status in the headers or trailers");
    (status, content_type, collected.to_bytes())
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[test]
fn grpc_requests_are_read_however_they_are_framed() {
    let server = Server::start(&["--file-system-poll-wait-seconds", "0"]);
    const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
    const PREDICT: &str = "/tensorflow.serving.PredictionService/Predict";
    let instances = vec![census_instance(); 3];
    let infer = kserve_request(&instances).encode_to_vec();
    let predict = predict_request(&instances).encode_to_vec();
    rt().block_on(async {
        let mut kv = GrpcInferenceServiceClient::new(channel(&server).await);
        let mut tf = PredictionServiceClient::new(channel(&server).await);
        let want_infer = kv
            .model_infer(kserve_request(&instances))
            .await
            .unwrap()
            .into_inner();
        let want_predict = tf
            .predict(predict_request(&instances))
            .await
            .unwrap()
            .into_inner();

        // One message in one frame, and the same message cut into frames at awkward places
        // (inside the 5-byte prefix, inside the message): the same answer as tonic's client got.
        let whole = framed(&infer);
        let cut = vec![
            whole[..3].to_vec(),
            whole[3..40].to_vec(),
            vec![],
            whole[40..].to_vec(),
        ];
        for chunks in [vec![whole.clone()], cut] {
            let (status, content_type, body) = raw_call(&server, INFER, &[], chunks).await;
            assert_eq!(status.code(), tonic::Code::Ok, "{status:?}");
            assert_eq!(content_type.as_deref(), Some("application/grpc"));
            assert_eq!(body[0], 0, "uncompressed");
            let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
            assert_eq!(body.len(), 5 + len, "one message");
            let got = ModelInferResponse::decode(&body[5..]).unwrap();
            assert_eq!(got, want_infer);
        }
        let whole = framed(&predict);
        let cut = whole.chunks(7).map(<[u8]>::to_vec).collect();
        for chunks in [vec![whole.clone()], cut] {
            let (status, _, body) = raw_call(&server, PREDICT, &[], chunks).await;
            assert_eq!(status.code(), tonic::Code::Ok, "{status:?}");
            let got = mlengine::api::grpc::proto::tensorflow::serving::PredictResponse::decode(
                &body[5..],
            )
            .unwrap();
            assert_eq!(got, want_predict);
        }

        // Malformed bodies: a clear status, never an answer to half a request.
        let mut compressed_flag = framed(&infer);
        compressed_flag[0] = 1;
        let mut bad_flag = framed(&infer);
        bad_flag[0] = 7;
        let whole = framed(&infer);
        let two = [whole.clone(), whole.clone()].concat();
        let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
            (vec![], "Missing request message"),
            (
                vec![whole[..whole.len() - 1].to_vec()],
                "ended inside its message",
            ),
            (vec![whole[..3].to_vec()], "ended inside its message"),
            (vec![two], "more than one message"),
            (
                vec![compressed_flag],
                "compressed-flag but no grpc-encoding",
            ),
            (vec![bad_flag], "invalid compression flag: 7"),
            (vec![framed(b"\xff\xff\xff")], "failed to decode"),
        ];
        for (chunks, needle) in cases {
            let (status, _, _) = raw_call(&server, INFER, &[], chunks).await;
            assert_eq!(status.code(), tonic::Code::Internal, "{needle}: {status:?}");
            assert!(
                status.message().contains(needle),
                "{:?} lacks {needle:?}",
                status.message()
            );
        }
        // Compressed requests go to tonic's routes: a gzip message is decoded and answered as
        // the plain one; an encoding the server lacks is refused naming it.
        let gzipped = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&infer).unwrap();
            let mut message = framed(&e.finish().unwrap());
            message[0] = 1;
            message
        };
        let (status, _, body) =
            raw_call(&server, INFER, &[("grpc-encoding", "gzip")], vec![gzipped]).await;
        assert_eq!(status.code(), tonic::Code::Ok, "{status:?}");
        assert_eq!(ModelInferResponse::decode(&body[5..]).unwrap(), want_infer);
        let mut snappy = whole.clone();
        snappy[0] = 1;
        let (status, _, _) =
            raw_call(&server, INFER, &[("grpc-encoding", "snappy")], vec![snappy]).await;
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
        assert!(status.message().contains("snappy"), "{status:?}");
        // The server still answers.
        assert!(
            kv.server_live(ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live
        );
    });
}

/// A gRPC client making one call at a time on its channel, with the server to itself, has its
/// small calls run on the thread that received them, as a lone HTTP/1.1 client does. A call
/// still in flight on the same connection (here one whose message never finishes arriving) sends
/// them through the worker again, and its end brings runs in place back. Every run counts as
/// quick here (a minute), so the test never depends on this machine's speed.
#[test]
fn a_lone_grpc_clients_calls_run_in_place_one_at_a_time() {
    use std::pin::Pin;

    use futures::{Stream, StreamExt};
    use http_body_util::BodyExt;
    use hyper::body::Frame;

    type Frames =
        Pin<Box<dyn Stream<Item = Result<Frame<bytes::Bytes>, std::convert::Infallible>> + Send>>;
    let (server, here) = in_place_server();
    let message = framed(&kserve_request(&[census_instance(), census_instance()]).encode_to_vec());
    let url = format!(
        "http://{}/inference.GRPCInferenceService/ModelInfer",
        server.grpc_addr
    );
    let request = |frames: Frames| {
        http::Request::post(&url)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::StreamBody::new(frames))
            .unwrap()
    };
    let whole = |message: &[u8]| -> Frames {
        Box::pin(futures::stream::iter([Ok(Frame::data(
            bytes::Bytes::copy_from_slice(message),
        ))]))
    };
    rt().block_on(async {
        // One client, so one HTTP/2 connection that every call below shares.
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<http_body_util::StreamBody<Frames>>();
        let answer = |response: http::Response<hyper::body::Incoming>| async move {
            assert_eq!(response.status(), 200);
            let collected = response.into_body().collect().await.unwrap();
            let status = collected
                .trailers()
                .and_then(tonic::Status::from_header_map);
            assert_eq!(status.map(|s| s.code()), Some(tonic::Code::Ok));
            collected.to_bytes()
        };
        let call =
            || async { answer(client.request(request(whole(&message))).await.unwrap()).await };
        let reference = call().await;
        for _ in 1..20 {
            assert_eq!(call().await, reference);
        }
        // As over HTTP/1.1: the first eight small runs (the warm-up's among them) prove the
        // model quick on the worker, so at most 13 ran in place; a few more may have gone to the
        // worker while the server still counted the start-up's readiness connection.
        let in_place = metric(&server, &here);
        assert!(
            (6.0..=13.0).contains(&in_place),
            "{in_place} of 20 calls ran in place"
        );

        // A call whose message stops halfway: in flight on the connection until the rest comes.
        // Its first half is asked for once its headers are out, so the calls after it reach the
        // server behind it.
        let (rest_tx, rest_rx) = tokio::sync::oneshot::channel::<bytes::Bytes>();
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
        let first_half = bytes::Bytes::copy_from_slice(&message[..message.len() / 2]);
        let frames: Frames = Box::pin(
            futures::stream::once(async move {
                let _ = sent_tx.send(());
                Ok(Frame::data(first_half))
            })
            .chain(futures::stream::once(async move {
                Ok(Frame::data(rest_rx.await.unwrap()))
            })),
        );
        let held = tokio::spawn(client.request(request(frames)));
        sent_rx.await.unwrap();
        let before = metric(&server, &here);
        for _ in 0..10 {
            assert_eq!(call().await, reference);
        }
        assert_eq!(
            metric(&server, &here),
            before,
            "ran in place beside another call on the same connection"
        );
        rest_tx
            .send(bytes::Bytes::copy_from_slice(&message[message.len() / 2..]))
            .unwrap();
        assert_eq!(answer(held.await.unwrap().unwrap()).await, reference);
        let mut calls = 0;
        while metric(&server, &here) == before {
            assert_eq!(call().await, reference);
            calls += 1;
            assert!(
                calls < 1000,
                "no call ran in place again after the held one ended"
            );
        }
    });
}
