//! Decoding of JSON instances (the row format of Cloud ML Engine and TF Serving: one JSON value
//! per instance, an object keyed by input name when the model has several inputs) into batch
//! tensors, and encoding of output tensors back into one JSON object per instance. Shared by the
//! local `predict` command, batch prediction and the REST adapters.

use serde_json::{Map, Value};

use super::error::{InferenceError, InferenceResult};
use super::tensor::{DType, Signature, Tensor, TensorData, TensorSpec};

/// Decodes `instances` into one tensor per model input (signature order), batch dimension first.
pub fn decode_instances(
    signature: &Signature,
    instances: &[Value],
) -> InferenceResult<Vec<Tensor>> {
    if instances.is_empty() {
        return Err(InferenceError::invalid(
            "'instances' is empty: send at least one instance",
        ));
    }
    let mut columns: Vec<Column> = signature
        .inputs
        .iter()
        .map(|spec| Column::new(spec, instances.len()))
        .collect();
    let single = signature.inputs.len() == 1;
    for (i, instance) in instances.iter().enumerate() {
        match instance {
            Value::Object(obj) if !(single && is_b64(obj)) => {
                let unknown = || {
                    obj.keys()
                        .find(|k| signature.input(k).is_none())
                        .map(|key| {
                            InferenceError::invalid(format!(
                                "instance {i}: unknown input '{key}'; the model's inputs are {}",
                                names(signature)
                            ))
                        })
                };
                // Keys are unique: with no more keys than inputs and every input present, no key
                // can be unknown, so the scan runs only when there are extra or missing keys.
                if obj.len() > signature.inputs.len() {
                    if let Some(e) = unknown() {
                        return Err(e);
                    }
                }
                for (spec, column) in signature.inputs.iter().zip(columns.iter_mut()) {
                    let Some(value) = obj.get(&spec.name) else {
                        // A misspelt key is the likelier cause: name it.
                        return Err(unknown().unwrap_or_else(|| {
                            InferenceError::invalid(format!(
                                "instance {i}: missing input '{}'",
                                spec.name
                            ))
                        }));
                    };
                    column.push(value, i)?;
                }
            }
            value if single => columns[0].push(value, i)?,
            _ => {
                return Err(InferenceError::invalid(format!(
                    "instance {i}: expected a JSON object keyed by input name ({})",
                    names(signature)
                )))
            }
        }
    }
    Ok(columns
        .into_iter()
        .map(|c| c.finish(instances.len()))
        .collect())
}

pub(crate) fn names(signature: &Signature) -> String {
    signature
        .inputs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn is_b64(obj: &Map<String, Value>) -> bool {
    obj.len() == 1 && obj.contains_key("b64")
}

/// One input's values across instances.
struct Column<'s> {
    spec: &'s TensorSpec,
    data: TensorData,
    /// Shape of one instance's value, fixed by the first instance.
    element_shape: Option<Vec<usize>>,
}

impl<'s> Column<'s> {
    fn new(spec: &'s TensorSpec, instances: usize) -> Self {
        let per: usize = spec
            .shape
            .iter()
            .skip(1)
            .map(|d| (*d).max(1) as usize)
            .product();
        Column {
            spec,
            data: TensorData::with_capacity(spec.dtype, instances * per),
            element_shape: None,
        }
    }

    fn push(&mut self, value: &Value, instance: usize) -> InferenceResult<()> {
        let name = &self.spec.name;
        let ctx = |msg: String| {
            InferenceError::invalid(format!("instance {instance}: input '{name}': {msg}"))
        };
        let expected_rank = self.spec.shape.len().saturating_sub(1);
        // The common case, a scalar per instance (every census input), needs no shape work.
        if expected_rank == 0 && !value.is_array() {
            if self.element_shape.is_none() {
                self.element_shape = Some(Vec::new());
            }
            return append(value, &mut self.data).map_err(ctx);
        }
        let mut shape = Vec::new();
        shape_of(value, &mut shape).map_err(ctx)?;
        if shape.len() != expected_rank {
            return Err(ctx(format!(
                "expected {} per instance, got {}",
                rank_words(expected_rank),
                rank_words(shape.len())
            )));
        }
        for (d, (&got, &want)) in shape.iter().zip(self.spec.shape.iter().skip(1)).enumerate() {
            if want >= 0 && got as i64 != want {
                return Err(ctx(format!(
                    "dimension {} has size {got}, the model expects {want}",
                    d + 1
                )));
            }
        }
        match &self.element_shape {
            Some(first) if *first != shape => {
                return Err(ctx(format!(
                    "shape {shape:?} differs from instance 0's {first:?}; instances must have equal shapes"
                )))
            }
            Some(_) => {}
            None => self.element_shape = Some(shape),
        }
        append(value, &mut self.data).map_err(ctx)
    }

