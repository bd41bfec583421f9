//! The fuzz targets, as plain functions: the libFuzzer binaries in `fuzz_targets/` call them, and
//! `tests/corpus.rs` replays the seeds and every past finding through them without instrumentation.
//!
//! Each target feeds its bytes to the decoders against three signatures (the census model's named
//! inputs, a dense `[-1, 3]` float tensor beside a bool mask, and the one string input of a CSV
//! model), then checks what came out: one tensor per input, element counts matching shapes, and
//! the core's type conversion. A panic, an abort or an allocation over [`ALLOCATION_LIMIT`] is a
//! finding.

pub mod seeds;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use mlengine::api::grpc::proto::inference::ModelInferRequest;
use mlengine::api::grpc::proto::tensorflow::serving::{ClassificationRequest, PredictRequest};
use mlengine::codec::{example, instances};
use mlengine::tensor::{DType, Signature, Tensor, TensorSpec};
use prost::Message;
use serde_json::json;

/// The largest single allocation a decoder may make. Inputs are at most a few hundred KiB, so
/// anything near this was sized by a length the request declared, not by the bytes it sent.
pub const ALLOCATION_LIMIT: usize = 64 << 20;

/// The system allocator, aborting on an allocation over [`ALLOCATION_LIMIT`] so libFuzzer records
/// the input that asked for it.
pub struct Guard;

fn too_big() -> ! {
    // No formatting: this must not allocate.
    let _ = std::io::stderr().write_all(b"fuzz guard: an allocation over ALLOCATION_LIMIT\n");
    std::process::abort()
}

// SAFETY: every call is forwarded unchanged to `System`; only sizes are inspected.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            too_big()
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            too_big()
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_LIMIT {
            too_big()
        }
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GUARD: Guard = Guard;

fn spec(name: &str, dtype: DType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    }
}

/// The census model's inputs, a dense tensor with a mask, and a CSV model's one string input.
pub fn signatures() -> &'static [Signature] {
    static SIGNATURES: OnceLock<Vec<Signature>> = OnceLock::new();
    SIGNATURES.get_or_init(|| {
        let census = [
            ("age", DType::I64),
            ("workclass", DType::String),
            ("education", DType::String),
            ("education_num", DType::I64),
            ("marital_status", DType::String),
            ("occupation", DType::String),
            ("relationship", DType::String),
            ("race", DType::String),
            ("gender", DType::String),
            ("capital_gain", DType::I64),
            ("capital_loss", DType::I64),
            ("hours_per_week", DType::I64),
            ("native_country", DType::String),
        ];
        let outputs = vec![
            spec("probabilities", DType::F32, &[-1, 2]),
            spec("logits", DType::F32, &[-1, 1]),
        ];
        vec![
            Signature {
                inputs: census.iter().map(|(n, d)| spec(n, *d, &[-1])).collect(),
                outputs: outputs.clone(),
                class_labels: vec!["<=50K".into(), ">50K".into()],
            },
            Signature {
                inputs: vec![
                    spec("x", DType::F32, &[-1, 3]),
                    spec("mask", DType::Bool, &[-1]),
                ],
                outputs: outputs.clone(),
                class_labels: vec![],
            },
            Signature {
                inputs: vec![spec("csv_row", DType::String, &[-1])],
                outputs,
                class_labels: vec![],
            },
        ]
    })
}

/// What every decoder promises: one tensor per input, in order, each with as many elements as its
/// shape says. Then the core's conversion: the model's types and shapes, or an error.
fn check(signature: &Signature, tensors: Vec<Tensor>) {
    assert_eq!(
        tensors.len(),
        signature.inputs.len(),
        "one tensor per input"
    );
    for (t, s) in tensors.iter().zip(&signature.inputs) {
        assert_eq!(
            t.data.len(),
            t.shape.iter().product::<usize>(),
            "input '{}': elements and shape disagree",
            s.name
        );
    }
    if let Ok(conformed) = signature.conform(tensors) {
        for (t, s) in conformed.iter().zip(&signature.inputs) {
            assert_eq!(
                t.dtype(),
                s.dtype,
                "input '{}' converted to another type",
                s.name
            );
            assert!(
                s.check_shape(&t.shape).is_ok(),
                "conform let a misfit shape through"
            );
        }
    }
}

