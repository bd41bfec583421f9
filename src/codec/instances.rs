//! JSON instances, the row format of Cloud ML Engine and TF Serving (one JSON value per instance,
//! an object keyed by input name when the model has several inputs), into batch tensors.
//!
//! Every caller takes the same three steps, written once here: the fast decoder of scalar objects
//! first ([`super::scalar_objects`]), then this general decoder, whose errors name the instance
//! and the input, and for a batch of lines, the lines at fault one by one so the good ones still
//! run.

use serde_json::Value;

use super::json::{append, is_b64, parse_body, shape_of};
use super::{columnar, scalar_objects};
use crate::status::{Error, Result};
use crate::tensor::{DType, Signature, Tensor, TensorData, TensorSpec};

/// How a predict body laid out its inputs; the answer takes the same layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `{"instances": [...]}`: answered with `{"predictions": [...]}`.
    Rows,
    /// TF Serving's columnar `{"inputs": ...}`: answered with `{"outputs": ...}`.
    Columns,
}

/// The tensors of a Cloud ML / TF Serving predict body.
pub fn decode_predict_body(signature: &Signature, body: &[u8]) -> Result<(Vec<Tensor>, Layout)> {
    if let Some(inputs) = scalar_objects::decode_body(signature, body) {
        return Ok((inputs, Layout::Rows));
    }
    let request = parse_body(body)?;
    let Value::Object(obj) = &request else {
        return Err(Error::invalid(
            "request body must be a JSON object with 'instances'",
        ));
    };
    if let Some(name) = obj.get("signature_name") {
        check_json_signature_name(name)?;
    }
    match (obj.get("instances"), obj.get("inputs")) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "expecting only one of 'inputs' or 'instances', not both",
        )),
        (Some(Value::Array(instances)), None) => {
            Ok((decode_instances(signature, instances)?, Layout::Rows))
        }
        (Some(_), None) => Err(Error::invalid("'instances' must be a list")),
        (None, Some(inputs)) => Ok((columnar::decode(signature, inputs)?, Layout::Columns)),
        (None, None) => Err(Error::invalid("missing 'instances' in request body")),
    }
}

/// The one signature a model has. TF Serving refuses an unknown name rather than answering
/// with another signature; so does this server.
pub const SIGNATURE_NAME: &str = "serving_default";

/// Checks a JSON request's `signature_name`, which must be a string.
pub fn check_json_signature_name(name: &Value) -> Result<()> {
    match name.as_str() {
        Some(name) => check_signature_name(name),
        None => Err(Error::invalid(format!(
            "'signature_name' must be a string, got {}",
            super::json::describe(name)
        ))),
    }
}

pub fn check_signature_name(name: &str) -> Result<()> {
    if name.is_empty() || name == SIGNATURE_NAME {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Serving signature name: \"{name}\" not found in signature def; the model has \"{SIGNATURE_NAME}\""
        )))
    }
}

/// A hint for text that looks like a CSV row given to a model that takes JSON objects.
pub fn csv_hint(signature: &Signature, text: &str) -> Option<String> {
    let fields = text.split(',').count();
    (signature.inputs.len() > 1 && fields > 2 && !text.trim_start().starts_with(['{', '['])).then(
        || {
            format!(
            "this model takes JSON objects with fields {}; this looks like a CSV row ({fields} \
             comma-separated fields): export a model with --export-format CSV to send CSV rows",
            signature.input_names()
        )
        },
    )
}

/// Decodes `instances` into one tensor per model input (signature order), batch dimension first.
/// Errors name the instance: `instance 3: input 'age': ...`.
pub fn decode_instances(signature: &Signature, instances: &[Value]) -> Result<Vec<Tensor>> {
    if instances.is_empty() {
        return Err(Error::invalid(
            "'instances' is empty: send at least one instance",
        ));
    }
    decode_rows(signature, instances)
        .map_err(|(i, message)| Error::invalid(format!("instance {i}: {message}")))
}