    fn finish(self, instances: usize) -> Tensor {
        let mut shape = vec![instances];
        shape.extend(self.element_shape.unwrap_or_default());
        Tensor::new(shape, self.data)
    }
}

fn rank_words(rank: usize) -> String {
    match rank {
        0 => "a scalar".to_string(),
        1 => "a list".to_string(),
        n => format!("a {n}-level nested list"),
    }
}

/// The shape of a nested JSON list; ragged lists are an error.
pub(crate) fn shape_of(value: &Value, shape: &mut Vec<usize>) -> Result<(), String> {
    if let Value::Array(items) = value {
        shape.push(items.len());
        let mut inner: Option<Vec<usize>> = None;
        for item in items {
            let mut s = Vec::new();
            shape_of(item, &mut s)?;
            match &inner {
                Some(prev) if *prev != s => return Err("ragged nested list".to_string()),
                Some(_) => {}
                None => inner = Some(s),
            }
        }
        shape.extend(inner.unwrap_or_default());
    }
    Ok(())
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 {
        format!("{}...", &text[..text.floor_char_boundary(40)])
    } else {
        text
    }
}

/// Appends the leaves of `value` (already shape-checked) to `data`, converting to its type.
pub(crate) fn append(value: &Value, data: &mut TensorData) -> Result<(), String> {
    if let Value::Array(items) = value {
        for item in items {
            append(item, data)?;
        }
        return Ok(());
    }
    let dtype = data.dtype();
    macro_rules! int {
        ($v:expr, $t:ty) => {{
            let x = integer(value, dtype)?;
            let y = <$t>::try_from(x).map_err(|_| format!("{x} is out of range for {dtype}"))?;
            $v.push(y)
        }};
    }
    match data {
        TensorData::Bool(v) => v.push(
            value
                .as_bool()
                .ok_or_else(|| format!("expected a boolean, got {}", describe(value)))?,
        ),
        TensorData::U8(v) => int!(v, u8),
        TensorData::U16(v) => int!(v, u16),
        TensorData::U32(v) => int!(v, u32),
        TensorData::U64(v) => int!(v, u64),
        TensorData::I8(v) => int!(v, i8),
        TensorData::I16(v) => int!(v, i16),
        TensorData::I32(v) => int!(v, i32),
        TensorData::I64(v) => int!(v, i64),
        TensorData::F32(v) => v.push(float(value, dtype)? as f32),
        TensorData::F64(v) => v.push(float(value, dtype)?),
        TensorData::String(v) => {
            let s = match value {
                Value::String(s) => s.clone(),
                Value::Object(obj) if is_b64(obj) => decode_b64(&obj["b64"])?,
                other => return Err(format!("expected a string, got {}", describe(other))),
            };
            if s.contains('\0') {
                return Err("string contains a NUL byte".to_string());
            }
            v.push(s)
        }
    }
    Ok(())
}

/// An integer from a JSON number; integral floats such as `25.0` are accepted.
fn integer(value: &Value, dtype: DType) -> Result<i128, String> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i as i128)
            } else if let Some(u) = n.as_u64() {
                Ok(u as i128)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.3e18 {
                    Ok(f as i128)
                } else {
                    Err(format!("expected an integer ({dtype}), got {n}"))
                }
            }
        }
        other => Err(format!(
            "expected an integer ({dtype}), got {}",
            describe(other)
        )),
    }
}

fn float(value: &Value, dtype: DType) -> Result<f64, String> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        // The bare tokens NaN, Infinity and -Infinity arrive as these strings (see `parse_body`).
        Value::String(s) if s == "NaN" => Ok(f64::NAN),
        Value::String(s) if s == "Infinity" => Ok(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        other => Err(format!(
            "expected a number ({dtype}), got {}",
            describe(other)
        )),
    }
}

/// The text of a `{"b64": ...}` value. String tensors hold text, so the bytes must be UTF-8.
fn decode_b64(value: &Value) -> Result<String, String> {
    use base64::Engine;
    let Value::String(text) = value else {
        return Err(format!(
            "'b64' must hold a base64 string, got {}",
            describe(value)
        ));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("invalid base64 in 'b64' value: {e}"))?;
    String::from_utf8(bytes)
        .map_err(|_| "the 'b64' value decodes to bytes that are not UTF-8 text".to_string())
}

