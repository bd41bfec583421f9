//! KServe v2 (Open Inference Protocol) inputs, shared by its REST and gRPC adapters: each input
//! names itself, its datatype and shape, and brings its elements as JSON, raw bytes or typed
//! values. Shapes are checked, and element counts compared with what arrived, before anything is
//! allocated, so a declared shape of `[2^40]` costs nothing.

use serde_json::Value;

use std::time::Duration;

use super::json::{append, parse_body, write_element};
use super::raw;
use crate::status::{Error, Result};
use crate::tensor::{DType, Signature, Tensor, TensorData, TensorSpec};

/// Where one input's elements are.
pub enum Data<'a> {
    /// JSON `data`, flat or nested, row-major.
    Json(&'a Value),
    /// Raw little-endian bytes: Triton's binary extension, gRPC's `raw_input_contents`.
    Raw(&'a [u8]),
    /// Elements the transport already decoded (gRPC's typed `contents`).
    Typed(TensorData),
}

/// One input of a request.
pub struct Input<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: Vec<i64>,
    pub data: Data<'a>,
}

/// The number of elements of a shape; `None` past `usize`.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// The datatype a request gives for the input `spec`, as a type: the model's when they agree.
/// Numbers of another numeric type are decoded as sent and converted exactly by the core;
/// anything else is refused here.
pub fn datatype(spec: &TensorSpec, datatype: &str) -> Result<DType> {
    let name = &spec.name;
    let want = spec.dtype.kserve_name();
    let got = DType::from_kserve_name(datatype).ok_or_else(|| {
        Error::invalid(format!(
            "input '{name}': unknown datatype {datatype:?}; the model's is {want}"
        ))
    })?;
    let numeric = |d: DType| d.is_integer() || d.is_float();
    if got != spec.dtype && !(numeric(got) && numeric(spec.dtype)) {
        return Err(Error::invalid(format!(
            "input '{name}': datatype {datatype:?} does not match the model's {want}"
        )));
    }
    Ok(got)
}

/// Decodes the inputs into signature order; every model input must be given once.
pub fn decode_inputs(signature: &Signature, inputs: Vec<Input>) -> Result<Vec<Tensor>> {
    let mut tensors: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
    for (i, input) in inputs.into_iter().enumerate() {
        let name = input.name;
        let (index, spec) = signature
            .input(name)
            .ok_or_else(|| Error::invalid(format!("inputs[{i}]: unknown input '{name}'")))?;
        if tensors[index].is_some() {
            return Err(Error::invalid(format!("input '{name}' is given twice")));
        }
        let dtype = datatype(spec, input.datatype)?;
        // Converted in place (`i64` and `usize` have one size): no second allocation.
        let shape: Vec<usize> = input
            .shape
            .into_iter()
            .map(|d| {
                usize::try_from(d).map_err(|_| {
                    Error::invalid(format!("input '{name}': dimension size {d} is negative"))
                })
            })
            .collect::<Result<_>>()?;
        spec.check_shape(&shape)?;
        let count = element_count(&shape).ok_or_else(|| {
            Error::invalid(format!("input '{name}': shape {shape:?} is too large"))
        })?;
        let data = match input.data {
            Data::Json(value) => json_data(name, dtype, value, count)?,
            Data::Raw(bytes) => raw::decode(dtype, bytes, count, &format!("input '{name}'"))?,
            Data::Typed(data) if data.len() == count => data,
            Data::Typed(data) => {
                return Err(Error::invalid(format!(
                    "input '{name}': {} values for a shape of {count} elements",
                    data.len()
                )))
            }
        };
        tensors[index] = Some(Tensor::new(shape, data));
    }
    signature.ordered_inputs(tensors)
}

/// Triton's classification extension (`outputs[i].parameters.classification`, tritonclient's
/// `class_count`) is not offered: refused, so that a client never reads raw tensors as the
/// "score:index:label" strings it asked for.
pub fn classification_refused(output: usize) -> Error {
    Error::invalid(format!(
        "outputs[{output}].parameters.classification: the classification extension is not \
         supported; ask for the output's tensor (probabilities, classes)"
    ))
}