/// The instances that decode, as tensors, and those that do not, by index.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Tensors of the good instances, in order; `None` when there are none.
    pub tensors: Option<Vec<Tensor>>,
    /// Number of good instances.
    pub rows: usize,
    /// Index and message of each bad instance, ascending.
    pub bad: Vec<(usize, String)>,
}

/// Decodes instances, setting the bad ones aside instead of failing the whole batch.
pub fn decode_each(signature: &Signature, instances: &[Value]) -> Decoded {
    let indexed: Vec<(usize, &Value)> = instances.iter().enumerate().collect();
    decode_indexed(signature, &indexed, Vec::new())
}

/// Decodes JSON lines (one instance each), setting bad lines aside: a line that is not JSON, or
/// whose instance does not fit the model.
pub fn decode_lines(signature: &Signature, lines: &[&str]) -> Decoded {
    if let Some(tensors) = scalar_objects::decode_lines(signature, lines) {
        return Decoded {
            tensors: Some(tensors),
            rows: lines.len(),
            bad: Vec::new(),
        };
    }
    // A model of one string input (a CSV model) takes a line that is not JSON as its text, as
    // Cloud ML's TEXT data format did.
    let raw_text = matches!(signature.inputs.as_slice(), [only] if only.dtype == DType::String);
    let mut bad = Vec::new();
    let mut values = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => values.push((i, v)),
            Err(_) if raw_text => values.push((i, Value::String(line.to_string()))),
            Err(e) => bad.push((
                i,
                csv_hint(signature, line).unwrap_or_else(|| format!("invalid JSON: {e}")),
            )),
        }
    }
    let indexed: Vec<(usize, &Value)> = values.iter().map(|(i, v)| (*i, v)).collect();
    decode_indexed(signature, &indexed, bad)
}

fn decode_indexed(
    signature: &Signature,
    items: &[(usize, &Value)],
    mut bad: Vec<(usize, String)>,
) -> Decoded {
    let all: Vec<Value> = items.iter().map(|(_, v)| (*v).clone()).collect();
    let mut good = all.len();
    let tensors = match decode_rows(signature, &all) {
        _ if all.is_empty() => None,
        Ok(tensors) => Some(tensors),
        Err(_) => {
            // Find the instances at fault one by one, then decode the rest together.
            let mut kept = Vec::with_capacity(all.len());
            for ((index, _), value) in items.iter().zip(all) {
                match decode_rows(signature, std::slice::from_ref(&value)) {
                    Ok(_) => kept.push((*index, value)),
                    Err((_, message)) => bad.push((*index, message)),
                }
            }
            good = kept.len();
            let values: Vec<Value> = kept.iter().map(|(_, v)| v.clone()).collect();
            match decode_rows(signature, &values) {
                _ if values.is_empty() => None,
                Ok(tensors) => Some(tensors),
                // Each decodes alone but not together (their shapes differ): all are at fault.
                Err((_, message)) => {
                    bad.extend(kept.iter().map(|(i, _)| (*i, message.clone())));
                    good = 0;
                    None
                }
            }
        }
    };
    bad.sort_by_key(|(i, _)| *i);
    Decoded {
        tensors,
        rows: good,
        bad,
    }
}

