//! `tf.Example`s into the model's tensors: the features of TF Serving's Classify and Regress
//! requests (serialized protos over gRPC, JSON objects over REST) and of serialized examples in
//! predict instances (`{"b64": ...}`), decoded here, in the core, once for every protocol: the
//! ONNX graph cannot parse protobuf.

use std::collections::HashMap;

use prost::Message;
use serde_json::{Map, Value};

use super::json::{is_b64, non_finite_value, shape_of};
use crate::proto::tensorflow::{feature::Kind, Example, Feature};
use crate::status::{Error, Result};
use crate::tensor::{element, Signature, Tensor, TensorData};

/// One feature's values, as a tf.Example holds them.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Bytes(Vec<Vec<u8>>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Bytes(v) => v.len(),
            Values::Floats(v) => v.len(),
            Values::Ints(v) => v.len(),
        }
    }
}

/// An example's features by name.
pub type Features = HashMap<String, Values>;

/// The features of a protobuf `tensorflow.Example`.
pub fn from_proto(example: &Example) -> Features {
    let mut out = Features::new();
    if let Some(features) = &example.features {
        for (name, feature) in &features.feature {
            out.insert(name.clone(), values_of(feature));
        }
    }
    out
}

fn values_of(feature: &Feature) -> Values {
    match &feature.kind {
        Some(Kind::BytesList(b)) => Values::Bytes(b.value.clone()),
        Some(Kind::FloatList(f)) => Values::Floats(f.value.clone()),
        Some(Kind::Int64List(i)) => Values::Ints(i.value.clone()),
        None => Values::Ints(Vec::new()),
    }
}

/// The features of a serialized `tensorflow.Example`.
pub fn parse_serialized(bytes: &[u8]) -> std::result::Result<Features, String> {
    Example::decode(bytes)
        .map(|e| from_proto(&e))
        .map_err(|e| format!("not a serialized tf.Example: {e}"))
}

/// The features of TF Serving's JSON example (`{"age": 25, "workclass": "Private"}`): a value or
/// a list of values per feature; whole numbers are int64, other numbers float, strings and
/// `{"b64": ...}` bytes.
pub fn from_json(example: &Map<String, Value>) -> std::result::Result<Features, String> {
    let mut out = Features::new();
    for (name, value) in example {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut shape = Vec::new();
        shape_of(value, &mut shape).map_err(|e| format!("feature '{name}': {e}"))?;
        if shape.len() > 1 {
            return Err(format!(
                "feature '{name}': a feature is a value or a flat list of values"
            ));
        }
        let bytes = |v: &Value| -> Option<Vec<u8>> {
            match v {
                Value::String(_) if non_finite_value(v).is_some() => None,
                Value::String(s) => Some(s.as_bytes().to_vec()),
                Value::Object(o) if is_b64(o) => {
                    use base64::Engine;
                    o["b64"]
                        .as_str()
                        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
                }
                _ => None,
            }
        };
        let values = if items.iter().all(|v| v.is_i64() || v.is_u64()) && !items.is_empty() {
            Values::Ints(
                items
                    .iter()
                    .map(|v| {
                        v.as_i64()
                            .ok_or_else(|| format!("feature '{name}': {v} is out of int64 range"))
                    })
                    .collect::<std::result::Result<_, _>>()?,
            )
        } else if items
            .iter()
            .all(|v| v.is_number() || non_finite_value(v).is_some())
        {
            Values::Floats(
                items
                    .iter()
                    .filter_map(|v| v.as_f64().or_else(|| non_finite_value(v)))
                    .map(|f| {
                        crate::tensor::element::to_f32(f).ok_or_else(|| {
                            format!("feature '{name}': {f:e} is out of FP32's range")
                        })
                    })
                    .collect::<std::result::Result<_, _>>()?,
            )
        } else {
            Values::Bytes(
                items
                    .iter()
                    .map(|v| {
                        bytes(v).ok_or_else(|| {
                            format!(
                                "feature '{name}': values must be all numbers, or all strings / {{\"b64\": ...}}"
                            )
                        })
                    })
                    .collect::<std::result::Result<_, _>>()?,
            )
        };
        out.insert(name.clone(), values);
    }
    Ok(out)
}

/// An example as the JSON instance object the instance decoder takes: a single value per
/// feature as a scalar, several as a list, bytes as text.
pub fn to_instance(features: &Features) -> std::result::Result<Value, String> {
    let mut obj = Map::new();
    for (name, values) in features {
        let mut items: Vec<Value> = match values {
            Values::Ints(v) => v.iter().map(|&x| Value::from(x)).collect(),
            Values::Floats(v) => v.iter().map(|&x| Value::from(x as f64)).collect(),
            Values::Bytes(v) => v
                .iter()
                .map(|b| {
                    element::text(b)
                        .map(|t| Value::from(t.to_string()))
                        .map_err(|e| format!("feature '{name}': bytes {e}"))
                })
                .collect::<std::result::Result<_, _>>()?,
        };
        let value = if items.len() == 1 {
            items.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(items)
        };
        obj.insert(name.clone(), value);
    }
    Ok(Value::Object(obj))
}

/// The model's inputs (signature order) from examples; a feature missing from an example is
/// taken from `context`, the features all the examples share. Values convert to the input's
/// type exactly (25.0 for an int64 input is 25; 25.5 is an error naming the example).
pub fn to_tensors(
    signature: &Signature,
    examples: &[Features],
    context: Option<&Features>,
) -> Result<Vec<Tensor>> {
    if examples.is_empty() {
        return Err(Error::invalid("no examples: send at least one"));
    }
    signature
        .inputs
        .iter()
        .map(|spec| {
            let per: usize = spec
                .shape
                .iter()
                .skip(1)
                .map(|&d| d.max(0) as usize)
                .product();
            if spec.shape.iter().skip(1).any(|&d| d < 0) {
                return Err(Error::invalid(format!(
                    "input '{}' has a free inner dimension; examples cannot fill it",
                    spec.name
                )));
            }
            let mut data = TensorData::with_capacity(spec.dtype, examples.len() * per);
            for (i, example) in examples.iter().enumerate() {
                let err = |m: String| {
                    Error::invalid(format!("example {i}: feature '{}': {m}", spec.name))
                };
                let values = example
                    .get(&spec.name)
                    .or_else(|| context.and_then(|c| c.get(&spec.name)))
                    .ok_or_else(|| {
                        Error::invalid(format!("example {i}: missing feature '{}'", spec.name))
                    })?;
                if values.len() != per {
                    return Err(err(format!(
                        "{} values, the model's input takes {per} per example",
                        values.len()
                    )));
                }
                let natural = match values {
                    Values::Ints(v) => TensorData::I64(v.clone()),
                    Values::Floats(v) => TensorData::F32(v.clone()),
                    Values::Bytes(v) => TensorData::String(
                        v.iter()
                            .map(|b| {
                                element::text(b)
                                    .map(str::to_string)
                                    .map_err(|e| err(format!("bytes {e}")))
                            })
                            .collect::<Result<_>>()?,
                    ),
                };
                let converted = element::convert(natural, spec.dtype).map_err(err)?;
                data.append(converted)
                    .map_err(|_| Error::internal("example values of another type"))?;
            }
            let mut shape = vec![examples.len()];
            shape.extend(spec.shape.iter().skip(1).map(|&d| d as usize));
            Ok(Tensor::new(shape, data))
        })
        .collect()
}