/// Triton's `timeout` request parameter, given (`None`: not a whole number of microseconds):
/// 0 is no timeout, as Triton reads it.
pub fn timeout_parameter(micros: Option<u64>) -> Result<Option<Duration>> {
    let micros = micros.ok_or_else(|| {
        Error::invalid("parameters.timeout must be a whole number of microseconds")
    })?;
    Ok((micros > 0).then(|| Duration::from_micros(micros)))
}

/// A REST infer request, decoded.
pub struct RestRequest {
    pub inputs: Vec<Tensor>,
    /// The outputs asked for, as indices into the signature's outputs (empty: all).
    pub wanted: Vec<usize>,
    /// Triton's request parameter `timeout`.
    pub timeout: Option<Duration>,
    /// The request's `id`, echoed in the answer.
    pub id: Option<Value>,
    /// Which answered outputs go as binary data (Triton's extension), in the answer's order;
    /// empty when all go as JSON.
    pub binary: Vec<bool>,
}

/// A REST infer body: JSON, followed by Triton's binary tensor data when `header_len` (the
/// `Inference-Header-Content-Length` header) says where the JSON ends. Binary inputs take
/// consecutive slices of the bytes after the JSON, in input order, and every byte must be claimed.
/// The REST adapter tries [`super::kserve_fast`] first; this decoder words every error.
pub fn decode_rest(
    signature: &Signature,
    body: &[u8],
    header_len: Option<usize>,
) -> Result<RestRequest> {
    let (json_part, binary) = match header_len {
        None => (body, &body[..0]),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(Error::invalid(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )))
        }
    };
    let request = parse_body(json_part)?;
    let listed = request
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid("missing 'inputs' list in request body"))?;
    let mut inputs = Vec::with_capacity(listed.len());
    let mut offset = 0usize;
    for (i, input) in listed.iter().enumerate() {
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid(format!("inputs[{i}]: missing 'name'")))?;
        let datatype = input
            .get("datatype")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid(format!("input '{name}': missing 'datatype'")))?;
        let shape: Vec<i64> = input
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                Error::invalid(format!("input '{name}': 'shape' must be a list of sizes"))
            })?;
        let binary_size = input
            .get("parameters")
            .and_then(|p| p.get("binary_data_size"));
        let data = match binary_size {
            Some(size) => {
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "input '{name}': binary_data_size must be a byte count"
                        ))
                    })?;
                let Some(bytes) = offset
                    .checked_add(size)
                    .and_then(|end| binary.get(offset..end))
                else {
                    return Err(Error::invalid(format!(
                        "input '{name}': binary_data_size {size} runs past the end of the binary data"
                    )));
                };
                offset += size;
                Data::Raw(bytes)
            }
            None => Data::Json(
                input
                    .get("data")
                    .ok_or_else(|| Error::invalid(format!("input '{name}': missing 'data'")))?,
            ),
        };
        inputs.push(Input {
            name,
            datatype,
            shape,
            data,
        });
    }
    if offset != binary.len() {
        return Err(Error::invalid(format!(
            "{} bytes of binary data are not claimed by any input",
            binary.len() - offset
        )));
    }
    let inputs = decode_inputs(signature, inputs)?;
    let timeout = match request.pointer("/parameters/timeout") {
        None => None,
        Some(t) => timeout_parameter(t.as_u64())?,
    };
    let flag = |v: Option<&Value>, what: &str| match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| Error::invalid(format!("{what} must be true or false"))),
    };
    let binary_default = flag(
        request.pointer("/parameters/binary_data_output"),
        "parameters.binary_data_output",
    )?
    .unwrap_or(false);
    let listed = match request.get("outputs") {
        None => None,
        Some(Value::Array(l)) => Some(l).filter(|l| !l.is_empty()),
        Some(_) => return Err(Error::invalid("outputs must be a list of output objects")),
    };
    let (wanted, own) = match listed {
        None => (vec![], vec![]),
        Some(list) => {
            if let Some(i) = list
                .iter()
                .position(|o| o.pointer("/parameters/classification").is_some())
            {
                return Err(classification_refused(i));
            }
            let wanted = signature.output_indices(
                list.iter()
                    .map(|o| o.get("name").and_then(Value::as_str).unwrap_or_default()),
            )?;
            let own = list
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    flag(
                        o.pointer("/parameters/binary_data"),
                        &format!("outputs[{i}].parameters.binary_data"),
                    )
                })
                .collect::<Result<Vec<Option<bool>>>>()?;
            (wanted, own)
        }
    };
    Ok(RestRequest {
        inputs,
        binary: binary_outputs(signature, &wanted, &own, binary_default),
        wanted,
        timeout,
        id: match request.get("id") {
            None => None,
            Some(id @ Value::String(_)) => Some(id.clone()),
            // Triton's protocol: the id is echoed back, and is a string.
            Some(_) => return Err(Error::invalid("id must be a string")),
        },
    })
}