/// The general decoder; a failure gives the index of the instance at fault and what is wrong.
fn decode_rows(
    signature: &Signature,
    instances: &[Value],
) -> std::result::Result<Vec<Tensor>, (usize, String)> {
    let mut columns: Vec<Column> = signature
        .inputs
        .iter()
        .map(|spec| Column::new(spec, instances.len()))
        .collect();
    let single = signature.inputs.len() == 1;
    for (i, instance) in instances.iter().enumerate() {
        let fault = |message: String| (i, message);
        // A model of named inputs takes a serialized tf.Example as `{"b64": ...}`, as TF
        // Serving's example-parsing models did.
        let from_example;
        let instance = match instance {
            Value::Object(obj) if !single && is_b64(obj) => {
                // Features the model does not take (the label, say) are left out, as TF's
                // example parsing and this server's other example paths do.
                let mut example = serialized_example(obj).map_err(fault)?;
                if let Some(features) = example.as_object_mut() {
                    features.retain(|name, _| signature.input(name).is_some());
                }
                from_example = example;
                &from_example
            }
            other => other,
        };
        match instance {
            Value::Object(obj) if !(single && is_b64(obj)) => {
                let unknown = || {
                    obj.keys()
                        .find(|k| signature.input(k).is_none())
                        .map(|key| {
                            format!(
                                "unknown input '{key}'; the model's inputs are {}",
                                signature.input_names()
                            )
                        })
                };
                // Keys are unique: with no more keys than inputs and every input present, no key
                // can be unknown, so the scan runs only when there are extra or missing keys.
                if obj.len() > signature.inputs.len() {
                    if let Some(e) = unknown() {
                        return Err(fault(e));
                    }
                }
                for (spec, column) in signature.inputs.iter().zip(columns.iter_mut()) {
                    let Some(value) = obj.get(&spec.name) else {
                        // A misspelt key is the likelier cause: name it.
                        return Err(fault(
                            unknown().unwrap_or_else(|| format!("missing input '{}'", spec.name)),
                        ));
                    };
                    column.push(value).map_err(fault)?;
                }
            }
            value if single => columns[0].push(value).map_err(fault)?,
            Value::String(text) if csv_hint(signature, text).is_some() => {
                return Err(fault(csv_hint(signature, text).unwrap_or_default()))
            }
            _ => {
                return Err(fault(format!(
                    "expected a JSON object keyed by input name ({})",
                    signature.input_names()
                )))
            }
        }
    }
    Ok(columns
        .into_iter()
        .map(|c| c.finish(instances.len()))
        .collect())
}