/// Cloud ML Engine and TF Serving REST predict bodies: the fast scalar-object decoder, the
/// general row decoder and TF Serving's columnar `inputs`.
pub fn predict_json(data: &[u8]) {
    for signature in signatures() {
        if let Ok((tensors, _)) = instances::decode_predict_body(signature, data) {
            check(signature, tensors);
        }
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = instances::csv_hint(signature, text);
        }
    }
}

/// KServe v2 REST infer bodies with Triton's binary tensor extension. The first two bytes are the
/// `Inference-Header-Content-Length` (little-endian; `0xffff`: no header), the rest the body.
pub fn kserve_rest(data: &[u8]) {
    let Some((len, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let header_len = match u16::from_le_bytes(*len) {
        0xffff => None,
        n => Some(usize::from(n)),
    };
    for signature in signatures() {
        // The fast path must agree with the general decoder wherever it answers.
        if let Some(fast) = mlengine::codec::kserve_fast::decode(signature, body) {
            let general = mlengine::codec::kserve::decode_rest(signature, body, None)
                .expect("the general decoder refused what the fast path took");
            assert_eq!(fast.inputs, general.inputs);
            assert_eq!(fast.id, general.id);
            assert_eq!(fast.wanted, general.wanted);
            assert_eq!(fast.binary, general.binary);
            assert_eq!(fast.timeout, general.timeout);
        }
        if let Ok(request) = mlengine::codec::kserve_fast::decode_rest(signature, body, header_len)
        {
            assert!(request.wanted.iter().all(|&i| i < signature.outputs.len()));
            check(signature, request.inputs);
        }
    }
}

/// KServe v2 gRPC `ModelInferRequest`s: raw and typed contents. What the in-place reader
/// (`infer_wire`) takes, prost must decode to the same request and the same tensors or error.
pub fn kserve_grpc(data: &[u8]) {
    use mlengine::api::grpc::infer_wire;
    let wire = infer_wire::parse(data);
    let Ok(request) = ModelInferRequest::decode(data) else {
        assert!(
            wire.is_none(),
            "the in-place reader took what prost refuses"
        );
        return;
    };
    for signature in signatures() {
        let decoded = mlengine::api::grpc::kserve::decode_request(signature, &mut request.clone());
        if let Some(wire) = infer_wire::parse(data) {
            assert_eq!(wire.model_name, request.model_name);
            assert_eq!(wire.id, request.id);
            assert_eq!(
                infer_wire::tensors(signature, wire.inputs, &wire.raw),
                decoded
            );
        }
        if let Ok(tensors) = decoded {
            check(signature, tensors);
        }
    }
}

/// TF Serving gRPC `PredictRequest`s: TensorProtos (typed values, `tensor_content`, broadcast)
/// and serialized tf.Examples. What the in-place reader (`predict_wire`) takes, prost must
/// decode to the same request and the same tensors or error.
pub fn tfserving_predict(data: &[u8]) {
    use mlengine::api::grpc::predict_wire;
    let wire = predict_wire::parse(data);
    let Ok(request) = PredictRequest::decode(data) else {
        assert!(
            wire.is_none(),
            "the in-place reader took what prost refuses"
        );
        return;
    };
    for signature in signatures() {
        let decoded =
            mlengine::api::grpc::tfserving::decode_predict(signature, &mut request.clone());
        if let Some(wire) = predict_wire::parse(data) {
            assert_eq!(wire.model_spec, request.model_spec);
            let (fast, slow) = (predict_wire::tensors(signature, wire.inputs), &decoded);
            // With several unknown inputs, prost's map may name another one first.
            match (&fast, slow) {
                (Err(a), Err(b)) if a.message.starts_with("unknown input") => {
                    assert!(b.message.starts_with("unknown input"))
                }
                _ => assert_eq!(&fast, slow),
            }
        }
        if let Ok(tensors) = decoded {
            check(signature, tensors);
        }
    }
}

/// TF Serving gRPC `ClassificationRequest`s: tf.Examples with an optional shared context.
pub fn tfserving_examples(data: &[u8]) {
    let Ok(request) = ClassificationRequest::decode(data) else {
        return;
    };
    let Ok((examples, context)) = mlengine::api::grpc::tfserving::examples(request.input.as_ref())
    else {
        return;
    };
    for signature in signatures() {
        if let Ok(tensors) = example::to_tensors(signature, &examples, context.as_ref()) {
            check(signature, tensors);
        }
    }
    for e in &examples {
        let _ = example::to_instance(e);
    }
}

/// `{"b64": ...}` values, in every place a request can carry one: a row, a named input and
/// KServe's JSON data.
pub fn b64_values(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let b64 = json!({ "b64": text });
    let mut census = json!({
        "age": 25, "workclass": "Private", "education": "11th", "education_num": 7,
        "marital_status": "Never-married", "occupation": "Machine-op-inspct",
        "relationship": "Own-child", "race": "Black", "gender": "Male", "capital_gain": 0,
        "capital_loss": 0, "hours_per_week": 40, "native_country": "United-States"
    });
    census["occupation"] = b64.clone();
    let [census_signature, _, csv_signature] = signatures() else {
        unreachable!("three signatures")
    };
    let bodies = [
        (csv_signature, json!({ "instances": [b64.clone()] })),
        (
            csv_signature,
            json!({ "instances": [{ "csv_row": b64.clone() }] }),
        ),
        (
            csv_signature,
            json!({ "inputs": { "csv_row": [b64.clone()] } }),
        ),
        (census_signature, json!({ "instances": [census] })),
    ];
    for (signature, body) in &bodies {
        if let Ok((tensors, _)) =
            instances::decode_predict_body(signature, body.to_string().as_bytes())
        {
            check(signature, tensors);
        }
    }
    let kserve = json!({"inputs": [
        {"name": "csv_row", "datatype": "BYTES", "shape": [1], "data": [b64]}
    ]});
    if let Ok(request) =
        mlengine::codec::kserve::decode_rest(csv_signature, kserve.to_string().as_bytes(), None)
    {
        check(csv_signature, request.inputs);
    }
}

/// batch-predict input: lines as read from a file (the reader's cleaning, then the decoder that
/// sets bad lines aside and keeps the good ones).
pub fn batch_lines(data: &[u8]) {
    let lines: Vec<String> = data
        .split(|&b| b == b'\n')
        .filter_map(|l| mlengine::batch::text_of_line(l.to_vec()))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    for signature in signatures() {
        let decoded = instances::decode_lines(signature, &refs);
        assert_eq!(
            decoded.rows + decoded.bad.len(),
            refs.len(),
            "every line is either decoded or set aside"
        );
        assert!(decoded.bad.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(decoded.bad.iter().all(|(i, _)| *i < refs.len()));
        match decoded.tensors {
            Some(tensors) => {
                assert!(tensors
                    .iter()
                    .all(|t| t.shape.first() == Some(&decoded.rows)));
                check(signature, tensors);
            }
            None => assert_eq!(decoded.rows, 0),
        }
    }
}

/// `--model-config-file` text (YAML or JSON).
pub fn model_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(models) = mlengine::repository::config::parse(text, Path::new("/models")) {
        assert!(!models.is_empty());
        for m in &models {
            assert!(m.base_path.starts_with("/models") || Path::new(&m.base_path).is_absolute());
        }
    }
}

/// A fuzz target: bytes in, a panic or an abort on a finding.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("predict_json", predict_json),
    ("kserve_rest", kserve_rest),
    ("kserve_grpc", kserve_grpc),
    ("tfserving_predict", tfserving_predict),
    ("tfserving_examples", tfserving_examples),
    ("b64_values", b64_values),
    ("batch_lines", batch_lines),
    ("model_config", model_config),
];