/// Which answered outputs go as binary data (Triton's extension): `binary_data_output` for
/// every output, each listed output's own `binary_data` over it. `wanted` are the listed
/// outputs (empty: all of them, in signature order), `own` their flags. Empty when none does.
pub fn binary_outputs(
    signature: &Signature,
    wanted: &[usize],
    own: &[Option<bool>],
    default: bool,
) -> Vec<bool> {
    let binary: Vec<bool> = if wanted.is_empty() {
        vec![default; signature.outputs.len()]
    } else {
        (0..wanted.len())
            .map(|k| own.get(k).copied().flatten().unwrap_or(default))
            .collect()
    };
    if binary.contains(&true) {
        binary
    } else {
        vec![]
    }
}

/// A JSON `data` array (flat or nested, row-major) as `count` elements.
fn json_data(name: &str, dtype: DType, data: &Value, count: usize) -> Result<TensorData> {
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != count {
        return Err(Error::invalid(format!(
            "input '{name}': its shape needs {count} values, 'data' has {}",
            flat.len()
        )));
    }
    let mut out = TensorData::with_capacity(dtype, flat.len());
    for (i, v) in flat.into_iter().enumerate() {
        append(v, &mut out)
            .map_err(|e| Error::invalid(format!("input '{name}': element {i}: {e}")))?;
    }
    Ok(out)
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// A REST infer answer: its bytes, and where its JSON ends when binary tensor data follows
/// (the `Inference-Header-Content-Length` to send).
pub struct RestAnswer {
    pub body: Vec<u8>,
    pub header_len: Option<usize>,
}

/// The REST infer answer written straight to bytes, without JSON values (the test holds the
/// value-built answer it must equal): `model_name`, `model_version`, `outputs`, and
/// the request's `id` when it had one. The outputs that `binary` marks (in output order; empty:
/// none) carry `parameters.binary_data_size` instead of `data`, and their raw bytes follow the
/// JSON in output order, as Triton's binary extension lays them out.
pub fn write_infer_answer(
    model: &str,
    version: &str,
    outputs: &[(String, Tensor)],
    id: Option<&Value>,
    binary: &[bool],
) -> RestAnswer {
    let is_binary = |k: usize| binary.get(k).copied().unwrap_or(false);
    let elements: usize = outputs.iter().map(|(_, t)| t.data.len()).sum();
    let mut out = Vec::with_capacity(96 + 64 * outputs.len() + 24 * elements);
    let text = |out: &mut Vec<u8>, s: &str| {
        let _ = serde_json::to_writer(&mut *out, s);
    };
    out.extend_from_slice(b"{\"model_name\":");
    text(&mut out, model);
    out.extend_from_slice(b",\"model_version\":");
    text(&mut out, version);
    out.extend_from_slice(b",\"outputs\":[");
    for (k, (name, tensor)) in outputs.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        text(&mut out, name);
        out.extend_from_slice(b",\"datatype\":");
        text(&mut out, tensor.dtype().kserve_name());
        out.extend_from_slice(b",\"shape\":");
        let _ = serde_json::to_writer(&mut out, &tensor.shape);
        if is_binary(k) {
            out.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
            let _ = serde_json::to_writer(&mut out, &raw::encoded_len(&tensor.data));
            out.extend_from_slice(b"}}");
            continue;
        }
        out.extend_from_slice(b",\"data\":[");
        for i in 0..tensor.data.len() {
            if i > 0 {
                out.push(b',');
            }
            write_element(&tensor.data, i, false, &mut out);
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        let _ = serde_json::to_writer(&mut out, id);
    }
    out.push(b'}');
    let header_len = (0..outputs.len()).any(is_binary).then_some(out.len());
    for (k, (_, tensor)) in outputs.iter().enumerate() {
        if is_binary(k) {
            raw::encode(&tensor.data, &mut out);
        }
    }
    RestAnswer {
        body: out,
        header_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::value_at;
    use crate::codec::test_signature;
    use serde_json::json;

    /// One output as a JSON value: the reference the written answer is compared with.
    fn output_json(name: &str, tensor: &Tensor) -> Value {
        let data: Vec<Value> = (0..tensor.data.len())
            .map(|i| value_at(&tensor.data, i))
            .collect();
        json!({"name": name, "datatype": tensor.dtype().kserve_name(), "shape": tensor.shape, "data": data})
    }

    fn input<'a>(name: &'a str, datatype: &'a str, shape: &[i64], data: Data<'a>) -> Input<'a> {
        Input {
            name,
            datatype,
            shape: shape.to_vec(),
            data,
        }
    }

    /// A float matrix, an integer and a string with a quote: an answer's kinds of output.
    fn three_outputs() -> Vec<(String, Tensor)> {
        vec![
            (
                "probabilities".to_string(),
                Tensor::new(vec![1, 2], TensorData::F32(vec![0.25, 0.75])),
            ),
            (
                "classes".to_string(),
                Tensor::new(vec![1], TensorData::I64(vec![1])),
            ),
            (
                "label".to_string(),
                Tensor::new(vec![1], TensorData::String(vec!["a\"b".into()])),
            ),
        ]
    }

    #[test]
    fn the_written_answer_is_the_values_text() {
        let outputs = three_outputs();
        for id in [None, Some(json!("r\u{e9}1"))] {
            let values: Vec<Value> = outputs.iter().map(|(n, t)| output_json(n, t)).collect();
            let mut want = json!({"model_name": "m\"", "model_version": "7", "outputs": values});
            if let Some(id) = &id {
                want["id"] = id.clone();
            }
            let got = write_infer_answer("m\"", "7", &outputs, id.as_ref(), &[]);
            assert_eq!(got.header_len, None);
            assert_eq!(String::from_utf8(got.body).unwrap(), want.to_string());
        }
    }

    #[test]
    fn binary_outputs_follow_the_json_in_output_order() {
        let outputs = three_outputs();
        let got = write_infer_answer("m", "7", &outputs, None, &[true, false, true]);
        let n = got.header_len.unwrap();
        let head: Value = serde_json::from_slice(&got.body[..n]).unwrap();
        assert_eq!(
            head["outputs"],
            json!([
                {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
                {"name": "classes", "datatype": "INT64", "shape": [1], "data": [1]},
                {"name": "label", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 7}},
            ])
        );
        let mut want = Vec::new();
        raw::encode(&outputs[0].1.data, &mut want);
        raw::encode(&outputs[2].1.data, &mut want);
        assert_eq!(&got.body[n..], &want[..]);
    }

    #[test]
    fn binary_outputs_are_asked_for_per_output_or_for_all() {
        let mut signature = test_signature();
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![-1],
        };
        signature.outputs = vec![spec("p"), spec("q")];
        let inputs = json!([
            {"name": "age", "datatype": "INT64", "shape": [1], "data": [1]},
            {"name": "job", "datatype": "BYTES", "shape": [1], "data": ["a"]},
            {"name": "w", "datatype": "FP32", "shape": [1], "data": [1.0]},
        ]);
        let decode = |extra: Value| {
            let mut body = json!({"inputs": inputs});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            decode_rest(&signature, body.to_string().as_bytes(), None)
        };
        let binary = |extra: Value| decode(extra).unwrap().binary;
        assert_eq!(binary(json!({})), Vec::<bool>::new());
        assert_eq!(
            binary(json!({"parameters": {"binary_data_output": true}})),
            [true, true]
        );
        assert_eq!(
            binary(
                json!({"outputs": [{"name": "q", "parameters": {"binary_data": true}}, {"name": "p"}]})
            ),
            [true, false]
        );
        assert_eq!(
            binary(
                json!({"parameters": {"binary_data_output": true}, "outputs": [{"name": "q", "parameters": {"binary_data": false}}, {"name": "p"}]})
            ),
            [false, true]
        );
        let e = decode(json!({"outputs": [{"name": "p", "parameters": {"binary_data": "yes"}}]}))
            .err()
            .unwrap();
        assert!(
            e.message
                .contains("outputs[0].parameters.binary_data must be true or false"),
            "{e:?}"
        );
    }

    #[test]
    fn inputs_decode_into_signature_order() {
        let ages = serde_json::json!([25, 30]);
        let jobs = serde_json::json!(["a", "b"]);
        let mut w = Vec::new();
        raw::encode(&TensorData::F32(vec![0.5, 1.5]), &mut w);
        let t = decode_inputs(
            &test_signature(),
            vec![
                input("w", "FP32", &[2], Data::Raw(&w)),
                input("job", "BYTES", &[2], Data::Json(&jobs)),
                input("age", "INT64", &[2], Data::Json(&ages)),
            ],
        )
        .unwrap();
        assert_eq!(t[0].data, TensorData::I64(vec![25, 30]));
        assert_eq!(t[2].data, TensorData::F32(vec![0.5, 1.5]));
    }

    #[test]
    fn declared_shapes_are_checked_against_the_data_before_allocating() {
        let one = serde_json::json!([1]);
        let sig = test_signature();
        for (inputs, want) in [
            (
                vec![input("age", "INT64", &[1 << 40], Data::Json(&one))],
                "needs 1099511627776 values",
            ),
            (
                vec![input("age", "INT64", &[1 << 40], Data::Raw(&[0; 8]))],
                "bytes of data",
            ),
            (
                vec![input(
                    "age",
                    "INT64",
                    &[i64::MAX, i64::MAX],
                    Data::Json(&one),
                )],
                "shape",
            ),
            (
                vec![input("age", "INT64", &[-1], Data::Json(&one))],
                "negative",
            ),
            (
                vec![input("age", "BYTES", &[1], Data::Json(&one))],
                "does not match the model's INT64",
            ),
            (
                vec![input("age", "FP8", &[1], Data::Json(&one))],
                "unknown datatype",
            ),
            (
                vec![input("nope", "INT64", &[1], Data::Json(&one))],
                "unknown input 'nope'",
            ),
            (
                vec![
                    input("age", "INT64", &[1], Data::Json(&one)),
                    input("age", "INT64", &[1], Data::Json(&one)),
                ],
                "given twice",
            ),
            (
                vec![input("age", "INT64", &[1], Data::Json(&one))],
                "missing input 'job'",
            ),
        ] {
            let e = decode_inputs(&sig, inputs).unwrap_err();
            assert!(e.message.contains(want), "{} !~ {want}", e.message);
        }
    }

    #[test]
    fn another_numeric_type_is_decoded_as_sent() {
        let ages = serde_json::json!([25.0]);
        let jobs = serde_json::json!(["a"]);
        let w = serde_json::json!([1]);
        let t = decode_inputs(
            &test_signature(),
            vec![
                input("age", "FP32", &[1], Data::Json(&ages)),
                input("job", "BYTES", &[1], Data::Json(&jobs)),
                input("w", "FP32", &[1], Data::Json(&w)),
            ],
        )
        .unwrap();
        // The core converts it (exactly) to the model's type.
        assert_eq!(t[0].data, TensorData::F32(vec![25.0]));
        let t = test_signature().conform(t).unwrap();
        assert_eq!(t[0].data, TensorData::I64(vec![25]));
    }
}