/// The instance object of a serialized tf.Example in `{"b64": ...}`.
fn serialized_example(obj: &serde_json::Map<String, Value>) -> std::result::Result<Value, String> {
    use base64::Engine;
    let bytes = obj["b64"]
        .as_str()
        .and_then(|t| {
            base64::engine::general_purpose::STANDARD
                .decode(t.trim())
                .ok()
        })
        .ok_or("'b64' must hold base64 text")?;
    let features = super::example::parse_serialized(&bytes)?;
    super::example::to_instance(&features)
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
            data: TensorData::with_capacity(spec.dtype, instances.saturating_mul(per)),
            element_shape: None,
        }
    }

    fn push(&mut self, value: &Value) -> std::result::Result<(), String> {
        let name = &self.spec.name;
        let ctx = |msg: String| format!("input '{name}': {msg}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_signature;
    use serde_json::json;

    /// The test signature with a rank-2 input `v` (two floats per instance).
    fn sig() -> Signature {
        let mut s = test_signature();
        s.inputs.push(TensorSpec {
            name: "v".into(),
            dtype: DType::F32,
            shape: vec![-1, 2],
        });
        s
    }

    #[test]
    fn decodes_objects_and_integral_floats() {
        let t = decode_instances(
            &sig(),
            &[
                json!({"age": 25, "job": " x", "w": 1, "v": [1, 2.5]}),
                json!({"age": 30.0, "job": "y", "w": 2, "v": [0, 0]}),
            ],
        )
        .unwrap();
        assert_eq!(t[0], Tensor::new(vec![2], TensorData::I64(vec![25, 30])));
        assert_eq!(t[1].data, TensorData::String(vec![" x".into(), "y".into()]));
        assert_eq!(t[3].shape, vec![2, 2]);
    }

    #[test]
    fn errors_name_instance_and_input() {
        let ok = json!({"age": 1, "job": "a", "w": 1, "v": [1, 2]});
        let with = |key: &str, value: Value| {
            let mut o = ok.clone();
            o[key] = value;
            o
        };
        let without = |key: &str| {
            let mut o = ok.clone();
            o.as_object_mut().unwrap().remove(key);
            o
        };
        let cases = [
            (
                json!([ok.clone(), without("age")]),
                "instance 1: missing input 'age'",
            ),
            (
                json!([with("zzz", json!(1))]),
                "instance 0: unknown input 'zzz'",
            ),
            (
                json!([with("age", json!("x"))]),
                "instance 0: input 'age': expected an integer",
            ),
            (
                json!([with("age", json!(2.5))]),
                "expected an integer (int64), got 2.5",
            ),
            (
                json!([with("job", json!(3))]),
                "input 'job': expected a string",
            ),
            (
                json!([with("age", json!([1]))]),
                "input 'age': expected a scalar per instance, got a list",
            ),
            (
                json!([with("v", json!([1, 2, 3]))]),
                "dimension 1 has size 3",
            ),
            (json!([with("job", json!("a\u{0}b"))]), "NUL byte"),
            (json!([with("v", json!([[1], 2]))]), "ragged"),
            (json!([]), "'instances' is empty"),
            (json!([5]), "instance 0: expected a JSON object"),
        ];
        for (instances, want) in cases {
            let arr = instances.as_array().unwrap().clone();
            let err = decode_instances(&sig(), &arr).unwrap_err();
            assert!(err.message.contains(want), "{} !~ {want}", err.message);
            assert_eq!(err.code.http_status(), 400);
        }
    }

    #[test]
    fn a_csv_row_for_a_json_model_says_so() {
        let d = decode_lines(&test_signature(), &["25, Private, 3.5"]);
        assert!(
            d.bad[0].1.contains("this looks like a CSV row"),
            "{:?}",
            d.bad
        );
        let e = decode_instances(&test_signature(), &[json!("25, Private, 3.5")]).unwrap_err();
        assert!(
            e.message
                .contains("this model takes JSON objects with fields age, job, w"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bad_lines_are_set_aside_and_the_rest_decode() {
        let lines = [
            r#"{"age": 25, "job": "x", "w": 1}"#,
            r#"{"age": 25.5, "job": "x", "w": 1}"#,
            "not json",
            r#"{"age": 30, "job": "y", "w": 2}"#,
        ];
        let d = decode_lines(&test_signature(), &lines);
        assert_eq!(d.rows, 2);
        assert_eq!(
            d.bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(d.bad[0].1.contains("input 'age'"), "{:?}", d.bad);
        assert!(d.bad[1].1.starts_with("invalid JSON"), "{:?}", d.bad);
        let t = d.tensors.unwrap();
        assert_eq!(t[0].data, TensorData::I64(vec![25, 30]));
        // Nothing good: no tensors.
        let d = decode_lines(&test_signature(), &["[1]"]);
        assert!(d.tensors.is_none() && d.rows == 0 && d.bad.len() == 1);
    }

    #[test]
    fn predict_bodies_take_rows_or_columns() {
        let sig = test_signature();
        let (t, layout) = decode_predict_body(
            &sig,
            br#"{"instances": [{"age": 1, "job": "a", "w": 0.5}], "signature_name": "serving_default"}"#,
        )
        .unwrap();
        assert_eq!((t[0].rows(), layout), (1, Layout::Rows));
        let (t, layout) = decode_predict_body(
            &sig,
            br#"{"inputs": {"age": [1, 2], "job": ["a", "b"], "w": [NaN, 1]}}"#,
        )
        .unwrap();
        assert_eq!((t[0].rows(), layout), (2, Layout::Columns));
        for (body, want) in [
            (&br#"[1]"#[..], "must be a JSON object"),
            (br#"{"instances": [], "inputs": {}}"#, "not both"),
            (br#"{"instances": 5}"#, "must be a list"),
            (br#"{}"#, "missing 'instances'"),
            (br#"{"instances": ["#, "malformed JSON"),
            (
                br#"{"signature_name": "nope", "instances": [{}]}"#,
                "Serving signature name: \"nope\" not found",
            ),
        ] {
            let e = decode_predict_body(&sig, body).unwrap_err();
            assert!(e.message.contains(want), "{}", e.message);
        }
    }
}