/// Parses a request body. TensorFlow Serving accepts the non-standard tokens `NaN`, `Infinity`
/// and `-Infinity`; when plain JSON parsing fails they are rewritten into strings that float
/// inputs accept, and parsing is retried. Errors name the line and column.
pub fn parse_body(body: &[u8]) -> InferenceResult<Value> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(first) => quote_non_finite(body)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                InferenceError::invalid(format!("malformed JSON in request body: {first}"))
            }),
    }
}

/// Quotes bare `NaN`, `Infinity` and `-Infinity` outside strings; `None` when there are none.
fn quote_non_finite(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + 16);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let token = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| body[i..].starts_with(t));
        match token {
            Some(t) => {
                out.push(b'"');
                out.extend_from_slice(t);
                out.push(b'"');
                i += t.len();
                changed = true;
            }
            None => {
                in_string = b == b'"';
                out.push(b);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// One JSON object per instance with every output (or those named in `only`), as Cloud ML Engine
/// answers: an output of shape `[N]` gives a scalar, `[N, k]` a list, and so on.
pub fn encode_predictions(outputs: &[(String, Tensor)]) -> InferenceResult<Vec<Value>> {
    let n = outputs
        .first()
        .and_then(|(_, t)| t.shape.first().copied())
        .unwrap_or(0);
    let mut rows: Vec<Map<String, Value>> = (0..n).map(|_| Map::new()).collect();
    for (name, tensor) in outputs {
        if tensor.shape.first() != Some(&n) {
            return Err(InferenceError::internal(format!(
                "output '{name}' has batch size {:?}, expected {n}",
                tensor.shape.first()
            )));
        }
        let per: usize = tensor.shape[1..].iter().product();
        for (i, row) in rows.iter_mut().enumerate() {
            let flat = (i * per..(i + 1) * per).map(|j| element(&tensor.data, j));
            row.insert(
                name.clone(),
                nest(
                    &tensor.shape[1..],
                    &mut flat.collect::<Vec<_>>().into_iter(),
                ),
            );
        }
    }
    Ok(rows.into_iter().map(Value::Object).collect())
}

pub(crate) fn nest(shape: &[usize], items: &mut impl Iterator<Item = Value>) -> Value {
    match shape.split_first() {
        None => items.next().unwrap_or(Value::Null),
        Some((&d, rest)) => Value::Array((0..d).map(|_| nest(rest, items)).collect()),
    }
}

/// A JSON value of element `i`; floats print as the double nearest the stored value, as
/// TensorFlow's JSON encoder does.
pub fn element(data: &TensorData, i: usize) -> Value {
    match data {
        TensorData::Bool(v) => Value::from(v[i]),
        TensorData::U8(v) => Value::from(v[i]),
        TensorData::U16(v) => Value::from(v[i]),
        TensorData::U32(v) => Value::from(v[i]),
        TensorData::U64(v) => Value::from(v[i]),
        TensorData::I8(v) => Value::from(v[i]),
        TensorData::I16(v) => Value::from(v[i]),
        TensorData::I32(v) => Value::from(v[i]),
        TensorData::I64(v) => Value::from(v[i]),
        TensorData::F32(v) => Value::from(v[i] as f64),
        TensorData::F64(v) => Value::from(v[i]),
        TensorData::String(v) => Value::from(v[i].clone()),
    }
}

/// The predictions of [`encode_predictions`] written straight to `out` as JSON lines (one object
/// per instance, then `\n`), byte for byte what `Value::to_string` gives, without building values.
pub fn write_prediction_lines(
    outputs: &[(String, Tensor)],
    out: &mut Vec<u8>,
) -> InferenceResult<usize> {
    write_predictions(outputs, b"\n", out)
}

/// The predictions of [`encode_predictions`] written to `out`, each object followed by
/// `separator` (the caller trims the last one where a list needs it).
pub fn write_predictions(
    outputs: &[(String, Tensor)],
    separator: &[u8],
    out: &mut Vec<u8>,
) -> InferenceResult<usize> {
    let n = outputs
        .first()
        .and_then(|(_, t)| t.shape.first().copied())
        .unwrap_or(0);
    let mut names = Vec::with_capacity(outputs.len());
    for (name, tensor) in outputs {
        if tensor.shape.first() != Some(&n) {
            return Err(InferenceError::internal(format!(
                "output '{name}' has a different batch size"
            )));
        }
        names.push(
            serde_json::to_string(name).map_err(|e| InferenceError::internal(e.to_string()))?,
        );
    }
    for i in 0..n {
        out.push(b'{');
        for (k, ((_, tensor), name)) in outputs.iter().zip(&names).enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            let per: usize = tensor.shape[1..].iter().product();
            write_nested(&tensor.data, &tensor.shape[1..], &mut (i * per), out);
        }
        out.push(b'}');
        out.extend_from_slice(separator);
    }
    Ok(n)
}

fn write_nested(data: &TensorData, shape: &[usize], next: &mut usize, out: &mut Vec<u8>) {
    match shape.split_first() {
        None => {
            let _ = serde_json::to_writer(&mut *out, &element(data, *next));
            *next += 1;
        }
        Some((&d, rest)) => {
            out.push(b'[');
            for j in 0..d {
                if j > 0 {
                    out.push(b',');
                }
                write_nested(data, rest, next, out);
            }
            out.push(b']');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig() -> Signature {
        Signature {
            inputs: vec![
                TensorSpec {
                    name: "age".into(),
                    dtype: DType::I64,
                    shape: vec![-1],
                },
                TensorSpec {
                    name: "job".into(),
                    dtype: DType::String,
                    shape: vec![-1],
                },
                TensorSpec {
                    name: "v".into(),
                    dtype: DType::F32,
                    shape: vec![-1, 2],
                },
            ],
            outputs: vec![],
        }
    }

    #[test]
    fn decodes_objects_and_integral_floats() {
        let t = decode_instances(
            &sig(),
            &[
                json!({"age": 25, "job": " x", "v": [1, 2.5]}),
                json!({"age": 30.0, "job": "y", "v": [0, 0]}),
            ],
        )
        .unwrap();
        assert_eq!(t[0], Tensor::new(vec![2], TensorData::I64(vec![25, 30])));
        assert_eq!(t[1].data, TensorData::String(vec![" x".into(), "y".into()]));
        assert_eq!(t[2].shape, vec![2, 2]);
    }

    #[test]
    fn errors_name_instance_and_input() {
        let cases = [
            (
                json!([{"age": 1, "job": "a", "v": [1, 2]}, {"job": "a", "v": [1, 2]}]),
                "instance 1: missing input 'age'",
            ),
            (
                json!([{"age": 1, "job": "a", "v": [1, 2], "zzz": 1}]),
                "instance 0: unknown input 'zzz'",
            ),
            (
                json!([{"age": "x", "job": "a", "v": [1, 2]}]),
                "instance 0: input 'age': expected an integer",
            ),
            (
                json!([{"age": 2.5, "job": "a", "v": [1, 2]}]),
                "expected an integer (int64), got 2.5",
            ),
            (
                json!([{"age": 1, "job": 3, "v": [1, 2]}]),
                "input 'job': expected a string",
            ),
            (
                json!([{"age": [1], "job": "a", "v": [1, 2]}]),
                "input 'age': expected a scalar per instance, got a list",
            ),
            (
                json!([{"age": 1, "job": "a", "v": [1, 2, 3]}]),
                "dimension 1 has size 3",
            ),
            (
                json!([{"age": 1, "job": "a\u{0}b", "v": [1, 2]}]),
                "NUL byte",
            ),
            (json!([{"age": 1, "job": "a", "v": [[1], 2]}]), "ragged"),
            (json!([]), "'instances' is empty"),
            (json!([5]), "instance 0: expected a JSON object"),
        ];
        for (instances, want) in cases {
            let arr = instances.as_array().unwrap().clone();
            let err = decode_instances(&sig(), &arr).unwrap_err();
            assert!(err.message.contains(want), "{} !~ {want}", err.message);
            assert_eq!(err.kind.http_status(), 400);
        }
    }

    #[test]
    fn prediction_lines_equal_the_values_text() {
        let outputs = vec![
            (
                "p".to_string(),
                Tensor::new(vec![2, 2], TensorData::F32(vec![0.1, 0.9, 1e-7, 3.0])),
            ),
            (
                "c".to_string(),
                Tensor::new(vec![2], TensorData::I64(vec![1, 0])),
            ),
        ];
        let mut out = Vec::new();
        assert_eq!(write_prediction_lines(&outputs, &mut out).unwrap(), 2);
        let want: String = encode_predictions(&outputs)
            .unwrap()
            .iter()
            .map(|v| format!("{v}\n"))
            .collect();
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn encodes_one_object_per_instance() {
        let outputs = vec![
            (
                "p".to_string(),
                Tensor::new(vec![2, 2], TensorData::F32(vec![0.25, 0.75, 0.5, 0.5])),
            ),
            (
                "c".to_string(),
                Tensor::new(vec![2], TensorData::I64(vec![1, 0])),
            ),
        ];
        let rows = encode_predictions(&outputs).unwrap();
        assert_eq!(rows[0], json!({"p": [0.25, 0.75], "c": 1}));
        assert_eq!(rows[1], json!({"p": [0.5, 0.5], "c": 0}));
    }
}
